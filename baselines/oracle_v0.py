"""Oracle ceilings for the v0 environments, every tier.

* MPC: :func:`cardiosim_jax.agents.oracle.run_oracle_episodes` (CEM on the true
  simulator, privileged state and patient) for all three environments.
* DP: the exact optimum of DefibrillationTiming-v0
  (:mod:`cardiosim_jax.envs.defibrillation_timing.dp`), its value and a rollout check.

Episodes use the same evaluation key as ``tuned.py``'s baselines, so the
first episodes are the same patients. Writes ``baselines/results/oracle_v0.{json,md}``.

    python baselines/oracle_v0.py [--episodes 64] [--dp-episodes 4000] [--envs ENV_ID ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax.agents import oracle
from cardiosim_jax.envs.defibrillation_timing import dp as defibrillation_dp
from cardiosim_jax.evaluation import evaluate, summarize_returns

RESULTS = Path(__file__).parent / "results"
V0_ENVS = ("PacingControl-v0", "AntiarrhythmicDosing-v0", "DefibrillationTiming-v0")

#: Planner settings per environment: lookahead = horizon x action_repeat steps.
MPC_CONFIGS = {
    "PacingControl-v0": oracle.MPCConfig(
        horizon=8, num_candidates=128, iterations=3, num_elites=16, noise_samples=2,
        action_repeat=2,
    ),
    "AntiarrhythmicDosing-v0": oracle.MPCConfig(
        horizon=10, num_candidates=128, iterations=3, num_elites=16, noise_samples=2,
        action_repeat=2,
    ),
    # Shock success is a coin flip: score candidates on many futures, not two.
    "DefibrillationTiming-v0": oracle.MPCConfig(
        horizon=8, num_candidates=128, iterations=3, num_elites=16, noise_samples=16,
        action_repeat=1,
    ),
}  # fmt: skip
#: First warm start: v0 pacing's middle action paces at 0.5 amplitude, which can run the
#: rate away (the reference's RR artefact); start from "no adjustment, no pulses" instead.
INITIAL_ACTIONS = {"PacingControl-v0": (0.0, 0.0)}


def config_dict(config: oracle.MPCConfig) -> dict:
    return {
        name: getattr(config, name)
        for name in (
            "horizon",
            "action_repeat",
            "num_candidates",
            "iterations",
            "num_elites",
            "noise_samples",
            "initial_std",
            "min_std",
        )
    }


def fmt(cell: dict) -> str:
    lo, hi = cell["ci95"]
    return f"{cell['mean']:,.1f} [{lo:,.1f}, {hi:,.1f}]"


def render(results: dict) -> str:
    lines = [
        "Oracle ceilings on the v0 environments. MPC: CEM planning on the true simulator "
        "from the true state (lookahead = horizon x action repeat); mean [95% bootstrap CI "
        "over episodes]. DP: exact optimal expected return of DefibrillationTiming-v0 by "
        "backward induction (0.5 J energy grid), and the mean of rolling its policy out.",
        "",
        "| Environment | Tier | MPC oracle | MPC episodes | MPC time | DP optimum | DP rollout |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, cell in results.items():
        env_id, difficulty = key.split("/")
        mpc = cell["mpc"]
        dp = cell.get("dp")
        dp_value = f"{dp['value']:.1f}" if dp else "-"
        dp_rollout = fmt(dp["rollout"]) if dp else "-"
        lines.append(
            f"| {env_id} | {difficulty} | {fmt(mpc)} | {mpc['n_episodes']} | "
            f"{mpc['seconds']:.0f} s | {dp_value} | {dp_rollout} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--dp-episodes", type=int, default=4000)
    parser.add_argument("--envs", nargs="*", default=list(V0_ENVS))
    args = parser.parse_args()

    results: dict[str, dict] = {}
    for env_id in args.envs:
        for difficulty in ("easy", "medium", "hard"):
            env, params = cardiosim_jax.make(env_id, difficulty)
            steps = int(params.max_steps_in_episode)
            config = MPC_CONFIGS[env_id]
            start = time.perf_counter()
            stats = oracle.run_oracle_episodes(
                env,
                params,
                jax.random.PRNGKey(0),
                args.episodes,
                steps,
                config,
                INITIAL_ACTIONS.get(env_id),
            )
            returns = np.asarray(stats.episode_return, np.float64)
            cell = {
                "mpc": {
                    **summarize_returns(returns),
                    "seconds": time.perf_counter() - start,
                    "config": config_dict(config),
                    "initial_action": INITIAL_ACTIONS.get(env_id),
                }
            }
            if env_id == "DefibrillationTiming-v0":
                solution = defibrillation_dp.solve(params)
                rollout = evaluate(
                    defibrillation_dp.dp_policy,
                    env,
                    params,
                    jax.random.PRNGKey(0),
                    args.dp_episodes,
                    1,
                    solution,
                )
                cell["dp"] = {"value": float(solution.value[0, 0]), "rollout": rollout}
            results[f"{env_id}/{difficulty}"] = cell
            print(f"{env_id} {difficulty}: MPC {fmt(cell['mpc'])}", flush=True)

    table = render(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "oracle_v0.md").write_text(table)
    (RESULTS / "oracle_v0.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
