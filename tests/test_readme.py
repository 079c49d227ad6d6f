"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_code_block_runs(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "README has no python code block"
    namespace: dict = {}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)
    # The quickstart batches 4,096 patients and builds a per-patient cohort.
    assert namespace["obs"].shape == (4096, 6)
    assert namespace["cohort"].pk.volume_of_distribution.shape == (4096,)
    assert "(4096, 6)" in capsys.readouterr().out
