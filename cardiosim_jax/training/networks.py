"""Actor-critic networks, the Gaussian policy, and trained policies as evaluation functions.

Like Stable-Baselines3, the Gaussian is unsquashed and its sample is clipped to
the action bounds only when sent to the environment; ``rescale_actions`` maps
the policy's [-1, 1] onto the bounds instead. A :class:`Residual` policy acts as
a registered heuristic plus the network's bounded correction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.linen.initializers import constant

from cardiosim_jax.training.config import ACTIVATIONS, PPOConfig
from cardiosim_jax.training.normalization import RunningMeanStd, preprocess


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
    """Separate actor and critic MLPs; Gaussian policy with a state-independent log-std.

    ``__call__(obs) -> (mean, log_std, value)``: the raw (pre-clip) mean action,
    its log standard deviation broadcast to the mean's shape, and the state value.
    """

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
    """Log-density of ``x`` under a diagonal Gaussian, summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy (nats) of a diagonal Gaussian, summed over the last axis."""
    return jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)


def to_env_action(raw: jax.Array, low: jax.Array, high: jax.Array, rescale: bool) -> jax.Array:
    """Map a raw Gaussian sample to an environment action inside ``[low, high]``."""
    if rescale:
        return low + 0.5 * (jnp.clip(raw, -1.0, 1.0) + 1.0) * (high - low)
    return jnp.clip(raw, low, high)


def from_env_action(action: jax.Array, low: jax.Array, high: jax.Array, rescale: bool) -> jax.Array:
    """The raw policy output that :func:`to_env_action` maps to ``action``."""
    return 2.0 * (action - low) / (high - low) - 1.0 if rescale else action


@dataclasses.dataclass(frozen=True)
class Residual:
    """Residual policy learning (Silver et al. 2018, arXiv:1812.06298): the action is
    the heuristic that ``env_id`` registers, for the same observation, plus
    ``scale x clip(raw, -1, 1)`` (``scale`` per action entry, environment units),
    clipped to the action bounds. A raw output of 0 is the heuristic itself, so
    training starts from the clinical rule and learns bounded corrections to it.
    """

    env_id: str
    scale: tuple[float, ...]

    def __call__(
        self, raw: jax.Array, obs: jax.Array, key: jax.Array, low: jax.Array, high: jax.Array
    ) -> jax.Array:
        from cardiosim_jax import registration  # the registry imports the environments

        heuristic, heuristic_params = registration.spec(self.env_id).heuristic
        base = heuristic(heuristic_params, obs, key)
        correction = jnp.asarray(self.scale, jnp.float32) * jnp.clip(raw, -1.0, 1.0)
        return jnp.clip(base + correction, low, high)


def residual_of(config: PPOConfig) -> Residual | None:
    """The :class:`Residual` that ``config`` trains (None without ``residual_scale``)."""
    if config.residual_scale is None:
        return None
    return Residual(config.env_id.removeprefix("cardiosim/"), tuple(config.residual_scale))


# --------------------------------------------------------------------------- trained policies


@struct.dataclass
class PPOPolicyParams:
    """Everything a trained policy needs to act: network weights, normalisation, action bounds
    (and, for a residual policy, the heuristic it corrects)."""

    network: Any
    obs_stats: RunningMeanStd
    action_low: jax.Array
    action_high: jax.Array
    normalize_observations: bool = struct.field(pytree_node=False, default=False)
    symlog_observations: bool = struct.field(pytree_node=False, default=False)
    rescale_actions: bool = struct.field(pytree_node=False, default=False)
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(64, 64))
    activation: str = struct.field(pytree_node=False, default="tanh")
    residual: Residual | None = struct.field(pytree_node=False, default=None)


def env_action(
    params: PPOPolicyParams, raw: jax.Array, obs: jax.Array, key: jax.Array
) -> jax.Array:
    """The environment action for the network's raw output ``raw`` at raw observation ``obs``."""
    if params.residual is not None:
        return params.residual(raw, obs, key, params.action_low, params.action_high)
    return to_env_action(raw, params.action_low, params.action_high, params.rescale_actions)


