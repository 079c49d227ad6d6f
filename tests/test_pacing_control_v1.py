"""PacingControl-v1: determinism, tiers, robustness, bounds, physiology and baseline gap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.agents.pacing_v1 import HeuristicPacingV1Params, heuristic_pacing_v1_policy
from cardiosim_jax.envs.pacing_control_v1 import (
    PATIENT_VARIABILITY,
    PacingControlV1,
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


def test_easy_tier_does_not_depend_on_the_key():
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    actions = random_actions(ENV, params, jax.random.PRNGKey(9), SHORT)
    first = rollout(params, jax.random.PRNGKey(0), actions)
    second = rollout(params, jax.random.PRNGKey(123), actions)
    for a, b in zip(
        jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second), strict=True
    ):
        np.testing.assert_array_equal(a, b)


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


def test_jit_matches_eager_and_vmap_matches_loop():
    params = ENV.params_for("hard")
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    actions = random_actions(ENV, params, jax.random.PRNGKey(3), 1)
    key = keys[0]
    obs, state = ENV.reset(key, params)
    with jax.disable_jit():
        obs_e, state_e = ENV.reset(key, params)
        for j in range(actions.shape[0]):
            obs_e, state_e, reward_e, *_ = ENV.step(keys[j + 1], state_e, actions[j], params)
    for j in range(actions.shape[0]):
        obs, state, reward, *_ = ENV.step(keys[j + 1], state, actions[j], params)
    np.testing.assert_allclose(obs, obs_e, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(reward, reward_e, rtol=1e-4, atol=1e-3)

    obs_b, batched = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
    step = jax.vmap(ENV.step, in_axes=(0, 0, None, None))
    obs_b, _, reward_b, *_ = step(keys, batched, actions[0], params)
    for i, key in enumerate(keys):
        _, state = ENV.reset(key, params)
        np.testing.assert_array_equal(
            batched.patient.capture_threshold_v[i], state.patient.capture_threshold_v
        )
        obs, _, reward, *_ = ENV.step(key, state, actions[0], params)
        np.testing.assert_allclose(obs_b[i], obs, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(reward_b[i], reward, rtol=1e-5, atol=1e-4)


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
    np.testing.assert_array_equal(np.asarray(obs)[0, 8:], [30.0, 0.0])


def test_heart_rate_follows_the_lower_rate_above_threshold():
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)  # sinus 50 bpm, threshold 1 V
    _, (obs, _, _, _, info, _) = rollout(params, jax.random.PRNGKey(0), constant_actions(75, 2.0))
    np.testing.assert_allclose(np.asarray(info["heart_rate"])[10:], 75.0, rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(obs)[10:, 5], np.asarray(obs)[10:, 4])
    # Below threshold nothing captures: the sinus rate shows, and loss of capture is visible.
    _, (obs, _, _, _, info, _) = rollout(params, jax.random.PRNGKey(0), constant_actions(75, 0.9))
    np.testing.assert_allclose(np.asarray(info["heart_rate"])[10:], 50.0, rtol=2e-2)
    obs = np.asarray(obs)
    assert np.all(obs[10:, 5] == 0.0) and obs[10:, 4].sum() > 0
    # A lower rate below the sinus rate never paces.
    _, (obs, _, _, _, info, _) = rollout(params, jax.random.PRNGKey(0), constant_actions(40, 3.5))
    assert np.asarray(info["paces"]).sum() == 0.0
    np.testing.assert_allclose(np.asarray(info["heart_rate"])[5:], 50.0, rtol=2e-2)


def test_reward_prefers_pacing_at_target_with_less_energy():
    params = ENV.params_for("easy", max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(0)
    returns = {
        setting: float(rollout(params, key, constant_actions(*setting))[1][1].sum())
        for setting in [(70, 3.5), (70, 1.5), (70, 0.9), (40, 3.5)]
    }
    assert returns[(70, 1.5)] > returns[(70, 3.5)] > returns[(40, 3.5)]
    assert returns[(70, 3.5)] > returns[(70, 0.9)]


def test_observation_noise_only_where_configured():
    key = jax.random.PRNGKey(7)
    hard = ENV.params_for("hard")
    obs, state = ENV.reset(key, hard)
    clean = ENV.get_obs(state, hard)
    true_hr = pacemaker.heart_rate_bpm(state.pacemaker)
    assert float(clean[1]) == pytest.approx(float(true_hr))
    assert float(obs[1]) != pytest.approx(float(true_hr), abs=1e-3)
    np.testing.assert_array_equal(obs[4:], clean[4:])
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
        ("target_heart_rate_bpm", 10.0),
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


def test_tiers_change_length_tolerance_noise_and_mode():
    easy, medium, hard = (ENV.params_for(d) for d in TIERS)
    assert int(easy.max_steps_in_episode) < int(hard.max_steps_in_episode)
    assert (
        float(easy.hr_tolerance_bpm) > float(medium.hr_tolerance_bpm) > float(hard.hr_tolerance_bpm)
    )
    assert float(easy.observation_noise_std) == 0.0 < float(hard.observation_noise_std)
    assert float(easy.patient_variability) == 0.0 < float(hard.patient_variability)
    assert float(hard.heart.atrial_tracking) == 1.0 and float(medium.heart.atrial_tracking) == 0.0


def test_episode_truncates_at_tier_length():
    params = ENV.params_for("easy", max_steps_in_episode=20)
    _, (_, _, terminated, truncated, _, _) = rollout(
        params, jax.random.PRNGKey(0), constant_actions(70, 3.5)
    )
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [19, 39, 59])


@pytest.mark.parametrize("difficulty", TIERS)
def test_heuristic_beats_random(difficulty):
    params = ENV.params_for(difficulty, max_steps_in_episode=SHORT)
    key = jax.random.PRNGKey(11)
    random_stats = run_episodes(
        ENV, params, random_policy, random_policy_params(ENV, params), key, 32, SHORT
    )
    heuristic_stats = run_episodes(
        ENV, params, heuristic_pacing_v1_policy, HeuristicPacingV1Params(), key, 32, SHORT
    )
    random_mean = float(random_stats.episode_return.mean())
    heuristic_mean = float(heuristic_stats.episode_return.mean())
    assert heuristic_mean > random_mean + 0.5 * SHORT
    assert heuristic_mean > 0.0


def test_heuristic_raises_output_on_loss_of_capture():
    obs = jnp.array([70.0, 60.0, -10.0, 5.0, 2.0, 1.0, 0.0, 300.0, 70.0, 3.5])
    action = heuristic_pacing_v1_policy(HeuristicPacingV1Params(), obs)
    np.testing.assert_allclose(action, [70.0, 4.5])
    captured = obs.at[5].set(2.0)
    np.testing.assert_allclose(
        heuristic_pacing_v1_policy(HeuristicPacingV1Params(), captured), [70.0, 3.5]
    )
    batch = jnp.stack([obs, captured])
    assert heuristic_pacing_v1_policy(HeuristicPacingV1Params(), batch).shape == (2, 2)
