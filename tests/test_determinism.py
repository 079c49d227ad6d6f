"""Determinism and JAX transformations: keys, vmap, jit, batched params, trace reuse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DIFFICULTIES, ENV_IDS, env_rollout, random_actions

import cardiosim_jax

N_STEPS = 60


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def python_loop(env, params, key, actions, n_steps):
    """The first ``n_steps`` of ``env_rollout``'s trajectory, stepping one call at a time."""
    reset_key, loop_key = jax.random.split(key)
    obs0, state = env.reset(reset_key, params)
    records = []
    step_keys = jax.random.split(loop_key, actions.shape[0])  # as env_rollout splits them
    for step_key, action in zip(step_keys[:n_steps], actions[:n_steps], strict=True):
        obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
        records.append((obs, reward, terminated, truncated, state))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *records)
    return obs0, stacked


# ------------------------------------------------------------------- same key


def test_same_key_gives_bit_identical_trajectories(env_id):
    env, params = cardiosim_jax.make(env_id, "hard")
    actions = random_actions(env, params, jax.random.PRNGKey(1), N_STEPS)
    first = env_rollout(env, params, jax.random.PRNGKey(42), actions)
    second = env_rollout(env, params, jax.random.PRNGKey(42), actions)
    assert_trees_equal(first, second)
    # A fresh environment object built the same way gives the same trajectory too.
    env2, params2 = cardiosim_jax.make(env_id, "hard")
    assert_trees_equal(first, env_rollout(env2, params2, jax.random.PRNGKey(42), actions))
    # ...and another key a different one (the envs are stochastic on "hard").
    other = env_rollout(env, params, jax.random.PRNGKey(43), actions)
    assert not np.array_equal(np.asarray(first[1][0]), np.asarray(other[1][0]))


# ----------------------------------------------------------------------- vmap


def test_vmap_over_keys_equals_python_loop(env_id):
    env, params = cardiosim_jax.make(env_id, "medium")
    n = 6
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    actions = jnp.stack([random_actions(env, params, k, N_STEPS) for k in keys])
    batched = jax.vmap(env_rollout, in_axes=(None, None, 0, 0))(env, params, keys, actions)
    for i in range(n):
        single = env_rollout(env, params, keys[i], actions[i])
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], batched), single)


def test_vmapped_step_equals_individual_step_calls(env_id):
    env, params = cardiosim_jax.make(env_id, "hard")
    n = 5
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    obs, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    actions = random_actions(env, params, jax.random.PRNGKey(4), n)
    step_keys = jax.random.split(jax.random.PRNGKey(5), n)
    batched = jax.vmap(env.step, in_axes=(0, 0, 0, None))(step_keys, states, actions, params)
    for i in range(n):
        obs_i, state_i = env.reset(keys[i], params)
        assert_trees_close(obs_i, obs[i])
        single = env.step(step_keys[i], state_i, actions[i], params)
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], batched), single)


# ------------------------------------------------------------------ jit vs eager


def test_jit_equals_no_jit(env_id):
    env, params = cardiosim_jax.make(env_id, "medium")
    n = 8  # eager steps; the jitted side is the N_STEPS rollout the other tests compile
    actions = random_actions(env, params, jax.random.PRNGKey(2), N_STEPS)
    key = jax.random.PRNGKey(9)
    jitted = env_rollout(env, params, key, actions)
    jitted = (jitted[0], jax.tree.map(lambda x: x[:n], jitted[1]))
    with jax.disable_jit():
        eager = python_loop(env, params, key, actions, n)
    np.testing.assert_allclose(np.asarray(eager[0]), np.asarray(jitted[0]), rtol=1e-5, atol=1e-6)
    obs, rewards, terminated, truncated, states = eager[1]
    np.testing.assert_allclose(np.asarray(obs), np.asarray(jitted[1][0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rewards), np.asarray(jitted[1][1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(terminated), np.asarray(jitted[1][2]))
    np.testing.assert_array_equal(np.asarray(truncated), np.asarray(jitted[1][3]))
    assert_trees_close(states, jitted[1][5], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- batched params

#: Per env: overrides whose values differ per patient (a population of 3).
POPULATIONS = {
    "PacingControl-v0": {
        "av_delay": [130.0, 200.0, 290.0],
        "target_heart_rate_bpm": [60.0, 72.0, 100.0],
        "conduction_block_prob": [0.0, 0.3, 0.9],
    },
    "AntiarrhythmicDosing-v0": {
        "elimination_rate": [0.05, 0.1, 0.4],
        "toxic_threshold": [6.0, 8.0, 14.0],
        "arrhythmia_prob": [0.0, 0.5, 1.0],
    },
    "DefibrillationTiming-v0": {
        "fib_severity": [0.0, 0.5, 1.0],
        "epsilon_0": [0.001, 0.005, 0.01],
        "defibrillation_success_base": [0.2, 0.6, 1.0],
    },
}


def test_vmap_over_population_params_equals_per_patient_calls(env_id):
    population = POPULATIONS[env_id]
    env, batched_params = cardiosim_jax.make(
        env_id, "medium", **{k: jnp.array(v) for k, v in population.items()}
    )
    n = 3
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    actions = random_actions(env, batched_params, jax.random.PRNGKey(12), N_STEPS)
    batched = jax.vmap(env_rollout, in_axes=(None, 0, 0, None))(env, batched_params, keys, actions)
    patients = []
    for i in range(n):
        _, params_i = cardiosim_jax.make(
            env_id, "medium", **{k: v[i] for k, v in population.items()}
        )
        patients.append(params_i)
        single = env_rollout(env, params_i, keys[i], actions)
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], batched), single)
    # Patients differ: their trajectories are not all the same.
    obs = np.asarray(batched[1][0])
    assert not np.array_equal(obs[0], obs[1]) and not np.array_equal(obs[1], obs[2])
    # Stacking per-patient params with tree.map gives the same batched params.
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *patients)
    assert_trees_equal(stacked, batched_params)


