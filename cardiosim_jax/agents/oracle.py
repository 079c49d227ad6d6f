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

from cardiosim_jax.envs.base import transition
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
    #: Env steps of the guide policy played after the lookahead, to score what each
    #: candidate leaves behind (needs a guide policy; 0 scores the lookahead alone).
    tail: int = struct.field(pytree_node=False, default=0)
    #: Score candidates on the episode's own future random numbers instead of
    #: ``noise_samples`` draws: a clairvoyant planner, whose return bounds from
    #: above what any policy can expect (the perfect-information relaxation).
    hindsight: bool = struct.field(pytree_node=False, default=False)
    #: With a guide and several futures: leave the guide's own play only for a sequence
    #: whose mean advantage over it, paired on the shared futures, exceeds this many
    #: standard errors (0: no gate). Where outcomes are rare chance events, the best of
    #: many candidates on few futures is mostly the luckiest (the winner's curse).
    switch_sds: float = struct.field(pytree_node=False, default=0.0)
    #: Fresh futures, drawn after the search, on which the gate compares the chosen
    #: sequence with the guide (0: the search's own futures). Scores on the futures that
    #: chose a sequence are biased in its favour; on independent ones they are not.
    #: Ignored in hindsight, which has one future and no gate.
    validation_samples: int = struct.field(pytree_node=False, default=0)
    initial_std: float = 0.5
    min_std: float = 0.05

    @property
    def lookahead(self) -> int:
        """Env steps simulated per candidate."""
        return self.horizon * self.action_repeat

    @property
    def simulated_steps(self) -> int:
        """Env steps simulated per candidate and future: the lookahead and the guide's tail."""
        return self.lookahead + self.tail

    def __post_init__(self) -> None:
        if self.tail < 0:
            raise ValueError(f"MPCConfig.tail must be >= 0, got {self.tail}")
        if not self.switch_sds >= 0.0:
            raise ValueError(f"MPCConfig.switch_sds must be >= 0, got {self.switch_sds}")
        if self.validation_samples < 0 or self.validation_samples == 1:
            raise ValueError(
                "MPCConfig.validation_samples must be 0 or >= 2 (a standard error needs two), "
                f"got {self.validation_samples}"
            )
        if self.hindsight and self.noise_samples != 1:
            raise ValueError(
                f"MPCConfig.hindsight plans on the one true future: noise_samples must be 1, "
                f"got {self.noise_samples}"
            )
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
    follow = jnp.zeros(actions.shape[:1], bool)
    total, _ = _simulate(env, params, state, None, actions, follow, keys, None, None)
    return total


