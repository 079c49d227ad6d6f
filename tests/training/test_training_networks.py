"""Networks: orthogonal initialisation, action mapping, trained policies as functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cardiosim_jax.training import networks
from cardiosim_jax.training.normalization import RunningMeanStd


def test_orthogonal_initializer_is_orthogonal_and_vmaps_over_seeds():
    init = networks.orthogonal(2.0)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    for shape in [(6, 64), (64, 64), (64, 1)]:
        weights = jax.vmap(lambda k, shape=shape: init(k, shape))(keys)
        assert weights.shape == (8, *shape)
        for w in np.asarray(weights):
            gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
            np.testing.assert_allclose(gram, 4.0 * np.eye(gram.shape[0]), atol=1e-4)
    # Different keys give different matrices.
    assert not np.allclose(weights[0], weights[1])


def test_actions_reach_the_env_inside_bounds_and_are_finite():
    for rescale in (True, False):
        raw = jnp.array([[-1e6, 0.0], [0.3, 1e6], [jnp.inf, -jnp.inf]])
        low, high = jnp.array([-20.0, 0.0]), jnp.array([20.0, 1.0])
        action = networks.to_env_action(raw, low, high, rescale)
        assert bool(jnp.all((action >= low) & (action <= high)))
        back = networks.from_env_action(jnp.array([10.0, 0.5]), low, high, rescale)
        np.testing.assert_allclose(networks.to_env_action(back, low, high, rescale), [10.0, 0.5])


def test_policies_act_with_the_network_mean_and_sample_around_it():
    low, high = jnp.array([0.0, 30.0]), jnp.array([100.0, 120.0])
    params = networks.PPOPolicyParams(
        network=None,
        obs_stats=RunningMeanStd.create((4,)),
        action_low=low,
        action_high=high,
        rescale_actions=True,
        hidden_sizes=(16,),
    )
    module = networks.policy_network(params)
    assert (module.action_dim, tuple(module.hidden_sizes)) == (2, (16,))
    weights = module.init(jax.random.PRNGKey(0), jnp.zeros(4))
    # A mean of 0 in [-1, 1] is the middle of the bounds.
    weights["params"]["actor_mean"]["kernel"] = jnp.zeros_like(
        weights["params"]["actor_mean"]["kernel"]
    )
    weights["params"]["log_std"] = jnp.full(2, -1.0)
    params = params.replace(network=weights)
    obs = jnp.ones((500, 4))
    np.testing.assert_allclose(networks.ppo_policy(params, obs, None)[0], [50.0, 75.0])
    sampled = networks.ppo_stochastic_policy(params, obs, jax.random.PRNGKey(1))
    assert bool(jnp.all((sampled >= low) & (sampled <= high)))
    # std exp(-1) of the raw [-1, 1] mean: about 0.37 of the half-range.
    np.testing.assert_allclose(
        np.std(np.asarray(sampled), 0), np.exp(-1.0) * (high - low) / 2, rtol=0.15
    )
