"""``run_episodes`` (batched returns and lengths, masking after the first done) and
``record_episode(s)`` (the same episodes, step by step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ENV_IDS

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.envs.antiarrhythmic_dosing.v0 import TERMINATION_CONCENTRATION
from cardiosim_jax.rollout import (
    EpisodeStats,
    Trajectory,
    record_episode,
    record_episodes,
    run_episodes,
)


def max_dose_policy(params, obs, key):
    del params, obs, key
    return jnp.array([100.0])


def manual_episodes(env, env_params, policy, policy_params, key, n_episodes, max_steps):
    """Python re-implementation of run_episodes' key schedule, stopping at the first done.

    Also returns the unmasked sum over all ``max_steps`` steps (auto-reset
    episodes included), to show that masking matters.
    """
    step = jax.jit(env.step)
    returns, lengths, unmasked = [], [], []
    for episode_key in jax.random.split(key, n_episodes):
        reset_key, loop_key = jax.random.split(episode_key)
        obs, state = env.reset(reset_key, env_params)
        total, length, done, everything = 0.0, 0, False, 0.0
        for step_key in jax.random.split(loop_key, max_steps):
            act_key, env_key = jax.random.split(step_key)
            action = policy(policy_params, obs, act_key)
            obs, state, reward, terminated, truncated, _ = step(env_key, state, action, env_params)
            everything += float(reward)
            if not done:
                total += float(reward)
                length += 1
                done = bool(terminated) or bool(truncated)
        returns.append(total)
        lengths.append(length)
        unmasked.append(everything)
    return np.array(returns), np.array(lengths), np.array(unmasked)


def run(env_id, difficulty, policy, policy_params, n, seed, **overrides):
    env, params = cardiosim_jax.make(env_id, difficulty, **overrides)
    if policy_params == "random":
        policy_params = agents.random_policy_params(env, params)
    stats = run_episodes(
        env,
        params,
        policy,
        policy_params,
        jax.random.PRNGKey(seed),
        n,
        int(params.max_steps_in_episode),
    )
    return env, params, policy_params, stats


def test_pacing_episodes_last_500_steps():
    _, _, _, stats = run("PacingControl-v0", "medium", agents.random_policy, "random", 16, 0)
    assert isinstance(stats, EpisodeStats)
    np.testing.assert_array_equal(np.asarray(stats.length), 500)
    assert np.isfinite(np.asarray(stats.episode_return)).all()
    assert stats.episode_return.shape == (16,)


def test_heuristic_pacing_returns_are_the_papers_order_of_magnitude():
    policy_params = agents.HeuristicPacingParams()
    _, _, _, stats = run(
        "PacingControl-v0", "medium", agents.heuristic_pacing_policy, policy_params, 32, 1
    )
    returns = np.asarray(stats.episode_return)
    # Reference heuristic: ~125-129 per episode (paper 129 +- 6).
    assert 100.0 < np.median(returns) < 160.0


def test_defibrillation_episodes_end_early_and_are_masked():
    _, _, _, stats = run("DefibrillationTiming-v0", "easy", agents.random_policy, "random", 64, 2)
    lengths = np.asarray(stats.length)
    returns = np.asarray(stats.episode_return)
    assert ((lengths >= 1) & (lengths <= 100)).all()
    assert (lengths < 100).mean() > 0.9  # most random episodes convert before the timeout
    # A converted episode's return contains exactly one success reward (>= 100 - shock
    # costs), so no post-termination steps (further successes) are counted.
    converted = lengths < 100
    assert (returns[converted] < 150.0).all()
    assert (returns[converted] > 150.0 - 0.1 * 99 - 100 * (2.0 + 0.005 * 360) - 50).all()


def test_returns_equal_a_manual_python_loop_defibrillation():
    env, params, policy_params, stats = run(
        "DefibrillationTiming-v0", "medium", agents.random_policy, "random", 3, 5
    )
    returns, lengths, unmasked = manual_episodes(
        env, params, agents.random_policy, policy_params, jax.random.PRNGKey(5), 3, 100
    )
    np.testing.assert_array_equal(np.asarray(stats.length), lengths)
    np.testing.assert_allclose(np.asarray(stats.episode_return), returns, rtol=1e-5, atol=1e-3)
    assert (lengths < 100).any()
    assert not np.allclose(unmasked, returns)  # masking mattered


def test_returns_equal_a_manual_python_loop_dosing_termination():
    """Maximal doses terminate the episode early (C > 12 mg/L); the rest is masked."""
    env, params, _, stats = run(
        "AntiarrhythmicDosing-v0",
        "medium",
        max_dose_policy,
        None,
        2,
        7,
        max_steps_in_episode=120,
    )
    returns, lengths, unmasked = manual_episodes(
        env, params, max_dose_policy, None, jax.random.PRNGKey(7), 2, 120
    )
    np.testing.assert_array_equal(np.asarray(stats.length), lengths)
    assert (lengths < 120).all()
    np.testing.assert_allclose(np.asarray(stats.episode_return), returns, rtol=1e-5, atol=1e-3)
    assert not np.allclose(unmasked, returns)


def test_time_limit_truncation_ends_the_episode_inside_a_longer_scan():
    """Pacing never terminates: a 6-step time limit scanned for 10 steps counts 6 steps,
    not the auto-reset episode that follows."""
    env, params = cardiosim_jax.make("PacingControl-v0", "medium", max_steps_in_episode=6)
    _, policy_params = agents.baseline_policy("random", env, params)
    key = jax.random.PRNGKey(8)
    stats = run_episodes(env, params, agents.random_policy, policy_params, key, 3, 10)
    returns, lengths, unmasked = manual_episodes(
        env, params, agents.random_policy, policy_params, key, 3, 10
    )
    np.testing.assert_array_equal(np.asarray(stats.length), 6)
    np.testing.assert_array_equal(lengths, 6)
    np.testing.assert_allclose(np.asarray(stats.episode_return), returns, rtol=1e-5, atol=1e-3)
    assert not np.allclose(unmasked, returns)


def test_run_episodes_is_deterministic_in_the_key():
    for env_id in ENV_IDS:
        _, _, _, a = run(env_id, "hard", agents.random_policy, "random", 4, 3)
        _, _, _, b = run(env_id, "hard", agents.random_policy, "random", 4, 3)
        _, _, _, c = run(env_id, "hard", agents.random_policy, "random", 4, 4)
        np.testing.assert_array_equal(np.asarray(a.episode_return), np.asarray(b.episode_return))
        assert not np.array_equal(np.asarray(a.episode_return), np.asarray(c.episode_return))


# --------------------------------------------------------------------------- record_episode(s)

#: (env id, difficulty, policy, policy params, episodes, seed, overrides): the configurations
#: of the run_episodes tests above, so their compiled rollouts are reused.
RECORDED = {
    "PacingControl-v0": ("medium", agents.random_policy, "random", 16, 0, {}),
    "AntiarrhythmicDosing-v0": (
        "medium",
        max_dose_policy,
        None,
        2,
        7,
        {"max_steps_in_episode": 120},
    ),
    "DefibrillationTiming-v0": ("medium", agents.random_policy, "random", 3, 5, {}),
}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_record_episodes_match_run_episodes_and_stop_at_the_episode_end(env_id):
    difficulty, policy, policy_params, n, seed, overrides = RECORDED[env_id]
    env, params, policy_params, stats = run(
        env_id, difficulty, policy, policy_params, n, seed, **overrides
    )
    max_steps = int(params.max_steps_in_episode)
    traj = record_episodes(
        env, params, policy, policy_params, jax.random.PRNGKey(seed), n, max_steps
    )
    assert isinstance(traj, Trajectory)
    assert traj.reward.shape == (n, max_steps)
    assert traj.observation.shape == (n, max_steps, 6)
    assert traj.action.shape == (n, max_steps, env.num_actions)
    np.testing.assert_array_equal(np.asarray(traj.length), np.asarray(stats.length))
    np.testing.assert_allclose(
        np.asarray(traj.episode_return), np.asarray(stats.episode_return), rtol=1e-5, atol=1e-3
    )

    traj = jax.device_get(traj)
    steps = np.arange(max_steps)
    for j, length in enumerate(np.asarray(stats.length)):
        # valid marks exactly the episode's steps; the last one is its only done.
        np.testing.assert_array_equal(traj.valid[j], steps < length)
        done = traj.terminated[j] | traj.truncated[j]
        np.testing.assert_array_equal(done, steps == length - 1)
        assert not traj.reward[j, length:].any() and not traj.action[j, length:].any()
        # Padding freezes the final state and info: no auto-reset into a new episode.
        for leaf in jax.tree_util.tree_leaves((traj.state, traj.info)):
            np.testing.assert_array_equal(
                leaf[j, length:], np.broadcast_to(leaf[j, length - 1], leaf[j, length:].shape)
            )
        # observation[t + 1] (what the policy saw) is the observation of state[t].
        if length > 1:
            np.testing.assert_allclose(
                traj.observation[j, 1:length],
                jax.vmap(env.get_obs, in_axes=(0, None))(
                    jax.tree_util.tree_map(lambda x, j=j, n=length: x[j, : n - 1], traj.state),
                    params,
                ),
                rtol=1e-6,
            )
    if env_id == "DefibrillationTiming-v0":
        ended = np.asarray(stats.length) < max_steps
        assert ended.any()
        # The final state is the defibrillated one, not a fresh fibrillating reset.
        assert not traj.state.in_fibrillation[ended, -1].any()
        assert traj.info["defibrillated"][ended, -1].all()
    if env_id == "AntiarrhythmicDosing-v0":
        # Terminated by an overdose: the concentration stays above the cut-off.
        final = traj.state.drug.plasma_concentration[:, -1]
        assert (final > TERMINATION_CONCENTRATION).all()


def test_record_episode_vmaps_over_a_population():
    targets = np.array([60.0, 90.0])
    env, params = cardiosim_jax.make(
        "PacingControl-v0", target_heart_rate_bpm=targets, max_steps_in_episode=150
    )
    policy_params = agents.HeuristicPacingParams()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    recorded = jax.vmap(record_episode, in_axes=(None, 0, None, None, 0, None))(
        env, params, agents.heuristic_pacing_policy, policy_params, keys, 150
    )
    assert recorded.reward.shape == (2, 150)
    # Each patient's heart rate settles on its own target.
    final_rate = np.asarray(recorded.info["heart_rate"][:, -1])
    np.testing.assert_allclose(final_rate, targets, atol=5.0)
    # record_episodes takes the same population (and the same keys).
    batched = record_episodes(
        env, params, agents.heuristic_pacing_policy, policy_params, jax.random.PRNGKey(0), 2, 150
    )
    np.testing.assert_allclose(
        np.asarray(batched.episode_return), np.asarray(recorded.episode_return), rtol=1e-6
    )
    # So does run_episodes: patient i runs episode i.
    stats = run_episodes(
        env, params, agents.heuristic_pacing_policy, policy_params, jax.random.PRNGKey(0), 2, 150
    )
    np.testing.assert_allclose(
        np.asarray(stats.episode_return), np.asarray(recorded.episode_return), rtol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(stats.length), np.asarray(recorded.length))
    with pytest.raises(ValueError, match="n_episodes=3"):
        record_episodes(env, params, agents.heuristic_pacing_policy, policy_params, keys[0], 3, 150)
    with pytest.raises(ValueError, match="n_episodes=3"):
        run_episodes(env, params, agents.heuristic_pacing_policy, policy_params, keys[0], 3, 150)
