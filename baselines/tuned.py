"""The ``tuned`` PPO preset on every tier of every environment, against the heuristics.

8 seeds per (environment, tier) trained in one compiled call, 500 evaluation
episodes per seed (deterministic policy). Comparators: the reference heuristic
for pacing and dosing, always shocking at 360 J for defibrillation, and random.
Writes ``baselines/results/tuned.{json,md}`` and ``tuned_learning_curves.png``.

    python baselines/tuned.py [--seeds 8] [--episodes 500] [--envs ENV_ID ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import cardiosim_jax
from cardiosim_jax.experiments import evaluate_baselines, train_and_evaluate
from cardiosim_jax.plotting import updates_with_returns
from cardiosim_jax.registration import v0_envs, v1_envs
from cardiosim_jax.training import ppo

RESULTS = Path(__file__).parent / "results"


def fmt(cell: dict) -> str:
    lo, hi = cell["ci95"]
    return f"{cell['mean']:,.1f} [{lo:,.1f}, {hi:,.1f}] (IQM {cell['iqm']:,.1f})"


def render(results: dict, seeds: int, episodes: int) -> str:
    """Markdown table of ``results`` (as written to tuned.json), with ``oracle_v0.json``'s row."""
    oracle_file = RESULTS / "oracle_v0.json"
    oracles = json.loads(oracle_file.read_text()) if oracle_file.exists() else {}
    lines = [
        f"Tuned PPO, {seeds} seeds x {episodes} evaluation episodes (deterministic policy); "
        "baselines over the same number of episodes. Cells: mean [95% bootstrap CI of the "
        "mean: over seeds for PPO, over episodes for baselines] (IQM of episode returns).",
        "Heuristic = the reference's rule for pacing and dosing; always shock at 360 J for "
        "defibrillation. 'Beats' = PPO's CI lies entirely above the heuristic's.",
        "",
        "Oracle = `oracle_v0.py`: MPC (CEM on the true simulator, 64 episodes) for pacing and "
        "dosing; for defibrillation the exact DP optimum (expected return).",
        "",
        "| Environment | Tier | Random | Heuristic | PPO (tuned) | Oracle | Beats heuristic? "
        "| Train time |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for key, cell in results.items():
        env_id, difficulty = key.split("/")
        beats = cell["ppo"]["ci95"][0] > cell["heuristic"]["ci95"][1]
        lines.append(
            f"| {env_id} | {difficulty} | {fmt(cell['random'])} | {fmt(cell['heuristic'])} | "
            f"{fmt(cell['ppo'])} | {oracle_cell(oracles.get(key))} | "
            f"{'yes' if beats else 'no'} | {cell['ppo']['train_seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def oracle_cell(cell: dict | None) -> str:
    """The v0 oracle entry: the DP optimum where there is one, else the MPC mean [CI]."""
    if cell is None:
        return "-"
    if "dp" in cell:
        return f"{cell['dp']['value']:,.1f} (DP)"
    lo, hi = cell["mpc"]["ci95"]
    return f"{cell['mpc']['mean']:,.1f} [{lo:,.1f}, {hi:,.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--envs", nargs="*", default=list(v0_envs + v1_envs))
    parser.add_argument("--render-only", action="store_true", help="re-render tuned.json")
    args = parser.parse_args()
    if args.render_only:
        table = render(json.loads((RESULTS / "tuned.json").read_text()), args.seeds, args.episodes)
        (RESULTS / "tuned.md").write_text(table)
        print(table)
        return

    results: dict[str, dict] = {}
    curves = {}
    for env_id in args.envs:
        for difficulty in ("easy", "medium", "hard"):
            env, env_params = cardiosim_jax.make(env_id, difficulty)
            cell = evaluate_baselines(env, env_params, args.episodes * args.seeds)
            config = ppo.preset("tuned", env_id, difficulty)
            out, cell["ppo"] = train_and_evaluate(
                config, args.seeds, args.episodes, label=f"[{env_id} {difficulty}] "
            )
            seconds = cell["ppo"]["train_seconds"]
            results[f"{env_id}/{difficulty}"] = cell
            curves[(env_id, difficulty)] = (
                np.asarray(out.metrics["timesteps"])[0],
                np.asarray(out.metrics["episode_return"], dtype=np.float64),
            )
            print(
                f"{env_id} {difficulty}: PPO {fmt(cell['ppo'])} vs heuristic "
                f"{fmt(cell['heuristic'])} ({seconds:.0f}s)",
                flush=True,
            )

    table = render(results, args.seeds, args.episodes)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuned.md").write_text(table)
    (RESULTS / "tuned.json").write_text(json.dumps(results, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({e for e, _ in curves}, key=args.envs.index)
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=True):
        for difficulty in ("easy", "medium", "hard"):
            # Updates where no seed has finished an episode yet are left out.
            steps, returns = updates_with_returns(*curves[(env_id, difficulty)])
            ax.plot(steps, np.nanmedian(returns, axis=0), label=difficulty)
        if env_id == "PacingControl-v0":
            ax.set_yscale("symlog")
        ax.set_title(f"{env_id} (tuned PPO, median of seeds)")
        ax.set_xlabel("environment steps")
        ax.legend()
    axes[0][0].set_ylabel("training episode return")
    fig.tight_layout()
    fig.savefig(RESULTS / "tuned_learning_curves.png", dpi=100)


if __name__ == "__main__":
    main()
