"""What the v1 policies do, in clinical terms: the clinical heuristic beside the trained PPO guide.

For each v1 environment and tier, records ``--episodes`` episodes of the
clinical heuristic and of the best PPO seed that ``baselines/v1.py`` saved as
the oracles' guide (``results/v1_policies/<env>/<tier>``), on the same keys,
and summarises each with the environment's ``clinical_summary`` (dose per
day, dosing interval and peak QTc; pacing burden, capture margin and longest
pause; time to first shock, shocks and CPR fraction). Writes
``baselines/results/v1_clinical.{json,md}``.

    python baselines/v1_clinical.py [--episodes 256] [--tiers medium hard]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.registration import v1_envs
from cardiosim_jax.rollout import record_episodes
from cardiosim_jax.training import checkpoint, ppo

RESULTS = Path(__file__).parent / "results"
POLICIES = RESULTS / "v1_policies"


def summarise(env, env_params, policy, policy_params, key, n_episodes: int) -> dict:
    """Mean and 5th/95th percentiles of each clinical quantity over the episodes."""
    steps = int(np.max(np.asarray(env_params.max_steps_in_episode)))
    trajectory = record_episodes(env, env_params, policy, policy_params, key, n_episodes, steps)
    summary = jax.device_get(env.clinical_summary(trajectory, env_params))
    summary["return"] = np.asarray(trajectory.episode_return)
    # NaN marks a quantity an episode does not have (no shock: no time to first shock).
    return {
        name: {
            "mean": float(np.nanmean(values)),
            "p5": float(np.nanpercentile(values, 5)),
            "p95": float(np.nanpercentile(values, 95)),
            "episodes": int(np.sum(np.isfinite(values))),
        }
        for name, values in summary.items()
    }


def render(results: dict, episodes: int) -> str:
    lines = [
        "What the v1 policies do, in clinical terms: the clinical heuristic and the best PPO "
        f"seed (the oracles' guide from `baselines/v1.py`), {episodes} episodes each on the "
        "same keys. Cells: mean (5th-95th percentile over episodes).",
        "",
    ]
    for env_id, tiers in results.items():
        names = list(next(iter(next(iter(tiers.values())).values())))
        lines += [
            f"### {env_id}",
            "",
            "| Quantity | "
            + " | ".join(f"{policy} ({tier})" for tier, cells in tiers.items() for policy in cells)
            + " |",
            "|---|" + "---:|" * sum(len(c) for c in tiers.values()),
        ]
        for name in names:
            row = [
                f"{c[name]['mean']:.3g} ({c[name]['p5']:.3g}-{c[name]['p95']:.3g})"
                for cells in tiers.values()
                for c in cells.values()
            ]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(v1_envs))
    parser.add_argument("--tiers", nargs="*", default=["medium", "hard"])
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = RESULTS / "v1_clinical.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    key = jax.random.PRNGKey(args.seed)
    for env_id in args.envs:
        for tier in args.tiers:
            env, env_params = cardiosim_jax.make(env_id, tier)
            cells = {
                "heuristic": summarise(
                    env,
                    env_params,
                    *agents.baseline_policy("heuristic", env, env_params),
                    key,
                    args.episodes,
                )
            }
            guide = POLICIES / env_id / tier
            if (guide / checkpoint.POLICY_FILE).exists():
                policy_params, _ = checkpoint.load_policy(guide)
                cells["PPO"] = summarise(
                    env, env_params, ppo.ppo_policy, policy_params, key, args.episodes
                )
            results.setdefault(env_id, {})[tier] = cells
            print(
                f"{env_id} {tier}: "
                + ", ".join(f"{p} return {c['return']['mean']:.1f}" for p, c in cells.items()),
                flush=True,
            )
    out.write_text(json.dumps(results, indent=1))
    table = render(results, args.episodes)
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
