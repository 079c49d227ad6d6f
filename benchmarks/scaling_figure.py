"""Scaling figure: environment steps/s against patients, CPU and GPU side by side (log-log).

python benchmarks/scaling_figure.py [--cpu benchmarks/results/cpu.json]
    [--gpu benchmarks/results/gpu-h200-2026-11-28.json] [--out benchmarks/results/scaling.png]

Reads the JSON that ``cardiosim-jax bench`` writes (any schema version; the
GPU file is the H200 measurement of 2026-11-28 in the same layout) and draws,
per machine, each environment's steps/s with gymnax auto-reset (solid), its
bare RK4 floor (dashed, where it has one) and the single-env NumPy reference
(dotted, v0 only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CPU = RESULTS / "cpu.json"
DEFAULT_GPU = RESULTS / "gpu-h200-2026-11-28.json"
DEFAULT_OUT = RESULTS / "scaling.png"

#: One colour per environment family; v1 is drawn with hollow markers.
COLOURS = {
    "PacingControl": "tab:blue",
    "AntiarrhythmicDosing": "tab:orange",
    "DefibrillationTiming": "tab:green",
}


def load(path: str | Path) -> dict[str, Any]:
    """A benchmark results JSON."""
    return json.loads(Path(path).read_text())


def series(results: dict[str, Any], env_id: str) -> dict[str, list[tuple[int, float]]]:
    """``(patients, steps/s)`` points of one env: ``env`` (auto-reset) and ``floor``."""
    rows = results["envs"][env_id]["throughput"]
    env = [(row["batch"], row["steps_per_second"]) for row in rows]
    floor = [(row["batch"], row["floor"]["steps_per_second"]) for row in rows if row.get("floor")]
    return {"env": sorted(env), "floor": sorted(floor)}


def _title(results: dict[str, Any], label: str) -> str:
    m = results["machine"]
    device = m["device_kind"] if m["backend"] == "gpu" else f"{m['cpu_model']}"
    cores = "" if m["backend"] == "gpu" else f", {m['cpu_cores_usable']} cores"
    date = results.get("date") or m.get("date", "")[:10]
    commit = f", {m['git_commit']}" if m.get("git_commit") else ""
    # A busy machine slows everything: its load average is part of the figure.
    load = (
        f", load {m['load_average_start'][0]:.1f}-{m['load_average_end'][0]:.1f}"
        if m.get("load_average_start") and m.get("load_average_end")
        else ""
    )
    return f"{label}: {device}{cores}\n(measured {date}{commit}, jax {m['jax']}{load})"


def draw(results: dict[str, Any], ax: Any, label: str) -> None:
    """One machine's panel on ``ax``."""
    for env_id, r in results["envs"].items():
        family, _, version = env_id.rpartition("-")
        colour = COLOURS.get(family, "tab:gray")
        hollow = version != "v0"
        points = series(results, env_id)
        if points["env"]:
            xs, ys = zip(*points["env"], strict=True)
            ax.plot(
                xs,
                ys,
                "-.o" if hollow else "-o",
                color=colour,
                markerfacecolor="white" if hollow else colour,
                label=f"{env_id}",
                linewidth=1.6,
                markersize=4.5,
            )
        if points["floor"]:
            xs, ys = zip(*points["floor"], strict=True)
            ax.plot(
                xs,
                ys,
                "--s" if not hollow else ":s",
                color=colour,
                markerfacecolor="white",
                label=f"{env_id} RK4 floor",
                linewidth=1.0,
                markersize=3.5,
            )
        reference = r.get("reference")
        if reference:
            ax.axhline(reference["steps_per_second"], color=colour, linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("patients stepped together (B)")
    ax.grid(True, which="major", linewidth=0.4, alpha=0.6)
    ax.set_title(_title(results, label), fontsize=9)
    missing = [e for e in ("v0", "v1") if not any(k.endswith(e) for k in results["envs"])]
    if missing:
        ax.text(
            0.98,
            0.02,
            f"{' and '.join(missing)} not measured here",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7.5,
            color="0.35",
        )


def make_figure(
    cpu: str | Path = DEFAULT_CPU, gpu: str | Path = DEFAULT_GPU, out: str | Path = DEFAULT_OUT
) -> str:
    """Draw both panels from the two JSON files and write a PNG (returns its path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(load(cpu), "CPU"), (load(gpu), "GPU")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, (results, label) in zip(axes, panels, strict=True):
        draw(results, ax, label)
    axes[0].set_ylabel("environment steps per second")
    # One legend for both panels: the CPU panel holds every env.
    handles, labels = axes[0].get_legend_handles_labels()
    seen = set(labels)
    for h, lab in zip(*axes[1].get_legend_handles_labels(), strict=True):
        if lab not in seen:
            handles.append(h)
            labels.append(lab)
            seen.add(lab)
    fig.legend(handles, labels, loc="center right", fontsize=7.5, frameon=False)
    fig.text(
        0.005,
        0.01,
        "filled markers, solid: v0 env (gymnax auto-reset, random actions, medium tier); hollow, "
        "dash-dot: v1 env;\nsquares, dashed (v1: dotted): bare RK4 of the cell model, same "
        "substeps; horizontal dotted: cardiosim 0.1.0, one env (NumPy, same machine)",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.06, 0.78, 1))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", default=str(DEFAULT_CPU), help="CPU results JSON")
    parser.add_argument("--gpu", default=str(DEFAULT_GPU), help="GPU results JSON")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="PNG to write")
    args = parser.parse_args(argv)
    for path in (args.cpu, args.gpu):
        if not Path(path).is_file():
            parser.exit(2, f"{parser.prog}: error: no such file: {path}\n")
    print(make_figure(args.cpu, args.gpu, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