def policy_network(params: PPOPolicyParams) -> ActorCritic:
    """The network module whose weights ``params.network`` holds."""
    return ActorCritic(params.action_low.shape[-1], params.hidden_sizes, params.activation)


def _prepare(params: PPOPolicyParams, obs: jax.Array) -> jax.Array:
    return preprocess(
        obs, params.obs_stats, params.normalize_observations, params.symlog_observations
    )


def ppo_policy(params: PPOPolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Deterministic (mean) action of a trained policy (``key`` reaches only a heuristic
    that a residual policy corrects)."""
    mean, _, _ = policy_network(params).apply(params.network, _prepare(params, obs))
    return env_action(params, mean, obs, key)


def ppo_stochastic_policy(params: PPOPolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """An action sampled from the trained Gaussian policy."""
    mean, log_std, _ = policy_network(params).apply(params.network, _prepare(params, obs))
    raw = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return env_action(params, raw, obs, jax.random.fold_in(key, 1))


#: Our layer for each Stable-Baselines3 ``MlpPolicy`` layer (two hidden layers per net).
_SB3_LAYERS = {
    "Dense_0": "mlp_extractor.policy_net.0",
    "Dense_1": "mlp_extractor.policy_net.2",
    "actor_mean": "action_net",
    "Dense_2": "mlp_extractor.value_net.0",
    "Dense_3": "mlp_extractor.value_net.2",
    "Dense_4": "value_net",
}


def from_sb3(state_dict: dict[str, Any], template: PPOPolicyParams) -> PPOPolicyParams:
    """A Stable-Baselines3 PPO ``MlpPolicy``'s weights as a policy we can evaluate.

    ``state_dict`` is ``model.policy.state_dict()`` (tensors or NumPy arrays) of
    SB3's default architecture: separate 64-64 tanh actor and critic and a
    state-independent log-std, which is :class:`ActorCritic`. ``template``
    supplies the rest (:func:`cardiosim_jax.training.checkpoint.policy_template`
    of a config with SB3's architecture and no observation normalisation).
    Its ``rescale_actions`` says which action space SB3 trained in: ``True``
    for the Gymnasium adapter's default ``Box(-1, 1)`` (``normalize_actions=True``),
    ``False`` for physical units. SB3's deterministic ``predict`` then equals
    :func:`ppo_policy`, and its sampled actions are :func:`ppo_stochastic_policy`'s
    in distribution.

    Raises:
        ValueError: a missing layer, a shape that does not fit ``template``, or
            a template that normalises observations (SB3's MlpPolicy does not).
    """
    weights = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}  # CPU tensors too
    network = template.network["params"]
    params: dict[str, Any] = {}
    for ours, theirs in _SB3_LAYERS.items():
        for name, suffix, transpose in (("kernel", "weight", True), ("bias", "bias", False)):
            key = f"{theirs}.{suffix}"
            if key not in weights:
                raise ValueError(f"the SB3 state dict has no {key!r}: not an MlpPolicy?")
            value = weights[key].T if transpose else weights[key]
            params.setdefault(ours, {})[name] = value
    params["log_std"] = weights.get("log_std")
    if params["log_std"] is None:
        raise ValueError("the SB3 state dict has no 'log_std': not a Gaussian MlpPolicy?")
    shapes = jax.tree_util.tree_map(np.shape, network)
    given = jax.tree_util.tree_map(np.shape, params)
    if given != shapes:
        raise ValueError(f"SB3 weights of shapes {given} do not fit this policy's {shapes}")
    if template.normalize_observations or template.symlog_observations:
        raise ValueError("the template normalises observations; SB3's MlpPolicy does not")
    return template.replace(network={"params": jax.tree_util.tree_map(jnp.asarray, params)})
