"""Batched episode rollouts: returns of many episodes in one jitted call."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax import sharding
from cardiosim_jax.envs.base import population_axis, transition

Policy = Callable[[Any, jax.Array, jax.Array], jax.Array]


@struct.dataclass
class EpisodeStats:
    """Per-episode undiscounted return and length (steps)."""

    episode_return: jax.Array
    length: jax.Array


def _population_axis(env_params: Any, n_episodes: int) -> int | None:
    """``0`` if ``env_params`` is a population of ``n_episodes`` patients, ``None`` if shared."""
    try:
        return population_axis(env_params, n_episodes)
    except ValueError as error:
        raise ValueError(f"batched env params (n_episodes={n_episodes}): {error}") from None


def episode_inputs(
    env_params: Any, key: jax.Array, n_episodes: int, shard: bool
) -> tuple[jax.Array, Any, int | None, Any]:
    """Per-episode keys and env params, split over all devices when ``shard``.

    Anything that plays "the same episodes as ``run_episodes``" for a key
    (the MPC oracle) takes its keys from here.

    Returns ``(keys, env_params, params_axis, mesh)``; ``mesh`` is None unsharded.
    """
    params_axis = _population_axis(env_params, n_episodes)
    keys = jax.random.split(key, n_episodes)
    mesh = None
    if shard:
        mesh = sharding.patient_mesh()
        sharding.check_divisible(n_episodes, mesh, "n_episodes")
        # Constraining the inputs (and outputs) is enough: the partitioner
        # propagates the split through the vmapped episode loop.
        keys = sharding.constrain_batch(keys, mesh)
        if params_axis is not None:
            env_params = sharding.constrain_batch(env_params, mesh)
    return keys, env_params, params_axis, mesh


@partial(jax.jit, static_argnames=("env", "policy", "n_episodes", "max_steps", "shard"))
def run_episodes(
    env: Any,
    env_params: Any,
    policy: Policy,
    policy_params: Any,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
    shard: bool = False,
) -> EpisodeStats:
    """Run ``n_episodes`` independent episodes (vmapped), each until its first done.

    ``max_steps`` is a static upper bound on the episode length (use the env's
    ``max_steps_in_episode``); steps after an episode's end are masked out.
    ``env_params`` may be a population (every leaf with leading axis
    ``n_episodes``): episode ``i`` then runs patient ``i``.

    ``shard=True`` splits the episodes (and a population) evenly over all
    devices of :func:`cardiosim_jax.sharding.patient_mesh`; ``n_episodes`` must
    be divisible by the device count. Returns the same values as unsharded,
    as arrays of shape ``(n_episodes,)`` split over the devices.
    """

    def one_episode(episode_key: jax.Array, env_params: Any) -> EpisodeStats:
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

    keys, env_params, params_axis, mesh = episode_inputs(env_params, key, n_episodes, shard)
    stats = jax.vmap(one_episode, in_axes=(0, params_axis))(keys, env_params)
    return sharding.constrain_batch(stats, mesh)


@struct.dataclass
class Trajectory:
    """One recorded episode, time-major.

    Leaves have a leading ``(max_steps,)`` axis, plus a leading batch axis when
    vmapped or made by :func:`record_episodes`. Steps after the episode's end
    are padding (``valid`` False): reward 0, action 0, terminated and truncated
    False, and ``info`` and ``state`` frozen at the final step's values.
    """

    observation: jax.Array  # (T, obs_dim): what the policy saw before each step
    action: jax.Array  # (T, act_dim): the policy's action, before the env clips it
    reward: jax.Array  # (T,)
    terminated: jax.Array  # (T,) bool
    truncated: jax.Array  # (T,) bool
    valid: jax.Array  # (T,) bool: the step belongs to the episode (False after its end)
    info: dict  # the env's step info, each (T,)
    state: Any  # env state after each step, leaves (T, ...)

    @property
    def episode_return(self) -> jax.Array:
        """Undiscounted return of the episode, shape ``()`` (or ``(batch,)``)."""
        return jnp.sum(jnp.where(self.valid, self.reward, 0.0), axis=-1)

    @property
    def length(self) -> jax.Array:
        """Number of steps in the episode, int32, shape ``()`` (or ``(batch,)``)."""
        return jnp.sum(self.valid, axis=-1, dtype=jnp.int32)


@partial(jax.jit, static_argnames=("env", "policy", "max_steps"))
def record_episode(
    env: Any,
    env_params: Any,
    policy: Policy,
    policy_params: Any,
    key: jax.Array,
    max_steps: int,
) -> Trajectory:
    """Record one episode from ``env.reset`` with the key schedule of :func:`run_episodes`.

    ``record_episodes(..., key, n, ...)`` equals ``run_episodes(..., key, n, ...)``
    episode by episode. Vmap it over keys and (batched) env params with
    ``in_axes=(None, 0, None, None, 0, None)``, or use :func:`record_episodes`.
    """
    reset_key, loop_key = jax.random.split(key)
    obs, state = env.reset(reset_key, env_params)

    def step(env_key: jax.Array, state: Any, action: jax.Array):
        # env.step without its auto-reset, so a finished episode's final state is
        # kept: the same key split as env.step.
        return transition(env, jax.random.split(env_key)[0], state, action, env_params)

    # A zero info of the right structure, to freeze into after the last step.
    dummy_action = jnp.zeros(jax.eval_shape(policy, policy_params, obs, key).shape, jnp.float32)
    info_shape = jax.eval_shape(step, key, state, dummy_action)[-1]
    zero_info = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)

    def body(carry, step_key):
        obs, state, info, alive = carry
        act_key, env_key = jax.random.split(step_key)
        action = jnp.asarray(policy(policy_params, obs, act_key), jnp.float32)
        next_obs, next_state, reward, terminated, truncated, next_info = step(
            env_key, state, action
        )

        def keep(new, old):
            return jax.tree_util.tree_map(lambda n, o: jnp.where(alive, n, o), new, old)

        next_obs, next_state, next_info = keep(
            (next_obs, next_state, next_info), (obs, state, info)
        )
        record = Trajectory(
            observation=obs,
            action=jnp.where(alive, action, 0.0),
            reward=jnp.where(alive, reward, 0.0),
            terminated=alive & terminated,
            truncated=alive & truncated,
            valid=alive,
            info=next_info,
            state=next_state,
        )
        alive = alive & ~(terminated | truncated)
        return (next_obs, next_state, next_info, alive), record

    init = (obs, state, zero_info, jnp.array(True))
    _, trajectory = jax.lax.scan(body, init, jax.random.split(loop_key, max_steps))
    return trajectory


@partial(jax.jit, static_argnames=("env", "policy", "n_episodes", "max_steps", "shard"))
def record_episodes(
    env: Any,
    env_params: Any,
    policy: Policy,
    policy_params: Any,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
    shard: bool = False,
) -> Trajectory:
    """Record ``n_episodes`` episodes (vmapped); leaves get a leading ``(n_episodes,)`` axis.

    ``env_params`` may be a population (every leaf with leading axis
    ``n_episodes``, as ``cardiosim_jax.make`` builds from array overrides):
    episode ``i`` then runs patient ``i``. Same keys as :func:`run_episodes`.
    ``shard=True`` splits the episodes over all devices, as in :func:`run_episodes`.
    """
    keys, env_params, params_axis, mesh = episode_inputs(env_params, key, n_episodes, shard)
    trajectories = jax.vmap(record_episode, in_axes=(None, params_axis, None, None, 0, None))(
        env, env_params, policy, policy_params, keys, max_steps
    )
    return sharding.constrain_batch(trajectories, mesh)
