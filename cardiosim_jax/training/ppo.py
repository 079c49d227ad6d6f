"""PPO for continuous actions, PureJaxRL style: ``make_train(config)`` returns a jittable ``train``.

The whole training loop (vmapped environment rollouts in ``lax.scan``, GAE,
minibatch epochs) is one function of a PRNG key, so ``jax.jit(jax.vmap(train))``
trains many seeds at once. ``train(key, config)`` accepts a config with the same
static fields and different leaves, so a grid of settings (stacked configs)
times seeds is one ``vmap`` of one compiled call. ``shard_envs=True`` splits the
environments over all devices (``docs/sharding.md``).

Each iteration is a :func:`rollout` (``num_steps`` steps of every environment)
and an :func:`update` (``update_epochs`` epochs of minibatch steps on
:func:`~cardiosim_jax.training.losses.ppo_loss`). The parts live by concern:

* :mod:`~cardiosim_jax.training.config`: :class:`PPOConfig` and the presets;
* :mod:`~cardiosim_jax.training.networks`: actor-critic, Gaussian policy, action
  mapping, trained policies as evaluation functions;
* :mod:`~cardiosim_jax.training.normalization`: observation statistics, symlog;
* :mod:`~cardiosim_jax.training.losses`: rollout buffer, GAE, PPO loss.

This module re-exports their public names (``ppo.PPOConfig``, ``ppo.preset``, ...).

Differences from PureJaxRL's PPO, on purpose:

* time-limit truncation bootstraps with the value of ``info["final_observation"]``
  instead of treating the time limit as a terminal state (PureJaxRL issue #20);
* observation normalisation statistics live in the train state (not in the
  environment state) and are frozen during each rollout, so the policy that
  is saved and evaluated normalises exactly as it did in training;
* like Stable-Baselines3, the Gaussian is unsquashed, its sample is clipped to
  the action bounds only when sent to the environment, and advantages are
  normalised per minibatch. ``rescale_actions`` maps the policy's [-1, 1] onto
  the action bounds instead (what the ``tuned`` preset uses).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

import cardiosim_jax
from cardiosim_jax import sharding
from cardiosim_jax.envs.base import population_axis
from cardiosim_jax.training.config import (
    ACTIVATIONS,
    LARGE_NUM_ENVS,
    PRESETS,
    PPOConfig,
    preset,
    stack_configs,
)
from cardiosim_jax.training.losses import (
    Transition,
    compute_gae,
    ppo_loss,
    rollout_advantages,
)
from cardiosim_jax.training.networks import (
    ActorCritic,
    PPOPolicyParams,
    Residual,
    from_env_action,
    gaussian_entropy,
    gaussian_log_prob,
    orthogonal,
    policy_network,
    ppo_policy,
    ppo_stochastic_policy,
    residual_of,
    to_env_action,
)
from cardiosim_jax.training.normalization import (
    RunningMeanStd,
    preprocess,
    symlog,
    update_statistics,
)

__all__ = [
    # config
    "ACTIVATIONS",
    "LARGE_NUM_ENVS",
    "PRESETS",
    "PPOConfig",
    "preset",
    "stack_configs",
    # networks
    "ActorCritic",
    "PPOPolicyParams",
    "Residual",
    "from_env_action",
    "gaussian_entropy",
    "gaussian_log_prob",
    "orthogonal",
    "policy_network",
    "ppo_policy",
    "ppo_stochastic_policy",
    "residual_of",
    "to_env_action",
    # normalization
    "RunningMeanStd",
    "preprocess",
    "symlog",
    "update_statistics",
    # losses
    "Transition",
    "compute_gae",
    "ppo_loss",
    "rollout_advantages",
    # the train loop
    "ConsoleProgress",
    "EpisodeTracker",
    "ProgressFn",
    "RolloutState",
    "TrainOutput",
    "TrainSetup",
    "TrainState",
    "env_mesh",
    "init_train_state",
    "iteration",
    "make_optimizer",
    "make_train",
    "make_trainer",
    "Trainer",
    "rollout",
    "update",
]


# --------------------------------------------------------------------------- bookkeeping


@struct.dataclass
class EpisodeTracker:
    """Running and last completed (true, unscaled) episode return of each environment."""

    running: jax.Array
    last: jax.Array  # NaN until that environment completes an episode
    completed: jax.Array  # episodes completed so far, all environments

    @classmethod
    def create(cls, num_envs: int) -> EpisodeTracker:
        zeros = jnp.zeros(num_envs)
        return cls(
            running=zeros, last=jnp.full(num_envs, jnp.nan), completed=jnp.zeros((), jnp.int32)
        )

    def record(self, reward: jax.Array, done: jax.Array) -> EpisodeTracker:
        running = self.running + reward
        return EpisodeTracker(
            running=jnp.where(done, 0.0, running),
            last=jnp.where(done, running, self.last),
            completed=self.completed + jnp.sum(done).astype(jnp.int32),
        )

    def mean_last_return(self) -> jax.Array:
        """Mean over environments of their last completed return (NaN before any)."""
        seen = ~jnp.isnan(self.last)
        total = jnp.sum(jnp.where(seen, self.last, 0.0))
        return jnp.where(seen.any(), total / jnp.maximum(seen.sum(), 1), jnp.nan)


@struct.dataclass
class TrainOutput:
    """What ``train`` returns: the final policy and per-update metrics."""

    policy: PPOPolicyParams
    metrics: dict[str, jax.Array]


#: ``progress(update_index, num_updates, mean_episode_return)``, called from the compiled loop.
ProgressFn = Callable[[int, int, float], None]


class ConsoleProgress:
    """Prints one line per reporting interval from inside the jitted loop (host callback)."""

    def __init__(self, num_updates: int, every: int | None = None, label: str = "") -> None:
        self.num_updates = num_updates
        self.every = every or max(1, num_updates // 10)
        self.label = label
        self.start = time.perf_counter()
        self.reported: set[int] = set()

    def __call__(self, update: Any, total: Any, mean_return: Any) -> None:
        # Under vmap the callback may see batched values; never raise from a host
        # callback (an exception there can stall the compiled loop).
        try:
            self._report(int(np.ravel(update)[0]), np.asarray(mean_return, dtype=np.float64))
        except Exception as error:  # noqa: BLE001
            print(f"progress callback failed: {error!r}", flush=True)

    def _report(self, update: int, returns: np.ndarray) -> None:
        mean_return = np.nanmean(returns) if np.any(np.isfinite(returns)) else float("nan")
        done = update + 1
        if done in self.reported or (done % self.every and done != self.num_updates):
            return
        self.reported.add(done)  # vmapped runs call once per member; print the first
        elapsed = time.perf_counter() - self.start
        print(
            f"{self.label}update {done}/{self.num_updates} ({100 * done / self.num_updates:.0f}%) "
            f"{elapsed:.0f}s  episode return {float(mean_return):.1f}",
            flush=True,
        )


def env_mesh(config: PPOConfig) -> Mesh | None:
    """The device mesh ``config``'s environments are split over (None unless ``shard_envs``).

    Raises ``ValueError`` if ``num_envs`` or ``minibatch_size`` is not divisible
    by the device count.
    """
    if not config.shard_envs:
        return None
    mesh = sharding.patient_mesh()
    sharding.check_divisible(config.num_envs, mesh, "num_envs")
    sharding.check_divisible(config.minibatch_size, mesh, "minibatch_size")
    return mesh


# --------------------------------------------------------------------------- train state


@dataclasses.dataclass(frozen=True, eq=False)
class TrainSetup:
    """What ``make_train`` fixes before tracing: environment, network, bounds, device mesh.

    Not a pytree: its arrays (action bounds, environment parameters) are
    compile-time constants of ``train``.
    """

    config: PPOConfig  # the static fields are read from here, the leaves from ``hp``
    env: Any
    env_params: Any
    #: 0 when ``env_params`` holds one patient per environment (leading axis), else None.
    params_axis: int | None
    network: ActorCritic
    obs_dim: int
    action_low: jax.Array  # shape (action_dim,), environment units
    action_high: jax.Array
    mesh: Mesh | None
    #: Whether the smoothness loss (and the next observations it needs) is compiled in.
    smoothness: bool
    #: The heuristic a residual policy corrects (None: the network acts alone).
    residual: Residual | None

    def split(self, tree: Any, axis: int = 0) -> Any:
        """Constrain the environment axis ``axis`` of ``tree`` to be split (if sharding)."""
        return sharding.constrain_batch(tree, self.mesh, axis)

    def replicate(self, tree: Any) -> Any:
        """Constrain ``tree`` to be on every device (if sharding)."""
        return sharding.constrain_replicated(tree, self.mesh)

    def split_params(self) -> Any:
        """``env_params`` as the environments' vmap takes them (split if one per environment)."""
        return self.env_params if self.params_axis is None else self.split(self.env_params)

    def preprocess(self, stats: RunningMeanStd, obs: jax.Array) -> jax.Array:
        """Observations as the network sees them."""
        config = self.config
        return preprocess(obs, stats, config.normalize_observations, config.symlog_observations)

    def update_statistics(self, stats: RunningMeanStd, obs: jax.Array) -> RunningMeanStd:
        """``stats`` after seeing raw ``obs`` (unchanged without normalisation)."""
        config = self.config
        return update_statistics(
            stats, obs, config.normalize_observations, config.symlog_observations
        )


