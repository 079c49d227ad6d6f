"""Matplotlib figures of rollouts and learning curves, for notebooks and the CLI.

``plot_trajectory`` draws a recorded episode (:func:`cardiosim_jax.rollout.record_episode`)
as one figure per environment, with the environment's own thresholds as reference
lines; ``plot_rollout`` records and draws a baseline policy in one call;
``plot_learning_curves`` draws training curves. Nothing here selects a backend,
so notebooks keep their inline one (the CLI selects Agg itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.rollout import Policy, Trajectory, record_episodes

#: Episodes this short are drawn with point markers (a one-step line is invisible).
_SHORT_EPISODE = 25
REFERENCE_ALPHA = 0.15


class Episodes:
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


def reference_lines(
    axes: Axes,
    episodes: Episodes,
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


def bands(
    axes: Axes,
    episodes: Episodes,
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
            alpha=REFERENCE_ALPHA if shared else REFERENCE_ALPHA / 2,
            lw=0,
            gid=gid,
            label=label if j == 0 else None,
        )


def legend(axes: Axes, extra: Sequence[Any] = ()) -> None:
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
    accepted = cardiosim_jax.registration.plottable_envs()
    if env_id not in accepted:
        raise ValueError(f"no trajectory plot for {env_id!r}; accepted: {accepted}")
    plotter = cardiosim_jax.registration.spec(env_id).load_plotter()
    episodes = Episodes(env_params, trajectory, max_patients)
    fig, axes = plt.subplots(_PANELS, 1, sharex=True, figsize=(10.0, 8.5), layout="constrained")
    xlabel = plotter(axes, episodes)
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


def updates_with_returns(timesteps: Any, returns: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps, returns)`` at the updates where at least one seed has a return.

    A training curve is NaN for a seed until its first episode finishes (long
    episodes: the first updates of every seed), and statistics over seeds of an
    all-NaN update warn ("Mean of empty slice", "All-NaN slice encountered") and
    mean nothing. Keeping the other updates lets ``np.nanmean``/``nanmin``/
    ``nanmax``/``nanmedian``/``nanpercentile`` over axis 0 run without warnings;
    a curve is drawn from its first reported update on.

    Args:
        timesteps: ``(updates,)`` environment steps at each update.
        returns: ``(seeds, updates)`` or ``(updates,)``.

    Returns ``(kept timesteps, (seeds, kept updates) returns)`` as float64.
    """
    timesteps = np.asarray(timesteps, dtype=np.float64)
    returns = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    if returns.shape[-1] != timesteps.shape[-1]:
        raise ValueError(
            f"returns have {returns.shape[-1]} updates but timesteps {timesteps.shape[-1]}"
        )
    reported = ~np.all(np.isnan(returns), axis=0)
    return timesteps[reported], returns[:, reported]


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
        curves: label -> returns, ``(seeds, updates)`` or ``(updates,)``; NaN
            where a seed has not finished an episode yet. Updates where no seed
            has are left out (:func:`updates_with_returns`).
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
    for label, returns in curves.items():
        steps, returns = updates_with_returns(timesteps, returns)
        (line,) = ax.plot(steps, np.nanmean(returns, axis=0), label=label)
        if returns.shape[0] > 1:
            ax.fill_between(
                steps,
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


def plot_sweep_heatmap(
    rows: Sequence[dict[str, Any]],
    grid: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    metric: str = "mean",
) -> Figure:
    """A sweep's evaluation ``metric`` (``"mean"`` or ``"iqm"``) as a heatmap.

    ``rows`` are :func:`cardiosim_jax.experiments.run_sweep`'s, in the order
    of ``grid`` (leaf -> values, first leaf major). Rows of the heatmap are the
    first leaf's values, columns the second's (one column for a one-leaf
    sweep); with more leaves each cell shows the best over the others (named
    in the title).
    """
    names = list(grid)
    shape = [len(values) for values in grid.values()]
    values = np.array([row[metric] for row in rows], dtype=np.float64).reshape(shape)
    if len(names) == 1:
        values = values[:, None]
    elif len(names) > 2:
        values = values.reshape(shape[0], shape[1], -1).max(axis=-1)
        title = f"{title} (best over {', '.join(names[2:])})".strip()
    y_values = grid[names[0]]
    x_values = grid[names[1]] if len(names) > 1 else None
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(1.6 * n_cols + 2, 1.0 * n_rows + 1.5))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_yticks(range(n_rows), [f"{v:g}" for v in y_values])
    ax.set_ylabel(names[0])
    if x_values is None:
        ax.set_xticks([])
    else:
        ax.set_xticks(range(n_cols), [f"{v:g}" for v in x_values])
        ax.set_xlabel(names[1])
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="w")
    fig.colorbar(image, label=f"evaluation {'IQM' if metric == 'iqm' else metric} return")
    ax.set_title(title)
    fig.tight_layout()
    return fig
