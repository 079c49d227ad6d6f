"""Command line: ``cardiosim-jax train | evaluate | sweep | plot | table2 | bench``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents, experiments, sharding
from cardiosim_jax.evaluation import evaluate
from cardiosim_jax.training import checkpoint, ppo

_log = experiments.log_to_stderr


def _config_from_args(args: argparse.Namespace) -> ppo.PPOConfig:
    overrides = {}
    if args.timesteps is not None:
        overrides["total_timesteps"] = args.timesteps
    for name in SHAPE_OPTIONS:
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if getattr(args, "preset", None) is None:
        args.preset = "paper" if args.env.endswith("-v0") else "tuned"
    return ppo.preset(args.preset, args.env, args.difficulty, **overrides)


def _plotting() -> Any:
    """:mod:`cardiosim_jax.plotting` on the Agg backend: the CLI only writes files."""
    import matplotlib

    matplotlib.use("Agg")
    from cardiosim_jax import plotting

    return plotting


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- argument checks


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (``1_000`` accepted)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _comma_numbers(text: str, prefix: str = "") -> list[float]:
    """At least one comma-separated number in ``text`` (the error starts with ``prefix``)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{prefix}expected comma-separated numbers, got {text!r}")
    return values


def _number_list(text: str, *, minimum: float, strict: bool) -> list[float]:
    """Comma-separated finite numbers above (``strict``) or at least ``minimum``."""
    values = _comma_numbers(text)
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    for value in values:
        if not np.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected finite numbers {bound}, got {value}")
    return values


def _sweep_setting(text: str) -> tuple[str, list[float]]:
    """``--set LEAF=V1,V2,...``: a :class:`~cardiosim_jax.training.ppo.PPOConfig` leaf and
    its values (ranges are checked with the base config, before training)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected LEAF=V1,V2,..., got {text!r}")
    if name not in experiments.SWEEPABLE:
        raise argparse.ArgumentTypeError(
            f"unknown hyperparameter {name!r}; accepted: {', '.join(experiments.SWEEPABLE)}"
        )
    return name, _comma_numbers(values, f"{name}: ")


def _learning_rates(text: str) -> list[float]:
    return _number_list(text, minimum=0.0, strict=True)


def _entropy_coefficients(text: str) -> list[float]:
    return _number_list(text, minimum=0.0, strict=False)


def _positive_float(text: str) -> float:
    """argparse type: one finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value:g}")
    return value