@struct.dataclass
class RolloutState:
    """The environments between steps: their states, observations and episode returns."""

    env_state: Any
    obs: jax.Array  # raw observations, (num_envs, obs_dim)
    episodes: EpisodeTracker


@struct.dataclass
class TrainState:
    """The carry of the training loop."""

    network_params: Any
    opt_state: optax.OptState
    obs_stats: RunningMeanStd
    envs: RolloutState
    key: jax.Array


def make_optimizer(config: PPOConfig, hp: PPOConfig) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping and, with ``anneal_lr``, linear LR decay.

    ``config`` gives the static settings (update counts), ``hp`` the leaves.
    """
    steps_per_update = config.num_minibatches * config.update_epochs

    def learning_rate(count: jax.Array) -> jax.Array:
        if not config.anneal_lr:
            return hp.learning_rate
        # Linear decay to 0 over the updates, constant within one update.
        return hp.learning_rate * (1.0 - (count // steps_per_update) / config.num_updates)

    return optax.chain(
        optax.clip_by_global_norm(hp.max_grad_norm),
        optax.scale_by_adam(eps=1e-5),
        optax.scale_by_learning_rate(learning_rate),
    )


def init_train_state(
    setup: TrainSetup, hp: PPOConfig, tx: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    """Fresh network and optimizer, reset environments, statistics of the first observations."""
    config = setup.config
    key, init_key, reset_key = jax.random.split(key, 3)
    network_params = setup.network.init(init_key, jnp.zeros((setup.obs_dim,)))
    # The log-std is a leaf of hp (sweepable), so it is set here, not by the module.
    network_params["params"]["log_std"] = jnp.full(setup.action_low.shape, hp.init_log_std)
    if config.init_action is not None:
        # The output kernel is orthogonal(0.01), so the bias is the initial mean action.
        network_params["params"]["actor_mean"]["bias"] = from_env_action(
            jnp.asarray(config.init_action, jnp.float32),
            setup.action_low,
            setup.action_high,
            config.rescale_actions,
        )
    opt_state = tx.init(network_params)
    obs, env_state = jax.vmap(setup.env.reset, in_axes=(0, setup.params_axis))(
        setup.split(jax.random.split(reset_key, config.num_envs)), setup.split_params()
    )
    obs, env_state = setup.split((obs, env_state))
    obs_stats = setup.update_statistics(RunningMeanStd.create((setup.obs_dim,)), obs)
    envs = RolloutState(env_state, obs, EpisodeTracker.create(config.num_envs))
    return TrainState(network_params, opt_state, obs_stats, envs, key)


# --------------------------------------------------------------------------- the loop


def _step_envs(
    setup: TrainSetup, keys: jax.Array, env_state: Any, action: jax.Array
) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Step every environment: ``(obs, state, reward, terminated, truncated, final_obs)``.

    Our environments return Gymnasium's 6-tuple with the pre-reset observation
    in ``info["final_observation"]``. A gymnax 5-tuple ``(obs, state, reward,
    done, info)`` environment reports no truncation and no final observation,
    so every episode end is taken as a termination (PureJaxRL's convention).
    """
    out = jax.vmap(setup.env.step, in_axes=(0, 0, 0, setup.params_axis))(
        keys, env_state, action, setup.split_params()
    )
    if len(out) == 6:
        obs, env_state, reward, terminated, truncated, info = out
        return obs, env_state, reward, terminated, truncated, info["final_observation"]
    obs, env_state, reward, done, _ = out
    done = jnp.asarray(done, bool)
    return obs, env_state, reward, done, jnp.zeros_like(done), obs


