"""DefibrillationTiming-v0 trajectory panels: shocks, fibrillation, membrane potential, return."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from cardiosim_jax.envs.defibrillation_timing import v0 as defib_env
from cardiosim_jax.models import aliev_panfilov
from cardiosim_jax.plotting import Episodes, legend

#: AP model time units per DefibrillationTiming step; its x axis is in steps.
DEFIB_STEP_AP_UNITS = defib_env.SUBSTEPS * aliev_panfilov.DT


def plot_v0(axes: Sequence[Axes], episodes: Episodes) -> str:
    ax_u, ax_fib, ax_shock, ax_return = axes
    # Several patients' stems would hide each other on the same step: spread them.
    dodge = 0.5 / episodes.n
    for j in range(episodes.n):
        style = episodes.style(j)
        obs0 = episodes.traj.observation[j, 0]
        ax_u.plot(*episodes.after_steps(j, 1.0, obs0[0], lambda t: t.state.cell.u), **style)
        ax_fib.plot(
            np.arange(episodes.lengths[j]),
            episodes.series(lambda t: t.observation[..., 2], j),
            **style,
        )
        action = episodes.series(lambda t: t.action, j)
        shocked = action[:, 0] > defib_env.SHOCK_THRESHOLD
        energy = np.clip(action[:, 1], 0.0, defib_env.MAX_ENERGY_J)  # as the env clips it
        offset = 0.0 if episodes.n == 1 else (j - (episodes.n - 1) / 2) * dodge
        if shocked.any():
            stems = ax_shock.stem(
                np.flatnonzero(shocked) + offset,
                energy[shocked],
                linefmt="-",
                markerfmt="o",
                basefmt=" ",
                label=episodes.label("shock (at its energy)", j),
            )
            stems.markerline.set(color=style["color"], ms=4, gid="shocks")
            stems.stemlines.set(color=style["color"], lw=style["lw"], gid="shocks")
            stems.baseline.remove()  # an invisible line; keep ax.lines to the drawn data
        # Cumulative energy after each step, "steps-post" from reset: it jumps by each
        # shock's energy at the shocking step's start.
        total = episodes.series(lambda t: t.info["total_energy"], j)
        ax_shock.plot(
            np.arange(episodes.lengths[j] + 1),
            np.concatenate([total, total[-1:]]),
            drawstyle="steps-post",
            ls="--",
            color=style["color"],
            lw=style["lw"],
            gid="cumulative_energy",
            label=episodes.label("cumulative energy", j),
        )
        returns = np.cumsum(episodes.series(lambda t: t.reward, j))
        ax_return.plot(
            np.arange(episodes.lengths[j] + 1), np.concatenate([[0.0], returns]), **style
        )
    ax_fib.set_ylim(-0.05, 1.05)
    ax_u.set_ylabel("potential u\n(AP, normalised)")
    ax_fib.set_ylabel("fibrillation\nindex (0–1)")
    ax_shock.set_ylabel("energy (J)")
    ax_return.set_ylabel("return so far")
    proxies = []
    if episodes.n > 1:
        proxies = [
            Line2D([], [], color="0.4", marker="o", ms=4, label="shock (at its energy)"),
            Line2D([], [], color="0.4", ls="--", label="cumulative energy"),
        ]
    legend(ax_shock, proxies)
    return f"time (environment steps of {DEFIB_STEP_AP_UNITS:g} AP time units)"
