"""Table 2 of the CardioSim paper with cardiosim-jax: random and heuristic baselines.

Paper protocol: PacingControl and AntiarrhythmicDosing on medium,
DefibrillationTiming on easy. Each cell reports mean, std, IQM and a bootstrap
95 % CI over many episodes, beside the paper's mean +- std over 20 episodes.
(The PPO column is produced by the PPO trainer, a later addition.)

    python baselines/table2.py [--quick] [--episodes N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import summarize_returns
from cardiosim_jax.rollout import run_episodes

PROTOCOL = {
    "PacingControl-v0": "medium",
    "AntiarrhythmicDosing-v0": "medium",
    "DefibrillationTiming-v0": "easy",
}
PAPER = {  # mean, std over 20 episodes (paper Table 2)
    "PacingControl-v0": {"random": (-369322, 1545175), "heuristic": (129, 6), "ppo": (-646, 284)},
    "AntiarrhythmicDosing-v0": {"random": (-31, 5), "heuristic": (169, 16), "ppo": (129, 32)},
    "DefibrillationTiming-v0": {"random": (136, 22), "heuristic": None, "ppo": (128, 27)},
}
HEURISTICS = {
    "PacingControl-v0": (agents.heuristic_pacing_policy, agents.HeuristicPacingParams()),
    "AntiarrhythmicDosing-v0": (agents.heuristic_dosing_policy, agents.HeuristicDosingParams()),
}


def evaluate_cell(env_id: str, policy_name: str, n_episodes: int, seed: int) -> dict:
    env, params = cardiosim_jax.make(env_id, PROTOCOL[env_id])
    if policy_name == "random":
        policy = (agents.random_policy, agents.random_policy_params(env, params))
    else:
        policy = HEURISTICS[env_id]
    stats = run_episodes(
        env,
        params,
        *policy,
        jax.random.PRNGKey(seed),
        n_episodes,
        int(params.max_steps_in_episode),
    )
    return summarize_returns(np.asarray(stats.episode_return))


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "–"
    lo, hi = cell["ci95"]
    return (
        f"{cell['mean']:,.1f} ± {cell['std']:,.1f} "
        f"(IQM {cell['iqm']:,.1f}; CI {lo:,.1f} to {hi:,.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Reproduce the random/heuristic cells of Table 2.")
    parser.add_argument("--quick", action="store_true", help="200 episodes per cell")
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes per cell (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    n = args.episodes or (200 if args.quick else 2000)

    start = time.perf_counter()
    results: dict[str, dict] = {}
    for env_id in PROTOCOL:
        results[env_id] = {}
        for name in ("random", "heuristic"):
            if name == "heuristic" and env_id not in HEURISTICS:
                continue
            results[env_id][name] = {**evaluate_cell(env_id, name, n, args.seed), "n_seeds": 1}
            print(f"  {env_id} {name}: done ({time.perf_counter() - start:.0f}s)", flush=True)

    print(f"\n## Table 2 (random and heuristic), {n} episodes per cell, seed {args.seed}\n")
    print("| Environment | Policy | Paper (20 ep.) | cardiosim-jax: mean ± std (IQM; 95% CI) |")
    print("|---|---|---:|---:|")
    for env_id, cells in results.items():
        for name, cell in cells.items():
            paper = PAPER[env_id][name]
            print(
                f"| {env_id} ({PROTOCOL[env_id]}) | {name} | "
                f"{paper[0]:,} ± {paper[1]:,} | {fmt(cell)} |"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
