"""Trajectory panels of VasopressorTitration-v0: MAP, infusion rate, reward, return."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from cardiosim_jax.plotting import Episodes, bands, legend

from .env import MAP_TARGET_HIGH, MAP_TARGET_LOW, STEP_MIN


def plot_v0(axes: Sequence[Axes], episodes: Episodes) -> str:
    """Draw the four panels; returns the x-axis label."""
    ax_map, ax_rate, ax_reward, ax_return = axes
    bands(
        ax_map,
        episodes,
        [(MAP_TARGET_LOW, MAP_TARGET_HIGH)] * episodes.n,
        gid="target",
        label="MAP target",
        color="tab:green",
    )
    for j in range(episodes.n):
        style = episodes.style(j)
        times = np.arange(1, episodes.lengths[j] + 1) * STEP_MIN
        ax_map.plot(times, episodes.series(lambda t: t.info["map_mmhg"], j), **style)
        ax_rate.plot(times, episodes.series(lambda t: t.info["infusion_rate"], j), **style)
        reward = episodes.series(lambda t: t.reward, j)
        ax_reward.plot(times, reward, **style)
        ax_return.plot(times, np.cumsum(reward), **style)
    ax_map.set_ylabel("MAP (mmHg)")
    ax_rate.set_ylabel("norepinephrine\n(ug/kg/min)")
    ax_reward.set_ylabel("reward")
    ax_return.set_ylabel("return")
    legend(ax_map)
    return "time (min)"
