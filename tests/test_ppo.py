"""PPO trainer: GAE with time-limit bootstrapping, presets, sweeps, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import evaluate
from cardiosim_jax.training import ppo


def test_gae_bootstraps_truncation_but_not_termination():
    # One environment, three steps: normal, time-limit truncation, termination.
    rewards = jnp.array([[1.0], [2.0], [3.0]])
    values = jnp.array([[0.5], [0.6], [0.7]])
    # next_values[1] is V(final observation) of the truncated episode.
    next_values = jnp.array([[0.6], [0.9], [0.8]])
    terminated = jnp.array([[0.0], [0.0], [1.0]])
    done = jnp.array([[0.0], [1.0], [1.0]])
    gamma, lam = 0.9, 0.8
    advantages, returns = ppo.compute_gae(
        rewards, values, next_values, terminated, done, gamma, lam
    )
    # By hand: delta0 = 1 + .9*.6 - .5, delta1 = 2 + .9*.9 - .6, delta2 = 3 - .7;
    # A2 = delta2, A1 = delta1 (episode ended: no lambda-carry), A0 = delta0 + .72*A1.
    a2, a1 = 2.3, 2.21
    a0 = 1.04 + gamma * lam * a1
    np.testing.assert_allclose(advantages[:, 0], [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(returns, advantages + values, rtol=1e-6)
    # Treating the time limit as a terminal state (PureJaxRL #20) would lose 0.9 * 0.9.
    wrong, _ = ppo.compute_gae(rewards, values, next_values, done, done, gamma, lam)
    assert float(wrong[1, 0]) == pytest.approx(2.0 - 0.6)
    assert float(advantages[1, 0]) - float(wrong[1, 0]) == pytest.approx(gamma * 0.9)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rng = np.random.default_rng(0)
    rewards = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    next_values = jnp.concatenate([values[1:], jnp.zeros((1, 2))])
    zeros = jnp.zeros((6, 2))
    gamma = 0.95
    advantages, _ = ppo.compute_gae(rewards, values, next_values, zeros, zeros, gamma, 1.0)
    discounted = np.zeros((6, 2))
    running = np.zeros(2)
    for t in reversed(range(6)):
        running = np.asarray(rewards[t]) + gamma * running
        discounted[t] = running
    np.testing.assert_allclose(advantages, discounted - np.asarray(values), rtol=1e-5, atol=1e-5)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(50, 4)) for _ in range(3)]
    stats = ppo.RunningMeanStd.create((4,))
    for batch in batches:
        stats = stats.update(jnp.asarray(batch, jnp.float32))
    data = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3)
    assert float(stats.count) == pytest.approx(150, abs=1e-3)


def test_paper_preset_is_table_1():
    table1 = {
        "PacingControl-v0": (3e-4, 2048, 0.01, 200_000, "medium"),
        "AntiarrhythmicDosing-v0": (5e-4, 1024, 0.02, 300_000, "medium"),
        "DefibrillationTiming-v0": (3e-4, 256, 0.10, 500_000, "easy"),
    }
    for env_id, (lr, steps, ent, total, difficulty) in table1.items():
        config = ppo.preset("paper", env_id)
        assert (config.learning_rate, config.num_steps, config.ent_coef) == (lr, steps, ent)
        assert (config.total_timesteps, config.difficulty) == (total, difficulty)
        assert (config.minibatch_size, config.update_epochs, config.num_envs) == (64, 10, 1)
        assert (config.gamma, config.gae_lambda, config.clip_eps) == (0.99, 0.95, 0.2)
        assert (config.vf_coef, config.max_grad_norm, config.hidden_sizes) == (0.5, 0.5, (64, 64))
        assert not config.normalize_observations and config.activation == "tanh"


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="unknown preset"):
        ppo.preset("best", "PacingControl-v0")
    with pytest.raises(ValueError, match="unknown environment id"):
        ppo.preset("paper", "Pacing-v9")
    with pytest.raises(ValueError, match="multiple of"):
        ppo.preset("paper", "PacingControl-v0", minibatch_size=100)
    config = ppo.preset("paper", "AntiarrhythmicDosing-v0", total_timesteps=1024)
    train = ppo.make_train(config)
    with pytest.raises(ValueError, match="static fields"):
        train(jax.random.PRNGKey(0), config.replace_static(num_steps=512))


def _tiny(env_id: str = "AntiarrhythmicDosing-v0", **overrides) -> ppo.PPOConfig:
    settings = dict(num_envs=8, num_steps=32, minibatch_size=64, total_timesteps=512)
    settings.update(overrides)
    return ppo.preset("tuned", env_id, **settings)


def test_sweep_leaves_vmap_in_one_call_and_zero_lr_keeps_the_initial_network():
    config = _tiny()
    train = ppo.make_train(config)
    configs = ppo.stack_configs(
        [config.replace(learning_rate=0.0), config.replace(learning_rate=1e-3)]
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    out = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))(keys, configs)
    assert out.metrics["episode_return"].shape == (2, 2, config.num_updates)
    init_key = jax.random.split(keys[0], 3)[1]  # the key train() initialises the network with
    obs_dim = 6
    net = ppo.ActorCritic(1, config.hidden_sizes, config.activation)
    init = net.init(init_key, jnp.zeros((obs_dim,)))
    frozen = jax.tree_util.tree_map(lambda x: x[0, 0], out.policy.network)
    trained = jax.tree_util.tree_map(lambda x: x[1, 0], out.policy.network)
    kernel = ("params", "actor_mean", "kernel")
    # Equal up to float32 rounding (batched and single matrix products round differently).
    np.testing.assert_allclose(
        frozen["params"]["Dense_0"]["kernel"], init["params"]["Dense_0"]["kernel"], atol=1e-5
    )
    np.testing.assert_allclose(_get(frozen, kernel), _get(init, kernel), atol=1e-6)
    assert not np.allclose(_get(trained, kernel), _get(init, kernel))


def _get(tree, path):
    for name in path:
        tree = tree[name]
    return np.asarray(tree)


def test_observation_statistics_live_in_the_policy():
    config = _tiny()
    out = jax.jit(ppo.make_train(config))(jax.random.PRNGKey(3))
    stats = out.policy.obs_stats
    # Updated with the reset batch, then with every rollout's observations.
    expected = config.num_envs * (1 + config.num_steps * config.num_updates)
    assert float(stats.count) == pytest.approx(expected, rel=1e-4)
    assert out.policy.normalize_observations
    assert out.policy.symlog_observations == config.symlog_observations
    assert np.all(np.isfinite(stats.mean)) and np.all(np.asarray(stats.var) > 0)


def test_initial_action_sets_the_untrained_mean_action():
    config = _tiny("PacingControl-v0", init_action=(5.0, 0.0), total_timesteps=256)
    out = jax.jit(ppo.make_train(config.replace(learning_rate=0.0)))(jax.random.PRNGKey(0))
    obs = jnp.zeros((3, 6))
    # Output kernel is orthogonal(0.01): the mean action is the bias, up to ~1% of the range.
    action = ppo.ppo_policy(out.policy, obs, None)
    np.testing.assert_allclose(action[:, 0], 5.0, atol=0.5)
    np.testing.assert_allclose(action[:, 1], 0.0, atol=0.05)


def test_actions_reach_the_env_inside_bounds_and_are_finite():
    for rescale in (True, False):
        raw = jnp.array([[-1e6, 0.0], [0.3, 1e6], [jnp.inf, -jnp.inf]])
        low, high = jnp.array([-20.0, 0.0]), jnp.array([20.0, 1.0])
        action = ppo.to_env_action(raw, low, high, rescale)
        assert bool(jnp.all((action >= low) & (action <= high)))
        back = ppo.from_env_action(jnp.array([10.0, 0.5]), low, high, rescale)
        np.testing.assert_allclose(ppo.to_env_action(back, low, high, rescale), [10.0, 0.5])


@pytest.mark.slow
def test_tuned_ppo_learns_dosing_far_above_random():
    # One seed (1M steps, ~25 s on 2 cores); baselines/tuned.py trains 8 per environment.
    config = ppo.preset("tuned", "AntiarrhythmicDosing-v0")
    out = jax.jit(jax.vmap(ppo.make_train(config)))(jax.random.split(jax.random.PRNGKey(0), 1))
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    policy_params = jax.tree_util.tree_map(lambda x: x[0], out.policy)
    trained = evaluate(ppo.ppo_policy, env, params, jax.random.PRNGKey(1), 200, 1, policy_params)
    policy, policy_params = agents.baseline_policy("random", env, params)
    random = evaluate(policy, env, params, jax.random.PRNGKey(1), 200, 1, policy_params)
    # Random dosing scores about -44; the heuristic about 180.
    assert min(trained["seed_means"]) > random["mean"] + 150, (trained, random["mean"])
    curve = np.asarray(out.metrics["episode_return"])
    assert np.all(np.nanmean(curve[:, -5:], axis=1) > np.nanmean(curve[:, :3], axis=1) + 100)


def test_orthogonal_initializer_is_orthogonal_and_vmaps_over_seeds():
    init = ppo.orthogonal(2.0)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    for shape in [(6, 64), (64, 64), (64, 1)]:
        weights = jax.vmap(lambda k, shape=shape: init(k, shape))(keys)
        assert weights.shape == (8, *shape)
        for w in np.asarray(weights):
            gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
            np.testing.assert_allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-4)
    # Different keys give different matrices.
    assert not np.allclose(weights[0], weights[1])


def _loss_batch(rng: np.random.Generator, n: int = 16, obs_dim: int = 3, action_dim: int = 2):
    """A minibatch and a linear 'network' whose outputs are easy to recompute in NumPy."""
    weights = rng.normal(size=(obs_dim, action_dim)).astype(np.float32)
    log_std = np.array([-0.5, 0.2], np.float32)[:action_dim]
    value_weights = rng.normal(size=obs_dim).astype(np.float32)

    def apply_fn(obs):
        mean = obs @ weights
        return mean, jnp.broadcast_to(log_std, mean.shape), obs @ value_weights

    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    batch = ppo.Transition(
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


def test_ppo_loss_is_the_clipped_surrogate_on_normalised_advantages_and_value_on_returns():
    rng = np.random.default_rng(0)
    apply_fn, batch, advantages, targets, (weights, log_std, value_weights) = _loss_batch(rng)
    hp = ppo.PPOConfig(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    total, (policy_loss, value_loss, entropy, _) = ppo.ppo_loss(
        apply_fn, batch, advantages, targets, hp
    )
    obs, raw = np.asarray(batch.obs, np.float64), np.asarray(batch.raw_action, np.float64)
    mean = obs @ weights
    z = (raw - mean) / np.exp(log_std)
    log_prob = np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
    ratio = np.exp(log_prob - np.asarray(batch.log_prob))
    adv = (advantages - advantages.mean()) / advantages.std()
    expected_policy = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
    expected_value = np.mean((obs @ value_weights - targets) ** 2)
    expected_entropy = np.sum(log_std + 0.5 * np.log(2 * np.pi * np.e))
    np.testing.assert_allclose(policy_loss, expected_policy, rtol=1e-4)
    np.testing.assert_allclose(value_loss, expected_value, rtol=1e-4)
    np.testing.assert_allclose(entropy, expected_entropy, rtol=1e-5)
    np.testing.assert_allclose(
        total, expected_policy + 0.5 * expected_value - 0.01 * expected_entropy, rtol=1e-4
    )
    # The ratios straddle the clip range, so min and max of the surrogates differ.
    assert np.any(ratio < 0.8) or np.any(ratio > 1.2)


def test_smoothness_loss_adds_the_masked_mean_action_distance():
    rng = np.random.default_rng(1)
    apply_fn, batch, advantages, targets, (weights, _, _) = _loss_batch(rng)
    hp = ppo.PPOConfig(smoothness_coef=0.3)
    plain, _ = ppo.ppo_loss(apply_fn, batch, advantages, targets, hp)
    smooth, _ = ppo.ppo_loss(apply_fn, batch, advantages, targets, hp, smoothness=True)
    step = (np.asarray(batch.next_obs) - np.asarray(batch.obs)) @ weights
    within = 1.0 - np.asarray(batch.done)
    expected = 0.3 * np.mean(within * np.linalg.norm(step, axis=-1))
    np.testing.assert_allclose(smooth - plain, expected, rtol=1e-4)
    assert expected > 0.01
    # A policy whose mean does not move between the steps pays nothing.
    still = batch.replace(next_obs=batch.obs)
    unmoved, _ = ppo.ppo_loss(apply_fn, still, advantages, targets, hp, smoothness=True)
    np.testing.assert_allclose(unmoved, plain, atol=1e-5)

    # Its gradient pulls consecutive mean actions together.
    def smoothness_term(w):
        def linear(o):
            return o @ w, jnp.zeros((o.shape[0], 2)), jnp.zeros(o.shape[0])

        on = ppo.ppo_loss(linear, batch, advantages, targets, hp, smoothness=True)[0]
        return on - ppo.ppo_loss(linear, batch, advantages, targets, hp)[0]

    moved = jnp.asarray(weights) - jax.grad(smoothness_term)(jnp.asarray(weights))
    assert float(smoothness_term(moved)) < 0.95 * expected


@pytest.mark.parametrize("coef", [-0.1, float("nan"), float("inf")])
def test_smoothness_coefficient_must_be_finite_and_non_negative(coef):
    with pytest.raises(ValueError, match=r"smoothness_coef must be finite and >= 0, got"):
        ppo.make_train(_tiny(smoothness_coef=coef))


def test_smoothness_is_compiled_in_only_with_a_nonzero_coefficient():
    # Off: the rollout buffer holds no next observations (and the loss is unchanged).
    # On: a sweep over the coefficient runs in one compiled call.
    config = _tiny(total_timesteps=256, smoothness_coef=0.5)
    train = ppo.make_train(config)
    configs = ppo.stack_configs([config, config.replace(smoothness_coef=5.0)])
    out = jax.jit(jax.vmap(train, in_axes=(None, 0)))(jax.random.PRNGKey(0), configs)
    first, second = (jax.tree_util.tree_map(lambda x, i=i: x[i], out.policy) for i in (0, 1))
    kernel = ("params", "actor_mean", "kernel")
    assert not np.allclose(_get(first.network, kernel), _get(second.network, kernel))
