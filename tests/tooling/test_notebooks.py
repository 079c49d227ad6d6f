"""The notebooks are clean, open in Colab, and run top to bottom showing what they claim.

Each notebook is executed once per test session with nbclient, on the small
budget its ``QUICK`` switch selects (``CARDIOSIM_NOTEBOOK_QUICK=1``). A probe
cell appended to the executed copy (never to the file) prints the notebook's
results as JSON, and the assertions read them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("quickstart", "patient_population", "device_scale_training")
COLAB_BADGE = re.compile(
    r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    r"\(https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/"
    r"notebooks/(?P<name>[\w-]+)\.ipynb\)"
)
PROBE_MARKER = "NOTEBOOK_PROBE "
#: Per notebook: name -> Python expression evaluated in the kernel after the last cell.
PROBES = {
    "quickstart": {
        "quick": "QUICK",
        "prefix": "sys.prefix",
        "population_returns": "len(returns)",
        "means": "{name: r['mean'] for name, r in results.items()}",
        "ci95": "{name: r['ci95'] for name, r in results.items()}",
        "ppo_seeds": "results['PPO (tuned)']['n_seeds']",
        "curve": "np.asarray(out.metrics['episode_return']).tolist()",
        "timesteps": "np.asarray(out.metrics['timesteps']).tolist()",
    },
    "patient_population": {
        "quick": "QUICK",
        "prefix": "sys.prefix",
        "n_patients": "N_PATIENTS",
        "cohort_shape": "list(cohort.pk.volume_of_distribution.shape)",
        "mean_return": "mean_return.tolist()",
        "clearance": "clearance.tolist()",
        "nominal_return": "nominal_return",
        "in_window": "in_window.tolist()",
        "tier_returns_shape": "list(tier_returns.shape)",
    },
    "device_scale_training": {
        "quick": "QUICK",
        "prefix": "sys.prefix",
        "backend": "BACKEND",
        "n_devices": "len(jax.devices())",
        "n_seeds": "N_SEEDS",
        "shape": "{k: getattr(config, k) for k in "
        "('num_envs', 'num_steps', 'batch_size', 'minibatch_size', 'num_updates', "
        "'total_timesteps')}",
        "curve": "returns.tolist()",
        "timesteps": "timesteps.tolist()",
        "env_steps": "env_steps",
        "steps_per_second": "steps_per_second",
        "grid": "SWEEP_GRID",
        "sweep_seeds": "SWEEP_SEEDS",
        "rows": "[{k: r[k] for k in (*SWEEP_GRID, 'mean', 'iqm', 'ci95', 'n_seeds', "
        "'n_episodes')} for r in sweep.rows]",
        "table": "table",
        "best_index": "sweep.best_index",
        "best_values": "best_values",
        "best_config": "[best_config.learning_rate, best_config.gamma]",
    },
}


def load(name: str):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_and_opens_in_colab(name):
    nb = load(name)
    pytest.importorskip("nbformat").validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"

    first = nb.cells[0]
    assert first.cell_type == "markdown"
    badges = COLAB_BADGE.findall(first.source)
    assert badges == [name], f"the first cell needs one Colab badge for notebooks/{name}.ipynb"

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    install = code[0].source
    assert '"google.colab" in sys.modules' in install
    assert "pip" in install and "cardiosim-jax @ git+https://github.com/" in install
    # Everything the notebook does happens after the guarded install.
    assert not any("google.colab" in cell.source for cell in code[1:])
    assert any('os.environ.get("CARDIOSIM_NOTEBOOK_QUICK"' in cell.source for cell in code)

    for cell in code:
        assert cell.outputs == [], f"stored outputs in cell {cell.get('id')}"
        assert cell.execution_count is None, f"stored execution count in cell {cell.get('id')}"
    assert any("figure" in cell.metadata.get("tags", []) for cell in code)


def test_notebooks_readme_lists_every_notebook():
    readme = (NOTEBOOKS / "README.md").read_text()
    for name in NAMES:
        assert f"{name}.ipynb" in readme
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """name -> (executed notebook, probe values); each notebook runs at most once."""
    cache: dict = {}

    def run(name: str):
        if name not in cache:
            try:
                cache[name] = _execute(name, tmp_path_factory.mktemp(name))
            except BaseException as error:  # a failed run fails every test of it, once
                cache[name] = error
        if isinstance(cache[name], BaseException):
            raise cache[name]
        return cache[name]

    return run


def _execute(name: str, workdir: Path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    nb = load(name)
    probe = "\n".join(
        [
            "import json as _json, sys",
            "_probe = {" + ", ".join(f"{k!r}: {v}" for k, v in PROBES[name].items()) + "}",
            f"print({PROBE_MARKER!r} + _json.dumps(_probe))",
        ]
    )
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    with pytest.MonkeyPatch.context() as mp:
        # The kernel is a child process: it inherits this environment. Its
        # "python3" spec runs sys.executable (the probe checks the prefix).
        mp.setenv("CARDIOSIM_NOTEBOOK_QUICK", "1")
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        # On these small budgets XLA's compilation dominates: without LLVM's
        # optimisations it compiles about twice as fast, and the few seconds of
        # slower execution cost far less. Same programs, same semantics.
        flags = os.environ.get("XLA_FLAGS", "")
        mp.setenv("XLA_FLAGS", f"{flags} --xla_backend_optimization_level=0".strip())
        client = nbclient.NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()  # raises CellExecutionError, with the traceback, on any error
    (line,) = [
        text
        for output in nb.cells[-1].outputs
        if output.output_type == "stream"
        for text in output.text.splitlines()
        if text.startswith(PROBE_MARKER)
    ]
    return nb, json.loads(line[len(PROBE_MARKER) :])


def figure_cells(nb) -> list:
    return [cell for cell in nb.cells if "figure" in cell.metadata.get("tags", [])]


def stdout(nb) -> str:
    return "".join(
        output.text
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_this_environment_and_draws_its_figures(executed, name):
    nb, probe = executed(name)
    assert probe["quick"] is True
    assert probe["prefix"] == sys.prefix, "the kernel must run the test suite's Python"
    for cell in figure_cells(nb):
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"cell {cell.id} should draw one figure: {cell.source[:80]!r}"
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert errors == []


def test_quickstart_vmaps_patients_and_trains_ppo_past_random(executed):
    nb, probe = executed("quickstart")
    assert probe["population_returns"] == 4096
    assert re.search(r"throughput: [\d,]+ environment steps/s", stdout(nb))
    assert "trained 2 seeds in" in stdout(nb)

    means, ci95 = probe["means"], probe["ci95"]
    assert set(means) == {"PPO (tuned)", "heuristic", "random"}
    assert probe["ppo_seeds"] == 2
    # Even the small CI budget learns: PPO's mean is above random's whole 95 % CI.
    assert means["PPO (tuned)"] > ci95["random"][1]
    assert means["heuristic"] > ci95["random"][1]

    curve = [[x for x in seed if x == x] for seed in probe["curve"]]  # drop NaN (no episode yet)
    for seed in curve:
        assert seed[-1] > seed[0] + 50, "the training return should rise"
    timesteps = probe["timesteps"][0]
    assert timesteps == sorted(timesteps) and timesteps[-1] >= 50_000

    # The evaluation table names every policy.
    table = stdout(nb)
    for name in means:
        assert f"| {name} |" in table


def test_population_outcomes_depend_on_the_patient(executed):
    _, probe = executed("patient_population")
    n = probe["n_patients"]
    assert probe["cohort_shape"] == [n]
    mean_return, clearance = probe["mean_return"], probe["clearance"]
    in_window = probe["in_window"]
    assert len(mean_return) == len(clearance) == len(in_window) == n

    # The heuristic suits the nominal patient and fails the extremes of the cohort.
    assert min(mean_return) < probe["nominal_return"] - 150
    typical = [r for r, cl in zip(mean_return, clearance, strict=True) if 5.0 < cl < 50.0]
    fast = [r for r, cl in zip(mean_return, clearance, strict=True) if cl > 150.0]
    assert len(typical) > n // 4 and len(fast) > 5
    assert sum(fast) / len(fast) < sum(typical) / len(typical) - 100
    assert all(0.0 <= f <= 1.0 for f in in_window)
    assert probe["tier_returns_shape"][0] == 3


def test_device_scale_training_trains_eight_seeds_and_sweeps_a_grid(executed):
    nb, probe = executed("device_scale_training")
    out = stdout(nb)
    assert f"backend: {probe['backend']}" in out
    assert len(re.findall(r"^  \d+: .+ \(\w+\)$", out, re.M)) == probe["n_devices"] >= 1

    # QUICK: the large preset's shape at 16 environments (minibatch = batch / 8).
    shape = probe["shape"]
    assert shape["num_envs"] == 16 and shape["num_steps"] == 32
    assert shape["batch_size"] == 512 and shape["minibatch_size"] == 512 // 8
    assert shape["num_updates"] == 40 and shape["total_timesteps"] == 40 * 512
    assert f"num_envs          {16:>12,}" in out

    # Eight seeds, one curve each; throughput from the timed run (compilation excluded).
    n_seeds, updates = probe["n_seeds"], shape["num_updates"]
    assert n_seeds == 8
    curve = np.asarray(probe["curve"], dtype=np.float64)
    assert curve.shape == (n_seeds, updates)
    timesteps = probe["timesteps"]
    assert timesteps == [512 * (u + 1) for u in range(updates)]
    assert probe["env_steps"] == n_seeds * updates * 512
    assert math.isfinite(probe["steps_per_second"]) and probe["steps_per_second"] > 0
    match = re.search(r"throughput: ([\d,]+) environment steps/s \(compilation excluded\)", out)
    assert match and int(match.group(1).replace(",", "")) == round(probe["steps_per_second"])

    # The plotted line (mean over the seeds that have a return) rises.
    reported = curve[:, ~np.all(np.isnan(curve), axis=0)]
    line = np.array([np.mean(col[~np.isnan(col)]) for col in reported.T])
    assert line[-1] > line[0] + 50, f"the training return should rise: {line[0]} -> {line[-1]}"
    assert np.sum(curve[:, -1] > reported[:, 0]) >= 6  # most seeds, not one lucky seed

    # The sweep: one row per setting of the grid, first leaf major, evaluated over its seeds.
    grid, rows = probe["grid"], probe["rows"]
    assert list(grid) == ["learning_rate", "gamma"]
    settings = [(lr, gamma) for lr in grid["learning_rate"] for gamma in grid["gamma"]]
    assert len(rows) == len(settings) == 4
    assert [(r["learning_rate"], r["gamma"]) for r in rows] == settings
    for row in rows:
        assert row["n_seeds"] == probe["sweep_seeds"] == 2
        assert math.isfinite(row["mean"]) and row["ci95"][0] <= row["mean"] <= row["ci95"][1]
    means = [r["mean"] for r in rows]
    assert probe["best_index"] == means.index(max(means))
    best = rows[probe["best_index"]]
    assert probe["best_values"] == {"learning_rate": best["learning_rate"], "gamma": best["gamma"]}
    assert probe["best_config"] == [best["learning_rate"], best["gamma"]]

    # The printed table: one line per setting, the best one marked.
    table = probe["table"]
    assert table in out
    lines = [line for line in table.splitlines() if re.match(r"\| [\d.e-]+ \| ", line)]
    assert len(lines) == len(settings)
    (marked,) = [line for line in lines if line.rstrip().endswith("| best |")]
    assert marked == lines[probe["best_index"]]

    # Two figures (learning curve, heatmap), each drawn once.
    assert len(figure_cells(nb)) == 2


def test_device_scale_training_uses_4096_envs_on_an_accelerator_at_full_budget():
    source = "\n".join(cell.source for cell in load("device_scale_training").cells)
    assert 'NUM_ENVS = 1024 if BACKEND == "cpu" else 4096' in source
    assert 'ppo.preset("large", ENV_ID, num_envs=NUM_ENVS)' in source
