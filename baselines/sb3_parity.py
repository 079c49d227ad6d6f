"""Stable-Baselines3's PPO against our ``paper`` preset: same settings, budget and episodes.

On each v0 environment, SB3 ``PPO("MlpPolicy", ...)`` with the paper's Table 1
settings (as the reference repository's ``train_all.py`` calls it; every other
setting SB3's default) and our ``paper`` preset train for the same budget.
SB3 trains through our Gymnasium adapter, so the two PPOs see the same
environment; ``--sb3-env reference`` trains SB3 on the reference package's own
env instead (one object reused across resets, as the paper did: dosing's PK
drifts through training). Both are then evaluated by our JAX evaluation on the
same episodes as Table 2's PPO cell (:func:`cardiosim_jax.experiments.table2_episodes`),
SB3's weights copied into our network (the architectures are the same), with the
actions the paper used and the other mode.

SB3 runs are slow (minutes each, one CPU core); each is cached as its own JSON
under ``results/sb3_parity/`` and reused, so seeds can be added over several
sessions (``--sb3-seeds`` is how many to have at least; every cached seed is
evaluated). Writes
``results/sb3_parity.{json,md}`` and ``results/sb3_parity_learning_curves.png``.

    python baselines/sb3_parity.py [--sb3-seeds 4] [--ours-seeds 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "sb3_parity"
ENV_IDS = ("PacingControl-v0", "AntiarrhythmicDosing-v0", "DefibrillationTiming-v0")
#: Bins of the learning-curve comparison (training episode returns, by env step).
CURVE_BINS = 20
#: At most this many points of a run's training curve are cached; a run with more episodes
#: (SB3 on the collapsing reference dosing env: up to 262,000) keeps block means.
MAX_CURVE_POINTS = 20_000
#: A pacing policy whose mean return is below this over-paces (the RR-interval artefact).
OVER_PACING = -10_000.0


def _quiet_single_thread() -> None:
    """One core per SB3 job: torch and XLA both default to every core."""
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    warnings.filterwarnings("ignore", message=r".*-v0 is out of date", category=DeprecationWarning)


def run_path(env_id: str, seed: int, sb3_env: str) -> Path:
    return RUNS / f"{env_id}_{sb3_env}_seed{seed}.json"


def train_sb3(env_id: str, seed: int, sb3_env: str) -> dict:
    """Train one SB3 seed with the paper's settings; its curve, weights and wall time."""
    _quiet_single_thread()
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor

    from cardiosim_jax.training import ppo

    torch.set_num_threads(1)
    config = ppo.preset("paper", env_id)
    if sb3_env == "ours":
        # Physical action units, as the reference's Box: the adapter's default [-1, 1]
        # rescaling would be a difference of its own.
        env = gym.make(
            f"cardiosim_jax/{env_id}", difficulty=config.difficulty, normalize_actions=False
        )
    else:
        import cardiosim  # noqa: F401  (registers the reference's ids)

        env = gym.make(f"cardiosim/{env_id}", difficulty=config.difficulty)
    env = Monitor(env)
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        n_steps=config.num_steps,
        batch_size=config.minibatch_size,
        n_epochs=config.update_epochs,
        gamma=config.gamma,
        ent_coef=config.ent_coef,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=config.total_timesteps)
    seconds = time.perf_counter() - start
    lengths = np.asarray(env.get_episode_lengths())
    return {
        "env_id": env_id,
        "seed": seed,
        "sb3_env": sb3_env,
        "train_seconds": seconds,
        "timesteps": int(model.num_timesteps),
        **compact_curve(
            np.cumsum(lengths),
            np.asarray(env.get_episode_rewards(), np.float64),
            config.total_timesteps,
        ),
        "weights": {k: v.cpu().numpy() for k, v in model.policy.state_dict().items()},
    }


