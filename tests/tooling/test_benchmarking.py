"""Benchmark suite: the quick runs' JSON schema (v0 and v1), the floor kernels' integrator
work, memory sums and the batch skips, the reset winner, the scaling figure.

No timing assertions: speed targets live in the benchmarks, never in tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ENV_IDS, once_per_session

import cardiosim_jax
from cardiosim_jax import cli
from cardiosim_jax.models import aliev_panfilov as ap
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_tools import benchmarking

#: The quick run benchmarks one environment (pacing compiles fastest) to keep this file short.
QUICK_ENV = "PacingControl-v0"
#: The v1 quick run: the v1 env that compiles fastest; it has no reference and no floor.
V1_ENV = "PacingControl-v1"
#: Its batches: two small ones run, then one whose extrapolated footprint exceeds the budget.
V1_BATCHES = (1, 16, 1_048_576)
V1_BUDGET_GIB = 1 / 16
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``cardiosim-jax bench --quick`` on one env: (results JSON, JSON path, printed stdout)."""

    def run() -> dict:
        path = tmp_path_factory.mktemp("bench") / "cpu.json"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["bench", "--quick", "--envs", QUICK_ENV, "--out", str(path)]) == 0
        return {"path": str(path), "stdout": out.getvalue()}

    run_info = once_per_session(tmp_path_factory, "bench_quick_run", run)
    path = Path(run_info["path"])
    return json.loads(path.read_text()), path, run_info["stdout"]


@pytest.fixture(scope="module")
def v1_quick_run(tmp_path_factory):
    """``bench --quick`` on a v1 env with a batch over a tiny memory budget, no PPO, no RSS."""

    def run() -> dict:
        path = tmp_path_factory.mktemp("bench-v1") / "cpu.json"
        argv = [
            "bench",
            "--quick",
            "--envs",
            V1_ENV,
            "--batches",
            ",".join(map(str, V1_BATCHES)),
            "--memory-budget-gib",
            str(V1_BUDGET_GIB),
            "--no-ppo",
            "--no-rss",
            "--out",
            str(path),
        ]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(argv) == 0
        return {"path": str(path), "stdout": out.getvalue()}

    run_info = once_per_session(tmp_path_factory, "bench_v1_quick_run", run)
    path = Path(run_info["path"])
    return json.loads(path.read_text()), path, run_info["stdout"]


def positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def non_negative_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def check_timing(t: dict, batch: int) -> None:
    assert t["batch"] == batch
    assert isinstance(t["steps"], int) and t["steps"] >= 1
    for key in ("compile_seconds", "warmup_seconds", "seconds", "steps_per_second"):
        assert positive(t[key]), key
    assert t["seconds"] == min(t["all_seconds"])
    assert t["steps_per_second"] == pytest.approx(batch * t["steps"] / t["seconds"])


def check_compiled_memory(m: dict) -> None:
    for key in ("argument_bytes", "output_bytes", "temp_bytes", "alias_bytes"):
        assert non_negative_int(m[key]), key
    assert m["total_bytes"] == (
        m["argument_bytes"] + m["output_bytes"] + m["temp_bytes"] - m["alias_bytes"]
    )
    assert m["total_bytes"] > 0


