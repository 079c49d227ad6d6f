"""PPO's rollout buffer, generalised advantage estimation, and minibatch loss.

Unlike PureJaxRL, a time-limit truncation bootstraps from the value of the
episode's final observation instead of being treated as a terminal state
(PureJaxRL issue #20), and advantages are normalised per minibatch (as in
Stable-Baselines3).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.training.config import PPOConfig
from cardiosim_jax.training.networks import gaussian_entropy, gaussian_log_prob


@struct.dataclass
class Transition:
    """One step of every environment, as the loss sees it (time-major when stacked)."""

    obs: jax.Array  # normalised observation the action was taken at
    raw_action: jax.Array  # the Gaussian sample, before clipping or rescaling
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array  # value of the state reached (pre-reset at an episode's end)
    reward: jax.Array  # scaled, optionally symlogged and clipped training reward
    terminated: jax.Array  # 1.0 where the episode terminated (no bootstrap)
    done: jax.Array  # 1.0 where the episode ended: terminated or truncated
    #: Normalised observation after the step (pre-reset); ``None`` without smoothness loss.
    next_obs: jax.Array | None = None


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


def rollout_advantages(
    traj: Transition, gamma: jax.Array, gae_lambda: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """:func:`compute_gae` of a rollout buffer: ``(advantages, returns)``.

    Termination zeroes the bootstrap from ``next_value``; any episode end
    (``done``: termination or truncation) cuts the lambda-recursion.
    """
    return compute_gae(
        traj.reward, traj.value, traj.next_value, traj.terminated, traj.done, gamma, gae_lambda
    )


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
