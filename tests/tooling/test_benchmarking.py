"""Benchmark suite: the quick run's JSON schema, the floor kernel's integrator work, memory sums.

No timing assertions: speed targets live in the benchmarks, never in tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ENV_IDS, once_per_session

import cardiosim_jax
from cardiosim_jax import cli
from cardiosim_jax.models import aliev_panfilov as ap
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_tools import benchmarking

#: The quick run benchmarks one environment (pacing compiles fastest) to keep this file short.
QUICK_ENV = "PacingControl-v0"


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
    spec = benchmarking.FLOOR_SPECS[QUICK_ENV]
    assert r["floor"]["substeps"] == spec.substeps
    assert r["floor"]["model"] == spec.model
    assert r["floor"]["state_floats"] == 2

    ref = r["reference"]
    assert ref["package"] == "cardiosim 0.1.0"
    assert positive(ref["steps_per_second"]) and ref["steps"] > 0

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
            check_timing(row["optimistic_reset"], row["batch"])
        else:
            assert row["optimistic_reset"] is None
    assert any(row["optimistic_reset"] for row in r["throughput"])

    mem = r["memory"]
    assert positive(mem["state_bytes"]) and positive(mem["observation_bytes"])
    assert sum(mem["state_leaves"].values()) == mem["state_bytes"]
    b1, b2 = settings["memory_batches"]
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
    for heading in ("Environment steps/s", "Compute floor", "Ratios", "PPO", "Memory"):
        assert f"### {heading}" in markdown
    assert results["machine"]["cpu_model"] in markdown


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
