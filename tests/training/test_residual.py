"""Residual PPO (``PPOConfig.residual_scale``): the clinical rule plus a learned, bounded change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.rollout import run_episodes
from cardiosim_jax.training import checkpoint, ppo

ENV_ID = "PacingControl-v1"
SCALE = (5.0, 1.0)  # bpm, V


@pytest.fixture(scope="module")
def hard():
    return cardiosim_jax.make(ENV_ID, "hard")


@pytest.fixture(scope="module")
def observations(hard):
    env, params = hard
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), 64), params
    )
    return obs


@pytest.fixture(scope="module")
def trained():
    config = ppo.preset(
        "tuned",
        ENV_ID,
        "hard",
        init_action=None,
        residual_scale=SCALE,
        num_envs=8,
        num_steps=16,
        minibatch_size=64,
        total_timesteps=128,  # one update
        update_epochs=1,
        hidden_sizes=(16,),
    )
    return ppo.make_train(config)(jax.random.PRNGKey(0)), config


def test_a_zero_correction_is_the_heuristic_and_corrections_are_bounded(hard, observations):
    env, params = hard
    heuristic, heuristic_params = agents.baseline_policy("heuristic", env, params)
    residual = ppo.Residual(ENV_ID, SCALE)
    space = env.action_space(params)
    low, high = jnp.asarray(space.low), jnp.asarray(space.high)
    key = jax.random.PRNGKey(1)
    rule = jax.vmap(lambda o: heuristic(heuristic_params, o, key))(observations)

    def act(raw):
        return jax.vmap(lambda o: residual(raw, o, key, low, high))(observations)

    np.testing.assert_array_equal(act(jnp.zeros(2)), rule)
    for sign in (1.0, -1.0):
        expected = np.clip(np.asarray(rule) + sign * np.asarray(SCALE), low, high)
        np.testing.assert_allclose(act(jnp.full(2, sign)), expected, rtol=1e-6)
        # The network's output is clipped to [-1, 1]: no correction exceeds the scale.
        np.testing.assert_array_equal(act(jnp.full(2, 40.0 * sign)), act(jnp.full(2, sign)))


def test_trained_residual_policy_stays_within_its_scale_of_the_rule(hard, observations, trained):
    env, params = hard
    out, config = trained
    assert out.policy.residual == ppo.Residual(ENV_ID, SCALE)
    heuristic, heuristic_params = agents.baseline_policy("heuristic", env, params)
    key = jax.random.PRNGKey(2)
    rule = np.asarray(jax.vmap(lambda o: heuristic(heuristic_params, o, key))(observations))
    for policy in (ppo.ppo_policy, ppo.ppo_stochastic_policy):
        actions = np.asarray(jax.vmap(lambda o, p=policy: p(out.policy, o, key))(observations))
        assert np.all(np.abs(actions - rule) <= np.asarray(SCALE) + 1e-4)
    # A network whose output is 0 plays exactly the clinical rule, episode for episode.
    silent = out.policy.replace(network=jax.tree_util.tree_map(jnp.zeros_like, out.policy.network))
    steps = 20
    key = jax.random.PRNGKey(3)
    with_rule = run_episodes(env, params, heuristic, heuristic_params, key, 16, steps)
    with_residual = run_episodes(env, params, ppo.ppo_policy, silent, key, 16, steps)
    np.testing.assert_array_equal(with_residual.episode_return, with_rule.episode_return)


def test_residual_checkpoints_round_trip(observations, trained, tmp_path):
    out, config = trained
    checkpoint.save_policy(tmp_path, out.policy, config)
    loaded, loaded_config = checkpoint.load_policy(tmp_path)
    assert loaded_config.residual_scale == SCALE
    assert loaded.residual == out.policy.residual
    key = jax.random.PRNGKey(4)
    np.testing.assert_array_equal(
        jax.vmap(lambda o: ppo.ppo_policy(loaded, o, key))(observations),
        jax.vmap(lambda o: ppo.ppo_policy(out.policy, o, key))(observations),
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(residual_scale=(5.0, 0.0)), "finite and > 0"),
        (dict(residual_scale=(5.0, float("nan"))), "finite and > 0"),
        (dict(residual_scale=SCALE, init_action=(60.0, 2.5)), "init_action must be None"),
    ],
)
def test_residual_settings_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        ppo.preset("tuned", ENV_ID, "hard", **{"init_action": None, **overrides})


def test_residual_scale_must_match_the_action_space():
    with pytest.raises(ValueError, match=r"residual_scale \(5.0,\) has 1 entries; .* has 2$"):
        ppo.preset("tuned", ENV_ID, "hard", init_action=None, residual_scale=(5.0,))