def compact_curve(timesteps: np.ndarray, returns: np.ndarray, total: int) -> dict:
    """A training curve as cached: every episode (end step, return), or for more than
    :data:`MAX_CURVE_POINTS` episodes the means of runs of at most
    ``curve_episodes_per_point`` consecutive episodes within one curve bin, with their
    counts (``curve_counts``), so :func:`binned_curve` gives the same bins either way."""
    per_point = max(1, -(-timesteps.size // MAX_CURVE_POINTS))
    if per_point == 1:
        return {
            "episodes": int(timesteps.size),
            "curve_episodes_per_point": 1,
            "curve_timesteps": timesteps.astype(int).tolist(),
            "curve_returns": returns.astype(float).tolist(),
        }
    which = _curve_bin(timesteps, total)
    # A new point where the bin changes or the run reaches per_point episodes.
    new_bin = np.flatnonzero(np.diff(which, prepend=-1))
    run_start = np.repeat(new_bin, np.diff(np.append(new_bin, which.size)))
    starts = np.flatnonzero((np.arange(which.size) - run_start) % per_point == 0)
    ends = np.append(starts[1:], which.size)
    return {
        "episodes": int(timesteps.size),
        "curve_episodes_per_point": per_point,
        "curve_timesteps": [int(timesteps[end - 1]) for end in ends],
        "curve_returns": [float(returns[a:b].mean()) for a, b in zip(starts, ends, strict=True)],
        "curve_counts": (ends - starts).tolist(),
    }


def _train_and_cache(env_id: str, seed: int, sb3_env: str) -> str:
    """Train one run; its weights (``.npz``) and then its JSON, each written atomically, so a
    killed job never leaves a run that looks complete."""
    run = train_sb3(env_id, seed, sb3_env)
    path = run_path(env_id, seed, sb3_env)
    weights = run.pop("weights")
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, **weights)
    partial.replace(path.with_suffix(".npz"))
    partial = path.with_name(path.stem + ".partial.json")
    partial.write_text(json.dumps(run))
    partial.replace(path)
    return f"{path.name}: {run['train_seconds']:.0f} s"


def load_run(env_id: str, seed: int, sb3_env: str) -> dict:
    path = run_path(env_id, seed, sb3_env)
    run = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz")) as weights:
        run["weights"] = dict(weights)
    return run


def _curve_bin(timesteps: np.ndarray, total: int) -> np.ndarray:
    edges = np.linspace(0, total, CURVE_BINS + 1)
    return np.clip(np.digitize(timesteps, edges) - 1, 0, CURVE_BINS - 1)


def binned_curve(
    timesteps: np.ndarray, returns: np.ndarray, total: int, counts: np.ndarray | None = None
) -> np.ndarray:
    """Mean training-episode return per step bin (NaN where no episode ended in it);
    ``counts``: episodes behind each point (:func:`compact_curve`), 1 each by default."""
    which = _curve_bin(timesteps, total)
    counts = np.ones(len(returns)) if counts is None else np.asarray(counts, np.float64)
    out = np.full(CURVE_BINS, np.nan)
    for b in range(CURVE_BINS):
        if np.any(which == b):
            out[b] = np.sum((returns * counts)[which == b]) / np.sum(counts[which == b])
    return out


def compare(ours: np.ndarray, sb3: np.ndarray) -> dict:
    """Two-sample comparison of per-seed mean returns: Welch's t, Mann-Whitney U, and a
    bootstrap 95 % CI of the difference of means (ours - SB3)."""
    from scipy import stats

    rng = np.random.default_rng(0)
    diffs = [
        rng.choice(ours, ours.size).mean() - rng.choice(sb3, sb3.size).mean() for _ in range(10_000)
    ]
    return {
        "difference": float(ours.mean() - sb3.mean()),
        "difference_ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
        "welch_p": float(stats.ttest_ind(ours, sb3, equal_var=False).pvalue),
        "mann_whitney_p": float(stats.mannwhitneyu(ours, sb3).pvalue),
    }


def evaluate_env(env_id: str, sb3_runs: list[dict], ours_seeds: int, episodes: int) -> dict:
    """Train our seeds, then evaluate them and the SB3 runs on the same protocol episodes."""
    import jax

    import cardiosim_jax
    from cardiosim_jax import experiments
    from cardiosim_jax.training import checkpoint, networks, ppo

    config = ppo.preset("paper", env_id)
    env, env_params = cardiosim_jax.make(env_id, config.difficulty)
    start = time.perf_counter()
    out = experiments.train_seeds(config, ours_seeds, 0, label=f"[{env_id}] ")
    ours_seconds = time.perf_counter() - start
    template = checkpoint.policy_template(config)
    sb3 = jax.tree_util.tree_map(
        lambda *leaves: np.stack(leaves),
        *[networks.from_sb3(r["weights"], template) for r in sb3_runs],
    )
    # The episodes of Table 2's PPO cell for seed 0: "ours" here is that cell.
    episodes_params = experiments.table2_episodes(env, env_params, "ppo", episodes)
    result: dict = {"protocol_actions": None, "modes": {}}
    for mode, policy in (("mean", ppo.ppo_policy), ("sampled", ppo.ppo_stochastic_policy)):
        cells = {}
        for name, policies, n in (
            ("ours", out.policy, ours_seeds),
            ("sb3", sb3, len(sb3_runs)),
        ):
            cell = experiments.evaluate_policies(
                policies, env, episodes_params, n, episodes, 0, policy, experiments.PAPER_EPISODES
            )
            keys = ("mean", "std", "iqm", "ci95", "seed_means", "block_means")
            cells[name] = {k: cell[k] for k in keys}
        cells["comparison"] = compare(
            np.asarray(cells["ours"]["seed_means"]), np.asarray(cells["sb3"]["seed_means"])
        )
        result["modes"][mode] = cells
    result["protocol_actions"] = "sampled" if experiments.TABLE2_PPO_SAMPLED[env_id] else "mean"
    total = config.total_timesteps
    steps = np.asarray(out.metrics["timesteps"])[0]
    ours_returns = np.asarray(out.metrics["episode_return"], dtype=np.float64)
    result["curves"] = {
        "bin_edges": np.linspace(0, total, CURVE_BINS + 1).tolist(),
        "ours": [binned_curve(steps, r, total).tolist() for r in ours_returns],
        "sb3": [
            binned_curve(
                np.asarray(r["curve_timesteps"]),
                np.asarray(r["curve_returns"]),
                total,
                r.get("curve_counts"),
            ).tolist()
            for r in sb3_runs
        ],
    }
    result["train_seconds"] = {
        "ours_all_seeds_at_once": ours_seconds,
        "sb3_per_seed": [r["train_seconds"] for r in sb3_runs],
    }
    result["timesteps"] = {"ours": int(steps[-1]), "sb3": [r["timesteps"] for r in sb3_runs]}
    result["n_seeds"] = {"ours": ours_seeds, "sb3": len(sb3_runs)}
    return result


def markdown(results: dict, episodes: int, sb3_env: str) -> str:
    from cardiosim_jax import experiments

    lines = [
        "SB3 PPO (paper settings) against cardiosim-jax's `paper` preset, the same budget, "
        f"evaluated on the same {episodes} Table 2 protocol episodes per seed. SB3 trained on "
        f"{'our Gymnasium adapter' if sb3_env == 'ours' else 'the reference env'}. Per-seed "
        "mean returns; difference = ours - SB3 with a bootstrap 95 % CI over seeds, Welch's t "
        "and Mann-Whitney U p-values. **Bold**: the actions the paper's evaluation used.",
        "",
        "| Environment | actions | ours: mean [95% CI] (seeds) | SB3: mean [95% CI] (seeds) "
        "| difference [95% CI] | Welch p | M-W p | 95 % of 20-episode means: ours; SB3 "
        "| paper |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def spread(cell: dict) -> str:
        return f"{cell['block_means']['p2.5']:,.1f} to {cell['block_means']['p97.5']:,.1f}"

    for env_id, result in results.items():
        paper_mean = experiments.TABLE2_PAPER[env_id]["ppo"][0]
        for mode, cells in result["modes"].items():
            label = f"**{mode}**" if mode == result["protocol_actions"] else mode
            o, s, c = cells["ours"], cells["sb3"], cells["comparison"]
            lines.append(
                f"| {env_id} | {label} | {o['mean']:,.1f} [{o['ci95'][0]:,.1f}, "
                f"{o['ci95'][1]:,.1f}] ({len(o['seed_means'])}) | {s['mean']:,.1f} "
                f"[{s['ci95'][0]:,.1f}, {s['ci95'][1]:,.1f}] ({len(s['seed_means'])}) | "
                f"{c['difference']:,.1f} [{c['difference_ci95'][0]:,.1f}, "
                f"{c['difference_ci95'][1]:,.1f}] | {c['welch_p']:.2f} | "
                f"{c['mann_whitney_p']:.2f} | {spread(o)}; {spread(s)} | {paper_mean:,} |"
            )
    lines += ["", "Per-seed means (protocol actions):", ""]
    for env_id, result in results.items():
        cells = result["modes"][result["protocol_actions"]]
        lines.append(
            f"- {env_id}: ours {[round(x, 1) for x in cells['ours']['seed_means']]}; "
            f"SB3 {[round(x, 1) for x in cells['sb3']['seed_means']]}"
        )
    if "PacingControl-v0" in results:
        from scipy import stats

        cells = results["PacingControl-v0"]["modes"]["mean"]
        ours = np.asarray(cells["ours"]["seed_means"]) < OVER_PACING
        sb3 = np.asarray(cells["sb3"]["seed_means"]) < OVER_PACING
        p = stats.fisher_exact([[ours.sum(), (~ours).sum()], [sb3.sum(), (~sb3).sum()]]).pvalue
        ours_rest = np.asarray(cells["ours"]["seed_means"])[~ours]
        sb3_rest = np.asarray(cells["sb3"]["seed_means"])[~sb3]
        p_rest = stats.mannwhitneyu(ours_rest, sb3_rest).pvalue
        lines += [
            "",
            f"Pacing seeds that over-pace (protocol mean below {OVER_PACING:,.0f}; the "
            f"heuristic scores about 128): ours {ours.sum()}/{ours.size}, SB3 "
            f"{sb3.sum()}/{sb3.size} (Fisher exact p {p:.2f}). The other seeds: median "
            f"ours {np.median(ours_rest):,.0f}, SB3 {np.median(sb3_rest):,.0f} "
            f"(Mann-Whitney p {p_rest:.2f}).",
        ]
    lines += ["", "Training wall time (this machine):", ""]
    for env_id, result in results.items():
        t = result["train_seconds"]
        lines.append(
            f"- {env_id}: ours {t['ours_all_seeds_at_once']:.0f} s for "
            f"{result['n_seeds']['ours']} seeds at once; SB3 "
            f"{np.mean(t['sb3_per_seed']):.0f} s per seed (one core each)"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    for ax, (env_id, result) in zip(np.atleast_1d(axes), results.items(), strict=True):
        edges = np.asarray(result["curves"]["bin_edges"])
        centres = 0.5 * (edges[1:] + edges[:-1])
        for name, colour in (("ours", "C0"), ("sb3", "C1")):
            curves = np.asarray(result["curves"][name], dtype=np.float64)
            with warnings.catch_warnings():  # a bin where no seed finished an episode
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.nanmedian(curves, axis=0)
                low, high = np.nanpercentile(curves, [25, 75], axis=0)
            label = "cardiosim-jax paper preset" if name == "ours" else "Stable-Baselines3"
            ax.plot(centres, median, color=colour, label=f"{label} (median, {len(curves)} seeds)")
            ax.fill_between(centres, low, high, color=colour, alpha=0.25)
        if env_id == "PacingControl-v0":
            ax.set_yscale("symlog")
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("training episode return (IQR shaded)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sb3-seeds", type=int, default=4)
    parser.add_argument("--ours-seeds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="SB3 runs in parallel")
    parser.add_argument("--envs", nargs="+", default=list(ENV_IDS), choices=ENV_IDS)
    parser.add_argument("--sb3-env", default="ours", choices=["ours", "reference"])
    parser.add_argument(
        "--train-only", action="store_true", help="only train (and cache) the SB3 runs"
    )
    parser.add_argument(
        "--stem",
        help="results file stem (default: sb3_parity, or sb3_parity_reference_env with "
        "--sb3-env reference)",
    )
    args = parser.parse_args()
    if min(args.sb3_seeds, args.ours_seeds, args.episodes, args.jobs) < 1:
        parser.error("--sb3-seeds, --ours-seeds, --episodes and --jobs must be at least 1")

    RUNS.mkdir(parents=True, exist_ok=True)
    todo = [
        (env_id, seed, args.sb3_env)
        for seed in range(args.sb3_seeds)
        for env_id in args.envs
        if not run_path(env_id, seed, args.sb3_env).exists()
    ]
    if todo:
        print(f"training {len(todo)} SB3 runs, {args.jobs} at a time", file=sys.stderr)
        context = multiprocessing.get_context("spawn")  # JAX does not survive fork
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            for done in concurrent.futures.as_completed(
                [pool.submit(_train_and_cache, *job) for job in todo]
            ):
                print(done.result(), file=sys.stderr)
    if args.train_only:
        return

    results = {}
    for env_id in args.envs:
        # Every cached seed (at least --sb3-seeds): envs may have more than asked for.
        seeds = sorted(
            int(path.stem.rsplit("seed", 1)[1])
            for path in RUNS.glob(f"{env_id}_{args.sb3_env}_seed*.json")
            if not path.stem.endswith(".partial")
        )
        runs = [load_run(env_id, seed, args.sb3_env) for seed in seeds]
        results[env_id] = evaluate_env(env_id, runs, args.ours_seeds, args.episodes)
    stem = args.stem or ("sb3_parity" if args.sb3_env == "ours" else "sb3_parity_reference_env")
    text = markdown(results, args.episodes, args.sb3_env)
    print(text)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / f"{stem}_learning_curves.png")


if __name__ == "__main__":
    main()
