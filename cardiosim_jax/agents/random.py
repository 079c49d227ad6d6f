"""Uniform random policy over a Box action space."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RandomPolicyParams:
    """Action bounds to sample between."""

    low: jax.Array
    high: jax.Array


def random_policy_params(env: Any, env_params: Any) -> RandomPolicyParams:
    """Bounds of ``env.action_space(env_params)``."""
    space = env.action_space(env_params)
    return RandomPolicyParams(low=jnp.asarray(space.low), high=jnp.asarray(space.high))


def random_policy(params: RandomPolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """An action drawn uniformly from ``[low, high]``; ``obs`` is ignored."""
    del obs
    return jax.random.uniform(key, params.low.shape, minval=params.low, maxval=params.high)
