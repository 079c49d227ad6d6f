"""PacingControl-v0 trajectory panels: heart rate, pacing, membrane potential, reward."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from cardiosim_jax.envs.pacing_control import v0 as pacing_env
from cardiosim_jax.models import conduction
from cardiosim_jax.plotting import Episodes, bands, legend, reference_lines

#: Seconds per PacingControl step (10 substeps of 1 ms).
PACING_STEP_S = pacing_env.SUBSTEPS * conduction.DT_MS / 1000.0


def plot_v0(axes: Sequence[Axes], episodes: Episodes) -> str:
    ax_v, ax_hr, ax_pace, ax_reward = axes
    dt = PACING_STEP_S
    tolerance = pacing_env.STABLE_HR_ERROR_BPM
    targets = [float(episodes.patient_params(j).target_heart_rate_bpm) for j in range(episodes.n)]
    bands(
        ax_hr,
        episodes,
        [(t - tolerance, t + tolerance) for t in targets],
        gid="target_band",
        label=f"target ± {tolerance:g} bpm",
        color="tab:green",
    )
    reference_lines(ax_hr, episodes, targets, gid="target", label="target", color="tab:green")
    ax_pace.axhline(
        pacing_env.PACING_THRESHOLD,
        color="0.4",
        ls=":",
        lw=1.0,
        gid="pacing_threshold",
        label=f"pulse threshold ({pacing_env.PACING_THRESHOLD:g})",
    )
    for j in range(episodes.n):
        style = episodes.style(j)
        obs0 = episodes.traj.observation[j, 0]
        ax_v.plot(*episodes.after_steps(j, dt, obs0[0], lambda t: t.state.cell.v), **style)
        ax_hr.plot(
            *episodes.after_steps(j, dt, obs0[2], lambda t: t.info["heart_rate"]),
            label=episodes.label("heart rate", j),
            **style,
        )
        times, amplitude = episodes.per_step(j, dt, lambda t: t.action[..., 1])
        amplitude = np.clip(amplitude, 0.0, 1.0)  # as the env clips it
        ax_pace.plot(
            times,
            amplitude,
            drawstyle="steps-post",
            label=episodes.label("pulse amplitude", j),
            **style,
        )
        # A rug above the 0..1 amplitude range, one row per patient: steps that paced.
        delivered = amplitude[:-1] > pacing_env.PACING_THRESHOLD
        ax_pace.plot(
            times[:-1][delivered],
            np.full(int(delivered.sum()), 1.12 + 0.08 * j),
            ls="none",
            marker="|",
            ms=5,
            color=style["color"],
            gid="pulses",
            label="pulse delivered" if j == 0 else None,
        )
        ax_reward.plot(
            np.arange(1, episodes.lengths[j] + 1) * dt,
            episodes.series(lambda t: t.reward, j),
            **style,
        )
    ax_pace.set_ylim(-0.05, 1.2 + 0.08 * episodes.n)
    ax_v.set_ylabel("membrane v\n(FHN, dimensionless)")
    ax_hr.set_ylabel("heart rate (bpm)")
    ax_pace.set_ylabel("pulse amplitude\n(0–1)")
    ax_reward.set_ylabel("reward per step")
    legend(ax_hr)
    legend(ax_pace)
    return "time (s)"
