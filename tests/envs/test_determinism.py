"""Environment identity under JAX: equal instances share compiled code.

Determinism, jit vs eager, vmap vs loop, population and tier vmaps and "one
compilation serves every tier and patient" are conformance checks
(:mod:`cardiosim_jax.testing`), run on every registered id by test_conformance.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from conftest import DIFFICULTIES, ENV_IDS

import cardiosim_jax


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
