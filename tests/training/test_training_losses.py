"""PPO losses: GAE with time-limit bootstrapping, the clipped surrogate, the smoothness term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiosim_jax.training import losses
from cardiosim_jax.training.config import PPOConfig


def test_gae_bootstraps_truncation_but_not_termination():
    # One environment, three steps: normal, time-limit truncation, termination.
    rewards = jnp.array([[1.0], [2.0], [3.0]])
    values = jnp.array([[0.5], [0.6], [0.7]])
    # next_values[1] is V(final observation) of the truncated episode.
    next_values = jnp.array([[0.6], [0.9], [0.8]])
    terminated = jnp.array([[0.0], [0.0], [1.0]])
    done = jnp.array([[0.0], [1.0], [1.0]])
    gamma, lam = 0.9, 0.8
    advantages, returns = losses.compute_gae(
        rewards, values, next_values, terminated, done, gamma, lam
    )
    # By hand: delta0 = 1 + .9*.6 - .5, delta1 = 2 + .9*.9 - .6, delta2 = 3 - .7;
    # A2 = delta2, A1 = delta1 (episode ended: no lambda-carry), A0 = delta0 + .72*A1.
    a2, a1 = 2.3, 2.21
    a0 = 1.04 + gamma * lam * a1
    np.testing.assert_allclose(advantages[:, 0], [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(returns, advantages + values, rtol=1e-6)
    # Treating the time limit as a terminal state (PureJaxRL #20) would lose 0.9 * 0.9.
    wrong, _ = losses.compute_gae(rewards, values, next_values, done, done, gamma, lam)
    assert float(wrong[1, 0]) == pytest.approx(2.0 - 0.6)
    assert float(advantages[1, 0]) - float(wrong[1, 0]) == pytest.approx(gamma * 0.9)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rng = np.random.default_rng(0)
    rewards = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    next_values = jnp.concatenate([values[1:], jnp.zeros((1, 2))])
    zeros = jnp.zeros((6, 2))
    gamma = 0.95
    advantages, _ = losses.compute_gae(rewards, values, next_values, zeros, zeros, gamma, 1.0)
    discounted = np.zeros((6, 2))
    running = np.zeros(2)
    for t in reversed(range(6)):
        running = np.asarray(rewards[t]) + gamma * running
        discounted[t] = running
    np.testing.assert_allclose(advantages, discounted - np.asarray(values), rtol=1e-5, atol=1e-5)


def _loss_batch(rng: np.random.Generator, n: int = 16, obs_dim: int = 3, action_dim: int = 2):
    """A minibatch and a linear 'network' whose outputs are easy to recompute in NumPy."""
    weights = rng.normal(size=(obs_dim, action_dim)).astype(np.float32)
    log_std = np.array([-0.5, 0.2], np.float32)[:action_dim]
    value_weights = rng.normal(size=obs_dim).astype(np.float32)

    def apply_fn(obs):
        mean = obs @ weights
        return mean, jnp.broadcast_to(log_std, mean.shape), obs @ value_weights

    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    batch = losses.Transition(
        obs=jnp.asarray(obs),
        raw_action=jnp.asarray(rng.normal(size=(n, action_dim)), jnp.float32),
        log_prob=jnp.asarray(rng.normal(size=n) - 2.0, jnp.float32),
        value=jnp.zeros(n),
        next_value=jnp.zeros(n),
        reward=jnp.zeros(n),
        terminated=jnp.zeros(n),
        done=jnp.asarray(rng.random(n) < 0.25, jnp.float32),
        next_obs=jnp.asarray(obs + rng.normal(size=obs.shape).astype(np.float32)),
    )
    advantages = rng.normal(size=n).astype(np.float32) * 3.0 + 1.0
    targets = rng.normal(size=n).astype(np.float32)
    return apply_fn, batch, advantages, targets, (weights, log_std, value_weights)


@pytest.mark.parametrize("clip_eps", [0.2, 0.1])
def test_ppo_loss_is_the_clipped_surrogate_on_normalised_advantages_and_value_on_returns(
    clip_eps,
):
    rng = np.random.default_rng(0)
    apply_fn, batch, advantages, targets, (weights, log_std, value_weights) = _loss_batch(rng)
    hp = PPOConfig(clip_eps=clip_eps, vf_coef=0.5, ent_coef=0.01)
    total, (policy_loss, value_loss, entropy, _) = losses.ppo_loss(
        apply_fn, batch, advantages, targets, hp
    )
    obs, raw = np.asarray(batch.obs, np.float64), np.asarray(batch.raw_action, np.float64)
    mean = obs @ weights
    z = (raw - mean) / np.exp(log_std)
    log_prob = np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
    ratio = np.exp(log_prob - np.asarray(batch.log_prob))
    adv = (advantages - advantages.mean()) / advantages.std()
    clipped = np.clip(ratio, 1 - clip_eps, 1 + clip_eps)
    expected_policy = -np.mean(np.minimum(ratio * adv, clipped * adv))
    expected_value = np.mean((obs @ value_weights - targets) ** 2)
    expected_entropy = np.sum(log_std + 0.5 * np.log(2 * np.pi * np.e))
    np.testing.assert_allclose(policy_loss, expected_policy, rtol=1e-4)
    np.testing.assert_allclose(value_loss, expected_value, rtol=1e-4)
    np.testing.assert_allclose(entropy, expected_entropy, rtol=1e-5)
    np.testing.assert_allclose(
        total, expected_policy + 0.5 * expected_value - 0.01 * expected_entropy, rtol=1e-4
    )
    # The ratios straddle the clip range, so min and max of the surrogates differ, and
    # the two clip ranges clip different samples.
    assert np.any(ratio < 1 - clip_eps) or np.any(ratio > 1 + clip_eps)
    assert np.any((np.abs(ratio - 1) > 0.1) & (np.abs(ratio - 1) < 0.2))


def test_smoothness_loss_adds_the_masked_mean_action_distance():
    rng = np.random.default_rng(1)
    apply_fn, batch, advantages, targets, (weights, _, _) = _loss_batch(rng)
    hp = PPOConfig(smoothness_coef=0.3)
    plain, _ = losses.ppo_loss(apply_fn, batch, advantages, targets, hp)
    smooth, _ = losses.ppo_loss(apply_fn, batch, advantages, targets, hp, smoothness=True)
    step = (np.asarray(batch.next_obs) - np.asarray(batch.obs)) @ weights
    within = 1.0 - np.asarray(batch.done)
    expected = 0.3 * np.mean(within * np.linalg.norm(step, axis=-1))
    np.testing.assert_allclose(smooth - plain, expected, rtol=1e-4)
    assert expected > 0.01
    # A policy whose mean does not move between the steps pays nothing.
    still = batch.replace(next_obs=batch.obs)
    unmoved, _ = losses.ppo_loss(apply_fn, still, advantages, targets, hp, smoothness=True)
    np.testing.assert_allclose(unmoved, plain, atol=1e-5)

    # Its gradient pulls consecutive mean actions together.
    def smoothness_term(w):
        def linear(o):
            return o @ w, jnp.zeros((o.shape[0], 2)), jnp.zeros(o.shape[0])

        on = losses.ppo_loss(linear, batch, advantages, targets, hp, smoothness=True)[0]
        return on - losses.ppo_loss(linear, batch, advantages, targets, hp)[0]

    moved = jnp.asarray(weights) - jax.grad(smoothness_term)(jnp.asarray(weights))
    assert float(smoothness_term(moved)) < 0.95 * expected
