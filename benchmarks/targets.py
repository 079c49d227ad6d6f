"""Issue 16's device targets, measured and printed against their thresholds.

Each target is measured as it is stated, on whatever backend JAX runs on:

* PPO throughput: the ``large`` preset with ``--num-envs`` (4,096) envs x 8 seeds
  vmapped, ``--ppo-updates`` updates, on every v0 env; env steps/s of the
  training call, compilation excluded. Target >= 5e7 (one H100/H200).
* Table 2: ``cardiosim-jax table2`` (8 seeds, paper protocol, 1,000 episodes)
  wall time, compilation included. Target < 120 s.
* Sweep: the ``large`` preset on AntiarrhythmicDosing-v1, 32 settings
  (learning rate x gamma x clip range) x 4 seeds, trained and evaluated
  (``experiments.run_sweep``) wall time. Target < 300 s.
* Env rollout: ``bench`` at 1,048,576 patients on pacing-v0 and dosing-v0,
  env steps/s and ours / floor (read from a ``bench`` JSON: ``--bench-json``).
  Targets >= 2e9 steps/s and >= 0.5 of the floor.

``--quick`` shrinks every workload (tiny envs, seeds, budgets) to check the
script on a CPU: its figures are not comparable with the targets, and the
table says so. Writes ``benchmarks/results/targets-<backend>[-quick].{json,md}``.

    python benchmarks/targets.py [--quick] [--bench-json benchmarks/results/gpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import jax

from cardiosim_jax import experiments
from cardiosim_jax.registration import v0_envs
from cardiosim_jax.training import ppo

RESULTS = Path(__file__).parent / "results"
SWEEP_ENV = "AntiarrhythmicDosing-v1"
SWEEP_GRID = {
    "learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
    "gamma": [0.9, 0.95, 0.97, 0.99],
    "clip_eps": [0.1, 0.2],
}
ROLLOUT_ENVS = ("PacingControl-v0", "AntiarrhythmicDosing-v0")
MILLION = 1_048_576


def ppo_throughput(env_id: str, num_envs: int, seeds: int, updates: int) -> dict[str, Any]:
    """Aggregate env steps/s of ``seeds`` vmapped trainers of the large preset."""
    config = ppo.preset("large", env_id, num_envs=num_envs)
    config = config.replace_static(total_timesteps=updates * config.batch_size)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(ppo.make_train(config))).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(keys))  # warm-up: first-call transfers
    start = time.perf_counter()
    jax.block_until_ready(compiled(keys))
    seconds = time.perf_counter() - start
    steps = seeds * config.num_updates * config.batch_size
    return {
        "num_envs": num_envs,
        "seeds": seeds,
        "updates": config.num_updates,
        "env_steps": steps,
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": steps / seconds,
    }


def table2_wall(quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        experiments.run_table2(quick)
    return {"quick": quick, "seconds": time.perf_counter() - start}


def sweep_wall(num_envs: int, seeds: int, episodes: int, quick: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {"num_envs": num_envs}
    grid = SWEEP_GRID
    if quick:  # 4 updates, a 2 x 2 x 2 grid
        overrides["num_steps"] = 8
        overrides["total_timesteps"] = 4 * num_envs * 8
        grid = {k: v[:2] for k, v in SWEEP_GRID.items()}
    base = ppo.preset("large", SWEEP_ENV, **overrides)
    start = time.perf_counter()
    sweep = experiments.run_sweep(base, grid, seeds, episodes, log=lambda _: None)
    n = len(sweep.rows)
    return {
        "settings": n,
        "seeds": seeds,
        "num_envs": num_envs,
        "env_steps_per_seed": base.num_updates * base.batch_size,
        "chunk_size": sweep.chunk_size,
        "train_seconds": sweep.seconds,
        "seconds": time.perf_counter() - start,
    }


def rollout_rows(bench_json: Path | None) -> dict[str, Any]:
    """Env steps/s and ours/floor at 1,048,576 patients from a ``bench`` results file."""
    if bench_json is None or not bench_json.exists():
        return {}
    envs = json.loads(bench_json.read_text()).get("envs", {})
    rows = {}
    for env_id in ROLLOUT_ENVS:
        for point in envs.get(env_id, {}).get("throughput", []):
            if point.get("batch") == MILLION and point.get("steps_per_second"):
                rows[env_id] = {
                    "steps_per_second": point["steps_per_second"],
                    "floor_ratio": point.get("fraction_of_floor"),
                }
    return rows


def render(data: dict[str, Any]) -> str:
    quick = data["quick"]
    lines = [
        f"Issue 16 targets on {data['device']} ({data['backend']}), jax {data['jax']}, "
        f"{data['date']}."
        + (
            " QUICK run: shrunken workloads that check the script; not comparable with the targets."
            if quick
            else ""
        ),
        "",
        "| target | threshold | measured | met |",
        "|---|---:|---:|---|",
    ]

    def row(name: str, threshold: str, measured: str, met: bool | None) -> None:
        verdict = "-" if quick or met is None else ("yes" if met else "no")
        lines.append(f"| {name} | {threshold} | {measured} | {verdict} |")

    for env_id, cell in data["ppo"].items():
        row(
            f"PPO {env_id}, {cell['seeds']} seeds x {cell['num_envs']:,} envs",
            ">= 5.0e7 steps/s",
            f"{cell['steps_per_second']:.3g} steps/s",
            cell["steps_per_second"] >= 5e7,
        )
    t2 = data["table2"]
    row(
        "Table 2 --quick (2 seeds, 200 episodes, a tenth of the budget)"
        if t2["quick"]
        else "Table 2 (8 seeds, 1,000 episodes, paper protocol)",
        "< 120 s",
        f"{t2['seconds']:.0f} s",
        t2["seconds"] < 120,
    )
    sw = data["sweep"]
    row(
        f"sweep {SWEEP_ENV}: {sw['settings']} settings x {sw['seeds']} seeds, large "
        f"({sw['num_envs']:,} envs)",
        "< 300 s",
        f"{sw['seconds']:.0f} s",
        sw["seconds"] < 300,
    )
    for env_id, cell in data["rollout"].items():
        row(
            f"{env_id} rollout at 1,048,576",
            ">= 2e9 steps/s",
            f"{cell['steps_per_second']:.3g}",
            cell["steps_per_second"] >= 2e9,
        )
        if cell["floor_ratio"] is not None:
            row(
                f"{env_id} ours / floor at 1,048,576",
                ">= 0.5",
                f"{cell['floor_ratio']:.2f}",
                cell["floor_ratio"] >= 0.5,
            )
    if not data["rollout"]:
        lines.append("| env rollout at 1,048,576 | - | no `bench` JSON with that batch given | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--ppo-updates", type=int, default=None)
    parser.add_argument("--bench-json", type=Path, default=None)
    parser.add_argument("--skip-table2", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    num_envs = args.num_envs or (64 if quick else 4096)
    updates = args.ppo_updates or (2 if quick else 8)
    device = jax.devices()[0]
    data: dict[str, Any] = {
        "quick": quick,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "ppo": {},
    }
    for env_id in v0_envs:
        data["ppo"][env_id] = ppo_throughput(env_id, num_envs, 8, updates)
        print(env_id, data["ppo"][env_id], flush=True)
    data["table2"] = (
        {"quick": quick, "seconds": float("nan")} if args.skip_table2 else table2_wall(quick)
    )
    print("table2", data["table2"], flush=True)
    data["sweep"] = sweep_wall(num_envs, 2 if quick else 4, 10 if quick else 100, quick)
    print("sweep", data["sweep"], flush=True)
    data["rollout"] = rollout_rows(args.bench_json)
    suffix = "-quick" if quick else ""
    out = RESULTS / f"targets-{data['backend']}{suffix}.json"
    out.write_text(json.dumps(data, indent=1))
    table = render(data)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