def _positive_int_list(text: str) -> list[int]:
    values = [x for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return [_positive_int(x) for x in values]


def _run_directory(path: str, overwrite: bool) -> Path:
    """``--out`` for a run: a new or empty directory (any with ``overwrite``), writable.

    Checked before any work, so a mistake costs nothing.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {path} is a file; accepted: a new or empty directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SystemExit(
            f"--out {path} already holds files (an earlier run?); pass --overwrite to "
            "replace them, or choose a new directory"
        )
    _check_writable(out, path)
    return out


def _check_writable(directory: Path, shown: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise SystemExit(f"--out {shown} is not writable ({error.strerror})") from None


def _output_file(path: str, suffixes: Sequence[str] | None = None) -> Path:
    """``--out`` for one file: not a directory, a known suffix, a writable folder."""
    out = Path(path)
    if out.is_dir():
        raise SystemExit(f"--out {path} is a directory; accepted: a file path")
    if suffixes is not None and out.suffix.lower().lstrip(".") not in suffixes:
        raise SystemExit(
            f"--out {path}: unknown image format {out.suffix or '(none)'!r}; "
            f"accepted suffixes: {', '.join('.' + s for s in sorted(suffixes))}"
        )
    _check_writable(out.parent, path)
    return out


#: Rollout-shape options of ``train`` and ``sweep`` (``--num-envs`` ...): PPOConfig fields.
SHAPE_OPTIONS = ("num_envs", "num_steps", "minibatch_size")


def _shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-envs",
        type=_positive_int,
        default=None,
        help="environments in parallel per seed (the preset's by default; 4096 suits a GPU)",
    )
    p.add_argument(
        "--num-steps", type=_positive_int, default=None, help="steps per rollout per environment"
    )
    p.add_argument(
        "--minibatch-size",
        type=_positive_int,
        default=None,
        help="transitions per gradient step (divides num_envs x num_steps)",
    )


def _check_budget(config: ppo.PPOConfig, args: argparse.Namespace) -> None:
    """``--timesteps`` must cover one rollout: fewer would silently train a whole one."""
    if args.timesteps is not None and args.timesteps < config.batch_size:
        raise SystemExit(
            f"--timesteps {args.timesteps} is less than one rollout of the {args.preset} "
            f"preset (num_envs x num_steps = {config.batch_size}); accepted: >= "
            f"{config.batch_size}"
        )


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    _check_budget(config, args)
    if args.shard:
        config = config.replace_static(shard_envs=True)
        try:
            mesh = ppo.env_mesh(config)
        except ValueError as error:
            raise SystemExit(f"--shard: {error}") from error
        _log(f"sharding {config.num_envs} environments over {mesh.devices.size} device(s)")
    if args.resume:
        out_dir = Path(args.out)
        if not (out_dir / checkpoint.TRAINING_DIR / checkpoint.PROGRESS_FILE).exists():
            raise SystemExit(f"--resume: no interrupted run in --out {args.out}")
    else:
        out_dir = _run_directory(args.out, args.overwrite)
    try:
        out = experiments.train_seeds(
            config,
            args.seeds,
            args.seed,
            run_dir=out_dir,
            interval=args.checkpoint_every,
            resume=args.resume,
        )
    except checkpoint.CheckpointError as error:
        raise SystemExit(f"--resume: {error}") from None
    checkpoint.save_seeds(out_dir, out.policy, config)
    result = experiments.evaluate_trained(out, config, args.seeds, args.episodes, args.seed)
    metrics = {k: np.asarray(v).tolist() for k, v in out.metrics.items()}
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {"config": config.to_dict(), "evaluation": result, "training": metrics}, indent=2
        )
    )
    timesteps = np.asarray(out.metrics["timesteps"])[0]
    plotting = _plotting()
    _save(
        plotting.plot_learning_curves(
            {f"PPO ({args.preset})": out.metrics["episode_return"]},
            timesteps,
            title=f"{config.env_id} ({config.difficulty})",
        ),
        out_dir / "learning_curve.png",
    )
    checkpoint.remove_training(out_dir)  # the run is complete: its seeds are saved
    print(
        json.dumps({k: result[k] for k in ("mean", "std", "iqm", "ci95", "n_episodes", "n_seeds")})
    )
    return 0


BASELINE_POLICIES = ("random", "heuristic")


def _load_checkpoint(policy: str, env_id: str) -> tuple[ppo.PPOPolicyParams, ppo.PPOConfig, int]:
    """``checkpoint.load_seeds(policy)`` for ``env_id``; exits with a message if it can't."""
    try:
        return checkpoint.load_seeds(policy, env_id)
    except FileNotFoundError as error:
        raise SystemExit(
            f"--policy {policy!r} is neither 'random', 'heuristic' nor a checkpoint "
            f"directory ({error})"
        ) from None
    except checkpoint.CheckpointError as error:
        raise SystemExit(f"--policy {policy}: {error}") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.shard:
        mesh = sharding.patient_mesh()
        try:  # before any work, as the sharded rollout would check it
            sharding.check_divisible(args.episodes, mesh, "--episodes")
        except ValueError as error:
            raise SystemExit(f"--shard: {error}") from None
        _log(f"sharding {args.episodes} episodes per seed over {mesh.devices.size} device(s)")
    if args.policy in BASELINE_POLICIES:
        difficulty = args.difficulty or "medium"
        env, env_params = cardiosim_jax.make(args.env, difficulty)
        policy, policy_params = agents.baseline_policy(args.policy, env, env_params)
        result = evaluate(
            policy,
            env,
            env_params,
            jax.random.PRNGKey(args.seed),
            args.episodes,
            1,
            policy_params,
            shard=args.shard,
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
            shard=args.shard,
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
    plotting = _plotting()
    from matplotlib.backend_bases import FigureCanvasBase

    out = _output_file(args.out, list(FigureCanvasBase.get_supported_filetypes()))
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
    _save(fig, out)
    print(out)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    base = _config_from_args(args)
    _check_budget(base, args)
    grid: dict[str, list[float]] = {}
    shorthands = [("learning_rate", args.lr), ("ent_coef", args.ent_coef)]
    for name, values in shorthands + list(args.set or []):
        if values is None:
            continue
        if name in grid:
            raise SystemExit(f"{name} is given twice (--set {name}=... and its shorthand?)")
        grid[name] = values
    if not grid:
        raise SystemExit("sweep: nothing to sweep; give --set LEAF=V1,V2 (or --lr, --ent-coef)")
    experiments.sweep_settings(base, grid)  # ranges checked before --out is touched
    out_dir = _run_directory(args.out, args.overwrite)
    budget = None if args.memory_budget_gib is None else int(args.memory_budget_gib * 2**30)
    sweep = experiments.run_sweep(
        base,
        grid,
        args.seeds,
        args.episodes,
        args.seed,
        log=_log,
        chunk_size=args.chunk_size,
        memory_budget_bytes=budget,
    )
    rows = sweep.rows
    best = sweep.best_index
    best_config = sweep.best_config(base)
    checkpoint.save_seeds(out_dir / "best", sweep.best_policy(), best_config)
    (out_dir / "sweep.json").write_text(
        json.dumps(
            {
                "config": base.to_dict(),
                "grid": grid,
                "seeds": args.seeds,
                "chunk_size": sweep.chunk_size,
                "train_seconds": sweep.seconds,
                "best": {"index": best, "config": best_config.to_dict()},
                "results": rows,
            },
            indent=2,
        )
    )
    table = experiments.sweep_markdown(rows, base, args.preset, args.seeds, args.episodes, grid)
    (out_dir / "sweep.md").write_text(table)
    plotting = _plotting()
    _save(
        plotting.plot_sweep_heatmap(rows, grid, title=f"{base.env_id} ({base.difficulty})"),
        out_dir / "sweep_heatmap.png",
    )
    _log(f"best setting saved in {out_dir / 'best'} (evaluate it with --policy)")
    print(table)
    return 0


#: What ``table2 --out`` keeps of each cell (``actions``: PPO's, sampled or the mean).
TABLE2_JSON_KEYS = ("mean", "std", "iqm", "ci95", "n_episodes", "n_seeds", "actions", "block_means")


def cmd_table2(args: argparse.Namespace) -> int:
    out = _output_file(args.out) if args.out else None
    results, table = experiments.run_table2(
        args.quick, args.seeds, args.episodes, args.seed, args.preset
    )
    print(table)
    if out is not None:
        slim = {
            env_id: {
                name: {k: cell[k] for k in TABLE2_JSON_KEYS if k in cell}
                for name, cell in cells.items()
            }
            for env_id, cells in results.items()
        }
        out.write_text(json.dumps(slim, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    # The benchmark suite is tooling beside the library (cardiosim_tools), imported only here.
    from cardiosim_tools import benchmarking

    changes: dict[str, Any] = {}
    if args.envs:
        changes["envs"] = tuple(e.removeprefix("cardiosim/") for e in args.envs)
    if args.batches:
        changes["batches"] = tuple(args.batches)
    for name in ("repeats", "ppo_updates", "ppo_seeds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.memory_budget_gib is not None:
        changes["memory_budget_bytes"] = max(1, int(args.memory_budget_gib * benchmarking.GIB))
    if args.max_step_seconds is not None:
        changes["max_step_seconds"] = args.max_step_seconds
    if args.no_rss:
        changes["rss"] = False
    if args.no_ppo:
        changes["ppo"] = False
    if args.quick:
        settings = benchmarking.BenchSettings.quick_run(**changes)
    else:
        settings = benchmarking.BenchSettings(**changes)
    # A smoke run must not overwrite the full results.
    suffix = "-quick" if args.quick else ""
    out = args.out or f"benchmarks/results/{jax.default_backend()}{suffix}.json"
    # Checked before the run: the markdown goes beside the JSON, with the suffix replaced.
    if Path(out).suffix != ".json":
        raise ValueError(f"--out must name a .json file (the .md goes beside it), got {out!r}")
    if Path(out).is_dir() or any(p.exists() and not p.is_dir() for p in Path(out).parents):
        raise ValueError(f"--out {out!r}: not a writable file path")
    results = benchmarking.run_benchmarks(settings, log=_log)
    json_path, md_path = benchmarking.write_results(results, out)
    print(benchmarking.to_markdown(results))
    _log(f"wrote {json_path} and {md_path}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cardiosim-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def env_args(
        p: argparse.ArgumentParser,
        difficulty_default: str | None = "medium",
        ids: Sequence[str] | None = None,
    ) -> None:
        p.add_argument("--env", required=True, choices=_env_choices(ids))
        p.add_argument(
            "--difficulty", default=difficulty_default, choices=["easy", "medium", "hard"]
        )
        p.add_argument("--seed", type=int, default=0)

    train = sub.add_parser("train", help="train PPO (several seeds at once)")
    env_args(train, None)
    train.add_argument(
        "--preset", default=None, choices=ppo.PRESETS, help="default: paper for v0, tuned for v1"
    )
    train.add_argument("--seeds", type=_positive_int, default=1)
    train.add_argument("--timesteps", type=_positive_int, default=None)
    _shape_args(train)
    train.add_argument(
        "--episodes", type=_positive_int, default=200, help="evaluation episodes per seed"
    )
    train.add_argument("--out", required=True, help="a new or empty directory")
    train.add_argument(
        "--overwrite", action="store_true", help="replace what --out holds (an earlier run)"
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out (same arguments); same result as uninterrupted",
    )
    train.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=None,
        metavar="UPDATES",
        help="save the training state every UPDATES updates (default: a tenth of the run)",
    )
    train.add_argument(
        "--shard",
        action="store_true",
        help="split the environments over all devices (num_envs divisible by their count)",
    )
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate random, heuristic or a checkpoint directory")
    env_args(ev, None)  # default: the checkpoint's tier, else medium
    ev.add_argument("--policy", required=True, help="random | heuristic | checkpoint directory")
    ev.add_argument("--episodes", type=_positive_int, default=1000)
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--shard",
        action="store_true",
        help="split the episodes over all devices (--episodes divisible by their count)",
    )
    ev.set_defaults(func=cmd_evaluate)

    sweep = sub.add_parser(
        "sweep",
        help="train a grid of hyperparameters x seeds in one compiled call (chunked to fit)",
    )
    env_args(sweep, None)
    sweep.add_argument("--preset", default="tuned", choices=ppo.PRESETS)
    sweep.add_argument(
        "--set",
        type=_sweep_setting,
        action="append",
        metavar="LEAF=V1,V2",
        help="a PPOConfig hyperparameter and its values (repeat for a grid), e.g. "
        "--set gamma=0.95,0.99 --set learning_rate=1e-4,3e-4",
    )
    sweep.add_argument(
        "--lr", type=_learning_rates, default=None, help="shorthand: --set learning_rate=..."
    )
    sweep.add_argument(
        "--ent-coef", type=_entropy_coefficients, default=None, help="shorthand: --set ent_coef=..."
    )
    sweep.add_argument("--seeds", type=_positive_int, default=4)
    sweep.add_argument("--timesteps", type=_positive_int, default=None)
    _shape_args(sweep)
    sweep.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=None,
        help="settings per compiled call (default: all that fit the memory budget)",
    )
    sweep.add_argument(
        "--memory-budget-gib",
        type=_positive_float,
        default=None,
        help="device memory a call may use (default: 80%% of the device's, half the RAM on CPU)",
    )
    sweep.add_argument("--episodes", type=_positive_int, default=200)
    sweep.add_argument("--out", required=True, help="a new or empty directory")
    sweep.add_argument(
        "--overwrite", action="store_true", help="replace what --out holds (an earlier sweep)"
    )
    sweep.set_defaults(func=cmd_sweep)

    plot = sub.add_parser(
        "plot", help="draw episodes of random, heuristic or a checkpoint as a PNG (or PDF, SVG)"
    )
    # Default tier: the checkpoint's, else medium. Only environments with a plotter.
    env_args(plot, None, cardiosim_jax.registration.plottable_envs())
    plot.add_argument(
        "--policy", default="heuristic", help="random | heuristic | checkpoint directory"
    )
    plot.add_argument(
        "--patients", type=_positive_int, default=1, help="episodes drawn (one line each)"
    )
    plot.add_argument("--out", required=True, help="image file (format from its suffix)")
    plot.set_defaults(func=cmd_plot)

    t2 = sub.add_parser("table2", help="reproduce the paper's Table 2 (random, heuristic, PPO)")
    t2.add_argument(
        "--quick", action="store_true", help="2 seeds, 200 episodes, PPO at 1/10 budget"
    )
    t2.add_argument("--seeds", type=_positive_int, default=None)
    t2.add_argument("--episodes", type=_positive_int, default=None)
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
        choices=_env_choices(),
        default=None,
        metavar="ENV_ID",
        help="environments to benchmark (default: all six registered, v0 and v1)",
    )
    bench.add_argument(
        "--batches",
        type=_positive_int_list,
        default=None,
        help="patients (default 1,256,4096,65536,1048576; a batch over the memory budget "
        "is skipped)",
    )
    bench.add_argument(
        "--repeats", type=_positive_int, default=None, help="timed calls (best is kept)"
    )
    bench.add_argument("--ppo-updates", type=_positive_int, default=None)
    bench.add_argument(
        "--ppo-seeds", type=_positive_int, default=None, help="seeds vmapped together"
    )
    bench.add_argument(
        "--memory-budget-gib",
        type=_positive_float,
        default=None,
        help="device memory for one rollout: larger batches are skipped (default 24)",
    )
    bench.add_argument(
        "--max-step-seconds",
        type=_positive_float,
        default=None,
        help="skip a batch whose one scan step is predicted to take longer (default 5)",
    )
    bench.add_argument(
        "--no-rss", action="store_true", help="skip the fresh-subprocess peak-RSS measurement"
    )
    bench.add_argument("--no-ppo", action="store_true", help="skip the PPO throughput")
    bench.add_argument(
        "--out",
        default=None,
        help="JSON path, markdown beside it (default benchmarks/results/<backend>.json, "
        "or <backend>-quick.json with --quick)",
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def _env_choices(ids: Sequence[str] | None = None) -> list[str]:
    ids = list(cardiosim_jax.registered_envs if ids is None else ids)
    return ids + [f"cardiosim/{i}" for i in ids]


def main(argv: list[str] | None = None) -> int:
    """Run a command. A user mistake exits with one line on stderr (status 2), no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        # The library raises ValueError, with a one-line message, for values it refuses.
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
