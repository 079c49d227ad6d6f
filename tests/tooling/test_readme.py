"""The README's code blocks run as written."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run_block(index: int) -> dict:
    namespace: dict = {}
    exec(compile(python_blocks()[index], f"README python block {index}", "exec"), namespace)
    return namespace


def test_readme_has_the_documented_python_blocks():
    # Quickstart, plotting, Gymnasium, conformance: each is checked below.
    assert len(python_blocks()) == 4


def test_quickstart_code_block_runs(capsys):
    namespace = run_block(0)
    # The quickstart batches 4,096 patients and builds a per-patient cohort.
    assert namespace["obs"].shape == (4096, 6)
    assert namespace["cohort"].pk.volume_of_distribution.shape == (4096,)
    assert "(4096, 6)" in capsys.readouterr().out


def test_plotting_code_block_runs():
    namespace = run_block(1)
    try:
        # Two patients with targets 60 and 80 bpm, whole 500-step episodes.
        assert namespace["trajectory"].reward.shape == (2, 500)
        assert bool(namespace["trajectory"].valid.all())
        assert len(namespace["fig"].axes) >= 4
    finally:
        plt.close("all")


def test_gymnasium_code_block_runs():
    namespace = run_block(2)
    assert namespace["obs"].shape == (1024, 6)
    assert namespace["rewards"].shape == (1024,)
    assert namespace["env"].unwrapped.jax_params.target_heart_rate_bpm == pytest.approx(80.0)


def test_conformance_code_block_runs():
    # Every check passes on a registered id (a failing one raises AssertionError).
    namespace = run_block(3)
    assert namespace["env"].env_id == "DefibrillationTiming-v0"