def test_quick_run_follows_the_documented_schema(quick_run):
    results, _, _ = quick_run
    assert set(results) == {
        "schema_version",
        "quick",
        "machine",
        "settings",
        "envs",
        "reset",
        "wall_seconds",
    }
    assert results["schema_version"] == benchmarking.SCHEMA_VERSION
    assert results["quick"] is True
    assert positive(results["wall_seconds"])

    machine = results["machine"]
    for key in ("cpu_model", "platform", "python", "jax", "jaxlib", "backend", "device_kind"):
        assert isinstance(machine[key], str) and machine[key], key
    assert machine["jax"] == jax.__version__
    assert machine["backend"] == jax.default_backend()
    for key in ("cpu_cores", "cpu_cores_usable", "device_count"):
        assert positive(machine[key]), key
    assert len(machine["load_average_start"]) == len(machine["load_average_end"]) == 3

    settings = results["settings"]
    batches = settings["batches"]
    assert batches == sorted(benchmarking.QUICK_BATCHES)
    assert settings["difficulty"] == benchmarking.DIFFICULTY
    assert set(results["envs"]) == {QUICK_ENV}

    r = results["envs"][QUICK_ENV]
    assert r["difficulty"] == benchmarking.DIFFICULTY
    _, params = cardiosim_jax.make(QUICK_ENV, benchmarking.DIFFICULTY)
    assert r["episode_steps"] == int(params.max_steps_in_episode)
    spec = benchmarking.FLOOR_SPECS[QUICK_ENV]
    assert r["floor"]["substeps"] == spec.substeps
    assert r["floor"]["model"] == spec.model
    assert r["floor"]["state_floats"] == 2

    ref = r["reference"]
    assert ref["package"] == "cardiosim 0.1.0"
    assert positive(ref["steps_per_second"]) and ref["steps"] > 0
    assert r["floor_note"] is None and r["skipped"] == []

    assert [row["batch"] for row in r["throughput"]] == batches
    for row in r["throughput"]:
        check_timing(row, row["batch"])
        check_timing(row["floor"], row["batch"])
        assert row["floor"]["unroll"] in r["floor"]["unrolls"]
        assert positive(row["fraction_of_floor"]) and positive(row["speedup_vs_reference"])
        assert row["fraction_of_floor"] == pytest.approx(
            row["steps_per_second"] / row["floor"]["steps_per_second"]
        )
        assert row["speedup_vs_reference"] == pytest.approx(
            row["steps_per_second"] / ref["steps_per_second"]
        )
        if row["batch"] >= benchmarking.OPTIMISTIC_MIN_BATCH:
            opt = row["optimistic_reset"]
            check_timing(opt, row["batch"])
            # The row names the faster of the two resets, with their ratio.
            faster = "optimistic" if opt["steps_per_second"] > row["steps_per_second"] else "auto"
            assert row["reset_winner"] == faster
            assert row["optimistic_over_auto"] == pytest.approx(
                opt["steps_per_second"] / row["steps_per_second"]
            )
        else:
            assert row["optimistic_reset"] is None
            assert row["reset_winner"] is None and row["optimistic_over_auto"] is None
    assert any(row["optimistic_reset"] for row in r["throughput"])
    timed_both = [row for row in r["throughput"] if row["reset_winner"]]
    assert r["reset"]["winner_by_batch"] == {
        str(row["batch"]): row["reset_winner"] for row in timed_both
    }
    assert r["reset"]["optimistic_wins"] + r["reset"]["auto_wins"] == len(timed_both)
    assert results["reset"]["backend"] == machine["backend"]
    assert results["reset"]["by_env"] == {QUICK_ENV: r["reset"]["choice"]}
    assert results["reset"]["choice"] in ("auto", "optimistic")

    mem = r["memory"]
    assert positive(mem["state_bytes"]) and positive(mem["observation_bytes"])
    assert sum(mem["state_leaves"].values()) == mem["state_bytes"]
    # A quick run reads memory from its smallest and largest batch, already compiled.
    assert settings["memory_batches"] is None
    b1, b2 = min(batches), max(batches)
    assert mem["rollout"]["batch"] == b1 and mem["rollout_at_second_batch"]["batch"] == b2
    check_compiled_memory(mem["rollout"])
    check_compiled_memory(mem["rollout_at_second_batch"])
    ext = mem["extrapolation"]
    assert ext["batches"] == [b1, b2]
    assert ext["total_bytes"] == [
        mem["rollout"]["total_bytes"],
        mem["rollout_at_second_batch"]["total_bytes"],
    ]
    assert positive(ext["bytes_per_patient"]) and positive(ext["max_batch"])
    assert ext["budget_bytes"] == settings["memory_budget_bytes"]
    rss = mem["rss"]
    assert rss["batch"] == b1
    for key in (
        "baseline_bytes",
        "after_compile_bytes",
        "before_run_bytes",
        "after_run_bytes",
        "ru_maxrss_bytes",
    ):
        assert positive(rss[key]), key
    assert non_negative_int(rss["execution_delta_bytes"])
    assert non_negative_int(rss["process_delta_bytes"])

    ppo = r["ppo"]
    assert ppo["preset"] == "tuned"
    assert ppo["timesteps_per_seed"] == ppo["updates"] * ppo["num_envs"] * ppo["num_steps"]
    for name, seeds in (("single", 1), ("vmapped", settings["ppo_seeds"])):
        run = ppo[name]
        assert run["seeds"] == seeds
        for key in ("compile_seconds", "seconds", "steps_per_second"):
            assert positive(run[key]), (name, key)
        assert run["steps_per_second"] == pytest.approx(
            seeds * ppo["timesteps_per_seed"] / run["seconds"]
        )
        check_compiled_memory(run["memory"])


