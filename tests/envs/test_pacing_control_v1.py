"""PacingControl-v1: determinism, tiers, robustness, bounds, physiology and baseline gap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.envs.pacing_control.heuristic_v1 import (
    HeuristicPacingV1Params,
    heuristic_pacing_v1_policy,
)
from cardiosim_jax.envs.pacing_control.v1 import (
    PATIENT_VARIABILITY,
    PacingControlV1,
    programmed_setting,
    reprogramming_size,
    step_reward,
)
from cardiosim_jax.models import pacemaker
from cardiosim_jax.rollout import run_episodes

ENV = PacingControlV1()
TIERS = ("easy", "medium", "hard")
#: Short episodes keep the suite fast; the physics does not depend on the length.
SHORT = 60


def rollout(params, key, actions):
    return env_rollout(ENV, params, key, jnp.asarray(actions, jnp.float32))


def constant_actions(lower_rate, amplitude, n=SHORT):
    return jnp.tile(jnp.array([lower_rate, amplitude], jnp.float32), (n, 1))


def test_easy_tier_depends_on_the_key_only_through_capture_near_threshold():
    # Easy has no block, jitter, drift or patient variation: at a 2.5x margin (capture
    # certain) the episode is key-independent; the threshold fluctuation is the only chance.
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    actions = constant_actions(60, 3.0)
    first = rollout(params, jax.random.PRNGKey(0), actions)
    second = rollout(params, jax.random.PRNGKey(123), actions)
    np.testing.assert_array_equal(first[1][1], second[1][1])  # rewards
    np.testing.assert_array_equal(first[1][0][:, :7], second[1][0][:, :7])


@pytest.mark.parametrize("difficulty", ["medium", "hard"])
def test_same_key_same_episode_and_keys_matter(difficulty):
    params = ENV.params_for(difficulty, max_steps_in_episode=SHORT)
    actions = random_actions(ENV, params, jax.random.PRNGKey(9), SHORT)
    first = rollout(params, jax.random.PRNGKey(0), actions)
    again = rollout(params, jax.random.PRNGKey(0), actions)
    other = rollout(params, jax.random.PRNGKey(1), actions)
    for a, b in zip(
        jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(again), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1][1], other[1][1])  # rewards differ


@pytest.mark.parametrize("difficulty", TIERS)
def test_observations_stay_in_bounds_under_random_and_extreme_actions(difficulty):
    params = ENV.params_for(difficulty, max_steps_in_episode=SHORT)
    space = ENV.observation_space(params)
    low, high = np.asarray(space.low) - 1e-4, np.asarray(space.high) + 1e-4
    extreme = jnp.array(
        [[30.0, 0.0], [120.0, 7.5], [30.0, 7.5], [120.0, 0.0], [-1e9, 1e9], [1e9, -1e9]]
    )
    actions = jnp.concatenate(
        [random_actions(ENV, params, jax.random.PRNGKey(4), SHORT - 24), jnp.tile(extreme, (4, 1))]
    )
    for key in jax.random.split(jax.random.PRNGKey(5), 4):
        reset_obs, (obs, reward, *_rest) = rollout(params, key, actions)
        all_obs = np.concatenate([np.asarray(reset_obs)[None], np.asarray(obs)])
        assert np.all(np.isfinite(all_obs)) and np.all(np.isfinite(np.asarray(reward)))
        assert np.all(all_obs >= low) and np.all(all_obs <= high)
    assert ENV.action_space(params).shape == (2,)


def test_nan_and_inf_actions_keep_the_state_finite():
    params = ENV.params_for("hard")
    bad = jnp.array(
        [[jnp.nan, jnp.nan], [jnp.inf, jnp.inf], [-jnp.inf, -jnp.inf], [jnp.nan, jnp.inf]] * 15
    )
    _, (obs, reward, *_rest, states) = rollout(params, jax.random.PRNGKey(6), bad)
    for leaf in jax.tree_util.tree_leaves((obs, reward, states)):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
    # NaN becomes 0, then clipped: lower rate 30 bpm, amplitude 0 V.
    np.testing.assert_array_equal(np.asarray(obs)[0, 8:10], [30.0, 0.0])


def test_heart_rate_follows_the_lower_rate_above_threshold():
    # Sinus 42 bpm, threshold 1 V; with VA conduction on every beat pacing suppresses the sinus.
    params = ENV.params_for(
        "easy",
        max_steps_in_episode=SHORT,
        va_conduction_prevalence=1.0,
        retrograde_conduction_prob=1.0,
    )
    _, (obs, _, _, _, info, _) = rollout(params, jax.random.PRNGKey(0), constant_actions(75, 2.5))
    np.testing.assert_allclose(np.asarray(info["heart_rate"])[10:], 75.0, rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(obs)[10:, 2], np.asarray(obs)[10:, 1])
    # Far below threshold nothing captures: the sinus rate shows, loss of capture is visible.
    _, (obs, _, _, _, info, _) = rollout(params, jax.random.PRNGKey(0), constant_actions(75, 0.4))
    np.testing.assert_allclose(np.asarray(info["heart_rate"])[10:], 42.0, rtol=3e-2)
    obs = np.asarray(obs)
    # (the last observation is the auto-reset one: read the counter one step earlier)
    assert np.all(obs[10:, 2] == 0.0) and obs[10:, 1].sum() > 0 and obs[-2, 10] > 0
    # A lower rate below the sinus rate never paces; 0 V is output off (no pulse).
    for setting in [(35, 3.5), (120, 0.0)]:
        _, (obs, _, _, _, info, _) = rollout(
            params, jax.random.PRNGKey(0), constant_actions(*setting)
        )
        assert np.asarray(info["paces"]).sum() == 0.0
        np.testing.assert_allclose(np.asarray(info["heart_rate"])[5:], 42.0, rtol=3e-2)


def _patient_in_adequate_rhythm(params, key, rate_bpm):
    _, state = ENV.reset(key, params)
    rate = jnp.float32(rate_bpm)
    return state.replace(
        sinus_adequate=jnp.array(True), adequate_rate_bpm=rate, sinus_level_bpm=rate
    )


def _paced_fraction(params, state, key, setting, steps=100):
    def body(st, k):
        _, st, _, _, info = ENV.step_env(k, st, jnp.array(setting, jnp.float32), params)
        return st, (info["captures"], info["sensed"])

    _, (captures, sensed) = jax.lax.scan(body, state, jax.random.split(key, steps))
    return float(captures.sum() / (captures.sum() + sensed.sum()))


def test_retrograde_conduction_decides_whether_intrinsic_rhythm_emerges():
    """Sinus 72 bpm, LRL 70: without VA conduction the patient's own rhythm shows;
    with it, paced beats reset the sinus node and pacing persists (overdrive)."""
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(3)
    fractions = {}
    for prevalence in (0.0, 1.0):
        p = params.replace(va_conduction_prevalence=jnp.float32(prevalence))
        state = _patient_in_adequate_rhythm(p, key, 72.0)
        fractions[prevalence] = _paced_fraction(p, state, key, (70.0, 2.5))
    assert fractions[0.0] < 0.25 < 0.5 < fractions[1.0]
    # A 60 bpm lower rate releases pacing whatever the conduction.
    p = params.replace(va_conduction_prevalence=jnp.float32(1.0))
    assert _paced_fraction(p, _patient_in_adequate_rhythm(p, key, 72.0), key, (60.0, 2.5)) < 0.05


def test_va_conduction_is_a_per_patient_draw():
    params = ENV.params_for("medium")
    keys = jax.random.split(jax.random.PRNGKey(4), 400)
    _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
    conducting = np.asarray(states.patient.retrograde_conduction_prob) > 0.0
    assert abs(conducting.mean() - float(params.va_conduction_prevalence)) < 0.08
    np.testing.assert_allclose(
        np.asarray(states.patient.retrograde_conduction_prob)[conducting],
        float(params.heart.retrograde_conduction_prob),
    )


def test_capture_is_probabilistic_near_threshold_and_sure_at_twice_it():
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    keys = jax.random.split(jax.random.PRNGKey(5), 16)

    def lost_fraction(amplitude):
        out = jax.vmap(lambda k: rollout(params, k, constant_actions(60, amplitude)))(keys)
        info = out[1][4]
        return float(info["lost_captures"].sum() / info["paces"].sum())

    near, margin = lost_fraction(1.0), lost_fraction(2.5)
    assert 0.2 < near < 0.8  # neither a sure capture nor a sure miss at threshold
    assert margin == 0.0


def test_observation_noise_only_where_configured():
    key = jax.random.PRNGKey(7)
    hard = ENV.params_for("hard")
    obs, state = ENV.reset(key, hard)
    clean = ENV.get_obs(state, hard)
    true_hr = pacemaker.heart_rate_bpm(state.pacemaker)
    assert float(clean[0]) == pytest.approx(float(true_hr))
    assert float(obs[0]) != pytest.approx(float(true_hr), abs=1e-3)
    np.testing.assert_array_equal(obs[1:], clean[1:])
    silent = hard.replace(observation_noise_std=jnp.float32(0.0))
    np.testing.assert_array_equal(ENV.get_obs(state, silent, key), clean)


def test_patient_variability_draws_per_episode_patients():
    keys = jax.random.split(jax.random.PRNGKey(8), 64)
    for difficulty in ("medium", "hard"):
        params = ENV.params_for(difficulty)
        _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
        thresholds = np.asarray(states.patient.capture_threshold_v)
        assert thresholds.std() > 0.05
        bounds = pacemaker.PARAMETER_RANGES["capture_threshold_v"]
        assert thresholds.min() >= bounds.low and thresholds.max() <= bounds.high
    easy = ENV.params_for("easy")
    _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, easy)
    np.testing.assert_array_equal(
        states.patient.capture_threshold_v, easy.heart.capture_threshold_v
    )
    np.testing.assert_array_equal(states.bradycardic_rate_bpm, easy.sinus_rate_bpm)


def test_patient_variability_keys_are_overridable_and_ranged():
    ranges = {**ENV.parameter_ranges, **pacemaker.PARAMETER_RANGES}
    for name, variability in PATIENT_VARIABILITY.items():
        assert name in ranges
        assert 0.0 < variability.cv <= 0.5 and variability.source
        bounds = ranges[name]
        ENV.params_for("hard", **{name: bounds.low})
        ENV.params_for("hard", **{name: bounds.high})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("capture_threshold_v", 10.0),
        ("sinus_rate_bpm", 200.0),
        ("symptomatic_rate_bpm", 10.0),
        ("patient_variability", 2.0),
        ("heart.av_block_prob", -0.1),
        ("observation_noise_std", float("nan")),
    ],
)
def test_bad_parameter_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=name.split(".")[-1]):
        ENV.params_for("medium", **{name: value})


def test_consistency_and_unknown_names():
    with pytest.raises(ValueError, match="adequate_sinus_rate_bpm"):
        ENV.params_for("medium", sinus_rate_bpm=55.0, adequate_sinus_rate_bpm=50.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        ENV.params_for("medium", pacing_rate=70.0)
    with pytest.raises(ValueError, match="unknown difficulty"):
        ENV.params_for("extreme")


def test_tiers_change_length_rate_noise_and_mode():
    easy, medium, hard = (ENV.params_for(d) for d in TIERS)
    assert int(easy.max_steps_in_episode) < int(hard.max_steps_in_episode)
    assert float(easy.sinus_rate_bpm) > float(medium.sinus_rate_bpm) > float(hard.sinus_rate_bpm)
    assert float(easy.observation_noise_std) == 0.0 < float(hard.observation_noise_std)
    assert float(easy.patient_variability) == 0.0 < float(hard.patient_variability)
    assert float(easy.va_conduction_prevalence) == 0.0 < float(medium.va_conduction_prevalence)
    assert float(hard.heart.atrial_tracking) == 1.0 and float(medium.heart.atrial_tracking) == 0.0


def test_episode_truncates_at_tier_length():
    params = ENV.params_for("easy", max_steps_in_episode=20)
    _, (_, _, terminated, truncated, _, _) = rollout(
        params, jax.random.PRNGKey(0), constant_actions(70, 3.5)
    )
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [19, 39, 59])


def _heuristic_random_or_never(policy_params, obs, key):
    """One policy for one compilation: mode 0 the heuristic, 1 uniform random, 2 pacing off."""
    rule, bounds, mode = policy_params
    heuristic = heuristic_pacing_v1_policy(rule, obs, key)
    uniform = random_policy(bounds, obs, key)
    never = jnp.array(PacingControlV1.no_treatment_action, jnp.float32)
    return jnp.select([mode == 0, mode == 1], [heuristic, uniform], never)


@pytest.mark.parametrize("difficulty", TIERS)
def test_heuristic_beats_random_and_never_pacing(difficulty):
    params = ENV.params_for(difficulty, max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(11)
    bounds = random_policy_params(ENV, params)

    def mean_return(mode):
        policy_params = (HeuristicPacingV1Params(), bounds, jnp.int32(mode))
        stats = run_episodes(ENV, params, _heuristic_random_or_never, policy_params, key, 32, SHORT)
        return float(stats.episode_return.mean())

    heuristic_mean, random_mean, never_mean = mean_return(0), mean_return(1), mean_return(2)
    assert heuristic_mean > random_mean + 0.5 * SHORT
    assert heuristic_mean > never_mean + 0.1 * SHORT


def _dithered_heuristic(policy_params, obs, key):
    space = ENV.action_space()
    sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
    action = heuristic_pacing_v1_policy(HeuristicPacingV1Params(), obs)
    return action + sign * 0.02 * (space.high - space.low)


def test_heuristic_programs_60_bpm_at_twice_the_measured_threshold():
    obs = jnp.array([60.0, 2.0, 2.0, 0.0, 300.0, 1000.0, 100.0, 1.25, 60.0, 3.5, 0.0])
    action = heuristic_pacing_v1_policy(HeuristicPacingV1Params(), obs)
    np.testing.assert_allclose(action, [60.0, 2.5])
    lost_twice = obs.at[10].set(2.0)
    np.testing.assert_allclose(
        heuristic_pacing_v1_policy(HeuristicPacingV1Params(), lost_twice), [60.0, 4.5]
    )
    batch = jnp.stack([obs, lost_twice])
    assert heuristic_pacing_v1_policy(HeuristicPacingV1Params(), batch).shape == (2, 2)


def test_dithering_the_heuristic_does_not_pay():
    params = ENV.params_for("medium", max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(12)
    plain = run_episodes(
        ENV, params, heuristic_pacing_v1_policy, HeuristicPacingV1Params(), key, 32, SHORT
    )
    dither = run_episodes(ENV, params, _dithered_heuristic, None, key, 32, SHORT)
    gap = np.asarray(plain.episode_return) - np.asarray(dither.episode_return)
    # Each step moves both settings by up to 4 % of their ranges: about 0.1 per step.
    assert gap.mean() > 0.05 * SHORT


def test_standard_lower_rate_is_not_punished():
    """VVI 60 scores at least as well as 70 (no rate band); pacing at 120 bpm costs."""
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(0)
    returns = {
        rate: float(rollout(params, key, constant_actions(rate, 2.5))[1][1].sum())
        for rate in (60, 70, 120)
    }
    assert returns[60] >= returns[70] > returns[120]


def _counts(**values):
    fields = dict.fromkeys(
        ["paces", "captures", "sensed", "lost", "energy_uj", "pause_ms", "longest_interval_ms"],
        0.0,
    )
    fields.update(values)
    return pacemaker.PacingCounts(**{k: jnp.float32(v) for k, v in fields.items()})


@pytest.mark.parametrize(
    ("counts", "heart_rate", "change", "term", "expected"),
    [
        # 40 bpm against a symptomatic rate of 50: 20 % deficit for 2 s at 1 /s.
        ({}, 40.0, 0.0, "bradycardia", 0.4),
        ({}, 60.0, 0.0, "bradycardia", 0.0),
        ({}, 120.0, 0.0, "tachycardia", 0.4),  # 20 % above 100 bpm for 2 s
        ({"pause_ms": 750.0}, 60.0, 0.0, "pause", 1.5),  # 0.75 s x 2 /s
        ({"lost": 1.0}, 60.0, 0.0, "lost_capture", 1.0),
        ({"captures": 2.0}, 60.0, 0.0, "pacing_burden", 0.1),
        ({"energy_uj": 10.0}, 60.0, 0.0, "battery", 0.05),
        ({}, 60.0, 0.1, "reprogramming", 0.2),  # 0.1 of a range x 2
    ],
)
def test_reward_terms_match_hand_computed_values(counts, heart_rate, change, term, expected):
    reward, costs = step_reward(_counts(**counts), jnp.float32(heart_rate), 50.0, change)
    assert float(costs[term]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    others = sum(float(v) for k, v in costs.items() if k != term)
    assert others == pytest.approx(0.0, abs=1e-6)
    assert float(reward) == pytest.approx(-expected, rel=1e-5, abs=1e-7)


def test_reprogramming_size_is_the_change_in_fractions_of_the_ranges():
    assert float(reprogramming_size(60.0, 2.0, 60.0, 2.0)) == 0.0
    assert float(reprogramming_size(60.0, 2.0, 69.0, 2.0)) == pytest.approx(0.1)
    assert float(reprogramming_size(60.0, 2.0, 60.0, 1.25)) == pytest.approx(0.1, rel=1e-5)
    assert float(reprogramming_size(30.0, 0.0, 120.0, 7.5)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("requested", "grid_step", "expected"),
    [
        (60.4, 1.0, 60.0),
        (59.6, 1.0, 60.0),
        (64.6, 1.0, 65.0),
        (2.04, 0.1, 2.0),
        (2.26, 0.1, 2.3),
        (0.0, 0.1, 0.0),  # output off is a grid value
    ],
)
def test_programming_requests_are_rounded_to_the_device_grid(requested, grid_step, expected):
    setting = programmed_setting(jnp.float32(requested), grid_step)
    assert float(setting) == pytest.approx(expected, abs=1e-5)


def test_sub_step_jitter_of_a_request_is_neither_applied_nor_charged():
    """A controller whose request wobbles within half a grid step keeps its program."""
    params = ENV.params_for("medium", max_steps_in_episode=SHORT)
    wobble = 0.4 * jnp.sin(jnp.arange(SHORT, dtype=jnp.float32))[:, None]
    actions = constant_actions(60, 3.5) + wobble * jnp.array([1.0, 0.1])
    _, (_, _, _, _, info, states) = rollout(params, jax.random.PRNGKey(3), actions)
    np.testing.assert_array_equal(np.asarray(states.lower_rate_bpm), 60.0)
    np.testing.assert_allclose(np.asarray(states.amplitude_v), 3.5)
    assert float(np.sum(info["cost_reprogramming"])) == 0.0
    # The same wobble at 3x the size crosses the grid and is charged.
    _, (_, _, _, _, info, _) = rollout(
        params, jax.random.PRNGKey(3), constant_actions(60, 3.5) + 3.0 * wobble
    )
    assert float(np.sum(info["cost_reprogramming"])) > 0.0


def test_step_reports_the_same_costs_as_step_reward():
    params = ENV.params_for("hard", max_steps_in_episode=SHORT)
    _, (_, reward, _, _, info, _) = rollout(
        params, jax.random.PRNGKey(2), constant_actions(60, 1.0)
    )
    total = sum(np.asarray(v) for k, v in info.items() if k.startswith("cost_"))
    np.testing.assert_allclose(-total, np.asarray(reward), rtol=1e-5, atol=1e-5)


def test_class_exposes_the_audit_interface():
    space = ENV.action_space(ENV.params_for("medium"))
    for action in (PacingControlV1.no_treatment_action, PacingControlV1.max_treatment_action):
        assert len(action) == 2
        assert np.all(np.asarray(action) >= space.low) and np.all(np.asarray(action) <= space.high)
    assert PacingControlV1.no_treatment_action[1] == 0.0