def test_vmap_over_difficulty_tiers(env_id):
    env, _ = cardiosim_jax.make(env_id)
    tiers = [cardiosim_jax.make(env_id, d)[1] for d in DIFFICULTIES]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tiers)
    keys = jax.random.split(jax.random.PRNGKey(0), len(tiers))
    obs, states = jax.vmap(env.reset)(keys, stacked)
    for i, params in enumerate(tiers):
        assert_trees_close(
            env.reset(keys[i], params), (obs[i], jax.tree.map(lambda x, i=i: x[i], states))
        )


# -------------------------------------------------------------- trace reuse


def test_one_compiled_step_serves_every_tier_and_patient(env_id):
    env, _ = cardiosim_jax.make(env_id)
    traces = []

    def counted_step(key, state, action, params):
        traces.append(1)  # runs only while tracing
        return env.step(key, state, action, params)

    step = jax.jit(counted_step)
    param_sets = [cardiosim_jax.make(env_id, d)[1] for d in DIFFICULTIES]
    population = POPULATIONS[env_id]
    for i in range(3):
        # Python ints and floats as overrides: same dtypes, same compiled function.
        overrides = {k: v[i] for k, v in population.items()}
        param_sets.append(cardiosim_jax.make(env_id, "hard", **overrides)[1])
        param_sets.append(cardiosim_jax.make(env_id, max_steps_in_episode=10 + i)[1])
    _, state = env.reset(jax.random.PRNGKey(0), param_sets[0])
    action = jnp.zeros(env.action_shape)
    outputs = []
    for params in param_sets:
        outputs.append(step(jax.random.PRNGKey(1), state, action, params))
    assert len(traces) == 1
    assert step._cache_size() == 1
    # ...and it really used the different values (rewards or observations differ).
    distinct = {tuple(np.asarray(out[0]).tolist()) + (float(out[2]),) for out in outputs}
    assert len(distinct) > 1


def test_env_instances_compare_and_hash_equal(env_id):
    env_a, _ = cardiosim_jax.make(env_id)
    env_b, _ = cardiosim_jax.make(env_id, "hard")
    assert env_a is not env_b
    assert env_a == env_b and hash(env_a) == hash(env_b)
    for other_id in ENV_IDS:
        if other_id != env_id:
            assert env_a != cardiosim_jax.make(other_id)[0]
    # gymnax's own jitted step (static ``self``) is shared by the two instances.
    _, params = cardiosim_jax.make(env_id)
    _, state = env_a.reset(jax.random.PRNGKey(0), params)
    action = jnp.zeros(env_a.action_shape)
    env_a.step(jax.random.PRNGKey(1), state, action, params)
    before = type(env_a).step._cache_size()
    env_b.step(jax.random.PRNGKey(2), state, action, params)
    assert type(env_a).step._cache_size() == before


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_static_env_argument_compiles_once_for_many_instances(env_id):
    traces = []

    def reset(env, key, params):
        traces.append(1)
        return env.reset(key, params)

    jitted = jax.jit(reset, static_argnums=0)
    for difficulty in DIFFICULTIES:
        env, params = cardiosim_jax.make(env_id, difficulty)
        jitted(env, jax.random.PRNGKey(0), params)
    assert len(traces) == 1