def test_cli_bench_writes_json_and_the_markdown_it_prints(quick_run):
    results, path, stdout = quick_run
    markdown = path.with_suffix(".md").read_text()
    assert markdown == benchmarking.to_markdown(results)
    assert stdout == markdown + "\n"
    for heading in (
        "Environment steps/s",
        "Reset strategy",
        "Compute floor",
        "Ratios",
        "PPO",
        "Memory",
    ):
        assert f"### {heading}" in markdown
    assert results["machine"]["cpu_model"] in markdown
    r = results["envs"][QUICK_ENV]
    row = r["throughput"][-1]
    # Starred: the 16-step optimistic call is shorter than an episode, so it reset nobody.
    assert row["optimistic_reset"]["steps"] < r["episode_steps"]
    assert (
        f"| {QUICK_ENV}, faster reset (optimistic / auto) | - | - | "
        f"{row['reset_winner']} ({row['optimistic_over_auto']:.2f})\\* |" in markdown
    )
    assert f"faster on this backend: **{results['reset']['choice']}**" in markdown


# --------------------------------------------------------------------------- v1 and skipped batches


def test_v1_quick_run_has_positive_rows_no_reference_no_floor(v1_quick_run):
    results, _, _ = v1_quick_run
    assert results["settings"]["batches"] == list(V1_BATCHES)
    assert results["settings"]["ppo"] is False
    r = results["envs"][V1_ENV]
    assert r["reference"] is None
    assert r["floor"] is None and r["floor_note"] == benchmarking.NO_FLOOR[V1_ENV]
    assert r["ppo"] is None and r["memory"]["rss"] is None
    assert [row["batch"] for row in r["throughput"]] == [1, 16]
    for row in r["throughput"]:
        check_timing(row, row["batch"])
        assert row["floor"] is None and row["fraction_of_floor"] is None
        assert row["speedup_vs_reference"] is None
        # Below OPTIMISTIC_MIN_BATCH: auto-reset only, no winner.
        assert row["optimistic_reset"] is None and row["reset_winner"] is None
    assert r["reset"]["choice"] is None and results["reset"]["choice"] is None
    # Memory from the two batches run, both real compiled footprints.
    ext = r["memory"]["extrapolation"]
    assert ext["batches"] == [1, 16] and positive(ext["bytes_per_patient"])


def test_a_batch_over_the_memory_budget_is_skipped_with_its_reason(v1_quick_run):
    results, _, _ = v1_quick_run
    budget = int(V1_BUDGET_GIB * benchmarking.GIB)
    assert results["settings"]["memory_budget_bytes"] == budget
    r = results["envs"][V1_ENV]
    (skip,) = r["skipped"]
    assert skip["batch"] == V1_BATCHES[-1] and skip["reason"] == "memory"
    assert skip["budget_bytes"] == budget and skip["estimated_bytes"] > budget
    # The estimate is the memory line through the two batches run, at the skipped batch.
    ext = r["memory"]["extrapolation"]
    assert skip["estimated_bytes"] == pytest.approx(
        ext["fixed_bytes"] + ext["bytes_per_patient"] * skip["batch"], rel=1e-9, abs=1
    )
    assert "B = 1 and 16" in skip["method"]


