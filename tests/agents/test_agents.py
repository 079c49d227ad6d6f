"""Baseline policies: heuristics equal cardiosim 0.1.0's agents; the random policy's bounds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.agents.heuristic import HeuristicDosingAgent, HeuristicPacingAgent
from conftest import ENV_IDS, V1_IDS

import cardiosim_jax
from cardiosim_jax import agents


def random_observations(rng, n):
    return rng.normal(0.0, 1.0, (n, 6)).astype(np.float32)


# -------------------------------------------------------------------- pacing


def pacing_observations(rng):
    obs = random_observations(rng, 4000)
    errors = np.concatenate(
        [
            rng.uniform(-100.0, 100.0, 3000),
            rng.uniform(-5.0, 5.0, 500),
            rng.uniform(-1e4, 6e4, 400),  # blown-up heart rates
            # Edges of the adjustment clip (|error| = 40) and amplitude cap (|error| = 30).
            [0.0, 40.0, -40.0, 30.0, -30.0, 39.999, 40.001, 29.999, 30.001, -0.0],
        ]
    )
    obs = obs[: len(errors)]
    obs[:, 4] = errors
    obs[:, 2] = errors + 72.0
    return obs


def test_heuristic_pacing_equals_reference_agent():
    obs = pacing_observations(np.random.default_rng(0))
    reference = HeuristicPacingAgent()
    expected = np.stack([reference.predict(o) for o in obs])
    params = agents.HeuristicPacingParams()
    ours = np.asarray(agents.heuristic_pacing_policy(params, jnp.asarray(obs)))  # batched
    assert ours.shape == (len(obs), 2) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    # Every regime is exercised: clipped adjustment, amplitude capped at 1, and neither.
    assert (np.abs(expected[:, 0]) == 20.0).any() and (np.abs(expected[:, 0]) < 20.0).any()
    assert (expected[:, 1] == 1.0).any() and (expected[:, 1] < 1.0).any()


def test_heuristic_pacing_single_and_vmapped_calls_agree():
    obs = jnp.asarray(pacing_observations(np.random.default_rng(1))[:256])
    params = agents.HeuristicPacingParams()
    batched = agents.heuristic_pacing_policy(params, obs)
    vmapped = jax.vmap(agents.heuristic_pacing_policy, in_axes=(None, 0, 0))(
        params, obs, jax.random.split(jax.random.PRNGKey(0), obs.shape[0])
    )
    single = jnp.stack([agents.heuristic_pacing_policy(params, o) for o in obs[:16]])
    # Vectorised float32 division may differ from the scalar one in the last bit.
    np.testing.assert_allclose(np.asarray(batched), np.asarray(vmapped), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(batched[:16]), np.asarray(single), rtol=1e-6)
    assert single.shape == (16, 2)


# -------------------------------------------------------------------- dosing


def dosing_observations(rng, therapeutic=1.5, toxic=5.0):
    n = 3000
    obs = random_observations(rng, n)
    concentration = np.concatenate(
        [
            rng.uniform(0.0, 0.5 * therapeutic, 500),  # loading dose
            rng.uniform(0.5 * therapeutic, therapeutic, 500),  # twice maintenance
            rng.uniform(therapeutic, 0.8 * toxic, 1000),  # maintenance or x1.5 if arrhythmic
            rng.uniform(0.8 * toxic, 50.0, 990),  # withhold
            # Branch boundaries: each belongs to the next rule, as in the reference.
            [0.0, 0.5 * therapeutic, therapeutic, 0.8 * toxic, 50.0],
            np.nextafter(np.float32([0.5 * therapeutic, therapeutic, 0.8 * toxic]), 0),
            np.nextafter(np.float32([0.5 * therapeutic, therapeutic]), 100),
        ]
    ).astype(np.float32)
    obs[:, 2] = concentration
    arrhythmia = rng.choice(np.float32([0.0, 1.0, 0.5, 0.5001, 0.4999]), n)
    obs[:, 3] = arrhythmia
    return obs


@pytest.mark.parametrize(
    "custom",
    [
        {},
        {
            "loading_dose": 30.0,
            "maintenance_dose": 7.0,
            "therapeutic_threshold": 2.0,
            "toxic_threshold": 6.0,
        },
    ],
)
def test_heuristic_dosing_equals_reference_agent_on_every_branch(custom):
    reference = HeuristicDosingAgent(**custom)
    params = agents.HeuristicDosingParams(
        **{
            {"loading_dose": "loading_dose_mg", "maintenance_dose": "maintenance_dose_mg"}.get(
                k, k
            ): v
            for k, v in custom.items()
        }
    )
    obs = dosing_observations(
        np.random.default_rng(2),
        therapeutic=reference.therapeutic_threshold,
        toxic=reference.toxic_threshold,
    )
    expected = np.stack([reference.predict(o) for o in obs])
    ours = np.asarray(agents.heuristic_dosing_policy(params, jnp.asarray(obs)))
    assert ours.shape == (len(obs), 1) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)
    # All five rules fire: loading, 2x, 0, 1.5x and 1x maintenance.
    m = reference.maintenance_dose
    assert set(np.unique(expected)) == {reference.loading_dose, 2 * m, 0.0, 1.5 * m, m}


def test_heuristic_dosing_vmaps():
    obs = jnp.asarray(dosing_observations(np.random.default_rng(3))[:512])
    params = agents.HeuristicDosingParams()
    vmapped = jax.vmap(agents.heuristic_dosing_policy, in_axes=(None, 0))(params, obs)
    np.testing.assert_array_equal(
        np.asarray(vmapped), np.asarray(agents.heuristic_dosing_policy(params, obs))
    )
    assert agents.heuristic_dosing_policy(params, obs[0]).shape == (1,)


def test_heuristics_act_on_real_observations_like_reference():
    """Along our own rollouts, the heuristic's actions equal the reference agent's."""
    for env_id, policy, params, reference in [
        (
            "PacingControl-v0",
            agents.heuristic_pacing_policy,
            agents.HeuristicPacingParams(),
            HeuristicPacingAgent(),
        ),
        (
            "AntiarrhythmicDosing-v0",
            agents.heuristic_dosing_policy,
            agents.HeuristicDosingParams(),
            HeuristicDosingAgent(),
        ),
    ]:
        env, env_params = cardiosim_jax.make(env_id)
        obs, state = env.reset(jax.random.PRNGKey(0), env_params)
        step = jax.jit(env.step)
        for t in range(60):
            action = policy(params, obs)
            np.testing.assert_allclose(
                np.asarray(action), reference.predict(np.asarray(obs)), rtol=1e-6, atol=1e-7
            )
            obs, state, *_ = step(jax.random.PRNGKey(t + 1), state, action, env_params)


# -------------------------------------------------------------------- random


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_random_policy_within_bounds_and_vmappable(env_id):
    env, params = cardiosim_jax.make(env_id)
    policy_params = agents.random_policy_params(env, params)
    space = env.action_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    np.testing.assert_array_equal(np.asarray(policy_params.low), low)
    np.testing.assert_array_equal(np.asarray(policy_params.high), high)
    n = 4000
    obs = jnp.zeros((n, 6))
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    actions = np.asarray(
        jax.jit(jax.vmap(agents.random_policy, in_axes=(None, 0, 0)))(policy_params, obs, keys)
    )
    assert actions.shape == (n, *env.action_shape)
    assert ((actions >= low) & (actions <= high)).all()
    span = high - low
    # Uniform: fills the box (within 1 % of each edge) with the right mean.
    assert (actions.min(axis=0) < low + 0.01 * span).all()
    assert (actions.max(axis=0) > high - 0.01 * span).all()
    np.testing.assert_allclose(actions.mean(axis=0), (low + high) / 2, atol=0.03 * span.max())
    # Deterministic in the key, independent of the observation.
    again = agents.random_policy(policy_params, jnp.ones(6), keys[0])
    np.testing.assert_array_equal(np.asarray(again), actions[0])
    assert not np.array_equal(actions[0], actions[1])


def test_random_policy_and_heuristic_params_are_pytrees():
    """Policy params can be batched and passed through jit."""
    env, params = cardiosim_jax.make("DefibrillationTiming-v0")
    policy_params = agents.random_policy_params(env, params)
    leaves = jax.tree_util.tree_leaves(policy_params)
    assert len(leaves) == 2
    heuristic = agents.HeuristicDosingParams(maintenance_dose_mg=jnp.array([5.0, 10.0]))
    obs = jnp.zeros((2, 6)).at[:, 2].set(3.0)  # in the window, no arrhythmia
    doses = jax.jit(
        jax.vmap(
            agents.heuristic_dosing_policy,
            in_axes=(agents.HeuristicDosingParams(None, 0, None, None), 0),
        )
    )(heuristic, obs)
    np.testing.assert_array_equal(np.asarray(doses)[:, 0], [5.0, 10.0])


def test_always_shock_policy_shocks_at_its_energy_for_any_batch_shape():
    params = agents.AlwaysShockParams(energy_j=200.0)
    single = agents.always_shock_policy(params, jnp.zeros(6), None)
    batch = agents.always_shock_policy(params, jnp.zeros((5, 6)), None)
    np.testing.assert_array_equal(single, [1.0, 200.0])
    assert batch.shape == (5, 2)
    np.testing.assert_array_equal(batch, np.tile([1.0, 200.0], (5, 1)))


def test_baseline_policy_picks_the_rule_of_each_env_and_rejects_unknown_names():
    expected = {
        "PacingControl-v0": agents.heuristic_pacing_policy,
        "AntiarrhythmicDosing-v0": agents.heuristic_dosing_policy,
        "DefibrillationTiming-v0": agents.always_shock_policy,
    }
    for env_id, rule in expected.items():
        env, params = cardiosim_jax.make(env_id)
        assert agents.baseline_policy("heuristic", env, params)[0] is rule
        policy, bounds = agents.baseline_policy("random", env, params)
        assert policy is agents.random_policy
        np.testing.assert_array_equal(bounds.high, env.action_space(params).high)
    with pytest.raises(ValueError, match="accepted"):
        agents.baseline_policy("expert", env, params)


# -------------------------------------------------------------------- v1 clinical heuristics


@pytest.mark.parametrize("env_id", V1_IDS)
def test_v1_heuristic_acts_inside_the_action_box_on_real_observations(env_id):
    """The clinical heuristics read the env's own observations, batched, and act in bounds."""
    env, params = cardiosim_jax.make(env_id, "hard")
    policy, policy_params = agents.baseline_policy("heuristic", env, params)
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    actions = np.asarray(jax.jit(jax.vmap(policy, in_axes=(None, 0, 0)))(policy_params, obs, keys))
    assert actions.shape == (64, *env.action_shape)
    assert np.isfinite(actions).all()
    space = env.action_space(params)
    assert (actions >= np.asarray(space.low)).all() and (actions <= np.asarray(space.high)).all()
    # Deterministic: the same observation gives the same action whatever the key.
    again = np.asarray(policy(policy_params, obs[0], keys[1]))
    np.testing.assert_array_equal(again, actions[0])
