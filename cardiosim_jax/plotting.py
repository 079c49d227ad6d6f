"""Matplotlib figures of rollouts and learning curves, for notebooks and the CLI.

``plot_trajectory`` draws a recorded episode (:func:`cardiosim_jax.rollout.record_episode`)
as one figure per environment, with the environment's own thresholds as reference
lines; ``plot_rollout`` records and draws a baseline policy in one call;
``plot_learning_curves`` draws training curves. Nothing here selects a backend,
so notebooks keep their inline one (the CLI selects Agg itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.envs import antiarrhythmic_dosing as dosing_env
from cardiosim_jax.envs import defibrillation_timing as defib_env
from cardiosim_jax.envs import pacing_control as pacing_env
from cardiosim_jax.models import aliev_panfilov, conduction, pharmacokinetics
from cardiosim_jax.rollout import Policy, Trajectory, record_episodes

#: Seconds per PacingControl step (10 substeps of 1 ms).
PACING_STEP_S = pacing_env.SUBSTEPS * conduction.DT_MS / 1000.0
#: Hours per AntiarrhythmicDosing step (one PK Euler step).
DOSING_STEP_H = pharmacokinetics.DT_HOURS
#: AP model time units per DefibrillationTiming step; its x axis is in steps.
DEFIB_STEP_AP_UNITS = defib_env.SUBSTEPS * aliev_panfilov.DT

#: Episodes this short are drawn with point markers (a one-step line is invisible).
_SHORT_EPISODE = 25
_REFERENCE_ALPHA = 0.15


class _Episodes:
    """A (possibly batched) trajectory as NumPy, with per-patient views of valid steps."""

    def __init__(self, env_params: Any, trajectory: Trajectory, max_patients: int) -> None:
        traj = jax.device_get(trajectory)
        if np.ndim(traj.reward) == 1:  # one episode: give every leaf a batch axis of one
            traj = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], traj)
        self.traj = traj
        self.n_total = int(np.shape(traj.reward)[0])
        self.n = max(1, min(self.n_total, int(max_patients)))
        # valid is a prefix mask: the episode's steps, then padding.
        self.lengths = np.sum(np.asarray(traj.valid), axis=-1).astype(int)
        self.returns = np.sum(np.where(traj.valid, traj.reward, 0.0), axis=-1)

        params = jax.device_get(env_params)
        params_batch = {
            np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(params) if np.ndim(leaf) > 0
        }
        if params_batch and params_batch != {self.n_total}:
            raise ValueError(
                f"env params have a batch axis of {sorted(params_batch)}, but the trajectory "
                f"holds {self.n_total} episode(s)"
            )
        self.params = params

    def patient_params(self, j: int) -> Any:
        """Env params of patient ``j`` (every leaf a scalar)."""
        return jax.tree_util.tree_map(
            lambda x: np.asarray(x)[j] if np.ndim(x) > 0 else np.asarray(x), self.params
        )

    def series(self, get: Callable[[Trajectory], Any], j: int) -> np.ndarray:
        """``get(trajectory)`` of patient ``j`` over its valid steps, as float64."""
        return np.asarray(get(self.traj), dtype=np.float64)[j, : self.lengths[j]]

    def after_steps(self, j: int, dt: float, initial: float, get: Callable) -> tuple:
        """``(times, values)`` of a quantity from reset (``initial``) to the last step.

        ``get`` reads the value after each step; there are ``length + 1`` points.
        """
        times = np.arange(self.lengths[j] + 1) * dt
        return times, np.concatenate([[initial], self.series(get, j)])

    def per_step(self, j: int, dt: float, get: Callable) -> tuple:
        """``(times, values)`` of a per-step action, held over each step (draw steps-post).

        The last value is repeated at the episode's end so the last step is drawn
        too; there are ``length + 1`` points.
        """
        values = self.series(get, j)
        times = np.arange(self.lengths[j] + 1) * dt
        return times, np.concatenate([values, values[-1:]])

    def style(self, j: int) -> dict[str, Any]:
        """Line style of patient ``j``: its own colour; thin when several are drawn."""
        style: dict[str, Any] = {"color": self.color(j), "lw": 1.3 if self.n == 1 else 0.8}
        if self.lengths[j] <= _SHORT_EPISODE:
            style.update(marker="o", ms=3)  # a one-step line would be invisible
        return style

    def color(self, j: int) -> str:
        return f"C{j % 10}"

    def label(self, what: str, j: int) -> str | None:
        """Legend label of a data line: only with one patient (else patients are listed)."""
        return what if self.n == 1 else None


def _reference_lines(
    axes: Axes,
    episodes: _Episodes,
    values: Sequence[float],
    *,
    gid: str,
    label: str,
    color: str,
    linestyle: str = "--",
) -> None:
    """A horizontal line at ``values[j]``: one shared line, or one per patient where they differ."""
    if len(set(float(v) for v in values)) == 1:
        axes.axhline(float(values[0]), color=color, ls=linestyle, lw=1.0, gid=gid, label=label)
        return
    for j, value in enumerate(values):
        axes.axhline(
            float(value),
            color=episodes.color(j),
            ls=linestyle,
            lw=1.0,
            gid=gid,
            label=f"{label} (per patient)" if j == 0 else None,
        )


def _bands(
    axes: Axes,
    episodes: _Episodes,
    values: Sequence[tuple[float, float]],
    *,
    gid: str,
    label: str,
    color: str,
) -> None:
    """A shaded band between ``values[j]``: one shared band, or one per patient."""
    shared = len(set((float(lo), float(hi)) for lo, hi in values)) == 1
    for j, (lo, hi) in enumerate(values[:1] if shared else values):
        axes.axhspan(
            float(lo),
            float(hi),
            color=color if shared else episodes.color(j),
            alpha=_REFERENCE_ALPHA if shared else _REFERENCE_ALPHA / 2,
            lw=0,
            gid=gid,
            label=label if j == 0 else None,
        )


def _legend(axes: Axes, extra: Sequence[Any] = ()) -> None:
    """Legend outside the panel, on its right, so it never hides data."""
    handles, _ = axes.get_legend_handles_labels()
    handles = [*handles, *extra]
    if handles:
        axes.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            frameon=False,
        )


# --------------------------------------------------------------------------- per environment


def _plot_pacing(axes: Sequence[Axes], episodes: _Episodes) -> str:
    ax_v, ax_hr, ax_pace, ax_reward = axes
    dt = PACING_STEP_S
    tolerance = pacing_env.STABLE_HR_ERROR_BPM
    targets = [float(episodes.patient_params(j).target_heart_rate_bpm) for j in range(episodes.n)]
    _bands(
        ax_hr,
        episodes,
        [(t - tolerance, t + tolerance) for t in targets],
        gid="target_band",
        label=f"target ± {tolerance:g} bpm",
        color="tab:green",
    )
    _reference_lines(ax_hr, episodes, targets, gid="target", label="target", color="tab:green")
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
    _legend(ax_hr)
    _legend(ax_pace)
    return "time (s)"


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last + 1)`` index pairs of the runs of True in ``active``."""
    padded = np.concatenate([[0], active.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _plot_dosing(axes: Sequence[Axes], episodes: _Episodes) -> str:
    ax_v, ax_c, ax_dose, ax_effect = axes
    dt = DOSING_STEP_H
    pk = [episodes.patient_params(j).pk for j in range(episodes.n)]
    _bands(
        ax_c,
        episodes,
        [(float(p.therapeutic_min), float(p.therapeutic_max)) for p in pk],
        gid="therapeutic_window",
        label="therapeutic window",
        color="tab:green",
    )
    for gid, label, color, linestyle in (
        ("therapeutic_min", "therapeutic min", "tab:green", ":"),
        ("therapeutic_max", "therapeutic max", "tab:green", "--"),
        ("toxic_threshold", "toxic threshold", "tab:red", "--"),
    ):
        values = [float(getattr(p, gid)) for p in pk]
        _reference_lines(
            ax_c, episodes, values, gid=gid, label=label, color=color, linestyle=linestyle
        )
    arrhythmic = False
    for j in range(episodes.n):
        style = episodes.style(j)
        obs0 = episodes.traj.observation[j, 0]
        ax_v.plot(*episodes.after_steps(j, dt, obs0[0], lambda t: t.state.cell.v), **style)
        ax_c.plot(
            *episodes.after_steps(j, dt, obs0[2], lambda t: t.info["concentration"]),
            label=episodes.label("plasma concentration", j),
            **style,
        )
        times, dose = episodes.per_step(j, dt, lambda t: t.action[..., 0])
        dose = np.clip(dose, 0.0, dosing_env.MAX_DOSE_MG)  # as the env clips it
        ax_dose.plot(times, dose, drawstyle="steps-post", **style)
        ax_effect.plot(
            *episodes.after_steps(j, dt, obs0[4], lambda t: t.info["efficacy"]),
            label=episodes.label("efficacy", j),
            **style,
        )
        # Arrhythmic steps shaded; with several patients each gets a strip, patient 0 on top.
        active = episodes.series(lambda t: t.info["arrhythmia_active"], j) > 0.5
        for first, last in _runs(active):
            arrhythmic = True
            ax_effect.axvspan(
                first * dt,
                last * dt,
                ymin=1.0 - (j + 1) / episodes.n,
                ymax=1.0 - j / episodes.n,
                color=style["color"] if episodes.n > 1 else "tab:red",
                alpha=0.25,
                lw=0,
                gid="arrhythmia",
            )
    ax_effect.set_ylim(0.0, 1.0)
    ax_v.set_ylabel("membrane v\n(FHN, dimensionless)")
    ax_c.set_ylabel("plasma conc.\n(mg/L)")
    ax_dose.set_ylabel("dose\n(mg per step)")
    ax_effect.set_ylabel("efficacy (0–1)")
    _legend(ax_c)
    strips = "arrhythmic" if episodes.n == 1 else "arrhythmic\n(a strip per patient,\n0 on top)"
    shading = Patch(color="tab:red" if episodes.n == 1 else "0.6", alpha=0.25, label=strips)
    _legend(ax_effect, [shading] if arrhythmic else [])
    return "time (h)"


def _plot_defibrillation(axes: Sequence[Axes], episodes: _Episodes) -> str:
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
    _legend(ax_shock, proxies)
    return f"time (environment steps of {DEFIB_STEP_AP_UNITS:g} AP time units)"


_PLOTTERS: dict[str, Callable[[Sequence[Axes], _Episodes], str]] = {
    pacing_env.PacingControl.env_id: _plot_pacing,
    dosing_env.AntiarrhythmicDosing.env_id: _plot_dosing,
    defib_env.DefibrillationTiming.env_id: _plot_defibrillation,
}
_PANELS = 4


def plot_trajectory(
    env: Any,
    env_params: Any,
    trajectory: Trajectory,
    *,
    max_patients: int = 8,
    title: str | None = None,
) -> Figure:
    """Draw a recorded episode (or a batch of them) as one figure of stacked panels.

    Args:
        env: the environment that produced ``trajectory``.
        env_params: its params; a population (leading batch axis) gives each
            patient's own reference lines (target rate, therapeutic window).
        trajectory: from :func:`~cardiosim_jax.rollout.record_episode` (one
            episode) or :func:`~cardiosim_jax.rollout.record_episodes` (leading
            batch axis); only valid steps are drawn.
        max_patients: draw at most this many episodes of a batch, one thin line
            each.
        title: figure title; default: the env id and the episode return(s).

    Panels (top to bottom; state and info after each step, actions at the
    step's start):
        PacingControl: FHN v; heart rate (bpm) with the target and its
        ``STABLE_HR_ERROR_BPM`` band; pulse amplitude with the pacing threshold
        and a rug where pulses fired; reward per step. Time in s (10 ms steps).
        AntiarrhythmicDosing: FHN v; plasma concentration (mg/L) with the
        therapeutic window and the toxic threshold; dose (mg per step);
        efficacy with arrhythmic spans shaded. Time in h (0.1 h steps).
        DefibrillationTiming: AP potential u; fibrillation index; shocks (stems
        at their energy, J) and cumulative energy (J); return so far. Time in
        environment steps.
    """
    env_id = getattr(env, "env_id", type(env).__name__)
    if env_id not in _PLOTTERS:
        raise ValueError(f"no trajectory plot for {env_id!r}; accepted: {list(_PLOTTERS)}")
    episodes = _Episodes(env_params, trajectory, max_patients)
    fig, axes = plt.subplots(_PANELS, 1, sharex=True, figsize=(10.0, 8.5), layout="constrained")
    xlabel = _PLOTTERS[env_id](axes, episodes)
    axes[-1].set_xlabel(xlabel)
    for ax in axes:
        ax.grid(alpha=0.3)
    if episodes.n > 1:
        handles = [
            Line2D([], [], color=f"C{j % 10}", lw=1.5, label=f"patient {j}")
            for j in range(episodes.n)
        ]
        axes[0].legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            frameon=False,
        )
    if title is None:
        drawn = episodes.returns[: episodes.n]
        if episodes.n == 1:
            detail = f"return {drawn[0]:.1f} over {episodes.lengths[0]} steps"
        else:
            shown = f"{episodes.n} of {episodes.n_total}" if episodes.n_total > episodes.n else ""
            detail = (
                f"{shown or episodes.n} patients, return {drawn.mean():.1f} ± {drawn.std():.1f}"
            )
        title = f"{env_id}: {detail}"
    fig.suptitle(title)
    return fig


def plot_rollout(
    env_id: str,
    difficulty: str = "medium",
    policy: str | tuple[Policy, Any] = "heuristic",
    *,
    seed: int = 0,
    n_patients: int = 1,
    title: str | None = None,
    policy_label: str | None = None,
    **overrides: Any,
) -> Figure:
    """Make ``env_id``, record ``n_patients`` episodes of ``policy`` and plot them.

    ``policy`` is a baseline name accepted by :func:`cardiosim_jax.agents.baseline_policy`
    (``"random"``, ``"heuristic"``) or a ``(policy, policy_params)`` pair (e.g.
    ``(ppo.ppo_policy, params)``). ``overrides`` go to :func:`cardiosim_jax.make`;
    array values describe a population, one patient each (``n_patients`` then
    defaults to the population size). Episodes use ``jax.random.PRNGKey(seed)``
    as :func:`~cardiosim_jax.rollout.run_episodes` would. The default title
    names the env, tier, policy (``policy_label``, default its name) and returns.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    env, env_params = cardiosim_jax.make(env_id, difficulty, **overrides)
    leaves = jax.tree_util.tree_leaves(env_params)
    population = {np.shape(leaf)[0] for leaf in leaves if np.ndim(leaf) > 0}
    if population:
        (size,) = population
        if n_patients not in (1, size):
            raise ValueError(f"n_patients={n_patients} but the overrides describe {size} patients")
        n_patients = size
    if isinstance(policy, str):
        policy_fn, policy_params = agents.baseline_policy(policy, env, env_params)
    else:
        policy_fn, policy_params = policy
    max_steps = int(np.max(np.asarray(env_params.max_steps_in_episode)))
    trajectory = record_episodes(
        env, env_params, policy_fn, policy_params, jax.random.PRNGKey(seed), n_patients, max_steps
    )
    if title is None:
        if policy_label is None:
            name = policy if isinstance(policy, str) else getattr(policy_fn, "__name__", "custom")
            policy_label = f"{name} policy"
        returns = np.asarray(trajectory.episode_return)
        summary = (
            f"return {returns[0]:.1f} over {int(trajectory.length[0])} steps"
            if n_patients == 1
            else f"{n_patients} patients, return {returns.mean():.1f} ± {returns.std():.1f}"
        )
        title = f"{env.env_id} ({difficulty}), {policy_label}: {summary}"
    return plot_trajectory(env, env_params, trajectory, max_patients=n_patients, title=title)


# --------------------------------------------------------------------------- training


def plot_learning_curves(
    curves: dict[str, np.ndarray],
    timesteps: np.ndarray,
    *,
    title: str = "",
    ax: Axes | None = None,
    reference_lines: dict[str, float] | None = None,
) -> Figure:
    """Training return against environment steps: mean over seeds and its min–max band.

    Args:
        curves: label -> returns, ``(seeds, updates)`` or ``(updates,)``.
        timesteps: ``(updates,)`` environment steps at each update.
        title: axes title.
        ax: draw into these axes (default: a new figure).
        reference_lines: label -> return, drawn as dashed horizontal lines
            (e.g. the heuristic's and random policy's evaluation means).

    Returns the figure holding ``ax``.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    timesteps = np.asarray(timesteps, dtype=np.float64)
    for label, returns in curves.items():
        returns = np.atleast_2d(np.asarray(returns, dtype=np.float64))  # (seeds, updates)
        (line,) = ax.plot(timesteps, np.nanmean(returns, axis=0), label=label)
        if returns.shape[0] > 1:
            ax.fill_between(
                timesteps,
                np.nanmin(returns, axis=0),
                np.nanmax(returns, axis=0),
                color=line.get_color(),
                alpha=0.2,
            )
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for k, (label, value) in enumerate((reference_lines or {}).items()):
        ax.axhline(
            value,
            color="0.35",
            ls=styles[k % len(styles)],
            lw=1.2,
            label=f"{label} ({value:g})",
            gid="reference",
        )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
