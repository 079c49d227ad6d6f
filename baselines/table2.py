"""Reproduce the CardioSim paper's Table 2 (random, heuristic, PPO) with confidence intervals.

Paper protocol (pacing and dosing on medium, defibrillation on easy) and the
``paper`` PPO preset (Table 1 with Stable-Baselines3 defaults, one environment),
8 PPO seeds trained at once per environment and 1,000 evaluation episodes per
seed. Writes ``baselines/results/table2_paper.{json,md}`` and
``table2_learning_curves.png``.

    python baselines/table2.py [--quick] [--preset paper|tuned]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cardiosim_jax.experiments import run_table2
from cardiosim_jax.plotting import updates_with_returns

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--preset", default="paper", choices=["paper", "tuned"])
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None)
    args = parser.parse_args()

    results, table = run_table2(args.quick, args.seeds, args.episodes, preset=args.preset)
    timing = ["", "PPO training wall time (2-core CPU, compilation included, all seeds at once):"]
    for env_id, cells in results.items():
        ppo_cell = cells["ppo"]
        timing.append(
            f"- {env_id}: {ppo_cell['train_seconds']:.0f} s for {ppo_cell['n_seeds']} seeds x "
            f"{ppo_cell['timesteps']:,} steps"
        )
    text = table + "\n".join(timing) + "\n"
    print(text)

    RESULTS.mkdir(exist_ok=True)
    stem = f"table2_{args.preset}{'_quick' if args.quick else ''}"
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (env_id, cells) in zip(axes, results.items(), strict=True):
        curve = cells["ppo"]["learning_curve"]
        # Updates where no seed has finished an episode yet are left out.
        steps, returns = updates_with_returns(curve["timesteps"], curve["episode_return"])
        ax.plot(steps, np.nanmedian(returns, axis=0), label="PPO median over seeds")
        ax.fill_between(
            steps,
            np.nanpercentile(returns, 25, axis=0),
            np.nanpercentile(returns, 75, axis=0),
            alpha=0.3,
            label="IQR",
        )
        for name, style in (("heuristic", "--"), ("random", ":")):
            if name in cells:
                ax.axhline(cells[name]["mean"], ls=style, color="k", label=name)
        if env_id == "PacingControl-v0":
            ax.set_yscale("symlog")
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("training episode return")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_learning_curves.png", dpi=100)


if __name__ == "__main__":
    main()
