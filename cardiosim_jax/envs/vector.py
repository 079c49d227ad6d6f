"""Batched stepping with optimistic reset: reset only the patients whose episode ended.

gymnax's ``env.step`` auto-resets by computing ``reset_env`` on every step and
selecting it where the episode ended; under ``jax.vmap`` that is a full reset
of the whole batch per step, although episodes end rarely (PacingControl runs
500 steps). :func:`make_batched_step` returns a batched step that computes only
``num_resets`` resets per call (Craftax's "optimistic reset"), for the first
``num_resets`` patients that are done, and writes them into place.

It is *exact*: its outputs are ``jax.vmap(env.step)``'s (the same per-patient
keys, the same reset keys, the same functions), whatever the number of
finished episodes: every discrete outcome identical, floats to the last bits
(XLA may contract ``a * b + c`` into an FMA differently in another program,
as it may between any two jitted programs). When more than ``num_resets`` patients are done
in one call, a ``lax.cond`` takes a full-batch reset instead, so correctness
never depends on how many episodes end together; when none is done, no reset
is computed at all. (Under an outer ``jax.vmap`` the ``cond`` becomes a select
and all branches run: still exact, no longer cheaper.)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from cardiosim_jax.envs.base import broadcast_population, population_axis, transition
from cardiosim_jax.models import prng

#: Default fraction of the batch that gets a reset slot per step (1 / reset_ratio).
DEFAULT_RESET_RATIO = 16

BatchedStep = Callable[
    [jax.Array, Any, jax.Array, Any],
    tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]],
]


def _batch_keys(key: jax.Array, batch_size: int) -> jax.Array:
    """Per-patient keys: ``key`` itself if it already holds one per patient, else split."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    single = key.ndim == (0 if typed else 1)
    return prng.split(key, batch_size) if single else key


def make_batched_step(
    env: Any,
    batch_size: int,
    reset_ratio: int = DEFAULT_RESET_RATIO,
    num_resets: int | None = None,
) -> BatchedStep:
    """A batched, auto-resetting step that computes at most ``num_resets`` resets per call.

    Args:
        env: a CardioSim (gymnax) environment.
        batch_size: number of patients stepped together (static).
        reset_ratio: ``num_resets`` defaults to ``max(1, batch_size // reset_ratio)``.
        num_resets: reset slots per call; more done patients than this fall
            back to a full-batch reset (exact either way).

    Returns:
        ``step(keys, states, actions, params) -> (obs, states, reward,
        terminated, truncated, info)``, equal to ``jax.vmap(env.step)`` over the
        batch. ``keys`` is one key per patient (shape ``(batch_size, 2)`` raw or
        ``(batch_size,)`` typed) or a single key, split into ``batch_size``;
        ``params`` is shared (scalar leaves) or a population (leaves with a
        leading ``batch_size`` axis, as ``cardiosim_jax.make`` builds from
        array overrides), or ``None`` for the env's defaults. The function is
        jitted; it also traces inside an outer ``jit``/``scan``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_resets is None:
        if reset_ratio < 1:
            raise ValueError(f"reset_ratio must be positive, got {reset_ratio}")
        num_resets = max(1, batch_size // reset_ratio)
    if not 1 <= num_resets <= batch_size:
        raise ValueError(f"num_resets must be in [1, {batch_size}], got {num_resets}")

    def step(
        keys: jax.Array, states: Any, actions: jax.Array, params: Any = None
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        # Resolved outside jit: building the default params validates them in NumPy.
        return _step(keys, states, actions, env.default_params if params is None else params)

    @jax.jit
    def _step(
        keys: jax.Array, states: Any, actions: jax.Array, params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        # Mixed params (some leaves per patient, some shared) count as a population.
        params = broadcast_population(params)
        axes = population_axis(params, batch_size)
        keys = _batch_keys(keys, batch_size)
        # The same split as env.step, per patient.
        split = jax.vmap(prng.split)(keys)
        key_step, key_reset = split[:, 0], split[:, 1]
        obs_st, state_st, reward, terminated, truncated, info = jax.vmap(
            partial(transition, env), in_axes=(0, 0, 0, axes)
        )(key_step, states, actions, params)
        done = terminated | truncated
        n_done = jnp.sum(done, dtype=jnp.int32)

        def no_reset(_: None) -> tuple[jax.Array, Any]:
            return obs_st, state_st

        def few_resets(_: None) -> tuple[jax.Array, Any]:
            # Indices of the first num_resets done patients; unused slots point past
            # the batch and are dropped when writing back.
            (index,) = jnp.nonzero(done, size=num_resets, fill_value=batch_size)
            safe = jnp.minimum(index, batch_size - 1)
            slot_params = params if axes is None else jax.tree.map(lambda leaf: leaf[safe], params)
            obs_re, state_re = jax.vmap(env.reset_env, in_axes=(0, axes))(
                key_reset[safe], slot_params
            )
            state = jax.tree.map(
                lambda now, fresh: now.at[index].set(fresh, mode="drop"), state_st, state_re
            )
            return obs_st.at[index].set(obs_re, mode="drop"), state

        def all_resets(_: None) -> tuple[jax.Array, Any]:
            obs_re, state_re = jax.vmap(env.reset_env, in_axes=(0, axes))(key_reset, params)

            def select(fresh: jax.Array, now: jax.Array) -> jax.Array:
                mask = done.reshape(done.shape + (1,) * (now.ndim - 1))
                return jnp.where(mask, fresh, now)

            return select(obs_re, obs_st), jax.tree.map(select, state_re, state_st)

        branch = jnp.where(n_done == 0, 0, jnp.where(n_done <= num_resets, 1, 2))
        obs, state = jax.lax.switch(branch, (no_reset, few_resets, all_resets), None)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state, reward, terminated, truncated, info

    return step
