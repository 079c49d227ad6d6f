"""Validate the ``large`` PPO preset: does it reach the ``tuned`` preset's returns?

For every v0 and v1 environment on its preset tier, ``tuned`` (64 envs x 128
steps) and ``large`` (``--num-envs`` envs x 32 steps, as many updates as
``tuned``) each train ``--seeds`` seeds in one compiled call (seed keys
``split(PRNGKey(0), seeds)`` for both) and are evaluated on the same episodes
(``--episodes`` per seed, deterministic policy). Timing: compilation apart
from the training call. Writes ``baselines/results/large.{json,md}`` (and
``large_learning_curves.png``); an interrupted run continues where it stopped
(environments already in ``large.json`` with the same settings are kept;
``--rerun`` retrains the ``--envs`` given). Each cell records its config and
the machine (CPU model and SIMD set, commit) it ran on.

    python baselines/large.py [--seeds 4] [--episodes 200] [--num-envs 1024] [--envs ID ...]
                              [--rerun] [--out baselines/results/large.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np
from scipy import stats

import cardiosim_jax
from cardiosim_jax.experiments import evaluate_trained
from cardiosim_jax.registration import v0_envs, v1_envs
from cardiosim_jax.training import ppo
from cardiosim_tools.benchmarking import machine_info

RESULTS = Path(__file__).parent / "results"
MACHINE = machine_info()
PRESETS = ("tuned", "large")


def train_timed(config: ppo.PPOConfig, n_seeds: int) -> tuple[ppo.TrainOutput, float, float]:
    """Train ``n_seeds`` seeds vmapped; returns the output, compile and run seconds."""
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(ppo.make_train(config))).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    return out, compile_seconds, time.perf_counter() - start


def run_cell(config: ppo.PPOConfig, n_seeds: int, episodes: int) -> tuple[dict, list, list]:
    out, compile_seconds, seconds = train_timed(config, n_seeds)
    cell = evaluate_trained(out, config, n_seeds, episodes, 0)
    steps = config.num_updates * config.batch_size
    cell.update(
        num_envs=config.num_envs,
        num_steps=config.num_steps,
        minibatch_size=config.minibatch_size,
        num_updates=config.num_updates,
        env_steps_per_seed=steps,
        compile_seconds=compile_seconds,
        train_seconds=seconds,
        steps_per_second=n_seeds * steps / seconds,
        # Long trainings differ between CPUs (XLA compiles for the host's SIMD set).
        machine={k: MACHINE[k] for k in ("cpu_model", "cpu_simd", "git_commit", "git_dirty")},
    )
    # Mean over the seeds that have finished an episode (NaN before any has).
    returns = np.asarray(out.metrics["episode_return"], np.float64)
    finished = np.isfinite(returns)
    total = np.where(finished, returns, 0.0).sum(axis=0)
    curve = np.where(finished.any(axis=0), total / np.maximum(finished.sum(axis=0), 1), np.nan)
    timesteps = np.asarray(out.metrics["timesteps"])[0]
    return cell, timesteps.tolist(), curve.tolist()


def verdict(tuned: dict, large: dict) -> dict:
    """``large`` reaches ``tuned`` unless it is clearly below it: its mean under the lower
    end of tuned's CI *and* a Welch test over seeds at p < 0.05."""
    welch = stats.ttest_ind(large["seed_means"], tuned["seed_means"], equal_var=False)
    p = float(welch.pvalue)
    below = large["mean"] < tuned["ci95"][0] and p < 0.05
    return {
        "difference": large["mean"] - tuned["mean"],
        "relative_difference": (large["mean"] - tuned["mean"]) / abs(tuned["mean"]),
        "welch_p": p,
        "reaches": not below,
    }


