"""Command line: ``cardiosim-jax train | evaluate | sweep | plot | table2 | bench``."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import evaluate
from cardiosim_jax.training import checkpoint, ppo

#: Paper protocol for Table 2: defibrillation on easy, the others on medium.
TABLE2_PROTOCOL = {
    "PacingControl-v0": "medium",
    "AntiarrhythmicDosing-v0": "medium",
    "DefibrillationTiming-v0": "easy",
}
#: Paper Table 2, mean and std over 20 episodes.
TABLE2_PAPER = {
    "PacingControl-v0": {"random": (-369322, 1545175), "heuristic": (129, 6), "ppo": (-646, 284)},
    "AntiarrhythmicDosing-v0": {"random": (-31, 5), "heuristic": (169, 16), "ppo": (129, 32)},
    "DefibrillationTiming-v0": {"random": (136, 22), "heuristic": None, "ppo": (128, 27)},
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_seeds(config: ppo.PPOConfig, n_seeds: int, seed: int, label: str = "") -> ppo.TrainOutput:
    """Train ``n_seeds`` seeds of ``config`` in one compiled call, with progress on stderr."""
    progress = _StderrProgress(ppo.ConsoleProgress(config.num_updates, label=label))
    train = jax.jit(jax.vmap(ppo.make_train(config, progress)))
    _log(
        f"{label}training {n_seeds} seed(s) x {config.num_updates} updates x "
        f"{config.batch_size} steps on {config.env_id} ({config.difficulty}); compiling..."
    )
    start = time.perf_counter()
    out = jax.block_until_ready(train(jax.random.split(jax.random.PRNGKey(seed), n_seeds)))
    _log(f"{label}trained in {time.perf_counter() - start:.1f}s (compilation included)")
    return out


class _StderrProgress:
    """Redirect a progress reporter's prints to stderr (stdout stays machine-readable)."""

    def __init__(self, inner: ppo.ConsoleProgress) -> None:
        self.inner = inner

    def __call__(self, *args: Any) -> None:
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            self.inner(*args)
        finally:
            sys.stdout = stdout


def _config_from_args(args: argparse.Namespace) -> ppo.PPOConfig:
    overrides = {}
    if args.timesteps is not None:
        overrides["total_timesteps"] = args.timesteps
    if getattr(args, "preset", None) is None:
        args.preset = "paper" if args.env.endswith("-v0") else "tuned"
    return ppo.preset(args.preset, args.env, args.difficulty, **overrides)


def evaluate_baselines(
    env: Any,
    env_params: Any,
    n_episodes: int,
    seed: int = 0,
    names: tuple[str, ...] = ("random", "heuristic"),
) -> dict[str, dict]:
    """``name -> evaluate(...)`` cell of each baseline policy, ``n_episodes`` from key ``seed``."""
    cells = {}
    for name in names:
        policy, policy_params = agents.baseline_policy(name, env, env_params)
        cells[name] = evaluate(
            policy, env, env_params, jax.random.PRNGKey(seed), n_episodes, 1, policy_params
        )
    return cells


def train_and_evaluate(
    config: ppo.PPOConfig, n_seeds: int, episodes: int, seed: int = 0, label: str = ""
) -> tuple[ppo.TrainOutput, dict]:
    """Train ``n_seeds`` seeds (:func:`train_seeds`) and evaluate each deterministically.

    The evaluation plays ``episodes`` episodes per seed from key ``seed + 1``;
    the returned cell (:func:`cardiosim_jax.evaluation.evaluate`'s) also holds
    ``train_seconds`` (compilation included) and ``timesteps`` per seed.
    """
    start = time.perf_counter()
    out = train_seeds(config, n_seeds, seed, label=label)
    seconds = time.perf_counter() - start
    cell = _evaluate_trained(out, config, n_seeds, episodes, seed)
    return out, {**cell, "train_seconds": seconds, "timesteps": config.total_timesteps}


def _evaluate_trained(
    out: ppo.TrainOutput, config: ppo.PPOConfig, n_seeds: int, episodes: int, seed: int
) -> dict:
    env, env_params = cardiosim_jax.make(config.env_id, config.difficulty)
    return evaluate(
        ppo.ppo_policy,
        env,
        env_params,
        jax.random.PRNGKey(seed + 1),
        episodes,
        n_seeds,
        out.policy if n_seeds > 1 else jax.tree_util.tree_map(lambda x: x[0], out.policy),
    )


