"""The trainer's plumbing on a tiny deterministic environment whose episodes are known.

Episodes alternate: even ones are cut by a 3-step time limit (truncation),
odd ones terminate after 2 steps, so an 8-step rollout holds a truncation at
step 2, a termination at step 4 and a truncation at step 7. Rewards depend
only on the step count and the episode's parity, so every quantity the
trainer derives (training rewards, bootstrap values, GAE, episode returns,
observation statistics) has a value computed here by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces

from cardiosim_jax.training import losses, ppo
from cardiosim_jax.training.normalization import RunningMeanStd

TIME_LIMIT = 3
#: (index, kind) of each episode end in the first 8 steps of every environment.
ENDS = {2: "truncated", 4: "terminated", 7: "truncated"}


@struct.dataclass
class TinyState:
    steps: jax.Array  # steps taken in this episode
    episode: jax.Array  # episodes begun before this one


@struct.dataclass
class TinyParams:
    pass


def tiny_obs(steps, episode) -> jax.Array:
    return jnp.stack(
        [jnp.asarray(steps, jnp.float32), jnp.asarray(episode % 2, jnp.float32), jnp.ones(())]
    )


def tiny_reward(steps_after, episode) -> jax.Array:
    return 1.0 + 0.5 * steps_after + 2.0 * (episode % 2)


class TinyEnv:
    """Gymnasium's 6-tuple ``step`` with auto-reset and ``info["final_observation"]``."""

    default_params = TinyParams()

    def reset(self, key, params):
        state = TinyState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return tiny_obs(state.steps, state.episode), state

    def step(self, key, state, action, params):
        steps = state.steps + 1
        terminated = (state.episode % 2 == 1) & (steps >= 2)
        truncated = ~terminated & (steps >= TIME_LIMIT)
        done = terminated | truncated
        reward = tiny_reward(steps, state.episode) + 0.0 * action[0]
        final_obs = tiny_obs(steps, state.episode)
        state = TinyState(
            jnp.where(done, 0, steps).astype(jnp.int32),
            jnp.where(done, state.episode + 1, state.episode),
        )
        obs = tiny_obs(state.steps, state.episode)
        return obs, state, reward, terminated, truncated, {"final_observation": final_obs}

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params):
        return spaces.Box(-10.0, 10.0, (3,), jnp.float32)


def schedule(n_steps: int) -> dict[str, np.ndarray]:
    """The tiny env's first ``n_steps`` steps, simulated in plain Python."""
    steps, episode = 0, 0
    out = {k: [] for k in ("reward", "terminated", "done", "final_obs", "next_obs")}
    for _ in range(n_steps):
        steps += 1
        terminated = episode % 2 == 1 and steps >= 2
        done = terminated or steps >= TIME_LIMIT
        out["reward"].append(1.0 + 0.5 * steps + 2.0 * (episode % 2))
        out["terminated"].append(terminated)
        out["done"].append(done)
        out["final_obs"].append([steps, episode % 2, 1.0])
        if done:
            steps, episode = 0, episode + 1
        out["next_obs"].append([steps, episode % 2, 1.0])
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def make_config(**overrides) -> ppo.PPOConfig:
    settings = dict(
        env_id="tiny",
        num_envs=2,
        num_steps=8,
        minibatch_size=16,
        total_timesteps=16,
        update_epochs=1,
        gamma=0.9,
        gae_lambda=0.8,
        normalize_observations=True,
    )
    settings.update(overrides)
    return ppo.PPOConfig(**settings)


@pytest.fixture(scope="module")
def one_rollout():
    config = make_config(reward_scale=0.5, reward_clip=1.1)
    trainer = ppo.make_trainer(config, env=TinyEnv())
    state = trainer.init(jax.random.PRNGKey(0))
    envs, traj, raw_obs = jax.jit(
        lambda s, k: ppo.rollout(trainer.setup, config, s.network_params, s.obs_stats, s.envs, k)
    )(state, jax.random.PRNGKey(1))
    return config, trainer, state, envs, traj, raw_obs


def test_the_schedule_is_what_the_env_does(one_rollout):
    """The hand simulation is right about the env (so the tests below pin the trainer)."""
    *_, traj, raw_obs = one_rollout
    expected = schedule(8)
    np.testing.assert_array_equal(np.asarray(raw_obs)[:, 0], expected["next_obs"])
    for t, kind in ENDS.items():
        assert expected["done"][t] and expected["terminated"][t] == (kind == "terminated")
    assert expected["done"].sum() == len(ENDS)


def test_rollout_flags_terminations_and_truncations_apart(one_rollout):
    *_, traj, _ = one_rollout
    expected = schedule(8)
    for env_index in range(2):
        np.testing.assert_array_equal(traj.done[:, env_index], expected["done"])
        np.testing.assert_array_equal(traj.terminated[:, env_index], expected["terminated"])


def test_training_rewards_are_scaled_then_clipped(one_rollout):
    *_, traj, _ = one_rollout
    expected = np.clip(0.5 * schedule(8)["reward"], -1.1, 1.1)
    assert expected.max() == 1.1 and np.any(0.5 * schedule(8)["reward"] > 1.1)
    np.testing.assert_allclose(traj.reward[:, 0], expected, rtol=1e-6)