def render(data: dict) -> str:
    """The markdown table of ``data`` (each env row holding its :func:`verdict`)."""
    s = data["settings"]
    own = [
        f"{env_id} {settings}"
        for env_id in data["envs"]
        if (settings := cardiosim_jax.registration.spec(env_id).ppo_large)
    ]
    lines = [
        f"The `large` preset against `tuned`: {s['seeds']} seeds each (same seed keys), "
        f"{s['episodes']} evaluation episodes per seed on the same episodes, deterministic "
        f"policy; `large` at {s['num_envs']:,} envs x 32 steps, with tuned's settings "
        f"except the env's registered large ones ({'; '.join(own) or 'none'}). "
        f"Machine: {s['machine']} "
        f"({s['backend']}), jax {s['jax']}. Cells: mean [95% bootstrap CI over seeds]. "
        "'Reaches' = large is not clearly below tuned (clearly: its mean under the lower end "
        "of tuned's CI and Welch p < 0.05 over seeds). Steps/s: env steps "
        "of all seeds over the training call, compilation excluded (timed apart).",
        "",
        "| env | tier | tuned | large | large - tuned (%; Welch p) | reaches | env steps per seed "
        "(tuned / large) | train s (tuned / large) | steps/s (tuned / large) | compile s |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for env_id, row in data["envs"].items():
        t, g = row["tuned"], row["large"]
        v = row["verdict"]
        lines.append(
            f"| {env_id} | {row['difficulty']} | {t['mean']:,.1f} [{t['ci95'][0]:,.1f}, "
            f"{t['ci95'][1]:,.1f}] | {g['mean']:,.1f} [{g['ci95'][0]:,.1f}, {g['ci95'][1]:,.1f}] "
            f"| {v['difference']:+,.1f} ({100 * v['relative_difference']:+.1f} %; "
            f"p {v['welch_p']:.2f}) | {'yes' if v['reaches'] else 'no'} "
            f"| {t['env_steps_per_seed']:,} / {g['env_steps_per_seed']:,} "
            f"| {t['train_seconds']:.0f} / {g['train_seconds']:.0f} "
            f"| {t['steps_per_second']:,.0f} / {g['steps_per_second']:,.0f} "
            f"| {t['compile_seconds']:.0f} / {g['compile_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(data["envs"])
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), squeeze=False)
    for ax, env_id in zip(axes.ravel(), envs, strict=False):
        for name in PRESETS:
            row = data["envs"][env_id][name]
            ax.plot(row["curve_timesteps"], row["curve"], label=name)
        if env_id.startswith("PacingControl-v0"):
            ax.set_yscale("symlog")
        ax.set_title(env_id, fontsize="small")
        ax.set_xlabel("environment steps per seed")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("training episode return (mean of seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--num-envs", type=int, default=ppo.LARGE_NUM_ENVS)
    parser.add_argument("--envs", nargs="*", default=list(v0_envs + v1_envs))
    parser.add_argument("--out", default=str(RESULTS / "large.json"))
    parser.add_argument(
        "--rerun", action="store_true", help="retrain --envs even where --out holds them"
    )
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    settings = {
        "seeds": args.seeds,
        "episodes": args.episodes,
        "num_envs": args.num_envs,
        "backend": jax.default_backend(),
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}",
        "jax": jax.__version__,
    }
    data = {"settings": settings, "envs": {}}
    if out.exists():
        earlier = json.loads(out.read_text())
        same = all(earlier["settings"][k] == settings[k] for k in ("seeds", "episodes", "num_envs"))
        if same or args.render_only:
            data = earlier
    if not args.render_only:
        for env_id in args.envs:
            if env_id in data["envs"] and not args.rerun:
                print(f"{env_id}: kept from {out}", flush=True)
                continue
            row: dict = {}
            for name in PRESETS:
                overrides = {"num_envs": args.num_envs} if name == "large" else {}
                config = ppo.preset(name, env_id, **overrides)
                cell, timesteps, curve = run_cell(config, args.seeds, args.episodes)
                row[name] = {
                    **cell,
                    "config": config.to_dict(),
                    "curve_timesteps": timesteps,
                    "curve": curve,
                }
                row["difficulty"] = config.difficulty
                print(
                    f"{env_id} {name}: {cell['mean']:.1f} {cell['ci95']} "
                    f"({cell['train_seconds']:.0f} s + {cell['compile_seconds']:.0f} s compile, "
                    f"{cell['steps_per_second']:,.0f} steps/s)",
                    flush=True,
                )
            data["envs"][env_id] = row
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".json.tmp")  # a save never destroys the earlier results
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(out)
    for row in data["envs"].values():
        row["verdict"] = verdict(row["tuned"], row["large"])
    table = render(data)
    out.write_text(json.dumps(data, indent=1))
    out.with_suffix(".md").write_text(table)
    plot(data, out.with_name(out.stem + "_learning_curves.png"))
    print(table)


if __name__ == "__main__":
    main()
