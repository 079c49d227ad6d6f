"""Oracle ceilings: model-predictive control with privileged access to the true simulator.

Because ``env.step_env`` is a pure function of ``(key, state, action, params)``,
a planner can copy the *true* environment state and simulate many candidate
action sequences from it in one vmapped call. :func:`mpc_action` does that
with the cross-entropy method (CEM; ``iterations=1`` is random shooting):
sample ``num_candidates`` sequences of ``horizon`` actions from a Gaussian
inside the action bounds, score each by its simulated return, refit the
Gaussian to the ``num_elites`` best, repeat, and play the first action of the
best sequence seen. The next step starts from that sequence shifted by one.

The planner knows the state and the parameters (the patient) exactly but not
the future random numbers: candidates are scored on ``noise_samples``
futures drawn from the planner's own keys, the same futures for every
candidate (common random numbers, so candidates are compared on equal
terms). In deterministic environments (every easy tier) it therefore plans
on the true future; in stochastic ones its return is an estimate of what a
controller that knows the patient can achieve, not a strict upper bound.

:func:`run_oracle_episodes` evaluates the planner on the same episodes
(keys) as :func:`cardiosim_jax.rollout.run_episodes` evaluates a policy, so
the two are directly comparable.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.rollout import EpisodeStats, episode_inputs


@struct.dataclass
class MPCConfig:
    """CEM planner settings. All but ``initial_std``/``min_std`` fix shapes (static)."""

    horizon: int = struct.field(pytree_node=False, default=10)
    num_candidates: int = struct.field(pytree_node=False, default=128)
    iterations: int = struct.field(pytree_node=False, default=3)
    num_elites: int = struct.field(pytree_node=False, default=16)
    #: Simulated futures each candidate is scored on (averaged).
    noise_samples: int = struct.field(pytree_node=False, default=2)
    #: Env steps each planned action is held for: the lookahead is
    #: ``horizon x action_repeat`` steps (long delays, e.g. drug absorption, need it).
    action_repeat: int = struct.field(pytree_node=False, default=1)
    #: Initial / smallest sampling std, as a fraction of each action dimension's range.
    initial_std: float = 0.5
    min_std: float = 0.05

    @property
    def lookahead(self) -> int:
        """Env steps simulated per candidate."""
        return self.horizon * self.action_repeat

    def __post_init__(self) -> None:
        for name in ("horizon", "num_candidates", "iterations", "noise_samples", "action_repeat"):
            if getattr(self, name) < 1:
                raise ValueError(f"MPCConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.num_elites <= self.num_candidates:
            raise ValueError(
                f"MPCConfig.num_elites must be in [1, num_candidates={self.num_candidates}], "
                f"got {self.num_elites}"
            )


def _bounds(env: Any, params: Any) -> tuple[jax.Array, jax.Array]:
    space = env.action_space(params)
    shape = (env.num_actions,)
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape)
    return low, high


def simulate_return(
    env: Any, params: Any, state: Any, actions: jax.Array, keys: jax.Array
) -> jax.Array:
    """Undiscounted return of playing ``actions`` (``(H, A)``) from ``state``, one future.

    Rewards after the simulated episode ends (termination or truncation) do not count.
    """

    def body(carry: tuple[Any, jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]) -> Any:
        state, total, alive = carry
        key, action = inputs
        _, next_state, reward, terminated, _ = env.step_env(key, state, action, params)
        truncated = env.is_truncated(next_state, params)
        total = total + jnp.where(alive, reward, 0.0)
        alive = alive & ~(terminated | truncated)
        return (next_state, total, alive), None

    init = (state, jnp.zeros((), jnp.float32), jnp.array(True))
    (_, total, _), _ = jax.lax.scan(body, init, (keys, actions))
    return total


def mpc_action(
    env: Any,
    params: Any,
    state: Any,
    key: jax.Array,
    plan: jax.Array,
    config: MPCConfig,
) -> tuple[jax.Array, jax.Array]:
    """One CEM planning step from the true ``state``.

    Candidates are ``horizon`` actions, each held ``action_repeat`` steps; the
    warm start ``plan`` (``(lookahead, num_actions)``, the previous best
    shifted by one step) is always among them, so the returned sequence scores
    at least as well as the warm start on the planner's futures.

    Returns:
        ``(action, best_sequence)``: the action to play and the best
        ``(lookahead, num_actions)`` sequence found.
    """
    low, high = _bounds(env, params)
    span = high - low
    blocks = (config.horizon, config.action_repeat, env.num_actions)
    sample_key, future_key = jax.random.split(key)
    futures = jax.random.split(future_key, config.noise_samples * config.lookahead).reshape(
        config.noise_samples, config.lookahead, -1
    )

    def score(actions: jax.Array) -> jax.Array:
        returns = jax.vmap(lambda keys: simulate_return(env, params, state, actions, keys))(futures)
        return jnp.mean(returns)

    def iteration(carry: Any, iter_key: jax.Array) -> Any:
        mean, std, best_seq, best_score = carry
        noise = jax.random.normal(
            iter_key, (config.num_candidates, config.horizon, env.num_actions)
        )
        coarse = jnp.clip(mean + std * noise, low, high)
        candidates = jnp.repeat(coarse, config.action_repeat, axis=1)
        # Keep the incumbent in the population so the best never gets worse.
        candidates = candidates.at[0].set(best_seq)
        scores = jax.vmap(score)(candidates)
        scores = jnp.where(jnp.isfinite(scores), scores, -jnp.inf)
        order = jnp.argsort(-scores)
        elites = candidates[order[: config.num_elites]].reshape(config.num_elites, *blocks)
        elites = jnp.mean(elites, axis=2)  # back to one action per block
        mean = jnp.mean(elites, axis=0)
        std = jnp.maximum(jnp.std(elites, axis=0), config.min_std * span)
        improved = scores[order[0]] > best_score
        best_seq = jnp.where(improved, candidates[order[0]], best_seq)
        best_score = jnp.where(improved, scores[order[0]], best_score)
        return (mean, std, best_seq, best_score), None

    plan = jnp.clip(plan, low, high)
    mean = jnp.mean(plan.reshape(blocks), axis=1)
    std = jnp.broadcast_to(config.initial_std * span, mean.shape)
    init = (mean, std, plan, jnp.array(-jnp.inf, jnp.float32))
    (_, _, best_seq, _), _ = jax.lax.scan(
        iteration, init, jax.random.split(sample_key, config.iterations)
    )
    return best_seq[0], best_seq


def initial_plan(env: Any, params: Any, config: MPCConfig, initial_action: Any = None) -> jax.Array:
    """The first warm start: ``initial_action`` (default: the middle of the action box) held."""
    low, high = _bounds(env, params)
    action = 0.5 * (low + high) if initial_action is None else jnp.asarray(initial_action)
    return jnp.broadcast_to(action.astype(jnp.float32), (config.lookahead, env.num_actions))


@partial(jax.jit, static_argnames=("env", "n_episodes", "max_steps", "config"))
def run_oracle_episodes(
    env: Any,
    env_params: Any,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
    config: MPCConfig | None = None,
    initial_action: jax.Array | None = None,
) -> EpisodeStats:
    """``n_episodes`` episodes controlled by :func:`mpc_action` (vmapped over episodes).

    The episodes (reset and environment keys) are those
    :func:`cardiosim_jax.rollout.run_episodes` plays for the same ``key``;
    ``env_params`` may be a population with a leading axis of ``n_episodes``;
    ``config`` defaults to ``MPCConfig()``. ``initial_action`` seeds the
    first step's search (default: the middle of the action box); where the
    middle is a harmful action (v0 pacing's pulses), a safe one helps.
    """
    config = MPCConfig() if config is None else config

    def one_episode(episode_key: jax.Array, env_params: Any) -> EpisodeStats:
        reset_key, loop_key = jax.random.split(episode_key)
        _, state = env.reset(reset_key, env_params)

        def body(carry: Any, step_key: jax.Array) -> Any:
            state, plan, total, length, alive = carry
            plan_key, env_key = jax.random.split(step_key)
            action, best = mpc_action(env, env_params, state, plan_key, plan, config)
            _, state, reward, terminated, truncated, _ = env.step(
                env_key, state, action, env_params
            )
            total = total + jnp.where(alive, reward, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(terminated | truncated)
            plan = jnp.concatenate([best[1:], best[-1:]], axis=0)
            return (state, plan, total, length, alive), None

        init = (
            state,
            initial_plan(env, env_params, config, initial_action),
            jnp.zeros(()),
            jnp.zeros((), jnp.int32),
            jnp.array(True),
        )
        (_, _, total, length, _), _ = jax.lax.scan(
            body, init, jax.random.split(loop_key, max_steps)
        )
        return EpisodeStats(episode_return=total, length=length)

    keys, env_params, params_axis, _ = episode_inputs(env_params, key, n_episodes, shard=False)
    return jax.vmap(one_episode, in_axes=(0, params_axis))(keys, env_params)
