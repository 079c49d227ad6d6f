"""cardiosim_jax.experiments: the evaluation-key rule shared by PPO seeds and baselines."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax import agents, experiments
from cardiosim_jax.rollout import run_episodes
from cardiosim_jax.training import checkpoint, ppo

ENV_ID, TIER, EPISODES, SEEDS, SEED = "AntiarrhythmicDosing-v0", "easy", 4, 2, 3


@pytest.fixture(scope="module")
def setting():
    env, env_params = cardiosim_jax.make(ENV_ID, TIER)
    config = ppo.preset("tuned", ENV_ID, TIER)
    template = checkpoint.policy_template(config)
    obs_dim = env.observation_space(env_params).shape[0]
    network = ppo.ActorCritic(
        env.action_space(env_params).shape[0], config.hidden_sizes, config.activation
    )
    # Two different untrained policies, stacked as a two-seed training run would be.
    weights = [
        network.init(jax.random.PRNGKey(i), np.zeros((obs_dim,), np.float32)) for i in (5, 6)
    ]
    policies = template.replace(
        network=jax.tree_util.tree_map(lambda *x: np.stack(x), *weights),
        obs_stats=jax.tree_util.tree_map(lambda x: np.stack([x, x]), template.obs_stats),
        action_low=np.stack([template.action_low] * SEEDS),
        action_high=np.stack([template.action_high] * SEEDS),
    )
    return env, env_params, policies


def returns_on_key(env, env_params, policy, policy_params, key) -> float:
    steps = int(env_params.max_steps_in_episode)
    return float(
        np.mean(
            run_episodes(
                env, env_params, policy, policy_params, key, EPISODES, steps
            ).episode_return
        )
    )


def test_seed_i_plays_the_ith_key_of_the_split_evaluation_key(setting):
    env, env_params, policies = setting
    cell = experiments.evaluate_policies(policies, env, env_params, SEEDS, EPISODES, SEED)
    keys = jax.random.split(jax.random.PRNGKey(SEED + 1), SEEDS)
    for i in range(SEEDS):
        policy_i = jax.tree_util.tree_map(lambda x, i=i: x[i], policies)
        expected = returns_on_key(env, env_params, ppo.ppo_policy, policy_i, keys[i])
        np.testing.assert_allclose(cell["seed_means"][i], expected, rtol=1e-6)
    assert cell["seed_means"][0] != cell["seed_means"][1]


def test_baselines_replay_each_seeds_episodes(setting):
    env, env_params, _ = setting
    cell = experiments.baseline_on_ppo_episodes(env, env_params, "heuristic", SEEDS, EPISODES, SEED)
    policy, policy_params = agents.baseline_policy("heuristic", env, env_params)
    keys = jax.random.split(jax.random.PRNGKey(SEED + 1), SEEDS)
    for i in range(SEEDS):
        expected = returns_on_key(env, env_params, policy, policy_params, keys[i])
        np.testing.assert_allclose(cell["seed_means"][i], expected, rtol=1e-6)
    # Different keys are different patients: the seeds' heuristic means differ.
    assert cell["seed_means"][0] != cell["seed_means"][1]
    np.testing.assert_allclose(cell["mean"], np.mean(cell["seed_means"]), rtol=1e-6)


def test_one_seed_uses_the_same_rule(setting):
    env, env_params, _ = setting
    cell = experiments.baseline_on_ppo_episodes(env, env_params, "heuristic", 1, EPISODES, SEED)
    policy, policy_params = agents.baseline_policy("heuristic", env, env_params)
    (key,) = jax.random.split(jax.random.PRNGKey(SEED + 1), 1)
    expected = returns_on_key(env, env_params, policy, policy_params, key)
    np.testing.assert_allclose(cell["seed_means"], [expected], rtol=1e-6)