def test_bootstrap_value_is_the_final_observations_at_episode_ends(one_rollout):
    """``next_value[t]``: the value of the observation step ``t`` reached, before any reset."""
    config, trainer, state, _, traj, _ = one_rollout
    expected = schedule(8)
    setup = trainer.setup

    def value_of(raw_obs):
        norm = setup.preprocess(state.obs_stats, jnp.asarray(raw_obs, jnp.float32))
        return np.asarray(setup.network.apply(state.network_params, norm)[2])

    np.testing.assert_allclose(traj.next_value[:, 0], value_of(expected["final_obs"]), rtol=1e-5)
    # Within an episode that is the next step's value; at an end it is not the value of
    # the reset observation the env returned (the post-reset bootstrap bug).
    within = ~expected["done"].astype(bool)
    np.testing.assert_allclose(traj.next_value[:-1][within[:-1]], traj.value[1:][within[:-1]])
    reset_values = value_of(expected["next_obs"])
    for t in ENDS:
        assert abs(float(traj.next_value[t, 0]) - reset_values[t]) > 1e-4


def test_advantages_cut_lambda_at_every_end_and_bootstrap_only_truncations(one_rollout):
    config, _, _, _, traj, _ = one_rollout
    advantages, returns = losses.rollout_advantages(traj, config.gamma, config.gae_lambda)
    rewards = np.asarray(traj.reward[:, 0], np.float64)
    values = np.asarray(traj.value[:, 0], np.float64)
    next_values = np.asarray(traj.next_value[:, 0], np.float64)
    expected = np.zeros(8)
    carry = 0.0
    for t in reversed(range(8)):
        kind = ENDS.get(t)
        bootstrap = 0.0 if kind == "terminated" else config.gamma * next_values[t]
        carry = 0.0 if kind else carry  # no lambda-carry across an episode end
        carry = rewards[t] + bootstrap - values[t] + config.gamma * config.gae_lambda * carry
        expected[t] = carry
    np.testing.assert_allclose(advantages[:, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns[:, 0], expected + values, rtol=1e-5, atol=1e-6)


def test_episode_tracker_in_the_rollout_reports_true_unscaled_returns(one_rollout):
    _, _, _, envs, _, _ = one_rollout
    # Episodes 0 and 2 (truncated): 1.5 + 2 + 2.5; episode 1 (terminated): 3.5 + 4.
    np.testing.assert_allclose(envs.episodes.last, [6.0, 6.0])
    np.testing.assert_allclose(envs.episodes.running, [0.0, 0.0])
    assert int(envs.episodes.completed) == 2 * len(ENDS)
    assert float(envs.episodes.mean_last_return()) == pytest.approx(6.0)


def test_episode_tracker_records_every_reward_of_each_episode():
    tracker = ppo.EpisodeTracker.create(3)
    assert np.isnan(float(tracker.mean_last_return()))
    rewards = [[1.0, 10.0, 100.0], [2.0, 20.0, 200.0], [4.0, 40.0, 400.0]]
    dones = [[False, True, False], [True, False, False], [False, True, False]]
    for reward, done in zip(rewards, dones, strict=True):
        tracker = tracker.record(jnp.asarray(reward), jnp.asarray(done))
    # Env 0 ended after 1 + 2; env 1 after 10, then after 20 + 40; env 2 never.
    np.testing.assert_allclose(tracker.last[:2], [3.0, 60.0])
    assert np.isnan(float(tracker.last[2]))
    np.testing.assert_allclose(tracker.running, [4.0, 0.0, 700.0])
    assert int(tracker.completed) == 3
    # The mean skips environments that have not finished an episode.
    assert float(tracker.mean_last_return()) == pytest.approx(31.5)


def test_observation_statistics_are_those_of_every_observation_seen():
    """Reset observations, then each rollout's post-step ones (symlog applied first)."""
    config = make_config(total_timesteps=48, symlog_observations=True)  # 3 updates
    out = jax.jit(ppo.make_train(config, env=TinyEnv()))(jax.random.PRNGKey(2))
    stats = out.policy.obs_stats
    seen = np.concatenate([[[0.0, 0.0, 1.0]], schedule(3 * 8)["next_obs"]])
    seen = np.repeat(np.log1p(seen), config.num_envs, axis=0)  # symlog of non-negatives
    prior = RunningMeanStd.create((3,))
    np.testing.assert_allclose(stats.count, len(seen) + float(prior.count), rtol=1e-6)
    np.testing.assert_allclose(stats.mean, seen.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats.var, seen.var(0), rtol=1e-3, atol=1e-4)
    assert out.policy.normalize_observations and out.policy.symlog_observations


def test_one_iteration_reports_the_value_loss_against_gae_returns():
    """One epoch, one minibatch: the first gradient step sees the initial weights, so the
    reported value loss is the rollout's mean squared (value - GAE return)."""
    config = make_config()
    trainer = ppo.make_trainer(config, env=TinyEnv())
    state = trainer.init(jax.random.PRNGKey(3))
    _, metrics = jax.jit(lambda s: trainer.run(s, 0, 1))(state)
    rollout_key = jax.random.split(state.key)[1]
    _, traj, _ = ppo.rollout(
        trainer.setup, config, state.network_params, state.obs_stats, state.envs, rollout_key
    )
    advantages, returns = losses.rollout_advantages(traj, config.gamma, config.gae_lambda)
    expected = np.mean((np.asarray(traj.value) - np.asarray(returns)) ** 2)
    np.testing.assert_allclose(metrics["value_loss"][0], expected, rtol=1e-4)
    # Regressing on the advantages instead would report a different number.
    wrong = np.mean((np.asarray(traj.value) - np.asarray(advantages)) ** 2)
    assert abs(wrong - expected) > 1e-2 * expected
    assert int(metrics["episodes"][0]) == 2 * len(ENDS)
    np.testing.assert_allclose(metrics["episode_return"][0], 6.0)
