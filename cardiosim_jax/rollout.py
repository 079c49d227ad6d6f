"""Batched episode rollouts: returns of many episodes in one jitted call."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Policy = Callable[[Any, jax.Array, jax.Array], jax.Array]


@struct.dataclass
class EpisodeStats:
    """Per-episode undiscounted return and length (steps)."""

    episode_return: jax.Array
    length: jax.Array


@partial(jax.jit, static_argnames=("env", "policy", "n_episodes", "max_steps"))
def run_episodes(
    env: Any,
    env_params: Any,
    policy: Policy,
    policy_params: Any,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
) -> EpisodeStats:
    """Run ``n_episodes`` independent episodes (vmapped), each until its first done.

    ``max_steps`` is a static upper bound on the episode length (use the env's
    ``max_steps_in_episode``); steps after an episode's end are masked out.
    """

    def one_episode(episode_key: jax.Array) -> EpisodeStats:
        reset_key, loop_key = jax.random.split(episode_key)
        obs, state = env.reset(reset_key, env_params)

        def body(carry, step_key):
            obs, state, total, length, alive = carry
            act_key, env_key = jax.random.split(step_key)
            action = policy(policy_params, obs, act_key)
            obs, state, reward, terminated, truncated, _ = env.step(
                env_key, state, action, env_params
            )
            total = total + jnp.where(alive, reward, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(terminated | truncated)
            return (obs, state, total, length, alive), None

        init = (obs, state, jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.array(True))
        (_, _, total, length, _), _ = jax.lax.scan(
            body, init, jax.random.split(loop_key, max_steps)
        )
        return EpisodeStats(episode_return=total, length=length)

    return jax.vmap(one_episode)(jax.random.split(key, n_episodes))