def rollout(
    setup: TrainSetup,
    hp: PPOConfig,
    network_params: Any,
    obs_stats: RunningMeanStd,
    envs: RolloutState,
    key: jax.Array,
) -> tuple[RolloutState, Transition, jax.Array]:
    """Collect ``num_steps`` transitions from every environment with the current policy.

    Weights and observation statistics stay fixed for the whole rollout.
    Returns the environments after it, the time-major buffer (axis 0 steps,
    axis 1 environments) and the raw observations reached (for the statistics).
    """
    config = setup.config

    def step(envs: RolloutState, step_key: jax.Array) -> tuple[RolloutState, Any]:
        act_key, env_key = jax.random.split(step_key)
        norm_obs = setup.preprocess(obs_stats, envs.obs)
        mean, log_std, value = setup.network.apply(network_params, norm_obs)
        raw = mean + jnp.exp(log_std) * jax.random.normal(act_key, mean.shape)
        log_prob = gaussian_log_prob(raw, mean, log_std)
        if setup.residual is None:
            action = to_env_action(raw, setup.action_low, setup.action_high, config.rescale_actions)
        else:
            heuristic_keys = jax.random.split(jax.random.fold_in(act_key, 1), config.num_envs)
            action = jax.vmap(setup.residual, in_axes=(0, 0, 0, None, None))(
                raw, envs.obs, heuristic_keys, setup.action_low, setup.action_high
            )
        next_obs, env_state, reward, terminated, truncated, final_obs = _step_envs(
            setup, setup.split(jax.random.split(env_key, config.num_envs)), envs.env_state, action
        )
        next_obs, env_state = setup.split((next_obs, env_state))
        done = terminated | truncated
        # Bootstrap from the pre-reset observation: it differs from next_obs
        # exactly where an episode ended (truncation needs its value).
        norm_final_obs = setup.preprocess(obs_stats, final_obs)
        _, _, next_value = setup.network.apply(network_params, norm_final_obs)
        episodes = envs.episodes.record(reward, done)
        # Training sees a scaled, clipped reward; the metrics keep the true return.
        train_reward = reward * hp.reward_scale
        if config.symlog_rewards:
            train_reward = symlog(train_reward)
        train_reward = jnp.clip(train_reward, -hp.reward_clip, hp.reward_clip)
        transition = Transition(
            obs=norm_obs,
            raw_action=raw,
            log_prob=log_prob,
            value=value,
            next_value=next_value,
            reward=train_reward,
            terminated=terminated.astype(jnp.float32),
            done=done.astype(jnp.float32),
            next_obs=norm_final_obs if setup.smoothness else None,
        )
        return RolloutState(env_state, next_obs, episodes), (transition, next_obs)

    envs, (traj, raw_obs) = jax.lax.scan(step, envs, jax.random.split(key, config.num_steps))
    traj, raw_obs = setup.split((traj, raw_obs), axis=1)
    return envs, traj, raw_obs