def _pyplot() -> Any:
    """pyplot on the non-interactive Agg backend: the CLI only writes files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    curves: dict[str, np.ndarray], timesteps: np.ndarray, path: Path, title: str
) -> None:
    """Save :func:`cardiosim_jax.plotting.plot_learning_curves` (mean, min-max band) to ``path``."""
    plt = _pyplot()
    from cardiosim_jax import plotting

    fig = plotting.plot_learning_curves(curves, timesteps, title=title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    if args.shard:
        config = config.replace_static(shard_envs=True)
        try:
            mesh = ppo.env_mesh(config)
        except ValueError as error:
            raise SystemExit(f"--shard: {error}") from error
        _log(f"sharding {config.num_envs} environments over {mesh.devices.size} device(s)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = train_seeds(config, args.seeds, args.seed)
    checkpoint.save_seeds(out_dir, out.policy, config)
    result = _evaluate_trained(out, config, args.seeds, args.episodes, args.seed)
    metrics = {k: np.asarray(v).tolist() for k, v in out.metrics.items()}
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {"config": config.to_dict(), "evaluation": result, "training": metrics}, indent=2
        )
    )
    timesteps = np.asarray(out.metrics["timesteps"])[0]
    plot_learning_curves(
        {f"PPO ({args.preset})": out.metrics["episode_return"]},
        timesteps,
        out_dir / "learning_curve.png",
        f"{config.env_id} ({config.difficulty})",
    )
    print(
        json.dumps({k: result[k] for k in ("mean", "std", "iqm", "ci95", "n_episodes", "n_seeds")})
    )
    return 0


BASELINE_POLICIES = ("random", "heuristic")


def _load_checkpoint(policy: str, env_id: str) -> tuple[ppo.PPOPolicyParams, ppo.PPOConfig, int]:
    """``checkpoint.load_seeds(policy)`` for ``env_id``; exits with a message if it can't."""
    try:
        policies, config, n_seeds = checkpoint.load_seeds(policy)
    except FileNotFoundError as error:
        raise SystemExit(
            f"--policy {policy!r} is neither 'random', 'heuristic' nor a checkpoint "
            f"directory ({error})"
        ) from error
    if config.env_id != env_id.removeprefix("cardiosim/"):
        raise SystemExit(f"checkpoint was trained on {config.env_id}, not {env_id}")
    return policies, config, n_seeds


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.policy in BASELINE_POLICIES:
        difficulty = args.difficulty or "medium"
        env, env_params = cardiosim_jax.make(args.env, difficulty)
        policy, policy_params = agents.baseline_policy(args.policy, env, env_params)
        result = evaluate(
            policy, env, env_params, jax.random.PRNGKey(args.seed), args.episodes, 1, policy_params
        )
    else:
        policies, config, n_seeds = _load_checkpoint(args.policy, args.env)
        # Default to the tier the checkpoint was trained on.
        difficulty = args.difficulty or config.difficulty
        env, env_params = cardiosim_jax.make(args.env, difficulty)
        if n_seeds == 1:
            policies = jax.tree_util.tree_map(lambda x: x[0], policies)
        result = evaluate(
            ppo.ppo_policy,
            env,
            env_params,
            jax.random.PRNGKey(args.seed),
            args.episodes,
            n_seeds,
            policies,
        )
    summary = {k: result[k] for k in ("mean", "std", "iqm", "ci95", "n_episodes")}
    if args.json:
        print(json.dumps(summary))
    else:
        lo, hi = summary["ci95"]
        print(
            f"{args.env} ({difficulty}) {args.policy}: mean {summary['mean']:.2f} ± "
            f"{summary['std']:.2f}, IQM {summary['iqm']:.2f}, 95% CI [{lo:.2f}, {hi:.2f}], "
            f"{summary['n_episodes']} episodes"
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    plt = _pyplot()
    from cardiosim_jax import plotting

    if args.patients < 1:
        raise SystemExit(f"--patients must be at least 1, got {args.patients}")
    name: str | None
    if args.policy in BASELINE_POLICIES:
        difficulty = args.difficulty or "medium"
        policy: Any = args.policy
        name = None  # plot_rollout's default: "<name> policy"
    else:
        policies, config, n_seeds = _load_checkpoint(args.policy, args.env)
        difficulty = args.difficulty or config.difficulty  # as evaluate: the checkpoint's tier
        # A multi-seed checkpoint: draw the first seed's policy.
        policy = (ppo.ppo_policy, jax.tree_util.tree_map(lambda x: x[0], policies))
        name = f"PPO {args.policy}" + (f" (seed 0 of {n_seeds})" if n_seeds > 1 else "")
    env_id = args.env.removeprefix("cardiosim/")
    fig = plotting.plot_rollout(
        env_id,
        difficulty,
        policy,
        seed=args.seed,
        n_patients=args.patients,
        policy_label=name,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out)
    return 0


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def cmd_sweep(args: argparse.Namespace) -> int:
    base = _config_from_args(args)
    grid = list(itertools.product(args.lr, args.ent_coef))
    configs = [base.replace(learning_rate=lr, ent_coef=ent) for lr, ent in grid]
    stacked = ppo.stack_configs(configs)
    progress = _StderrProgress(ppo.ConsoleProgress(base.num_updates, label="sweep "))
    train = ppo.make_train(base, progress)
    seeds = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    run = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))
    _log(f"sweep: {len(grid)} settings x {args.seeds} seeds in one compiled call; compiling...")
    start = time.perf_counter()
    out = jax.block_until_ready(run(seeds, stacked))
    _log(f"sweep trained in {time.perf_counter() - start:.1f}s")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    env, env_params = cardiosim_jax.make(base.env_id, base.difficulty)
    rows = []
    for i, (lr, ent) in enumerate(grid):
        policies = jax.tree_util.tree_map(lambda x, i=i: x[i], out.policy)
        result = evaluate(
            ppo.ppo_policy,
            env,
            env_params,
            jax.random.PRNGKey(args.seed + 1),
            args.episodes,
            args.seeds,
            policies if args.seeds > 1 else jax.tree_util.tree_map(lambda x: x[0], policies),
        )
        rows.append({"learning_rate": lr, "ent_coef": ent, **result})
    (out_dir / "sweep.json").write_text(
        json.dumps({"config": base.to_dict(), "results": rows}, indent=2)
    )
    lines = [
        f"Sweep on {base.env_id} ({base.difficulty}), preset {args.preset}, {args.seeds} seeds, "
        f"{args.episodes} evaluation episodes per seed",
        "",
        "| learning rate | ent_coef | mean | IQM | 95% CI (over seeds) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['learning_rate']:g} | {row['ent_coef']:g} | {row['mean']:.1f} | "
            f"{row['iqm']:.1f} | "
            f"[{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}] |"
        )
    table = "\n".join(lines) + "\n"
    (out_dir / "sweep.md").write_text(table)
    _plot_heatmap(rows, args.lr, args.ent_coef, out_dir / "sweep_heatmap.png", base)
    print(table)
    return 0


