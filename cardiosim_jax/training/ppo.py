"""PPO for continuous actions, PureJaxRL style: ``make_train(config)`` returns a jittable ``train``.

The whole training loop (vmapped environment rollouts in ``lax.scan``, GAE,
minibatch epochs) is one function of a PRNG key, so ``jax.jit(jax.vmap(train))``
trains many seeds at once. The continuous hyperparameters (learning rate,
entropy coefficient, clip range, gamma, GAE lambda, value coefficient, gradient
clip) are pytree leaves of :class:`PPOConfig`; shapes (number of environments,
steps, minibatches, network sizes) are static fields. ``train(key, config)``
accepts a config with the same static fields and different leaves, so a grid of
settings (stacked configs) times seeds is one ``vmap`` of one compiled call.
``shard_envs=True`` splits the environments over all devices (``docs/sharding.md``).

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
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.linen.initializers import constant
from jax.sharding import Mesh

import cardiosim_jax
from cardiosim_jax import sharding

# --------------------------------------------------------------------------- config


@struct.dataclass
class PPOConfig:
    """PPO settings. Static fields fix shapes; the others are vmappable leaves."""

    env_id: str = struct.field(pytree_node=False, default="AntiarrhythmicDosing-v0")
    difficulty: str = struct.field(pytree_node=False, default="medium")
    num_envs: int = struct.field(pytree_node=False, default=1)
    num_steps: int = struct.field(pytree_node=False, default=2048)
    total_timesteps: int = struct.field(pytree_node=False, default=200_000)
    minibatch_size: int = struct.field(pytree_node=False, default=64)
    update_epochs: int = struct.field(pytree_node=False, default=10)
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    normalize_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_rewards: bool = struct.field(pytree_node=False, default=False)
    rescale_actions: bool = struct.field(pytree_node=False, default=False)
    anneal_lr: bool = struct.field(pytree_node=False, default=False)
    #: Initial mean action in environment units (None: the policy's raw mean starts at 0).
    init_action: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)
    #: Split the environments over all devices (``cardiosim_jax.sharding``); needs
    #: ``num_envs`` and ``minibatch_size`` divisible by the device count.
    shard_envs: bool = struct.field(pytree_node=False, default=False)
    learning_rate: float = 3e-4
    ent_coef: float = 0.0
    clip_eps: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    init_log_std: float = 0.0
    reward_scale: float = 1.0
    reward_clip: float = float("inf")
    #: Weight of the temporal action-smoothness loss (CAPS, Mysore et al. 2021): the mean
    #: Euclidean distance between the policy's mean actions (raw units) at consecutive
    #: steps of an episode. The term is compiled in only when ``make_train``'s config has a
    #: nonzero value (0 leaves the loss, and every committed result, unchanged).
    smoothness_coef: float = 0.0

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_minibatches(self) -> int:
        return max(1, self.batch_size // self.minibatch_size)

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    def replace_static(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        if self.env_id.removeprefix("cardiosim/") not in cardiosim_jax.registered_envs:
            raise ValueError(
                f"unknown environment id {self.env_id!r}; "
                f"registered: {list(cardiosim_jax.registered_envs)}"
            )
        if self.batch_size % self.minibatch_size:
            raise ValueError(
                f"num_envs x num_steps ({self.batch_size}) must be a multiple of "
                f"minibatch_size ({self.minibatch_size})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} not in {sorted(ACTIVATIONS)}")
        for name in ("num_envs", "num_steps", "total_timesteps", "minibatch_size", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        smoothness = np.asarray(self.smoothness_coef, np.float64)
        if not (np.all(np.isfinite(smoothness)) and np.all(smoothness >= 0)):
            raise ValueError(f"smoothness_coef must be finite and >= 0, got {self.smoothness_coef}")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            value = np.asarray(value).tolist() if not isinstance(value, str | tuple) else value
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        data = dict(data)
        data["hidden_sizes"] = tuple(data.get("hidden_sizes", (64, 64)))
        if data.get("init_action") is not None:
            data["init_action"] = tuple(data["init_action"])
        return cls(**data)


#: Table 1 of the paper, Stable-Baselines3 defaults elsewhere (one environment, as SB3 used).
_PAPER = {
    "PacingControl-v0": dict(
        difficulty="medium",
        learning_rate=3e-4,
        num_steps=2048,
        ent_coef=0.01,
        total_timesteps=200_000,
    ),
    "AntiarrhythmicDosing-v0": dict(
        difficulty="medium",
        learning_rate=5e-4,
        num_steps=1024,
        ent_coef=0.02,
        total_timesteps=300_000,
    ),
    "DefibrillationTiming-v0": dict(
        difficulty="easy",
        learning_rate=3e-4,
        num_steps=256,
        ent_coef=0.10,
        total_timesteps=500_000,
    ),
}

#: Many parallel environments, normalised observations, actions rescaled to the bounds.
_TUNED_COMMON = dict(
    num_envs=64,
    num_steps=128,
    minibatch_size=1024,
    update_epochs=4,
    normalize_observations=True,
    rescale_actions=True,
    anneal_lr=True,
    learning_rate=1e-3,
    ent_coef=0.0,
    clip_eps=0.2,
    gae_lambda=0.95,
    vf_coef=0.5,
    max_grad_norm=0.5,
    init_log_std=-0.5,
)
_TUNED = {
    # Over-pacing drives heart rates to ~1e4 bpm and rewards to -1e5 per step: symlog
    # tames both for the networks, the policy starts with pulses off (random pulses
    # are what blow the heart rate up), and gamma 0.95 matches the rate loop's horizon.
    "PacingControl-v0": dict(
        total_timesteps=2_000_000,
        gamma=0.95,
        symlog_observations=True,
        symlog_rewards=True,
        init_action=(0.0, 0.0),
        init_log_std=-1.0,
    ),
    "AntiarrhythmicDosing-v0": dict(total_timesteps=1_000_000, gamma=0.99),
    "DefibrillationTiming-v0": dict(total_timesteps=500_000, gamma=0.99),
    # v1 (no paper settings exist): the common settings, a budget per environment.
    # Every change of programming costs reward, so exploration noise is costly: the policy
    # starts at standard programming (VVI 60 bpm, 2.5 V) with a narrow action spread. The
    # noise also hides what a deterministic policy's step-to-step wobble costs, so a
    # smoothness loss asks for it directly (hard, 8 seeds on the same 256 episodes, where
    # the heuristic scores -65.8: mean -65.6 without, -65.1 at 0.03, -64.9 at 0.1, -66.4
    # at 0.3, -73.1 at 1.0).
    "PacingControl-v1": dict(
        total_timesteps=2_000_000,
        gamma=0.95,
        init_action=(60.0, 2.5),
        init_log_std=-1.5,
        smoothness_coef=0.1,
    ),
    # One step is a 12 h dosing decision and an episode 6 of them, so the whole 72 h stay
    # is the horizon (gamma 0.99); a step costs 12 hourly simulations, hence the budget.
    "AntiarrhythmicDosing-v1": dict(total_timesteps=300_000, gamma=0.99),
    # PPO's edge over the ACLS rule is shocking recurrent VF as soon as the monitor shows
    # it; at 0.4M steps one seed still added low-energy shocks after a shock, gone by 1M.
    "DefibrillationTiming-v1": dict(total_timesteps=2_000_000, gamma=0.99),
}

PRESETS = ("paper", "tuned")


def preset(name: str, env_id: str, difficulty: str | None = None, **overrides: Any) -> PPOConfig:
    """The ``paper`` or ``tuned`` configuration for an environment."""
    env_id = env_id.removeprefix("cardiosim/")
    if env_id not in _TUNED:
        raise ValueError(
            f"unknown environment id {env_id!r}; registered: {list(cardiosim_jax.registered_envs)}"
        )
    if name == "paper":
        if env_id not in _PAPER:
            raise ValueError(
                f"the paper preset exists only for the v0 environments {list(_PAPER)}; "
                f"use the tuned preset for {env_id}"
            )
        settings = dict(_PAPER[env_id])
    elif name == "tuned":
        default_tier = _PAPER.get(env_id, {}).get("difficulty", "medium")
        settings = {"difficulty": default_tier, **_TUNED_COMMON, **_TUNED[env_id]}
    else:
        raise ValueError(f"unknown preset {name!r}; accepted: {list(PRESETS)}")
    if difficulty is not None:
        settings["difficulty"] = difficulty
    settings.update(overrides)
    config = PPOConfig(env_id=env_id, **settings)
    config.validate()
    return config


# --------------------------------------------------------------------------- networks

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu}


def orthogonal(scale: float = 1.0, iterations: int = 60) -> Callable[..., jax.Array]:
    """Orthogonal initializer from matrix products only (no LAPACK).

    The orthogonal polar factor of a Gaussian matrix, found by Newton-Schulz
    iteration, is Haar-distributed like the usual QR construction. The QR
    route calls LAPACK, and jaxlib's batched CPU QR kernel can deadlock when
    initialisation is vmapped over seeds; matrix products cannot.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = shape[0], int(np.prod(shape[1:]))
        tall, short = max(rows, cols), min(rows, cols)
        x = jax.random.normal(key, (tall, short), jnp.float32)
        x = x / jnp.linalg.norm(x)  # all singular values now in (0, 1]
        # Each step maps s -> 1.5 s - 0.5 s^3, towards 1. A rolled loop: unrolled, the
        # 60 steps put ~700 matrix products in every PPO program and doubled compile time.
        x = jax.lax.fori_loop(0, iterations, lambda _, x: 1.5 * x - 0.5 * x @ (x.T @ x), x)
        x = x if rows >= cols else x.T
        return (scale * x).reshape(shape).astype(dtype)

    return init


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; Gaussian policy with a state-independent log-std."""

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        actor = obs
        for width in self.hidden_sizes:
            actor = act(
                nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(actor)
            )
        mean = nn.Dense(
            self.action_dim,
            kernel_init=orthogonal(0.01),
            bias_init=constant(0.0),
            name="actor_mean",
        )(actor)
        log_std = self.param("log_std", constant(self.init_log_std), (self.action_dim,))
        critic = obs
        for width in self.hidden_sizes:
            critic = act(
                nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(critic)
            )
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(critic)
        return mean, jnp.broadcast_to(log_std, mean.shape), jnp.squeeze(value, -1)


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    return jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)


# --------------------------------------------------------------------------- observation statistics


@struct.dataclass
class RunningMeanStd:
    """Running mean and variance of observations (parallel-variance update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningMeanStd:
        return cls(mean=jnp.zeros(shape), var=jnp.ones(shape), count=jnp.asarray(1e-4))

    def update(self, batch: jax.Array) -> RunningMeanStd:
        batch = batch.reshape(-1, batch.shape[-1])
        batch_mean, batch_var, n = batch.mean(0), batch.var(0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMeanStd(mean=mean, var=m2 / total, count=total)

    def normalize(self, obs: jax.Array, clip: float = 10.0) -> jax.Array:
        return jnp.clip((obs - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


# --------------------------------------------------------------------------- policy for evaluation


@struct.dataclass
class PPOPolicyParams:
    """Everything a trained policy needs to act: network weights, normalisation, action bounds."""

    network: Any
    obs_stats: RunningMeanStd
    action_low: jax.Array
    action_high: jax.Array
    normalize_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_observations: bool = struct.field(pytree_node=False, default=False)
    rescale_actions: bool = struct.field(pytree_node=False, default=False)
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")


def _network(params: PPOPolicyParams, action_dim: int) -> ActorCritic:
    return ActorCritic(action_dim, params.hidden_sizes, params.activation)


def symlog(x: jax.Array) -> jax.Array:
    """sign(x) log(1 + |x|): compresses heavy tails (pacing heart rates reach 60,000 bpm)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def preprocess(
    obs: jax.Array, stats: RunningMeanStd, normalize: bool, use_symlog: bool
) -> jax.Array:
    """Observation as the network sees it: optional symlog, then optional normalisation."""
    obs = symlog(obs) if use_symlog else obs
    return stats.normalize(obs) if normalize else obs


def _prepare(params: PPOPolicyParams, obs: jax.Array) -> jax.Array:
    return preprocess(
        obs, params.obs_stats, params.normalize_observations, params.symlog_observations
    )


def to_env_action(raw: jax.Array, low: jax.Array, high: jax.Array, rescale: bool) -> jax.Array:
    """Map a raw Gaussian sample to an environment action inside ``[low, high]``."""
    if rescale:
        return low + 0.5 * (jnp.clip(raw, -1.0, 1.0) + 1.0) * (high - low)
    return jnp.clip(raw, low, high)


def from_env_action(action: jax.Array, low: jax.Array, high: jax.Array, rescale: bool) -> jax.Array:
    """The raw policy output that :func:`to_env_action` maps to ``action``."""
    return 2.0 * (action - low) / (high - low) - 1.0 if rescale else action


def ppo_policy(params: PPOPolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Deterministic (mean) action of a trained policy; ``key`` is unused."""
    del key
    mean, _, _ = _network(params, params.action_low.shape[-1]).apply(
        params.network, _prepare(params, obs)
    )
    return to_env_action(mean, params.action_low, params.action_high, params.rescale_actions)


def ppo_stochastic_policy(params: PPOPolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """An action sampled from the trained Gaussian policy."""
    mean, log_std, _ = _network(params, params.action_low.shape[-1]).apply(
        params.network, _prepare(params, obs)
    )
    raw = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return to_env_action(raw, params.action_low, params.action_high, params.rescale_actions)


# --------------------------------------------------------------------------- GAE


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array,
    gae_lambda: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates over a time-major rollout.

    ``next_values[t]`` is the value of the state reached by step ``t``: the
    next observation's value, or, where the episode ended at ``t``, the value
    of its final observation. Termination zeroes the bootstrap; any episode end
    (termination or time-limit truncation) cuts the lambda-recursion, so a
    truncated step still bootstraps from its final observation.

    Returns ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values

    def backward(carry, step):
        delta, ended = step
        advantage = delta + gamma * gae_lambda * (1.0 - ended) * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, done.astype(deltas.dtype)), reverse=True
    )
    return advantages, advantages + values


@struct.dataclass
class Transition:
    obs: jax.Array
    raw_action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    #: Normalised observation after the step (pre-reset); ``None`` without smoothness loss.
    next_obs: jax.Array | None = None


def ppo_loss(
    apply_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
    batch: Transition,
    advantages: jax.Array,
    targets: jax.Array,
    hp: PPOConfig,
    smoothness: bool = False,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
    """PPO's loss on one minibatch and its parts ``(policy, value, entropy, approx_kl)``.

    ``apply_fn(obs) -> (mean, log_std, value)`` is the network with its current
    weights. The clipped surrogate uses advantages normalised over the
    minibatch; the value regresses on the GAE ``targets`` (returns). With
    ``smoothness``, ``hp.smoothness_coef`` times the mean Euclidean distance
    between the mean actions at ``batch.obs`` and ``batch.next_obs`` is added,
    except where the step ended its episode.
    """
    mean, log_std, value = apply_fn(batch.obs)
    log_prob = gaussian_log_prob(batch.raw_action, mean, log_std)
    ratio = jnp.exp(log_prob - batch.log_prob)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = -jnp.mean(
        jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - hp.clip_eps, 1 + hp.clip_eps) * adv)
    )
    value_loss = jnp.mean((value - targets) ** 2)
    entropy = jnp.mean(gaussian_entropy(log_std))
    total = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
    if smoothness:
        # Only pairs of steps within one episode: the action at an episode's final
        # observation is never taken.
        next_mean, _, _ = apply_fn(batch.next_obs)
        distance = jnp.sqrt(jnp.sum((next_mean - mean) ** 2, axis=-1) + 1e-12)
        total = total + hp.smoothness_coef * jnp.mean((1.0 - batch.done) * distance)
    approx_kl = jnp.mean((ratio - 1.0) - jnp.log(ratio))
    return total, (policy_loss, value_loss, entropy, approx_kl)


# --------------------------------------------------------------------------- training


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


def make_train(
    config: PPOConfig, progress: ProgressFn | None = None
) -> Callable[[jax.Array, PPOConfig | None], TrainOutput]:
    """Build ``train(key, config=None) -> TrainOutput`` for ``config``'s static settings.

    ``train`` is pure and jittable. Pass a config whose leaves differ (or are
    batched, under ``vmap``) to train other hyperparameters with the same
    compiled function; its static fields must equal ``config``'s.

    With ``config.shard_envs`` the environment batch (env states, observations,
    the rollout buffer's env axis, minibatches) is split over all devices and
    the network and optimizer state are replicated; the compiler turns the
    batch means of the loss into cross-device all-reduces. ``vmap`` over seeds
    or configs still works (the mapped axis is not split). Raises
    ``ValueError`` here if ``num_envs`` or ``minibatch_size`` is not divisible
    by the device count.
    """
    config.validate()
    mesh = env_mesh(config)

    def split(tree: Any, axis: int = 0) -> Any:
        """Constrain the environment axis ``axis`` of ``tree`` to be split (if sharding)."""
        return sharding.constrain_batch(tree, mesh, axis)

    def replicate(tree: Any) -> Any:
        return sharding.constrain_replicated(tree, mesh)

    env, env_params = cardiosim_jax.make(config.env_id, config.difficulty)
    action_space = env.action_space(env_params)
    action_low, action_high = jnp.asarray(action_space.low), jnp.asarray(action_space.high)
    obs_dim = env.observation_space(env_params).shape[0]
    action_dim = action_space.shape[0]
    network = ActorCritic(action_dim, config.hidden_sizes, config.activation, 0.0)
    num_envs, num_steps = config.num_envs, config.num_steps
    num_updates, num_minibatches = config.num_updates, config.num_minibatches
    smoothness = config.smoothness_coef != 0.0
    static = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if not f.metadata.get("pytree_node", True)
    }

    def train(key: jax.Array, hp: PPOConfig | None = None) -> TrainOutput:
        hp = config if hp is None else hp
        if any(getattr(hp, name) != value for name, value in static.items()):
            raise ValueError("train(key, config): static fields must match make_train's config")

        key, init_key, reset_key = jax.random.split(key, 3)
        network_params = network.init(init_key, jnp.zeros((obs_dim,)))
        network_params["params"]["log_std"] = jnp.full((action_dim,), hp.init_log_std)
        if config.init_action is not None:
            network_params["params"]["actor_mean"]["bias"] = from_env_action(
                jnp.asarray(config.init_action, jnp.float32),
                action_low,
                action_high,
                config.rescale_actions,
            )
        steps_per_update = num_minibatches * config.update_epochs

        def learning_rate(count: jax.Array) -> jax.Array:
            if not config.anneal_lr:
                return hp.learning_rate
            # Linear decay to 0 over the updates, constant within one update.
            return hp.learning_rate * (1.0 - (count // steps_per_update) / num_updates)

        tx = optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm),
            optax.scale_by_adam(eps=1e-5),
            optax.scale_by_learning_rate(learning_rate),
        )
        opt_state = tx.init(network_params)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            split(jax.random.split(reset_key, num_envs)), env_params
        )
        obs, env_state = split((obs, env_state))
        obs_stats = RunningMeanStd.create((obs_dim,))

        def normalize(stats: RunningMeanStd, x: jax.Array) -> jax.Array:
            return preprocess(x, stats, config.normalize_observations, config.symlog_observations)

        def update_stats(stats: RunningMeanStd, raw: jax.Array) -> RunningMeanStd:
            if not config.normalize_observations:
                return stats
            return stats.update(symlog(raw) if config.symlog_observations else raw)

        obs_stats = update_stats(obs_stats, obs)

        def update_step(carry, update_idx):
            network_params, opt_state, obs_stats, env_state, obs, episodes, key = carry
            # Pin the carry's layout for the partitioner: weights, optimizer and
            # statistics on every device, environments split.
            network_params, opt_state, obs_stats = replicate((network_params, opt_state, obs_stats))
            env_state, obs, episodes = split((env_state, obs, episodes))

            def env_step(inner, step_key):
                env_state, obs, episodes = inner
                act_key, env_key = jax.random.split(step_key)
                norm_obs = normalize(obs_stats, obs)
                mean, log_std, value = network.apply(network_params, norm_obs)
                raw = mean + jnp.exp(log_std) * jax.random.normal(act_key, mean.shape)
                log_prob = gaussian_log_prob(raw, mean, log_std)
                action = to_env_action(raw, action_low, action_high, config.rescale_actions)
                next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                    env.step, in_axes=(0, 0, 0, None)
                )(split(jax.random.split(env_key, num_envs)), env_state, action, env_params)
                next_obs, env_state = split((next_obs, env_state))
                done = terminated | truncated
                # Bootstrap from the pre-reset observation: it differs from next_obs
                # exactly where an episode ended (truncation needs its value).
                norm_final_obs = normalize(obs_stats, info["final_observation"])
                _, _, next_value = network.apply(network_params, norm_final_obs)
                episodes = episodes.record(reward, done)
                # Training sees a scaled, clipped reward; the metrics keep the true return.
                train_reward = reward * hp.reward_scale
                if config.symlog_rewards:
                    train_reward = symlog(train_reward)
                train_reward = jnp.clip(train_reward, -hp.reward_clip, hp.reward_clip)
                transition = Transition(
                    norm_obs,
                    raw,
                    log_prob,
                    value,
                    next_value,
                    train_reward,
                    terminated.astype(jnp.float32),
                    done.astype(jnp.float32),
                    norm_final_obs if smoothness else None,
                )
                return (env_state, next_obs, episodes), (transition, next_obs)

            key, rollout_key = jax.random.split(key)
            (env_state, obs, episodes), (traj, raw_obs) = jax.lax.scan(
                env_step, (env_state, obs, episodes), jax.random.split(rollout_key, num_steps)
            )
            # Time-major buffer: axis 1 is the environment axis.
            traj, raw_obs = split((traj, raw_obs), axis=1)
            obs_stats = update_stats(obs_stats, raw_obs)

            advantages, targets = compute_gae(
                traj.reward,
                traj.value,
                traj.next_value,
                traj.terminated,
                traj.done,
                hp.gamma,
                hp.gae_lambda,
            )
            advantages, targets = split((advantages, targets), axis=1)

            def loss_fn(params, batch):
                b_traj, b_adv, b_target = batch
                return ppo_loss(
                    lambda obs: network.apply(params, obs), b_traj, b_adv, b_target, hp, smoothness
                )

            def epoch(inner, epoch_key):
                network_params, opt_state = inner
                flat = jax.tree_util.tree_map(
                    lambda x: x.reshape((config.batch_size, *x.shape[2:])),
                    (traj, advantages, targets),
                )
                perm = jax.random.permutation(epoch_key, config.batch_size)
                # The permutation mixes samples of all devices (the same minibatches
                # as unsharded); each minibatch is then split over the devices again.
                minibatches = jax.tree_util.tree_map(
                    lambda x: x[perm].reshape((num_minibatches, -1, *x.shape[1:])), flat
                )
                minibatches = split(minibatches, axis=1)

                def minibatch_step(inner, batch):
                    network_params, opt_state = inner
                    # Split batch, replicated weights: the batch means in loss_fn (and
                    # so the gradient) become all-reduces across devices.
                    batch = split(batch)
                    grads, aux = jax.grad(loss_fn, has_aux=True)(network_params, batch)
                    grads = replicate(grads)
                    updates, opt_state = tx.update(grads, opt_state, network_params)
                    return (optax.apply_updates(network_params, updates), opt_state), aux

                return jax.lax.scan(minibatch_step, (network_params, opt_state), minibatches)

            key, epoch_key = jax.random.split(key)
            (network_params, opt_state), losses = jax.lax.scan(
                epoch,
                (network_params, opt_state),
                jax.random.split(epoch_key, config.update_epochs),
            )
            mean_return = episodes.mean_last_return()
            metrics = {
                "episode_return": mean_return,
                "episodes": episodes.completed,
                "policy_loss": losses[0].mean(),
                "value_loss": losses[1].mean(),
                "entropy": losses[2].mean(),
                "approx_kl": losses[3].mean(),
                "timesteps": (update_idx + 1) * config.batch_size,
            }
            if progress is not None:
                jax.debug.callback(progress, update_idx, num_updates, mean_return)
            carry = (network_params, opt_state, obs_stats, env_state, obs, episodes, key)
            return carry, metrics

        episodes = EpisodeTracker.create(num_envs)
        carry = (network_params, opt_state, obs_stats, env_state, obs, episodes, key)
        carry, metrics = jax.lax.scan(update_step, carry, jnp.arange(num_updates))
        policy = PPOPolicyParams(
            network=carry[0],
            obs_stats=carry[2],
            action_low=action_low,
            action_high=action_high,
            normalize_observations=config.normalize_observations,
            symlog_observations=config.symlog_observations,
            rescale_actions=config.rescale_actions,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
        )
        return TrainOutput(policy=policy, metrics=metrics)

    return train


def stack_configs(configs: Sequence[PPOConfig]) -> PPOConfig:
    """Stack configs with equal static fields into one config with batched leaves (for vmap)."""
    return jax.tree_util.tree_map(
        lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs
    )