def test_v1_markdown_shows_dashes_skips_and_the_floor_note(v1_quick_run):
    results, path, stdout = v1_quick_run
    markdown = path.with_suffix(".md").read_text()
    assert markdown == benchmarking.to_markdown(results) and stdout == markdown + "\n"
    rates = [_rate_cell(row["steps_per_second"]) for row in results["envs"][V1_ENV]["throughput"]]
    assert f"| {V1_ENV} | - | {rates[0]} | {rates[1]} | skipped (memory) |" in markdown
    assert f"| {V1_ENV} | - (note 1) | - | - | - |" in markdown
    assert f"Note 1: no floor: {benchmarking.NO_FLOOR[V1_ENV]}." in markdown
    assert re.search(r"- PacingControl-v1, B = 1,048,576: extrapolated XLA footprint", markdown)
    assert "### PPO" not in markdown
    assert "The optimistic reset was not timed" in markdown


def _rate_cell(x: float) -> str:
    return f"{x:,.0f}"


def test_plan_batch_skips_only_what_is_predicted_over_budget():
    # 1,000 fixed bytes + 100 per patient, measured at 10 and 20 patients.
    memory = [(10, 2_000), (20, 3_000)]
    assert benchmarking.plan_batch(1_000, memory, [], 101_000, None) is None
    skip = benchmarking.plan_batch(1_000, memory, [], 100_999, None)
    assert skip["reason"] == "memory" and skip["estimated_bytes"] == 101_000
    assert skip["budget_bytes"] == 100_999 and "10 and 20" in skip["method"]
    # The line goes through the two largest batches measured, not the first two.
    steeper = [(1, 1_000), (10, 2_000), (20, 4_000)]
    assert benchmarking.plan_batch(1_000, steeper, [], 101_000, None)["estimated_bytes"] == 200_000
    # One point predicts nothing: the caller reads the compiled footprint instead.
    assert benchmarking.plan_batch(10**9, [(10, 2_000)], [], 1, None) is None
    # Time: 0.1 s per step at 1,000 patients, 0.2 s at 2,000 -> 1.0 s at 10,000.
    times = [(1_000, 0.1), (2_000, 0.2)]
    assert benchmarking.plan_batch(10_000, memory, times, 10**9, 1.01) is None
    skip = benchmarking.plan_batch(10_000, memory, times, 10**9, 0.99)
    assert skip["reason"] == "time" and skip["estimated_step_seconds"] == pytest.approx(1.0)
    assert benchmarking.plan_batch(10**7, memory, times, 10**10, None) is None


def test_a_compiled_footprint_over_the_budget_is_a_skip():
    memory = {"total_bytes": 5_000}
    assert benchmarking._compiled_over_budget(64, memory, 5_000) is None
    skip = benchmarking._compiled_over_budget(64, memory, 4_999)
    assert skip["reason"] == "memory" and skip["estimated_bytes"] == 5_000
    assert skip["method"].startswith("compiled")


