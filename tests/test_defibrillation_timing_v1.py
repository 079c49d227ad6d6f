"""DefibrillationTiming-v1: API properties, tiers, physiology and the baseline gap."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.agents.defibrillation_v1 import (
    HeuristicDefibrillationV1Params,
    heuristic_defibrillation_v1_policy,
)
from cardiosim_jax.envs.defibrillation_timing_v1 import (
    PATIENT_VARIABILITY,
    DefibrillationTimingV1,
)
from cardiosim_jax.models import prng, shock_response, tissue
from cardiosim_jax.rollout import run_episodes

ENV = DefibrillationTimingV1()
DIFFICULTIES = ("easy", "medium", "hard")
STEPS = 24


def rollout(difficulty, key, action_key=None, **overrides):
    params = ENV.params_for(difficulty, **overrides)
    action_key = jax.random.PRNGKey(11) if action_key is None else action_key
    actions = random_actions(ENV, params, action_key, STEPS)
    return params, env_rollout(ENV, params, key, actions)


def test_same_key_same_episode():
    _, first = rollout("hard", jax.random.PRNGKey(3))
    _, second = rollout("hard", jax.random.PRNGKey(3))
    jax.tree.map(np.testing.assert_array_equal, first, second)


def test_easy_tier_does_not_depend_on_the_key():
    _, first = rollout("easy", jax.random.PRNGKey(1))
    _, second = rollout("easy", jax.random.PRNGKey(2))
    jax.tree.map(np.testing.assert_array_equal, first, second)


def test_medium_and_hard_depend_on_the_key():
    for difficulty in ("medium", "hard"):
        (_, (obs_a, *_)), (_, (obs_b, *_)) = (
            rollout(difficulty, jax.random.PRNGKey(k))[1] for k in (1, 2)
        )
        assert not np.array_equal(np.asarray(obs_a), np.asarray(obs_b))


def test_jit_matches_eager_and_vmap_matches_loop():
    params = ENV.params_for("hard")
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    obs, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
    actions = jnp.array([[1.0, 150.0], [0.0, 0.0], [1.0, 360.0]])
    batched = jax.vmap(ENV.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
    for i in range(3):
        state_i = jax.tree.map(lambda x, i=i: x[i], states)
        single = ENV.step(keys[i], state_i, actions[i], params)
        np.testing.assert_allclose(batched[0][i], single[0], rtol=1e-6)
        np.testing.assert_allclose(batched[2][i], single[2], rtol=1e-6)
    # Eager step_env with the key ENV.step passes it (no episode ends on step one here).
    state_0 = jax.tree.map(lambda x: x[0], states)
    eager_obs, _, eager_reward, _, _ = ENV.step_env(
        prng.split(keys[0])[0], state_0, actions[0], params
    )
    if not bool(batched[3][0]):
        np.testing.assert_allclose(eager_obs, batched[0][0], rtol=1e-5)
    np.testing.assert_allclose(eager_reward, batched[2][0], rtol=1e-5)


def test_nan_and_inf_actions_keep_the_state_finite():
    params = ENV.params_for("hard")
    bad = jnp.array(
        [[jnp.nan, jnp.nan], [jnp.inf, jnp.inf], [-jnp.inf, -jnp.inf], [jnp.inf, jnp.nan]] * 6
    )
    _, (obs, reward, _, _, _, states) = env_rollout(ENV, params, jax.random.PRNGKey(0), bad)
    for leaf in jax.tree.leaves((obs, reward, states)):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
    assert np.all(np.asarray(states.total_energy_j) <= 360.0 * STEPS)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_observations_inside_observation_space(difficulty):
    params = ENV.params_for(difficulty)
    space = ENV.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    keys = jax.random.split(jax.random.PRNGKey(5), 16)
    reset_obs, (obs, *_rest) = jax.vmap(
        lambda k: env_rollout(ENV, params, k, random_actions(ENV, params, k, STEPS))
    )(keys)
    all_obs = np.concatenate([np.asarray(reset_obs)[:, None], np.asarray(obs)], axis=1)
    all_obs = all_obs.reshape(-1, all_obs.shape[-1])
    assert all_obs.dtype == np.float32 and all_obs.shape[-1] == 8
    assert np.all(all_obs >= low) and np.all(all_obs <= high)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shock_pause_s", 30.0),
        ("refibrillation_probability", 1.5),
        ("patient_variability", -0.1),
        ("e50_j", 5.0),
        ("shock.slope", 20.0),
        ("cpr_quality", 3.0),
        ("myocardium.ecg_gain_mv", 0.0),
    ],
)
def test_bad_parameter_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=name.split(".")[-1]):
        ENV.params_for("medium", **{name: value})


def test_patient_variability_has_ranges_and_drives_the_patient():
    for name in PATIENT_VARIABILITY:
        field = name.split(".")[-1]
        assert (
            field in ENV.parameter_ranges
            or field in tissue.PARAMETER_RANGES
            or field in shock_response.PARAMETER_RANGES
        )
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    for difficulty, varies in (("easy", False), ("hard", True)):
        params = ENV.params_for(difficulty)
        _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
        e50 = np.asarray(states.patient_shock.e50_j)
        gain = np.asarray(states.patient_myocardium.ecg_gain_mv)
        assert (np.std(e50) > 1.0) == varies and (np.std(gain) > 0.01) == varies
    # A fixed patient (what a cohort sets) is exactly the typical one.
    params = ENV.params_for("hard", patient_variability=0.0, e50_j=200.0)
    _, state = ENV.reset(jax.random.PRNGKey(9), params)
    assert float(state.patient_shock.e50_j) == 200.0


@functools.partial(jax.jit, static_argnums=0)
def _first_shock_success(n, params, energy, key):
    def one(k):
        k_reset, k_step = jax.random.split(k)
        _, state = ENV.reset(k_reset, params)
        _, _, _, terminated, _, info = ENV.step(k_step, state, jnp.stack([1.0, energy]), params)
        return info["success_probability"], terminated

    return jax.vmap(one)(jax.random.split(key, n))


def test_success_rises_with_energy_and_falls_with_time_in_vf():
    key = jax.random.PRNGKey(7)
    params = ENV.params_for("medium", refibrillation_probability=0.0)
    p_low, won_low = _first_shock_success(2000, params, jnp.float32(120.0), key)
    p_high, won_high = _first_shock_success(2000, params, jnp.float32(360.0), key)
    assert float(jnp.mean(p_high)) > float(jnp.mean(p_low)) + 0.1
    assert float(jnp.mean(won_high)) > float(jnp.mean(won_low)) + 0.1
    early = ENV.params_for("medium", refibrillation_probability=0.0, arrival_delay_min=2.0)
    late = ENV.params_for("medium", refibrillation_probability=0.0, arrival_delay_min=10.0)
    p_early, won_early = _first_shock_success(2000, early, jnp.float32(200.0), key)
    p_late, won_late = _first_shock_success(2000, late, jnp.float32(200.0), key)
    assert float(jnp.mean(p_early)) > float(jnp.mean(p_late)) + 0.2
    assert float(jnp.mean(won_early)) > float(jnp.mean(won_late)) + 0.2


def test_cpr_raises_amsa_and_shock_pauses_cost_perfusion():
    params = ENV.params_for("easy")
    cpr = jnp.zeros((STEPS, 2))  # four minutes of CPR, no shock
    _, (obs_cpr, _, _, _, info_cpr, states_cpr) = env_rollout(
        ENV, params, jax.random.PRNGKey(0), cpr
    )
    reset_obs, _ = ENV.reset(jax.random.PRNGKey(0), params)
    amsa = np.asarray(obs_cpr)[:, 0]
    assert amsa[11] > 2.0 * float(reset_obs[0])  # after two minutes
    assert np.all(np.diff(np.asarray(states_cpr.myocardial_energy)) > 0)
    # Tiny shocks every step: same CPR time lost to pauses, energy state worse.
    tiny = jnp.tile(jnp.array([[1.0, 1.0]]), (STEPS, 1))
    _, (_, _, _, _, _, states_shock) = env_rollout(ENV, params, jax.random.PRNGKey(0), tiny)
    assert float(states_shock.myocardial_energy[-1]) < float(states_cpr.myocardial_energy[-1])


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_heuristics_beat_random(difficulty):
    # One episode length on every tier, so the three tiers share compiled rollouts.
    steps = 48
    params = ENV.params_for(difficulty, max_steps_in_episode=steps)
    key = jax.random.PRNGKey(8)
    n = 64
    random_stats = run_episodes(
        ENV, params, random_policy, random_policy_params(ENV, params), key, n, steps
    )
    acls = run_episodes(
        ENV,
        params,
        heuristic_defibrillation_v1_policy,
        HeuristicDefibrillationV1Params(),
        key,
        n,
        steps,
    )
    amsa = run_episodes(
        ENV,
        params,
        heuristic_defibrillation_v1_policy,
        HeuristicDefibrillationV1Params(amsa_guided=jnp.float32(1.0)),
        key,
        n,
        steps,
    )
    random_mean = float(jnp.mean(random_stats.episode_return))
    assert float(jnp.mean(acls.episode_return)) > random_mean + 20.0
    assert float(jnp.mean(amsa.episode_return)) > float(jnp.mean(acls.episode_return))


def test_heuristic_policy_rules():
    params = HeuristicDefibrillationV1Params()
    amsa_params = HeuristicDefibrillationV1Params(amsa_guided=jnp.float32(1.0))
    #             amsa, amp, t, since, shocks, last, total, refib
    arrival = jnp.array([5.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    mid_cycle = jnp.array([20.0, 2.0, 60.0, 40.0, 1.0, 200.0, 200.0, 0.0])
    cycle_end = jnp.array([5.0, 0.5, 130.0, 120.0, 2.0, 300.0, 500.0, 0.0])
    np.testing.assert_array_equal(heuristic_defibrillation_v1_policy(params, arrival), [1, 200])
    assert float(heuristic_defibrillation_v1_policy(params, mid_cycle)[0]) == 0.0
    np.testing.assert_array_equal(heuristic_defibrillation_v1_policy(params, cycle_end), [1, 360])
    assert float(heuristic_defibrillation_v1_policy(amsa_params, arrival)[0]) == 0.0
    np.testing.assert_array_equal(
        heuristic_defibrillation_v1_policy(amsa_params, mid_cycle), [1, 300]
    )
    batch = jnp.stack([arrival, mid_cycle, cycle_end])
    assert heuristic_defibrillation_v1_policy(params, batch).shape == (3, 2)