def update(
    setup: TrainSetup,
    hp: PPOConfig,
    tx: optax.GradientTransformation,
    network_params: Any,
    opt_state: optax.OptState,
    traj: Transition,
    advantages: jax.Array,
    targets: jax.Array,
    key: jax.Array,
) -> tuple[Any, optax.OptState, tuple[jax.Array, ...]]:
    """``update_epochs`` passes over one rollout, each ``num_minibatches`` steps of ``ppo_loss``.

    Every epoch draws a fresh permutation of the ``num_envs x num_steps``
    transitions. Returns the new weights and optimizer state and the loss parts
    ``(policy, value, entropy, approx_kl)``, each of shape (epochs, minibatches).
    """
    config = setup.config

    def loss_fn(params: Any, batch: tuple[Transition, jax.Array, jax.Array]) -> Any:
        b_traj, b_adv, b_target = batch
        return ppo_loss(
            lambda obs: setup.network.apply(params, obs),
            b_traj,
            b_adv,
            b_target,
            hp,
            setup.smoothness,
        )

    def minibatch_step(carry: tuple[Any, Any], batch: Any) -> tuple[tuple[Any, Any], Any]:
        network_params, opt_state = carry
        # Split batch, replicated weights: the batch means in loss_fn (and so the
        # gradient) become all-reduces across devices.
        batch = setup.split(batch)
        grads, aux = jax.grad(loss_fn, has_aux=True)(network_params, batch)
        grads = setup.replicate(grads)
        updates, opt_state = tx.update(grads, opt_state, network_params)
        return (optax.apply_updates(network_params, updates), opt_state), aux

    flat = jax.tree_util.tree_map(
        lambda x: x.reshape((config.batch_size, *x.shape[2:])), (traj, advantages, targets)
    )

    def epoch(carry: tuple[Any, Any], epoch_key: jax.Array) -> tuple[tuple[Any, Any], Any]:
        perm = jax.random.permutation(epoch_key, config.batch_size)
        # The permutation mixes samples of all devices (the same minibatches as
        # unsharded); each minibatch is then split over the devices again.
        minibatches = jax.tree_util.tree_map(
            lambda x: x[perm].reshape((config.num_minibatches, -1, *x.shape[1:])), flat
        )
        minibatches = setup.split(minibatches, axis=1)
        return jax.lax.scan(minibatch_step, carry, minibatches)

    (network_params, opt_state), losses = jax.lax.scan(
        epoch, (network_params, opt_state), jax.random.split(key, config.update_epochs)
    )
    return network_params, opt_state, losses