def test_reset_winner_is_the_faster_and_the_choice_the_majority():
    assert benchmarking.reset_winner(1.0e6, 1.3e6) == "optimistic"
    assert benchmarking.reset_winner(1.3e9, 0.97e9) == "auto"
    assert benchmarking.reset_winner(2.0, 2.0) == "auto"  # a tie keeps the default
    rows = [
        {"batch": 1, "reset_winner": None},
        {"batch": 64, "reset_winner": "auto"},
        {"batch": 4096, "reset_winner": "optimistic"},
        {"batch": 65536, "reset_winner": "optimistic"},
    ]
    summary = benchmarking.reset_summary(rows)
    assert summary["winner_by_batch"] == {"64": "auto", "4096": "optimistic", "65536": "optimistic"}
    assert (summary["optimistic_wins"], summary["auto_wins"]) == (2, 1)
    assert summary["choice"] == "optimistic"
    assert benchmarking.reset_summary(rows[:2])["choice"] == "auto"
    assert benchmarking.reset_summary(rows[:1])["choice"] is None
    envs = {
        "a": {"reset": summary},
        "b": {
            "reset": benchmarking.reset_summary(
                [{"batch": b, "reset_winner": "auto"} for b in (64, 4096, 65536)]
            )
        },
    }
    choice = benchmarking.backend_reset_choice(envs, "gpu")
    assert (choice["optimistic_wins"], choice["auto_wins"], choice["choice"]) == (2, 4, "auto")
    assert choice["by_env"] == {"a": "optimistic", "b": "auto"}


def test_every_registered_env_has_a_floor_or_a_reason_for_none():
    registered = set(cardiosim_jax.registered_envs)
    assert set(benchmarking.FLOOR_SPECS) | set(benchmarking.NO_FLOOR) == registered
    assert not set(benchmarking.FLOOR_SPECS) & set(benchmarking.NO_FLOOR)
    assert benchmarking.BenchSettings().envs == tuple(cardiosim_jax.registered_envs)
    assert 1_048_576 in benchmarking.BenchSettings().batches


def test_dosing_v1_floor_is_the_focus_rk4_of_its_monitoring_window():
    env_id = "AntiarrhythmicDosing-v1"
    spec = benchmarking.FLOOR_SPECS[env_id]
    # One decision: 12 hourly windows of 80 focus and 40 myocyte RK4 steps.
    assert spec.substeps == 12 * (80 + 40) == benchmarking.DOSING_V1_RK4_STEPS
    states, cell, stimulus = benchmarking.floor_args(env_id, 4)
    _, params = cardiosim_jax.make(env_id, benchmarking.DIFFICULTY)
    assert cell == de.focus_cell(jnp.float32(0.0), params.pd)
    # The kernel over one window's focus substeps is the env's noise-free focus at C = 0.
    window = dataclasses.replace(spec, substeps=de.WINDOW_SUBSTEPS)
    specs = {**benchmarking.FLOOR_SPECS, env_id: window}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmarking, "FLOOR_SPECS", specs)
        got = jax.jit(benchmarking.floor_rollout(env_id, 1))(states, cell, stimulus)
    expected = jax.vmap(
        lambda s: (
            de.simulate_window(
                s, params.pd, jnp.float32(0.0), stimulus, jnp.zeros(de.WINDOW_SUBSTEPS)
            ).focus
        )
    )(states)
    for g, e in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    # The focus moved (it fires at this drive): the kernel did integrate.
    assert not np.allclose(got.v, states.v)


# --------------------------------------------------------------------------- CLI mistakes


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--envs", "Nope-v0"], r"--envs: invalid choice: 'Nope-v0'"),
        (["bench", "--memory-budget-gib", "0"], r"--memory-budget-gib: .*> 0, got 0$"),
        (["bench", "--max-step-seconds", "-1"], r"--max-step-seconds: .*> 0, got -1$"),
        (["bench", "--out", "results.md"], r"--out must name a \.json file .*got 'results\.md'$"),
    ],
)
def test_bench_mistakes_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    assert excinfo.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err.strip().splitlines()[-1])


def test_bench_out_under_a_file_is_refused_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["bench", "--quick", "--out", str(blocker / "cpu.json")])
    assert excinfo.value.code == 2
    assert "not a writable file path" in capsys.readouterr().err


# --------------------------------------------------------------------------- scaling figure