def _simulate(
    env: Any,
    params: Any,
    state: Any,
    obs: jax.Array | None,
    actions: jax.Array,
    follow: jax.Array,
    keys: jax.Array,
    policy: Any,
    policy_params: Any,
) -> tuple[jax.Array, jax.Array]:
    """Play ``actions``, or the guide ``policy`` where ``follow`` is set, for ``len(keys)`` steps.

    Returns ``(return, actions played)``; rewards after the episode ends do not count.
    """

    def body(carry: Any, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> Any:
        state, obs, total, alive = carry
        key, planned, use_policy = inputs
        action = planned
        if policy is not None:
            guided = policy(policy_params, obs, jax.random.fold_in(key, 1))
            action = jnp.where(use_policy, jnp.asarray(guided, planned.dtype), planned)
        next_obs, next_state, reward, terminated, truncated, _ = transition(
            env, key, state, action, params
        )
        total = total + jnp.where(alive, reward, 0.0)
        alive = alive & ~(terminated | truncated)
        return (next_state, next_obs if policy is not None else obs, total, alive), action

    init = (state, obs, jnp.zeros((), jnp.float32), jnp.array(True))
    (_, _, total, _), played = jax.lax.scan(body, init, (keys, actions, follow))
    return total, played


def mpc_action(
    env: Any,
    params: Any,
    state: Any,
    key: jax.Array,
    plan: jax.Array,
    config: MPCConfig,
    obs: jax.Array | None = None,
    policy: Any = None,
    policy_params: Any = None,
    futures: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One CEM planning step from the true ``state``.

    Candidates are ``horizon`` actions, each held ``action_repeat`` steps; the
    warm start ``plan`` (``(lookahead, num_actions)``, the previous best
    shifted by one step) is always among them, so the returned sequence scores
    at least as well as the warm start on the planner's futures. With a guide
    ``policy`` (which needs ``obs``, the observation of ``state``), the guide's
    closed-loop play is a candidate too, and every candidate is followed by
    ``config.tail`` steps of the guide; the incumbent hands over to the guide
    one step earlier (where its shift repeated the last action), so on a known
    future it replays the previous step's best trajectory exactly.
    ``futures`` (``(noise_samples, simulated_steps)`` step keys) replaces the
    planner's own draws, e.g. with the episode's true keys (hindsight).

    Returns:
        ``(action, best_sequence)``: the action to play and the best
        ``(lookahead, num_actions)`` sequence found.
    """
    low, high = _bounds(env, params)
    span = high - low
    blocks = (config.horizon, config.action_repeat, env.num_actions)
    if policy is None and config.tail:
        raise ValueError(f"MPCConfig.tail={config.tail} needs a guide policy")
    if policy is not None and obs is None:
        raise ValueError("a guide policy needs obs, the observation of state")
    steps = config.simulated_steps
    sample_key, future_key = jax.random.split(key)
    if futures is None:
        futures = jax.random.split(future_key, config.noise_samples * steps).reshape(
            config.noise_samples, steps, -1
        )
    tail_actions = jnp.zeros((config.tail, env.num_actions), jnp.float32)

    def returns_on_futures(
        actions: jax.Array, follow: jax.Array, on: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """The return on each future (``on``, default the search's), and the actions
        played in the first one."""
        actions = jnp.concatenate([actions, tail_actions])
        follow = jnp.concatenate([follow, jnp.ones((config.tail,), bool)])
        returns, played = jax.vmap(
            lambda keys: _simulate(
                env, params, state, obs, actions, follow, keys, policy, policy_params
            )
        )(futures if on is None else on)
        return returns, played[0, : config.lookahead]

    def score(actions: jax.Array, follow: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean return over the futures, and the actions played in the first one."""
        returns, played = returns_on_futures(actions, follow)
        return jnp.mean(returns), played

    def iteration(carry: Any, iter_key: jax.Array) -> Any:
        mean, std, best_seq, best_score = carry
        noise = jax.random.normal(
            iter_key, (config.num_candidates, config.horizon, env.num_actions)
        )
        coarse = jnp.clip(mean + std * noise, low, high)
        candidates = jnp.repeat(coarse, config.action_repeat, axis=1)
        # Keep the incumbent in the population so the best never gets worse.
        candidates = candidates.at[0].set(best_seq)
        # Where the guide plays: the incumbent's repeated last step, and all of candidate
        # 1, the guide's own closed-loop play (its played actions replace it).
        follow = jnp.zeros((config.num_candidates, config.lookahead), bool)
        if policy is not None:
            follow = follow.at[0, -1].set(True)
            if config.num_candidates > 1:
                follow = follow.at[1].set(True)
        scores, candidates = jax.vmap(score)(candidates, follow)
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
    validation = None
    if config.validation_samples and not config.hindsight:
        # Folded from the futures' key, so configs without validation keep their draws.
        validation_key = jax.random.fold_in(future_key, 1)
        validation = jax.random.split(validation_key, config.validation_samples * steps).reshape(
            config.validation_samples, steps, -1
        )
    gate_futures = futures if validation is None else validation
    if policy is not None and config.switch_sds > 0.0 and gate_futures.shape[0] > 1:
        no_guide = jnp.zeros((config.lookahead,), bool)
        best_returns, _ = returns_on_futures(best_seq, no_guide, gate_futures)
        guide_returns, guide_seq = returns_on_futures(best_seq, ~no_guide, gate_futures)
        advantage = best_returns - guide_returns
        standard_error = jnp.std(advantage, ddof=1) / jnp.sqrt(advantage.shape[0])
        leave_guide = jnp.mean(advantage) > config.switch_sds * standard_error
        best_seq = jnp.where(leave_guide, best_seq, guide_seq)
    return best_seq[0], best_seq


def initial_plan(env: Any, params: Any, config: MPCConfig, initial_action: Any = None) -> jax.Array:
    """The first warm start: ``initial_action`` (default: the middle of the action box) held."""
    low, high = _bounds(env, params)
    action = 0.5 * (low + high) if initial_action is None else jnp.asarray(initial_action)
    return jnp.broadcast_to(action.astype(jnp.float32), (config.lookahead, env.num_actions))


@partial(jax.jit, static_argnames=("env", "n_episodes", "max_steps", "config", "policy"))
def run_oracle_episodes(
    env: Any,
    env_params: Any,
    key: jax.Array,
    n_episodes: int,
    max_steps: int,
    config: MPCConfig | None = None,
    initial_action: jax.Array | None = None,
    policy: Any = None,
    policy_params: Any = None,
) -> EpisodeStats:
    """``n_episodes`` episodes controlled by :func:`mpc_action` (vmapped over episodes).

    The episodes (reset and environment keys) are those
    :func:`cardiosim_jax.rollout.run_episodes` plays for the same ``key``;
    ``env_params`` may be a population with a leading axis of ``n_episodes``;
    ``config`` defaults to ``MPCConfig()``. ``initial_action`` seeds the
    first step's search (default: the middle of the action box); where the
    middle is a harmful action (v0 pacing's pulses), a safe one helps.
    ``policy`` and ``policy_params`` (one unbatched policy, e.g. a trained
    PPO seed with :func:`cardiosim_jax.training.ppo.ppo_policy`) guide the
    search as :func:`mpc_action` describes.
    """
    config = MPCConfig() if config is None else config

    def one_episode(episode_key: jax.Array, env_params: Any) -> EpisodeStats:
        reset_key, loop_key = jax.random.split(episode_key)
        obs, state = env.reset(reset_key, env_params)
        step_keys = jax.random.split(loop_key, max_steps)
        if config.hindsight:
            # The keys step_env will get: Environment.step splits each env key into
            # (step, reset). Padded past the end, where nothing is counted.
            true_keys = jax.vmap(lambda k: jax.random.split(jax.random.split(k)[1])[0])(step_keys)
            pad = jax.random.split(jax.random.fold_in(loop_key, 1), config.simulated_steps)
            true_keys = jnp.concatenate([true_keys, pad])

        def body(carry: Any, inputs: tuple[jax.Array, jax.Array]) -> Any:
            state, obs, plan, total, length, alive = carry
            step_key, t = inputs
            plan_key, env_key = jax.random.split(step_key)
            futures = None
            if config.hindsight:
                futures = jax.lax.dynamic_slice_in_dim(true_keys, t, config.simulated_steps)[None]
            action, best = mpc_action(
                env, env_params, state, plan_key, plan, config, obs, policy, policy_params, futures
            )
            obs, state, reward, terminated, truncated, _ = env.step(
                env_key, state, action, env_params
            )
            total = total + jnp.where(alive, reward, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(terminated | truncated)
            plan = jnp.concatenate([best[1:], best[-1:]], axis=0)
            return (state, obs, plan, total, length, alive), None

        init = (
            state,
            obs,
            initial_plan(env, env_params, config, initial_action),
            jnp.zeros(()),
            jnp.zeros((), jnp.int32),
            jnp.array(True),
        )
        (_, _, _, total, length, _), _ = jax.lax.scan(
            body, init, (step_keys, jnp.arange(max_steps))
        )
        return EpisodeStats(episode_return=total, length=length)

    keys, env_params, params_axis, _ = episode_inputs(env_params, key, n_episodes, shard=False)
    return jax.vmap(one_episode, in_axes=(0, params_axis))(keys, env_params)
