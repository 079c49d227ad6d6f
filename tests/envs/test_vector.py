"""Optimistic-reset batched step (cardiosim_jax.envs.vector) and the fusible PRNG it uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ENV_IDS, random_actions

import cardiosim_jax
from cardiosim_jax.envs.vector import make_batched_step
from cardiosim_jax.models import prng

BATCH = 24
SLOTS = 4
#: Half the batch ends together at step 5 (more than SLOTS: full-reset branch), the
#: rest one per step from 7 on (a reset slot each), and nothing ends in steps 1-4.
EPISODE_LENGTHS = np.array([5] * 12 + list(range(7, 7 + 12)), np.int32)
N_STEPS = 20


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_trees_match(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


def rollouts(env, params, step, key, n_steps=N_STEPS):
    """The same rollout through ``step`` (batched signature), jitted as one scan."""
    reset_key, loop_key = jax.random.split(key)
    _, states = jax.vmap(env.reset, in_axes=(0, 0))(jax.random.split(reset_key, BATCH), params)
    actions = random_actions(env, params, jax.random.PRNGKey(11), n_steps * BATCH)
    actions = actions.reshape(n_steps, BATCH, -1)

    @jax.jit
    def run(states):
        def body(states, inputs):
            step_key, action = inputs
            out = step(jax.random.split(step_key, BATCH), states, action, params)
            return out[1], out

        return jax.lax.scan(body, states, (jax.random.split(loop_key, n_steps), actions))[1]

    return run(states)


def vmapped_step(env):
    return jax.vmap(env.step, in_axes=(0, 0, 0, 0))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_equals_vmapped_env_step_in_every_branch(env_id):
    env, params = cardiosim_jax.make(env_id, "hard", max_steps_in_episode=EPISODE_LENGTHS)
    expected = rollouts(env, params, vmapped_step(env), jax.random.PRNGKey(0))
    batched = make_batched_step(env, BATCH, num_resets=SLOTS)
    got = rollouts(env, params, batched, jax.random.PRNGKey(0))
    # The same transitions: flags, counters and every discrete outcome exactly; floats
    # to the last bits (XLA may contract a * b + c into an FMA differently when the
    # step is compiled into another program, e.g. a reset for a few slots).
    assert_trees_match(got, expected)
    # Not vacuous: steps with no, few (<= SLOTS) and many (> SLOTS) finished episodes.
    done = np.asarray(got[3] | got[4]).sum(axis=1)
    assert (done == 0).any() and ((done > 0) & (done <= SLOTS)).any() and (done > SLOTS).any()
    # Done patients restart: time 0 and a reset observation, never NaN.
    states = got[1]
    assert (np.asarray(states.time)[np.asarray(got[3] | got[4])] == 0).all()
    for leaf in jax.tree_util.tree_leaves(got):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert np.isfinite(np.asarray(leaf)).all()


def test_default_ratio_single_key_and_shared_params():
    env, params = cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=3)
    n = 64
    _, states = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(1), n), params
    )
    actions = random_actions(env, params, jax.random.PRNGKey(2), n)
    step = make_batched_step(env, n)  # 64 // 16 = 4 reset slots
    key = jax.random.PRNGKey(3)
    expected = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(key, n), states, actions, params
    )
    # A single key is split into one key per patient, as jax.random.split(key, n).
    assert_trees_match(step(key, states, actions, params), expected)
    # Typed keys work too.
    typed = jax.random.wrap_key_data(jax.random.split(key, n))
    assert_trees_match(step(typed, states, actions, params), expected)
    # None means the env's default params. The same compiled step serves it (params are
    # traced): no patient is done after one step, so another reset_ratio would change
    # nothing this could observe, only add a compilation.
    default = step(key, states, actions, None)
    assert_trees_match(
        default,
        jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, n), states, actions, env.default_params
        ),
    )


def test_mixed_params_step_as_their_broadcast_population():
    # One leaf per patient, the others shared (params built by hand, not by make).
    env, params = cardiosim_jax.make("DefibrillationTiming-v0", max_steps_in_episode=2)
    n = 8
    mixed = params.replace(max_steps_in_episode=jnp.array([1, 2] * (n // 2), jnp.int32))
    population = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,)), mixed)
    _, states = jax.vmap(env.reset, in_axes=(0, 0))(
        jax.random.split(jax.random.PRNGKey(1), n), population
    )
    actions = jnp.zeros((n, 2))
    step = make_batched_step(env, n, num_resets=2)
    key = jax.random.PRNGKey(4)
    assert_trees_match(step(key, states, actions, mixed), step(key, states, actions, population))


def test_done_patients_get_fresh_valid_resets_with_only_one_slot():
    """More finished episodes than slots in every step: each still gets its own reset."""
    env, params = cardiosim_jax.make("DefibrillationTiming-v0", max_steps_in_episode=1)
    n = 16
    _, states = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(1), n), params
    )
    actions = jnp.zeros((n, 2))
    step = make_batched_step(env, n, num_resets=1)
    obs, new_states, *_ = step(jax.random.PRNGKey(5), states, actions, params)
    assert (np.asarray(new_states.time) == 0).all()
    u = np.asarray(new_states.cell.u)
    assert len(np.unique(u)) == n  # distinct draws, not one reset copied
    assert ((u >= 0.3) & (u <= 0.9)).all()
    np.testing.assert_array_equal(np.asarray(obs[:, 0]), u)


def test_rejects_bad_sizes():
    env, _ = cardiosim_jax.make("PacingControl-v0")
    with pytest.raises(ValueError, match="batch_size"):
        make_batched_step(env, 0)
    with pytest.raises(ValueError, match="num_resets"):
        make_batched_step(env, 8, num_resets=9)
    with pytest.raises(ValueError, match="reset_ratio"):
        make_batched_step(env, 8, reset_ratio=0)


# ------------------------------------------------------------------- prng


KEYS = jax.random.split(jax.random.PRNGKey(3), 257)


@pytest.fixture
def fused():
    """The fused Threefry, whatever CARDIOSIM_JAX_FUSED_PRNG says."""
    with prng.fused_threefry(True):
        yield


def test_the_switch_selects_the_fused_or_the_rolled_threefry():
    def primitives() -> set[str]:
        jaxpr = jax.make_jaxpr(lambda k: prng.uniform(k, (3,)))(KEYS[0])
        return {str(eqn.primitive) for eqn in jaxpr.jaxpr.eqns}

    with prng.fused_threefry(True):
        fused = primitives()
    with prng.fused_threefry(False):
        rolled = primitives()
    # Fused: the hash as integer ops in line. Rolled: jax.random's own (jitted) call.
    assert {"shift_left", "xor"} <= fused and "jit" not in fused
    assert "jit" in rolled and "shift_left" not in rolled


@pytest.mark.parametrize("jit", [False, True])
def test_prng_matches_jax_random_bit_for_bit(jit, fused):
    wrap = jax.jit if jit else (lambda f: f)
    pairs = {
        "split": (lambda k: prng.split(k, 3), lambda k: jax.random.split(k, 3)),
        "split2": (prng.split, jax.random.split),
        "uniform": (lambda k: prng.uniform(k, (7,)), lambda k: jax.random.uniform(k, (7,))),
        "normal": (lambda k: prng.normal(k, (20,)), lambda k: jax.random.normal(k, (20,))),
        "normal_at": (
            lambda k: jnp.stack([prng.normal_at(k, i, 20) for i in range(20)]),
            lambda k: jax.random.normal(k, (20,)),
        ),
        "uniform_at": (
            lambda k: jnp.stack([prng.uniform_at(k, i, 10) for i in range(10)]),
            lambda k: jax.random.uniform(k, (10,)),
        ),
    }
    for name, (ours, theirs) in pairs.items():
        np.testing.assert_array_equal(
            np.asarray(wrap(jax.vmap(ours))(KEYS)),
            np.asarray(wrap(jax.vmap(theirs))(KEYS)),
            err_msg=name,
        )
    # Scaled uniforms: equal under jit; eager differs at most by the rounding of an FMA.
    ours = wrap(jax.vmap(lambda k: prng.uniform(k, (5,), 0.3, 0.9)))(KEYS)
    theirs = wrap(jax.vmap(lambda k: jax.random.uniform(k, (5,), minval=0.3, maxval=0.9)))(KEYS)
    np.testing.assert_allclose(
        np.asarray(ours), np.asarray(theirs), rtol=0, atol=0 if jit else 1e-7
    )


def test_prng_typed_and_other_implementations(fused):
    key = jax.random.key(5)
    np.testing.assert_array_equal(
        jax.random.key_data(prng.split(key, 4)), jax.random.key_data(jax.random.split(key, 4))
    )
    np.testing.assert_array_equal(prng.normal(key, (3,)), jax.random.normal(key, (3,)))
    rbg = jax.random.key(5, impl="rbg")  # not Threefry: falls back to jax.random itself
    np.testing.assert_array_equal(prng.normal(rbg, (3,)), jax.random.normal(rbg, (3,)))
    np.testing.assert_array_equal(prng.uniform_at(rbg, 2, 4), jax.random.uniform(rbg, (4,))[2])
    np.testing.assert_array_equal(
        jax.random.key_data(prng.split(rbg)), jax.random.key_data(jax.random.split(rbg))
    )


def test_env_step_keeps_gymnax_semantics(env_id):
    """The overridden env.step is gymnax's: step_env on split(key)[0], reset_env on [1]."""
    env, params = cardiosim_jax.make(env_id, "hard", max_steps_in_episode=2)
    key = jax.random.PRNGKey(4)
    _, state = env.reset(key, params)
    action = random_actions(env, params, key, 1)[0]
    for _ in range(2):
        obs, next_state, reward, terminated, truncated, info = env.step(key, state, action, params)
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward_st, term_st, _ = env.step_env(key_step, state, action, params)
        np.testing.assert_allclose(reward, reward_st, rtol=1e-6)
        np.testing.assert_allclose(info["final_observation"], obs_st, rtol=1e-6, atol=1e-6)
        if bool(terminated | truncated):
            obs_re, state_re = env.reset_env(key_reset, params)
            np.testing.assert_allclose(obs, obs_re, rtol=1e-6)
        state, key = next_state, jax.random.split(key)[0]