def test_scaling_figure_is_drawn_from_the_committed_results(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "scaling_figure", REPO / "benchmarks" / "scaling_figure.py"
    )
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    gpu = figure.load(figure.DEFAULT_GPU)
    assert gpu["machine"]["device_kind"] == "NVIDIA H200"
    points = figure.series(gpu, "PacingControl-v0")
    assert [b for b, _ in points["env"]] == [1, 4096, 65536, 1_048_576]
    assert dict(points["env"])[1_048_576] == pytest.approx(1.305e9, rel=1e-3)
    assert dict(points["floor"])[1_048_576] == pytest.approx(9.545e9, rel=1e-3)
    # Every v0 env's 1,048,576-patient row lost with the optimistic reset on the H200.
    for r in gpu["envs"].values():
        assert r["throughput"][-1]["reset_winner"] == "auto"
    out = figure.make_figure(figure.DEFAULT_CPU, figure.DEFAULT_GPU, tmp_path / "scaling.png")
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 300_000
    committed = REPO / "benchmarks" / "results" / "scaling.png"
    assert committed.is_file() and committed.stat().st_size < 300_000


# --------------------------------------------------------------------------- the floor kernel


def model_steps(env_id: str, state, cell_params, n_env_steps: int):
    """The env's own model functions, noise-free, for ``n_env_steps`` env steps."""
    spec = benchmarking.FLOOR_SPECS[env_id]
    for _ in range(n_env_steps):
        if env_id == "PacingControl-v0":
            # Pacing steps its cell once per 1 ms conduction substep.
            for _ in range(spec.substeps):
                state = fhn.step(state, cell_params, spec.stimulus)
        elif env_id == "AntiarrhythmicDosing-v0":
            state = fhn.integrate(state, cell_params, spec.stimulus, jnp.zeros(spec.substeps))
        else:
            # ap.integrate clamps after every step; the test states never reach the clamp.
            state, _ = ap.integrate(state, cell_params, spec.stimulus, jnp.zeros(spec.substeps))
    return state


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_floor_kernel_is_the_env_models_rk4_integration(env_id):
    n_env_steps, batch = 3, 8
    spec = benchmarking.FLOOR_SPECS[env_id]
    _, params = cardiosim_jax.make(env_id, benchmarking.DIFFICULTY)
    states, cell_params, stimulus = benchmarking.floor_args(env_id, batch)
    assert len(jax.tree_util.tree_leaves(states)) == 2  # a 2-state cell, one float each
    assert cell_params == params.cell
    assert float(stimulus) == np.float32(spec.stimulus)

    expected = jax.vmap(lambda s: model_steps(env_id, s, cell_params, n_env_steps))(states)
    for unroll in spec.unrolls():
        got = jax.jit(benchmarking.floor_rollout(env_id, n_env_steps, unroll))(
            states, cell_params, stimulus
        )
        for g, e in zip(
            jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
        ):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # The states moved: the kernel did integrate.
    assert not np.allclose(
        jax.tree_util.tree_leaves(expected)[0], jax.tree_util.tree_leaves(states)[0]
    )


# --------------------------------------------------------------------------- memory accounting


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_patient_bytes_is_the_size_of_a_real_reset_state(env_id):
    env, params = cardiosim_jax.make(env_id, benchmarking.DIFFICULTY)
    obs, state = env.reset(jax.random.PRNGKey(3), params)
    counted = benchmarking.patient_bytes(env_id)
    leaves = jax.tree_util.tree_leaves(state)
    assert counted["state_bytes"] == sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    assert counted["observation_bytes"] == obs.size * obs.dtype.itemsize == 6 * 4
    assert len(counted["state_leaves"]) == len(leaves)


def test_max_batch_extrapolation_is_linear_in_the_batch():
    # 100 fixed bytes + 10 per patient: 10,100 bytes hold exactly 1,000 patients.
    ext = benchmarking.extrapolate_max_batch((100, 300), (1_100, 3_100), 10_100)
    assert ext["bytes_per_patient"] == 10 and ext["fixed_bytes"] == 100
    assert ext["max_batch"] == 1_000
    assert (
        benchmarking.extrapolate_max_batch((100, 300), (1_100, 3_100), 10_099)["max_batch"] == 999
    )