def _plot_heatmap(
    rows: list[dict], lrs: list[float], ents: list[float], path: Path, base: ppo.PPOConfig
) -> None:
    plt = _pyplot()

    grid = np.array([row["iqm"] for row in rows]).reshape(len(lrs), len(ents))
    fig, ax = plt.subplots(figsize=(1.6 * len(ents) + 2, 1.0 * len(lrs) + 1.5))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ents)), [f"{e:g}" for e in ents])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("entropy coefficient")
    ax.set_ylabel("learning rate")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="w")
    fig.colorbar(image, label="evaluation IQM return")
    ax.set_title(f"{base.env_id} ({base.difficulty})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_table2(
    quick: bool,
    seeds: int | None = None,
    episodes: int | None = None,
    seed: int = 0,
    preset: str = "paper",
) -> tuple[dict, str]:
    """Random, heuristic and PPO on the three environments with the paper's protocol."""
    n_seeds = seeds or (2 if quick else 8)
    n_episodes = episodes or (200 if quick else 1000)
    results: dict[str, dict] = {}
    for env_id, difficulty in TABLE2_PROTOCOL.items():
        env, env_params = cardiosim_jax.make(env_id, difficulty)
        results[env_id] = {}
        names = ("random", "heuristic") if env_id != "DefibrillationTiming-v0" else ("random",)
        for name, cell in evaluate_baselines(env, env_params, n_episodes, seed, names).items():
            results[env_id][name] = {**cell, "n_seeds": 1}
        config = ppo.preset(preset, env_id)
        if quick:  # a tenth of the budget: a smoke run of the full protocol
            config = config.replace_static(
                total_timesteps=max(config.batch_size, config.total_timesteps // 10)
            )
        out, cell = train_and_evaluate(config, n_seeds, n_episodes, seed, label=f"[{env_id}] ")
        results[env_id]["ppo"] = {
            **cell,
            "learning_curve": {
                "timesteps": np.asarray(out.metrics["timesteps"])[0].tolist(),
                "episode_return": np.asarray(out.metrics["episode_return"]).tolist(),
            },
        }
    return results, table2_markdown(results, quick, preset)


def table2_markdown(results: dict, quick: bool, preset: str) -> str:
    def paper(env_id: str, name: str) -> str:
        cell = TABLE2_PAPER[env_id][name]
        return "–" if cell is None else f"{cell[0]:,} ± {cell[1]:,}"

    def ours(cell: dict | None) -> str:
        if cell is None:
            return "–"
        lo, hi = cell["ci95"]
        return (
            f"{cell['mean']:,.1f} ± {cell['std']:,.1f} (IQM {cell['iqm']:,.1f}; "
            f"95% CI {lo:,.1f} to {hi:,.1f}; "
            f"{cell['n_seeds']}x{cell['n_episodes'] // cell['n_seeds']})"
        )

    lines = [
        f"Table 2{' (quick: PPO at 1/10 budget)' if quick else ''}, PPO preset '{preset}'. "
        "Ours: mean ± std over episodes (IQM; 95% bootstrap CI of the mean, over seeds for PPO; "
        "seeds x episodes per seed).",
        "",
        "| Environment | Policy | Paper (20 episodes) | cardiosim-jax |",
        "|---|---|---:|---:|",
    ]
    for env_id, cells in results.items():
        for name in ("random", "heuristic", "ppo"):
            if name in cells:
                lines.append(
                    f"| {env_id} ({TABLE2_PROTOCOL[env_id]}) | {name} | {paper(env_id, name)} | "
                    f"{ours(cells[name])} |"
                )
    return "\n".join(lines) + "\n"


def cmd_table2(args: argparse.Namespace) -> int:
    results, table = run_table2(args.quick, args.seeds, args.episodes, args.seed, args.preset)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        slim = {
            env_id: {
                name: {k: cell[k] for k in ("mean", "std", "iqm", "ci95", "n_episodes", "n_seeds")}
                for name, cell in cells.items()
            }
            for env_id, cells in results.items()
        }
        out.write_text(json.dumps(slim, indent=2))
    return 0


def _int_list(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    # Imported here: only this command needs it.
    from cardiosim_jax import benchmarking

    changes: dict[str, Any] = {}
    if args.envs:
        changes["envs"] = tuple(e.removeprefix("cardiosim/") for e in args.envs)
    if args.batches:
        changes["batches"] = tuple(args.batches)
    for name in ("repeats", "ppo_updates", "ppo_seeds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.memory_budget_gib is not None:
        changes["memory_budget_bytes"] = int(args.memory_budget_gib * benchmarking.GIB)
    if args.no_rss:
        changes["rss"] = False
    if args.quick:
        settings = benchmarking.BenchSettings.quick_run(**changes)
    else:
        settings = benchmarking.BenchSettings(**changes)
    results = benchmarking.run_benchmarks(settings, log=_log)
    # A smoke run must not overwrite the full results.
    suffix = "-quick" if args.quick else ""
    out = args.out or f"benchmarks/results/{jax.default_backend()}{suffix}.json"
    json_path, md_path = benchmarking.write_results(results, out)
    print(benchmarking.to_markdown(results))
    _log(f"wrote {json_path} and {md_path}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiosim-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def env_args(p: argparse.ArgumentParser, difficulty_default: str | None = "medium") -> None:
        p.add_argument("--env", required=True, choices=_env_choices())
        p.add_argument(
            "--difficulty", default=difficulty_default, choices=["easy", "medium", "hard"]
        )
        p.add_argument("--seed", type=int, default=0)

    train = sub.add_parser("train", help="train PPO (several seeds at once)")
    env_args(train, None)
    train.add_argument(
        "--preset", default=None, choices=ppo.PRESETS, help="default: paper for v0, tuned for v1"
    )
    train.add_argument("--seeds", type=int, default=1)
    train.add_argument("--timesteps", type=int, default=None)
    train.add_argument("--episodes", type=int, default=200, help="evaluation episodes per seed")
    train.add_argument("--out", required=True)
    train.add_argument(
        "--shard",
        action="store_true",
        help="split the environments over all devices (num_envs divisible by their count)",
    )
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate random, heuristic or a checkpoint directory")
    env_args(ev, None)  # default: the checkpoint's tier, else medium
    ev.add_argument("--policy", required=True, help="random | heuristic | checkpoint directory")
    ev.add_argument("--episodes", type=int, default=1000)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    sweep = sub.add_parser(
        "sweep", help="train a grid of learning rates x entropy coefficients x seeds"
    )
    env_args(sweep, None)
    sweep.add_argument("--preset", default="tuned", choices=ppo.PRESETS)
    sweep.add_argument("--lr", type=_float_list, required=True)
    sweep.add_argument("--ent-coef", type=_float_list, default=[0.0])
    sweep.add_argument("--seeds", type=int, default=4)
    sweep.add_argument("--timesteps", type=int, default=None)
    sweep.add_argument("--episodes", type=int, default=200)
    sweep.add_argument("--out", required=True)
    sweep.set_defaults(func=cmd_sweep)

    plot = sub.add_parser(
        "plot", help="draw episodes of random, heuristic or a checkpoint as a PNG (or PDF, SVG)"
    )
    env_args(plot, None)  # default: the checkpoint's tier, else medium
    plot.add_argument(
        "--policy", default="heuristic", help="random | heuristic | checkpoint directory"
    )
    plot.add_argument("--patients", type=int, default=1, help="episodes drawn (one line each)")
    plot.add_argument("--out", required=True, help="image file (format from its suffix)")
    plot.set_defaults(func=cmd_plot)

    t2 = sub.add_parser("table2", help="reproduce the paper's Table 2 (random, heuristic, PPO)")
    t2.add_argument(
        "--quick", action="store_true", help="2 seeds, 200 episodes, PPO at 1/10 budget"
    )
    t2.add_argument("--seeds", type=int, default=None)
    t2.add_argument("--episodes", type=int, default=None)
    t2.add_argument("--preset", default="paper", choices=ppo.PRESETS)
    t2.add_argument("--seed", type=int, default=0)
    t2.add_argument("--out", default=None)
    t2.set_defaults(func=cmd_table2)

    bench = sub.add_parser(
        "bench",
        help="benchmark suite: env steps/s vs cardiosim 0.1.0 and the RK4 floor, PPO, memory",
    )
    bench.add_argument(
        "--quick", action="store_true", help="smoke run: batches 1,64, short scans, tiny PPO"
    )
    bench.add_argument(
        "--envs",
        nargs="+",
        choices=_env_choices(cardiosim_jax.registration.v0_envs),
        default=None,
        metavar="ENV_ID",
        help="environments to benchmark (default: all three)",
    )
    bench.add_argument(
        "--batches", type=_int_list, default=None, help="patients, e.g. 1,256,4096,65536"
    )
    bench.add_argument("--repeats", type=int, default=None, help="timed calls (best is kept)")
    bench.add_argument("--ppo-updates", type=int, default=None)
    bench.add_argument("--ppo-seeds", type=int, default=None, help="seeds vmapped together")
    bench.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="budget for the largest-batch extrapolation (default 24)",
    )
    bench.add_argument(
        "--no-rss", action="store_true", help="skip the fresh-subprocess peak-RSS measurement"
    )
    bench.add_argument(
        "--out",
        default=None,
        help="JSON path, markdown beside it (default benchmarks/results/<backend>.json, "
        "or <backend>-quick.json with --quick)",
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def _env_choices(ids: tuple[str, ...] | None = None) -> list[str]:
    ids = list(cardiosim_jax.registered_envs if ids is None else ids)
    return ids + [f"cardiosim/{i}" for i in ids]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
