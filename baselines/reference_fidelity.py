"""Fidelity table: our v0 environments vs cardiosim 0.1.0, random and heuristic policies.

Runs both in the same process (reference: a fresh env per episode, the v0
semantics) and writes ``baselines/results/fidelity.{json,md}``.

    python baselines/reference_fidelity.py [--ours 1000] [--reference 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from cardiosim.agents.heuristic import HeuristicDosingAgent, HeuristicPacingAgent
from scipy import stats

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import summarize_returns
from cardiosim_jax.rollout import run_episodes
from cardiosim_tools.reference import reference_random_policy, reference_returns

RESULTS = Path(__file__).parent / "results"
CASES = [
    ("PacingControl-v0", ("random", "heuristic")),
    ("AntiarrhythmicDosing-v0", ("random", "heuristic")),
    ("DefibrillationTiming-v0", ("random",)),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", type=int, default=1000, help="our episodes per cell")
    parser.add_argument("--reference", type=int, default=300, help="reference episodes per cell")
    args = parser.parse_args()

    pacing, dosing = HeuristicPacingAgent(), HeuristicDosingAgent()
    ref_heuristic = {
        "PacingControl-v0": lambda obs, rng, env: pacing.predict(obs),
        "AntiarrhythmicDosing-v0": lambda obs, rng, env: dosing.predict(obs),
    }
    rows, table = {}, []
    for env_id, policies in CASES:
        for difficulty in ("easy", "medium", "hard"):
            env, params = cardiosim_jax.make(env_id, difficulty)
            for name in policies:
                policy = agents.baseline_policy(name, env, params)
                ref_policy = reference_random_policy if name == "random" else ref_heuristic[env_id]
                ours = np.asarray(
                    run_episodes(
                        env,
                        params,
                        *policy,
                        jax.random.PRNGKey(0),
                        args.ours,
                        int(params.max_steps_in_episode),
                    ).episode_return,
                    dtype=np.float64,
                )
                ref = reference_returns(env_id, difficulty, ref_policy, args.reference, seed=0)
                ks = stats.ks_2samp(np.round(ours * 2000) / 2000, np.round(ref * 2000) / 2000)
                entry = {
                    "ours": summarize_returns(ours),
                    "reference": summarize_returns(ref),
                    "ks_statistic": float(ks.statistic),
                    "ks_pvalue": float(ks.pvalue),
                    "blow_up_rate_ours": float(np.mean(ours < -1e4)),
                    "blow_up_rate_reference": float(np.mean(ref < -1e4)),
                }
                rows[f"{env_id}/{difficulty}/{name}"] = entry
                o, r = entry["ours"], entry["reference"]
                line = (
                    f"| {env_id} | {difficulty} | {name} | {o['mean']:.1f} +- {o['std']:.1f} | "
                    f"{r['mean']:.1f} +- {r['std']:.1f} | {o['median']:.1f} | {r['median']:.1f} | "
                    f"{ks.statistic:.3f} ({ks.pvalue:.2f}) |"
                )
                table.append(line)
                print(line, flush=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fidelity.json").write_text(json.dumps(rows, indent=2))
    header = [
        f"Episode returns, ours ({args.ours} episodes) vs cardiosim 0.1.0 ({args.reference} "
        "episodes, fresh env per episode). KS p-values on returns snapped to a 0.0005 lattice.",
        "",
        "| env | tier | policy | ours mean +- sd | reference mean +- sd | ours median "
        "| reference median | KS (p) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    (RESULTS / "fidelity.md").write_text("\n".join(header + table) + "\n")


if __name__ == "__main__":
    main()