def iteration(
    setup: TrainSetup,
    hp: PPOConfig,
    tx: optax.GradientTransformation,
    progress: ProgressFn | None,
    state: TrainState,
    update_idx: jax.Array,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One PPO iteration: :func:`rollout`, statistics, GAE, :func:`update`, metrics."""
    config = setup.config
    # Pin the carry's layout for the partitioner: weights, optimizer and statistics
    # on every device, environments split.
    network_params, opt_state, obs_stats = setup.replicate(
        (state.network_params, state.opt_state, state.obs_stats)
    )
    envs = setup.split(state.envs)
    key, rollout_key = jax.random.split(state.key)
    envs, traj, raw_obs = rollout(setup, hp, network_params, obs_stats, envs, rollout_key)
    obs_stats = setup.update_statistics(obs_stats, raw_obs)
    advantages, targets = rollout_advantages(traj, hp.gamma, hp.gae_lambda)
    advantages, targets = setup.split((advantages, targets), axis=1)
    key, epoch_key = jax.random.split(key)
    network_params, opt_state, losses = update(
        setup, hp, tx, network_params, opt_state, traj, advantages, targets, epoch_key
    )
    mean_return = envs.episodes.mean_last_return()
    metrics = {
        "episode_return": mean_return,
        "episodes": envs.episodes.completed,
        "policy_loss": losses[0].mean(),
        "value_loss": losses[1].mean(),
        "entropy": losses[2].mean(),
        "approx_kl": losses[3].mean(),
        "timesteps": (update_idx + 1) * config.batch_size,
    }
    if progress is not None:
        jax.debug.callback(progress, update_idx, config.num_updates, mean_return)
    return TrainState(network_params, opt_state, obs_stats, envs, key), metrics


def _make_setup(
    config: PPOConfig, env: Any, env_params: Any, population: bool, mesh: Mesh | None
) -> TrainSetup:
    if population:
        try:
            axis = population_axis(env_params, config.num_envs)
        except ValueError as error:
            raise ValueError(f"population=True, num_envs={config.num_envs}: {error}") from None
        if axis is None:
            raise ValueError(
                f"population=True needs env_params with a leading axis of num_envs "
                f"({config.num_envs}); got shared (unbatched) params"
            )
        # The spaces of one patient (a population shares them).
        one = jax.tree_util.tree_map(lambda leaf: leaf[0], env_params)
    else:
        one = env_params
    action_space = env.action_space(one)
    # gymnax's own 1-D spaces hold float bounds: give them the action's shape.
    action_low = jnp.broadcast_to(jnp.asarray(action_space.low), action_space.shape)
    action_high = jnp.broadcast_to(jnp.asarray(action_space.high), action_space.shape)
    residual = residual_of(config)
    # The registry's action shape is checked by validate; a given env's only here.
    if residual is not None and len(residual.scale) != action_space.shape[0]:
        raise ValueError(
            f"residual_scale has {len(residual.scale)} entries; the action space has "
            f"{action_space.shape[0]}"
        )
    return TrainSetup(
        config=config,
        env=env,
        env_params=env_params,
        params_axis=0 if population else None,
        network=ActorCritic(action_space.shape[0], config.hidden_sizes, config.activation, 0.0),
        obs_dim=env.observation_space(one).shape[0],
        action_low=action_low,
        action_high=action_high,
        mesh=mesh,
        smoothness=config.smoothness_coef != 0.0,
        residual=residual,
    )


def make_train(
    config: PPOConfig,
    progress: ProgressFn | None = None,
    *,
    env: Any = None,
    env_params: Any = None,
    population: bool = False,
) -> Callable[[jax.Array, PPOConfig | None], TrainOutput]:
    """Build ``train(key, config=None) -> TrainOutput`` for ``config``'s static settings.

    ``train`` is pure and jittable. Pass a config whose leaves differ (or are
    batched, under ``vmap``) to train other hyperparameters with the same
    compiled function; its static fields must equal ``config``'s.

    Args:
        config: settings; ``env_id`` and ``difficulty`` pick the environment
            (``cardiosim_jax.make``) unless ``env`` is given.
        progress: called as ``progress(update_index, num_updates, mean_return)``
            from inside the compiled loop (e.g. :class:`ConsoleProgress`).
        env: any gymnax-style environment (``reset``, ``step``, ``action_space``,
            ``observation_space``) to train on instead; ``config.env_id`` is then
            only a label and need not be registered. A 1-D ``Box`` action space.
        env_params: its parameters (default: ``env.default_params``, or the
            tier's for ``config``'s environment), e.g. from
            ``cardiosim_jax.make(env_id, tier, **overrides)``.
        population: ``env_params`` leaves carry a leading axis of ``num_envs``:
            environment ``i`` simulates patient ``i`` (a cohort).

    With ``config.shard_envs`` the environment batch (env states, observations,
    the rollout buffer's env axis, minibatches) is split over all devices and
    the network and optimizer state are replicated; the compiler turns the
    batch means of the loss into cross-device all-reduces. ``vmap`` over seeds
    or configs still works (the mapped axis is not split).

    Raises:
        ValueError: settings that cannot train (:meth:`PPOConfig.validate`),
            ``num_envs`` or ``minibatch_size`` not divisible by the device count
            (with ``shard_envs``), or a population of the wrong size.
    """
    return make_trainer(
        config, progress, env=env, env_params=env_params, population=population
    ).train


@dataclasses.dataclass(frozen=True)
class Trainer:
    """:func:`make_train`'s loop in pieces, to train in chunks of updates.

    ``train(key)`` is ``init``, ``run`` over every update and ``policy``, in
    one compiled call. Calling ``run`` on consecutive ranges of updates
    (``start`` the number already done) gives the same result bit for bit,
    with the :class:`TrainState` in between to save (periodic checkpoints) and
    to resume from. Each method is pure and jittable; ``vmap`` them over seeds.
    """

    config: PPOConfig
    setup: TrainSetup
    progress: ProgressFn | None

    def _hyperparameters(
        self, hp: PPOConfig | None
    ) -> tuple[PPOConfig, optax.GradientTransformation]:
        config = self.config
        hp = config if hp is None else hp
        for field in dataclasses.fields(config):
            if not field.metadata.get("pytree_node", True):
                if getattr(hp, field.name) != getattr(config, field.name):
                    raise ValueError(
                        "train(key, config): static fields must match make_train's config"
                    )
        return hp, make_optimizer(config, hp)

    def init(self, key: jax.Array, hp: PPOConfig | None = None) -> TrainState:
        """Fresh network, optimizer and reset environments (nothing trained yet)."""
        hp, tx = self._hyperparameters(hp)
        return init_train_state(self.setup, hp, tx, key)

    def run(
        self, state: TrainState, start: Any, count: int, hp: PPOConfig | None = None
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """Updates ``start .. start + count - 1`` (``count`` static); per-update metrics."""
        hp, tx = self._hyperparameters(hp)
        return jax.lax.scan(
            functools.partial(iteration, self.setup, hp, tx, self.progress),
            state,
            start + jnp.arange(count),
        )

    def policy(self, state: TrainState) -> PPOPolicyParams:
        """The policy of a training state (weights, statistics, bounds)."""
        config, setup = self.config, self.setup
        return PPOPolicyParams(
            network=state.network_params,
            obs_stats=state.obs_stats,
            action_low=setup.action_low,
            action_high=setup.action_high,
            normalize_observations=config.normalize_observations,
            symlog_observations=config.symlog_observations,
            rescale_actions=config.rescale_actions,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            residual=setup.residual,
        )

    def train(self, key: jax.Array, hp: PPOConfig | None = None) -> TrainOutput:
        """The whole training run from ``key``: ``make_train``'s ``train``."""
        state, metrics = self.run(self.init(key, hp), 0, self.config.num_updates, hp)
        return TrainOutput(policy=self.policy(state), metrics=metrics)


def make_trainer(
    config: PPOConfig,
    progress: ProgressFn | None = None,
    *,
    env: Any = None,
    env_params: Any = None,
    population: bool = False,
) -> Trainer:
    """The :class:`Trainer` behind :func:`make_train` (same arguments and checks)."""
    config.validate(registered_env=env is None)
    mesh = env_mesh(config)
    if env is None:
        env, tier_params = cardiosim_jax.make(config.env_id, config.difficulty)
        env_params = tier_params if env_params is None else env_params
    elif env_params is None:
        env_params = env.default_params
    return Trainer(config, _make_setup(config, env, env_params, population, mesh), progress)
