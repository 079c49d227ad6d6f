"""v1 results: random, clinical heuristic, tuned PPO and the MPC oracle on every v1 env and tier.

Per (environment, tier):

* random and the clinical heuristic: ``--episodes x --seeds`` episodes;
* PPO: the ``tuned`` preset, ``--seeds`` seeds trained in one compiled call,
  ``--episodes`` deterministic evaluation episodes per seed (CI over seeds);
* two oracles, :func:`cardiosim_jax.agents.oracle.run_oracle_episodes` (CEM on
  the true simulator from the true state), ``--oracle-episodes`` episodes each,
  both guided by the best PPO seed (saved under ``results/v1_policies/``): the
  MPC oracle plans on its own draws of the future (what a controller that
  knows the patient achieves), the hindsight oracle on the episode's own
  random numbers (a clairvoyant upper bound);
* the named hard cohort (:func:`cardiosim_jax.patients.cohort`, 100 patients,
  one episode each) for random, heuristic and PPO on the hard tier.

Writes ``baselines/results/v1.{json,md}`` (the JSON keeps PPO's learning curves) and
``v1_learning_curves.png``; ``--render-only`` redraws both from the JSON;
``--no-ppo`` keeps the PPO cells and plans with the saved guides.

    python baselines/v1.py [--seeds 8] [--episodes 256] [--oracle-episodes 32] [--envs ...]
    python baselines/v1.py --render-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents, patients, registration
from cardiosim_jax.agents import oracle
from cardiosim_jax.evaluation import summarize_returns
from cardiosim_jax.experiments import (
    baseline_on_ppo_episodes,
    evaluate_baselines,
    train_and_evaluate,
)
from cardiosim_jax.registration import v1_envs
from cardiosim_jax.rollout import run_episodes
from cardiosim_jax.training import checkpoint, ppo

RESULTS = Path(__file__).parent / "results"
TIERS = ("easy", "medium", "hard")

#: Planner settings: lookahead = horizon x action_repeat steps, chosen per environment
#: to cover its slowest effect (pacing: beats within a step; dosing: absorption and
#: accumulation over many hours; defibrillation: CPR building perfusion over minutes),
#: then ``tail`` steps of the PPO guide score what each candidate leaves behind.
#: The MPC oracle's settings, as each environment registers them (its package's EnvSpec).
MPC_CONFIGS = {env_id: oracle.MPCConfig(**registration.spec(env_id).mpc) for env_id in v1_envs}
#: The clairvoyant oracle: the same search on the episode's own future (one sample).
HINDSIGHT_CONFIGS = {
    env_id: dataclasses.replace(
        config,
        hindsight=True,
        noise_samples=1,
        num_candidates=max(config.num_candidates, 64),
        iterations=max(config.iterations, 3),
        num_elites=max(config.num_elites, 8),
    )
    for env_id, config in MPC_CONFIGS.items()
}
#: First warm start (default: the middle of the action box), as each environment registers it.
INITIAL_ACTIONS = {
    env_id: registration.spec(env_id).mpc_initial_action
    for env_id in v1_envs
    if registration.spec(env_id).mpc_initial_action is not None
}
ORACLES = {"oracle": MPC_CONFIGS, "hindsight": HINDSIGHT_CONFIGS}


def guide_directory(out: str, env_id: str, difficulty: str) -> Path:
    """Where the best PPO seed of a cell is saved (the oracles' guide)."""
    return RESULTS / f"{out}_policies" / env_id / difficulty


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "-"
    lo, hi = cell["ci95"]
    return f"{cell['mean']:,.1f} [{lo:,.1f}, {hi:,.1f}]"


def render(results: dict) -> str:
    meta = results["settings"]
    lines = [
        f"v1 environments. Random and heuristic: {meta['episodes'] * meta['seeds']} episodes "
        f"(CI over episodes); PPO (tuned preset): {meta['seeds']} seeds x {meta['episodes']} "
        "deterministic episodes (CI over seed means). Oracles: CEM-MPC on the true simulator "
        "from the true state, guided by the best PPO seed (its play is a candidate and "
        "follows every candidate's lookahead), "
        "on the episodes counted in the second table (CI over episodes): 'MPC' plans on its own "
        "draws of the future (what a controller that knows the patient achieves); "
        "'hindsight' plans on the episode's own random numbers, a clairvoyant upper bound "
        "(on the deterministic easy tiers the two coincide). Cells: mean [95% bootstrap CI].",
        "",
        "| Environment | Tier | Random | Heuristic | PPO (tuned) | Oracle (MPC) | "
        "Hindsight bound | PPO train time | Oracle time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, cell in results["cells"].items():
        env_id, difficulty = key.split("/")
        ppo_cell = cell.get("ppo")
        train_time = f"{ppo_cell['train_seconds']:.0f} s" if ppo_cell else "-"
        planned = [cell[name]["seconds"] for name in ORACLES if name in cell]
        oracle_time = " + ".join(f"{t:.0f}" for t in planned) + " s" if planned else "-"
        lines.append(
            f"| {env_id} | {difficulty} | {fmt(cell['random'])} | {fmt(cell['heuristic'])} | "
            f"{fmt(ppo_cell)} | {fmt(cell.get('oracle'))} | {fmt(cell.get('hindsight'))} | "
            f"{train_time} | {oracle_time} |"
        )
    guided = [(k, c) for k, c in results["cells"].items() if "guide" in c]
    if guided:
        lines += [
            "",
            "The oracles against their guide on the same episodes: the guide (the best PPO "
            "seed) playing the oracles' episodes, and each oracle's return minus the "
            "guide's, episode by episode (mean [95% bootstrap CI of the paired difference]).",
            "",
            "| Environment | Tier | Episodes | Guide (best PPO seed) | MPC - guide | "
            "Hindsight - guide |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for key, cell in guided:
            gains = [fmt(cell.get(name, {}).get("gain_over_guide")) for name in ORACLES]
            lines.append(
                f"| {' | '.join(key.split('/'))} | {cell['guide']['n_episodes']} | "
                f"{fmt(cell['guide'])} | {' | '.join(gains)} |"
            )
    ladder_rows = [ladder(key, cell) for key, cell in results["cells"].items()]
    ladder_rows = [row for row in ladder_rows if row]
    if ladder_rows:
        lines += [
            "",
            "The ladder random < heuristic < PPO <= MPC oracle <= hindsight bound, each link "
            "measured where it is precise: random and heuristic on their own 2,048 episodes "
            "(first table); PPO - heuristic paired, each PPO seed against the heuristic on "
            "that seed's own evaluation episodes (the same patients and random events; mean "
            "[95% CI over seeds] of the per-seed differences: the seeds play different "
            "episodes, so the first table's PPO and heuristic means differ also by their "
            "episodes); guide - PPO, the guide seed's paired advantage over the heuristic "
            "minus the seeds' mean one; the guide <= the MPC oracle and the MPC oracle <= the "
            "hindsight bound as paired differences on the oracles' episodes (second table; "
            "the oracle columns of the first table are means over those few episodes, not "
            "comparable with PPO's 2,048 to better than their CI). The ladder holds when "
            "PPO - heuristic's CI is above 0 and no other link is negative.",
            "",
            "| Environment | Tier | Heuristic - random | PPO - heuristic (paired) | "
            "Guide - PPO | MPC - guide | Hindsight - MPC | Ladder |",
            "|---|---|---:|---:|---:|---:|---:|---|",
            *ladder_rows,
        ]
    cohort_rows = [(k, c["cohort"]) for k, c in results["cells"].items() if "cohort" in c]
    if cohort_rows:
        lines += [
            "",
            "Named hard cohorts (`patients.cohort(env_id, 'hard')`: 100 fixed patients, one "
            "episode each; PPO: mean over seeds of each seed's cohort mean, CI over seeds).",
            "",
            "| Environment | Random | Heuristic | PPO (tuned) |",
            "|---|---:|---:|---:|",
        ]
        for key, cohort in cohort_rows:
            lines.append(
                f"| {key.split('/')[0]} | {fmt(cohort['random'])} | {fmt(cohort['heuristic'])} "
                f"| {fmt(cohort.get('ppo'))} |"
            )
    return "\n".join(lines) + "\n"


def paired_advantages(cell: dict) -> np.ndarray | None:
    """Each PPO seed's mean return minus the heuristic's on that seed's evaluation episodes."""
    if "heuristic_on_ppo_episodes" not in cell or "ppo" not in cell:
        return None
    return np.asarray(cell["ppo"]["seed_means"]) - np.asarray(
        cell["heuristic_on_ppo_episodes"]["seed_means"]
    )


def ladder(key: str, cell: dict) -> str | None:
    """One row of the ladder table: each link's margin, and whether every link holds.

    PPO - heuristic is paired: each seed against the heuristic on the same
    episodes (the mean of the per-seed differences, CI over seeds); guide - PPO
    is the guide seed's paired advantage over the mean one.
    """
    advantages = paired_advantages(cell)
    if advantages is None or not all(n in cell for n in ("guide", "oracle", "hindsight")):
        return None
    guide_seed = cell["ppo"].get("guide_seed", int(np.argmax(cell["ppo"]["seed_means"])))
    ppo_link = summarize_returns(advantages)
    links = [
        cell["heuristic"]["mean"] - cell["random"]["mean"],
        ppo_link["mean"],
        advantages[guide_seed] - advantages.mean(),
        cell["oracle"]["gain_over_guide"]["mean"],
        cell["hindsight"]["mean"] - cell["oracle"]["mean"],
    ]
    # random < heuristic < PPO (PPO's whole CI above 0); the oracle links may tie.
    holds = links[0] > 0 and ppo_link["ci95"][0] > 0 and all(x >= 0 for x in links[2:])
    cells = [f"{x:,.1f}" for x in links]
    cells[1] = fmt(ppo_link)
    return (
        f"| {' | '.join(key.split('/'))} | "
        + " | ".join(cells)
        + f" | {'holds' if holds else 'fails'} |"
    )


def cohort_returns(env, policy, policy_params, n_seeds: int | None = None) -> dict:
    """Returns on the hard named cohort: one episode per patient."""
    cohort = patients.cohort(env.env_id, "hard")
    steps = int(np.max(np.asarray(cohort.params.max_steps_in_episode)))
    key = jax.random.PRNGKey(cohort.seed)

    def run(pp):
        return run_episodes(env, cohort.params, policy, pp, key, len(cohort), steps).episode_return

    if n_seeds is None:
        return summarize_returns(np.asarray(run(policy_params)))
    per_seed = np.asarray(jax.vmap(run)(policy_params), np.float64)  # (seeds, patients)
    summary = summarize_returns(per_seed.ravel())
    summary["ci95"] = summarize_returns(per_seed.mean(axis=1))["ci95"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--oracle-episodes", type=int, default=32)
    parser.add_argument("--envs", nargs="*", default=list(v1_envs))
    parser.add_argument("--tiers", nargs="*", default=list(TIERS))
    parser.add_argument("--timesteps", type=int, default=None, help="PPO budget (preset's)")
    parser.add_argument("--out", default="v1", help="results file stem in baselines/results")
    parser.add_argument("--no-ppo", action="store_true")
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--render-only", action="store_true", help="re-render v1.json")
    args = parser.parse_args()
    out_file = RESULTS / f"{args.out}.json"
    if args.render_only:
        results = json.loads(out_file.read_text())
        table = render(results)
        out_file.with_suffix(".md").write_text(table)
        plot_curves(results, RESULTS / f"{args.out}_learning_curves.png")
        print(table)
        return

    results = json.loads(out_file.read_text()) if out_file.exists() else {"cells": {}}
    results["settings"] = {
        "seeds": args.seeds,
        "episodes": args.episodes,
        # Oracle episodes are per cell (each oracle entry's n_episodes): a run may redo one cell.
        **{name: {k: repr(v) for k, v in configs.items()} for name, configs in ORACLES.items()},
    }
    for env_id in args.envs:
        for difficulty in args.tiers:
            env, env_params = cardiosim_jax.make(env_id, difficulty)
            steps = int(np.max(np.asarray(env_params.max_steps_in_episode)))
            # Parts not recomputed in this run (--no-ppo, --no-oracle) are kept.
            cell: dict = results["cells"].get(f"{env_id}/{difficulty}", {})
            cell.update(evaluate_baselines(env, env_params, args.episodes * args.seeds))
            if difficulty == "hard":
                cell["cohort"] = {
                    **cell.get("cohort", {}),
                    **{
                        name: cohort_returns(env, *agents.baseline_policy(name, env, env_params))
                        for name in ("random", "heuristic")
                    },
                }
            cell["heuristic_on_ppo_episodes"] = baseline_on_ppo_episodes(
                env, env_params, "heuristic", args.seeds, args.episodes
            )
            if not args.no_ppo:
                budget = {} if args.timesteps is None else {"total_timesteps": args.timesteps}
                config = ppo.preset("tuned", env_id, difficulty, **budget)
                trained, cell["ppo"] = train_and_evaluate(
                    config, args.seeds, args.episodes, label=f"[{env_id} {difficulty}] "
                )
                # The oracles' guide: the seed with the best evaluation (its own episodes,
                # not the oracles'), judged against the heuristic on the same episodes, as
                # the seeds play different episodes.
                best = int(np.argmax(paired_advantages(cell)))
                cell["ppo"]["guide_seed"] = best
                checkpoint.save_policy(
                    guide_directory(args.out, env_id, difficulty),
                    jax.tree_util.tree_map(lambda x, best=best: x[best], trained.policy),
                    config,
                    extra={"seed": best, "evaluation_mean": cell["ppo"]["seed_means"][best]},
                )
                if difficulty == "hard":
                    cell["cohort"]["ppo"] = cohort_returns(
                        env, ppo.ppo_policy, trained.policy, args.seeds
                    )
                # Kept in the JSON so the figure can be redrawn (--render-only) without
                # retraining, e.g. after an oracle-only rerun.
                cell["ppo_curve"] = {
                    "timesteps": np.asarray(trained.metrics["timesteps"])[0].tolist(),
                    "episode_return": np.round(
                        np.asarray(trained.metrics["episode_return"], np.float64), 3
                    ).tolist(),
                }
            if not args.no_oracle:
                directory = guide_directory(args.out, env_id, difficulty)
                if not (directory / checkpoint.POLICY_FILE).exists():
                    raise SystemExit(f"no PPO guide in {directory}: run once without --no-ppo")
                guide, _ = checkpoint.load_policy(directory)
                # The guide on the oracles' own episodes, so that their gain over it is paired.
                guide_returns = np.asarray(
                    run_episodes(
                        env,
                        env_params,
                        ppo.ppo_policy,
                        guide,
                        jax.random.PRNGKey(0),
                        args.oracle_episodes,
                        steps,
                    ).episode_return,
                    np.float64,
                )
                cell["guide"] = summarize_returns(guide_returns)
                for name, configs in ORACLES.items():
                    start = time.perf_counter()
                    stats = oracle.run_oracle_episodes(
                        env,
                        env_params,
                        jax.random.PRNGKey(0),
                        args.oracle_episodes,
                        steps,
                        configs[env_id],
                        INITIAL_ACTIONS.get(env_id),
                        ppo.ppo_policy,
                        guide,
                    )
                    returns = np.asarray(stats.episode_return, np.float64)
                    cell[name] = {
                        **summarize_returns(returns),
                        "seconds": time.perf_counter() - start,
                        "gain_over_guide": summarize_returns(returns - guide_returns),
                    }
            results["cells"][f"{env_id}/{difficulty}"] = cell
            print(
                f"{env_id} {difficulty}: random {fmt(cell['random'])}, heuristic "
                f"{fmt(cell['heuristic'])}, PPO {fmt(cell.get('ppo'))}, oracle "
                f"{fmt(cell.get('oracle'))}, hindsight {fmt(cell.get('hindsight'))}",
                flush=True,
            )
            RESULTS.mkdir(exist_ok=True)
            out_file.write_text(json.dumps(results, indent=2))

    table = render(results)
    print(table)
    out_file.with_suffix(".md").write_text(table)
    plot_curves(results, RESULTS / f"{args.out}_learning_curves.png")


def plot_curves(results: dict, path: Path) -> None:
    """PPO learning curves of every cell that has one, with the baselines as lines."""
    curves = {
        tuple(key.split("/")): (
            np.asarray(cell["ppo_curve"]["timesteps"]),
            np.asarray(cell["ppo_curve"]["episode_return"], np.float64),
        )
        for key, cell in results["cells"].items()
        if "ppo_curve" in cell
    }
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cardiosim_jax.plotting import updates_with_returns

    envs = list(dict.fromkeys(env_id for env_id, _ in curves))
    fig, axes = plt.subplots(
        len(envs), len(TIERS), figsize=(5 * len(TIERS), 3.6 * len(envs)), squeeze=False
    )
    for row, env_id in zip(axes, envs, strict=True):
        for ax, difficulty in zip(row, TIERS, strict=True):
            if (env_id, difficulty) not in curves:
                ax.set_visible(False)
                continue
            # Updates where no seed has finished an episode yet are left out.
            steps, returns = updates_with_returns(*curves[(env_id, difficulty)])
            ax.plot(steps, np.nanmedian(returns, axis=0), label="PPO (median of seeds)")
            ax.fill_between(
                steps,
                np.nanmin(returns, axis=0),
                np.nanmax(returns, axis=0),
                alpha=0.2,
                label="PPO (min-max of seeds)",
            )
            cell = results["cells"][f"{env_id}/{difficulty}"]
            for name, style, color in (
                ("random", ":", "k"),
                ("heuristic", "--", "k"),
                ("oracle", "-.", "tab:green"),
                ("hindsight", ":", "tab:red"),
            ):
                if name in cell:
                    ax.axhline(cell[name]["mean"], linestyle=style, color=color, label=name)
            ax.set_title(f"{env_id} ({difficulty})")
            ax.set_xlabel("environment steps")
        row[0].set_ylabel("episode return")
    # The legend on the first panel drawn (a cell without a PPO curve is hidden).
    next(ax for ax in axes.flat if ax.get_visible()).legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
