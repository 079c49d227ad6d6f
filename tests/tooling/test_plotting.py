"""``cardiosim_jax.plotting``: trajectory figures per environment and learning curves.

Figures are read back through their artists: reference lines by ``gid``, data
lines (no ``gid``) by their x/y data, so each check names what it draws.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # before pyplot: tests draw off-screen

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import load_baseline_script  # noqa: E402

import cardiosim_jax  # noqa: E402
from cardiosim_jax import agents, plotting  # noqa: E402
from cardiosim_jax.envs.antiarrhythmic_dosing import v0 as dosing_env  # noqa: E402
from cardiosim_jax.envs.defibrillation_timing import v0 as defib_env  # noqa: E402
from cardiosim_jax.envs.pacing_control import v0 as pacing_env  # noqa: E402
from cardiosim_jax.rollout import record_episodes  # noqa: E402

N = 3
#: PacingControl episodes of 60 steps recorded over 80: 20 padded steps per episode.
PACING_STEPS, PACING_RECORDED = 60, 80
THERAPEUTIC_MAX = np.array([4.0, 5.0, 6.0])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def record(env_id, difficulty, policy_name, max_steps=None, seed=0, **overrides):
    env, params = cardiosim_jax.make(env_id, difficulty, **overrides)
    policy, policy_params = agents.baseline_policy(policy_name, env, params)
    steps = max_steps or int(np.max(params.max_steps_in_episode))
    traj = record_episodes(env, params, policy, policy_params, jax.random.PRNGKey(seed), N, steps)
    return env, params, jax.device_get(traj)


def first(tree):
    """Episode 0 of a batched pytree."""
    return jax.tree_util.tree_map(lambda x: x[0], tree)


@pytest.fixture(scope="module")
def pacing():
    return record(
        "PacingControl-v0",
        "medium",
        "heuristic",
        max_steps=PACING_RECORDED,
        max_steps_in_episode=PACING_STEPS,
    )


@pytest.fixture(scope="module")
def dosing():
    """Random dosing (episodes end early, overdosed) on a population of three windows."""
    return record("AntiarrhythmicDosing-v0", "medium", "random", therapeutic_max=THERAPEUTIC_MAX)


@pytest.fixture(scope="module")
def defib():
    return record("DefibrillationTiming-v0", "medium", "random", seed=1)


def data_lines(ax):
    """Lines drawing trajectory data (reference lines and markers carry a gid)."""
    return [line for line in ax.lines if line.get_gid() is None]


def by_gid(ax, gid):
    return [artist for artist in ax.get_children() if artist.get_gid() == gid]


def span_extent(patch, axis):
    """(low, high) data coordinate of an ``axhspan`` (axis 1) or ``axvspan`` (axis 0)."""
    values = patch.get_path().transformed(patch.get_patch_transform()).vertices[:, axis]
    return float(values.min()), float(values.max())


def span_y(patch):
    return span_extent(patch, 1)


def lengths(traj):
    return np.asarray(traj.valid).sum(axis=-1)


# --------------------------------------------------------------------------- pacing


def test_pacing_panels_units_and_target_band(pacing):
    env, params, traj = pacing
    single = first(traj)
    fig = plotting.plot_trajectory(env, params, single)
    assert len(fig.axes) == 4
    ax_v, ax_hr, ax_pace, ax_reward = fig.axes
    assert "FHN" in ax_v.get_ylabel()
    assert "(bpm)" in ax_hr.get_ylabel()
    assert "amplitude" in ax_pace.get_ylabel()
    assert "reward" in ax_reward.get_ylabel()
    assert ax_reward.get_xlabel() == "time (s)"

    target = float(params.target_heart_rate_bpm)
    tolerance = pacing_env.STABLE_HR_ERROR_BPM
    (band,) = by_gid(ax_hr, "target_band")
    np.testing.assert_allclose(span_y(band), (target - tolerance, target + tolerance))
    (line,) = by_gid(ax_hr, "target")
    np.testing.assert_allclose(line.get_ydata(), target)
    (threshold,) = by_gid(ax_pace, "pacing_threshold")
    np.testing.assert_allclose(threshold.get_ydata(), pacing_env.PACING_THRESHOLD)

    # Only the episode's 60 steps are drawn, not the 20 padded ones: state traces
    # run from reset (t = 0) to the last step's end, 10 ms a step.
    assert lengths(single) == PACING_STEPS
    (v_line,) = data_lines(ax_v)
    np.testing.assert_allclose(v_line.get_xdata(), np.arange(PACING_STEPS + 1) * 0.01)
    np.testing.assert_allclose(v_line.get_ydata()[1:], single.state.cell.v[:PACING_STEPS])
    (hr_line,) = data_lines(ax_hr)
    np.testing.assert_allclose(hr_line.get_ydata()[1:], single.info["heart_rate"][:PACING_STEPS])
    (reward_line,) = data_lines(ax_reward)
    np.testing.assert_allclose(reward_line.get_ydata(), single.reward[:PACING_STEPS])


def test_pacing_pulse_markers_are_where_amplitude_exceeds_the_threshold(pacing):
    env, params, traj = pacing
    single = first(traj)
    fig = plotting.plot_trajectory(env, params, single)
    ax_pace = fig.axes[2]
    amplitude = np.clip(single.action[:PACING_STEPS, 1], 0.0, 1.0)
    delivered = np.flatnonzero(amplitude > pacing_env.PACING_THRESHOLD)
    assert 0 < delivered.size < PACING_STEPS  # the heuristic paces, then stops
    (rug,) = by_gid(ax_pace, "pulses")
    np.testing.assert_allclose(rug.get_xdata(), delivered * 0.01)
    (amplitude_line,) = data_lines(ax_pace)
    np.testing.assert_allclose(amplitude_line.get_ydata()[:-1], amplitude)


def test_batched_trajectory_draws_one_line_per_patient_up_to_max_patients(pacing):
    env, params, traj = pacing
    fig = plotting.plot_trajectory(env, params, traj)
    for ax in fig.axes:
        assert len(data_lines(ax)) == N
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        f"patient {j}" for j in range(N)
    ]
    fig = plotting.plot_trajectory(env, params, traj, max_patients=2, title="two")
    for ax in fig.axes:
        assert len(data_lines(ax)) == 2
    assert len(by_gid(fig.axes[2], "pulses")) == 2
    assert fig.get_suptitle() == "two"


# --------------------------------------------------------------------------- dosing


def test_dosing_reference_lines_are_each_patients_pk_values(dosing):
    env, params, traj = dosing
    fig = plotting.plot_trajectory(env, params, traj)
    assert len(fig.axes) == 4
    ax_v, ax_c, ax_dose, ax_effect = fig.axes
    assert "(mg/L)" in ax_c.get_ylabel()
    assert "(mg per step)" in ax_dose.get_ylabel()
    assert "efficacy" in ax_effect.get_ylabel()
    assert ax_effect.get_xlabel() == "time (h)"

    pk = params.pk
    # Shared values: one line; per-patient values (therapeutic_max): one line each.
    (low,) = by_gid(ax_c, "therapeutic_min")
    np.testing.assert_allclose(low.get_ydata(), float(pk.therapeutic_min[0]))
    (toxic,) = by_gid(ax_c, "toxic_threshold")
    np.testing.assert_allclose(toxic.get_ydata(), float(pk.toxic_threshold[0]))
    highs = [line.get_ydata()[0] for line in by_gid(ax_c, "therapeutic_max")]
    np.testing.assert_allclose(highs, THERAPEUTIC_MAX)
    windows = sorted(span_y(patch) for patch in by_gid(ax_c, "therapeutic_window"))
    np.testing.assert_allclose(
        windows, [(float(pk.therapeutic_min[0]), h) for h in THERAPEUTIC_MAX]
    )


def test_dosing_draws_only_valid_steps_and_arrhythmic_spans(dosing):
    env, params, traj = dosing
    n_steps = lengths(traj)
    assert (n_steps < int(params.max_steps_in_episode[0])).all()  # random dosing overdoses
    fig = plotting.plot_trajectory(env, params, traj)
    ax_v, ax_c, ax_dose, ax_effect = fig.axes
    for j, line in enumerate(data_lines(ax_c)):
        np.testing.assert_allclose(line.get_xdata(), np.arange(n_steps[j] + 1) * 0.1)
        np.testing.assert_allclose(
            line.get_ydata()[1:], traj.info["concentration"][j, : n_steps[j]], rtol=1e-6
        )
    for j, line in enumerate(data_lines(ax_dose)):
        dose = np.clip(traj.action[j, : n_steps[j], 0], 0.0, dosing_env.MAX_DOSE_MG)
        np.testing.assert_allclose(line.get_ydata()[:-1], dose)
    # The shaded spans cover exactly the arrhythmic steps (0.1 h each).
    active = sum(int(traj.info["arrhythmia_active"][j, : n_steps[j]].sum()) for j in range(N))
    spans = by_gid(ax_effect, "arrhythmia")
    assert active > 0 and spans
    widths = [np.subtract(*span_extent(span, 0)[::-1]) for span in spans]
    assert sum(widths) == pytest.approx(active * 0.1)


# --------------------------------------------------------------------------- defibrillation


def test_defibrillation_shock_markers_at_the_shocking_steps(defib):
    env, params, traj = defib
    single = first(traj)
    n_steps = int(lengths(single))
    # The recorded episode ends early by successful defibrillation, so the plot must stop there.
    assert n_steps > 1
    assert bool(single.terminated[n_steps - 1]) and not bool(single.valid[n_steps:].any())
    fig = plotting.plot_trajectory(env, params, single)
    assert len(fig.axes) == 4
    ax_u, ax_fib, ax_shock, ax_return = fig.axes
    assert "(J)" in ax_shock.get_ylabel()
    assert "potential u" in ax_u.get_ylabel()
    assert "steps" in ax_return.get_xlabel()

    action = single.action[:n_steps]
    shocked = np.flatnonzero(action[:, 0] > defib_env.SHOCK_THRESHOLD)
    (markers,) = [line for line in by_gid(ax_shock, "shocks") if hasattr(line, "get_xdata")]
    np.testing.assert_array_equal(markers.get_xdata(), shocked)
    np.testing.assert_allclose(
        markers.get_ydata(), np.clip(action[shocked, 1], 0.0, defib_env.MAX_ENERGY_J)
    )
    # Cumulative energy ends at the episode's total; the return at the episode's return.
    (cumulative,) = by_gid(ax_shock, "cumulative_energy")
    assert cumulative.get_ydata()[-1] == pytest.approx(float(single.info["total_energy"][-1]))
    (returns,) = data_lines(ax_return)
    assert returns.get_ydata()[-1] == pytest.approx(float(single.episode_return), rel=1e-5)
    assert len(returns.get_xdata()) == n_steps + 1


def test_defibrillation_batched_shocks_per_patient(defib):
    env, params, traj = defib
    fig = plotting.plot_trajectory(env, params, traj)
    ax_shock = fig.axes[2]
    markers = [line for line in by_gid(ax_shock, "shocks") if hasattr(line, "get_xdata")]
    assert len(markers) == N
    for j, line in enumerate(markers):
        # Patients' stems are spread around their step by less than half a step.
        action = traj.action[j, : lengths(traj)[j]]
        shocked = np.flatnonzero(action[:, 0] > defib_env.SHOCK_THRESHOLD)
        np.testing.assert_array_equal(np.round(line.get_xdata()), shocked)


# --------------------------------------------------------------------------- plot_rollout


def test_plot_rollout_population_has_a_target_band_per_patient():
    targets = np.array([60.0, 90.0])
    fig = plotting.plot_rollout(
        "PacingControl-v0",
        policy="heuristic",
        target_heart_rate_bpm=targets,
        max_steps_in_episode=PACING_STEPS,
    )
    ax_hr = fig.axes[1]
    assert len(data_lines(ax_hr)) == 2
    lines = sorted(line.get_ydata()[0] for line in by_gid(ax_hr, "target"))
    np.testing.assert_allclose(lines, targets)
    tol = pacing_env.STABLE_HR_ERROR_BPM
    bands = sorted(span_y(patch) for patch in by_gid(ax_hr, "target_band"))
    np.testing.assert_allclose(bands, [(t - tol, t + tol) for t in targets])
    assert "heuristic policy" in fig.get_suptitle()


def test_plot_rollout_and_plot_trajectory_reject_bad_input(pacing):
    with pytest.raises(ValueError, match="heuristic"):
        plotting.plot_rollout("PacingControl-v0", policy="clever")
    env, params, traj = pacing
    with pytest.raises(ValueError, match="accepted"):
        plotting.plot_trajectory(object(), params, traj)
    population = jax.tree_util.tree_map(lambda x: np.stack([x] * 2), params)
    with pytest.raises(ValueError, match="batch axis"):
        plotting.plot_trajectory(env, population, traj)  # 2 patients' params, 3 episodes


# --------------------------------------------------------------------------- learning curves


def test_learning_curves_line_per_label_and_reference_lines():
    timesteps = np.arange(1, 6) * 1000
    curves = {"PPO": np.arange(15.0).reshape(3, 5), "PPO (one seed)": np.arange(5.0)}
    references = {"heuristic": 180.5, "random": -44.6}
    fig = plotting.plot_learning_curves(
        curves, timesteps, title="curves", reference_lines=references
    )
    (ax,) = fig.axes
    lines = data_lines(ax)
    assert [line.get_label() for line in lines] == list(curves)
    np.testing.assert_allclose(lines[0].get_ydata(), [5.0, 6.0, 7.0, 8.0, 9.0])  # seed mean
    np.testing.assert_allclose(lines[0].get_xdata(), timesteps)
    refs = by_gid(ax, "reference")
    assert [line.get_ydata()[0] for line in refs] == [180.5, -44.6]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["PPO", "PPO (one seed)", "heuristic (180.5)", "random (-44.6)"]
    assert ax.get_title() == "curves"
    assert ax.get_xlabel() == "environment steps"

    # Into given axes: same figure back.
    fig2, (left, _) = plt.subplots(1, 2)
    assert plotting.plot_learning_curves(curves, timesteps, ax=left) is fig2
    assert len(data_lines(left)) == 2


def curve_with_unreported_updates():
    """Three seeds over six updates; no seed has finished an episode in the first two."""
    returns = np.array(
        [
            [np.nan, np.nan, np.nan, 3.0, 4.0, 5.0],
            [np.nan, np.nan, 1.0, 2.0, 6.0, 8.0],
            [np.nan, np.nan, np.nan, np.nan, 5.0, 5.0],
        ]
    )
    return np.arange(1, 7) * 100.0, returns


def test_updates_with_returns_drops_only_updates_where_no_seed_reported():
    timesteps, returns = curve_with_unreported_updates()
    steps, kept = plotting.updates_with_returns(timesteps, returns)
    np.testing.assert_array_equal(steps, [300.0, 400.0, 500.0, 600.0])
    np.testing.assert_array_equal(kept, returns[:, 2:])
    steps, kept = plotting.updates_with_returns(timesteps[:2], returns[0, :2])  # one seed
    assert steps.shape == (0,) and kept.shape == (1, 0)
    with pytest.raises(ValueError, match="6 updates but timesteps 5"):
        plotting.updates_with_returns(timesteps[:5], returns)


def test_learning_curves_leave_out_updates_before_any_seed_finished_an_episode():
    timesteps, returns = curve_with_unreported_updates()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice", "All-NaN slice encountered"
        fig = plotting.plot_learning_curves(
            {"PPO": returns, "never finished": np.full(6, np.nan)}, timesteps
        )
        fig.canvas.draw()
    (ax,) = fig.axes
    line, never = data_lines(ax)
    np.testing.assert_array_equal(line.get_xdata(), [300.0, 400.0, 500.0, 600.0])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 2.5, 5.0, 6.0])  # mean of seeds reported
    assert len(never.get_xdata()) == 0
    (band, *_) = ax.collections
    (path,) = band.get_paths()
    xs = path.vertices[:, 0]
    assert xs.min() == 300.0 and xs.max() == 600.0
    ys = path.vertices[:, 1]
    assert np.all(np.isfinite(ys)) and ys.min() == 1.0 and ys.max() == 8.0  # seed min/max


def test_v1_learning_curves_leave_out_updates_before_any_seed_finished_an_episode(tmp_path):
    v1 = load_baseline_script("v1")
    timesteps, returns = curve_with_unreported_updates()
    curve = {"timesteps": timesteps.tolist(), "episode_return": returns.tolist()}
    results = {
        "cells": {
            "PacingControl-v0/medium": {"ppo_curve": curve, "heuristic": {"mean": 4.0}},
            "PacingControl-v0/hard": {"heuristic": {"mean": 3.0}},  # no PPO curve: not drawn
        }
    }
    drawn = []
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("error")
        patch.setattr(plt.Figure, "savefig", lambda fig, path, **_: drawn.append(fig))
        v1.plot_curves(results, tmp_path / "curves.png")
    (fig,) = drawn
    easy, medium, hard = fig.axes
    assert not easy.get_visible() and medium.get_visible() and not hard.get_visible()
    (median,) = [line for line in medium.lines if line.get_label().startswith("PPO")]
    np.testing.assert_array_equal(median.get_xdata(), [300.0, 400.0, 500.0, 600.0])
    np.testing.assert_allclose(median.get_ydata(), [1.0, 2.5, 5.0, 5.0])  # median of seeds
    assert medium.get_legend() is not None  # on the first panel drawn, not the hidden one


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        # One leaf: one column, a value per row.
        ({"gamma": [0.9, 0.99]}, [[1.0], [2.0]]),
        # Two leaves: first leaf down, second across.
        ({"learning_rate": [1e-4, 1e-3], "gamma": [0.9, 0.99]}, [[1.0, 2.0], [3.0, 4.0]]),
        # Three: the best over the third leaf in each cell.
        (
            {"learning_rate": [1e-4, 1e-3], "gamma": [0.9, 0.99], "clip_eps": [0.1, 0.2]},
            [[2.0, 4.0], [6.0, 8.0]],
        ),
    ],
)
def test_sweep_heatmap_lays_the_grid_out_first_leaf_down(grid, expected):
    n = int(np.prod([len(v) for v in grid.values()]))
    rows = [{"mean": float(i + 1), "iqm": -float(i + 1)} for i in range(n)]
    fig = plotting.plot_sweep_heatmap(rows, grid, title="t")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    names = list(grid)
    assert ax.get_ylabel() == names[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{v:g}" for v in grid[names[0]]]
    assert ax.get_xlabel() == (names[1] if len(names) > 1 else "")
    assert ("best over clip_eps" in ax.get_title()) == (len(names) == 3)
    # The IQM instead of the mean on request.
    iqm = plotting.plot_sweep_heatmap(rows, grid, metric="iqm").axes[0].images[0].get_array()
    assert np.max(iqm) < 0
