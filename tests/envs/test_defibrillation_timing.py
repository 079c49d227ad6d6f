"""DefibrillationTiming-v0 semantics, checked against cardiosim 0.1.0's DefibrillationTimingEnv."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.envs.defibrillation_timing import DefibrillationTimingEnv
from conftest import env_rollout

import cardiosim_jax

ENV_ID = "DefibrillationTiming-v0"
#: Reference constants, read off DefibrillationTimingEnv.step.
REF_EPISODE_LENGTH = 100
REF_SUCCESS_REWARD = 100.0
REF_QUICK_BONUS = 50.0  # with at most 3 shocks
REF_STEP_PENALTY = 0.1
REF_SHOCK_PENALTY = 2.0
REF_ENERGY_PENALTY = 0.005  # per J
REF_TIMEOUT_PENALTY = 50.0
REF_MAX_ENERGY = 360.0
REF_ENERGY_SCALE = 150.0
REF_FATIGUE = 0.95
REF_POST_SHOCK = (0.05, 0.01)
#: Independent first steps per batched check (one compiled shape).
N_BATCH = 2000


def ref_success_prob(base, energy, shocks_after):
    return base * (1.0 - np.exp(-energy / REF_ENERGY_SCALE)) * REF_FATIGUE**shocks_after


def one_step(env, params, action, state=None, key=None):
    if state is None:
        _, state = env.reset(jax.random.PRNGKey(6), params)
    key = jax.random.PRNGKey(5) if key is None else key
    return env.step(key, state, jnp.asarray(action, jnp.float32), params)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _first_steps(env, params, action, n, key, shocks_before):
    def run(key):
        reset_key, step_key = jax.random.split(key)
        _, state = env.reset(reset_key, params)
        state = state.replace(shocks_delivered=shocks_before)
        return env.step(step_key, state, action, params)

    return jax.vmap(run)(jax.random.split(key, n))


def batched_first_step(env, params, action, n, seed=0, shocks_before=0):
    """One step from ``n`` independent resets (shocks_delivered preset), vmapped."""
    action = jnp.asarray(action, jnp.float32)
    return _first_steps(env, params, action, n, jax.random.PRNGKey(seed), jnp.int32(shocks_before))


# ----------------------------------------------------------------------- reset


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_reset_observation_layout(difficulty):
    env, params = cardiosim_jax.make(ENV_ID, difficulty)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(3), 1000), params
    )
    obs = np.asarray(obs)
    u, v = obs[:, 0], obs[:, 1]
    # Fibrillating cell drawn as in the reference: u ~ U(0.3, 0.9), v ~ U(0, 5).
    assert u.min() >= 0.3 and u.max() <= 0.9
    assert u.min() < 0.31 and u.max() > 0.89
    assert v.min() >= 0.0 and v.max() <= 5.0
    assert v.min() < 0.05 and v.max() > 4.95
    np.testing.assert_array_equal(obs[:, 2], 1.0)  # index 1 before 10 samples, in fibrillation
    np.testing.assert_array_equal(obs[:, 3:], 0.0)  # no time, shocks or energy yet
    assert bool(np.all(np.asarray(state.in_fibrillation)))


# ------------------------------------------------------------- episode length


def test_episode_is_100_steps_by_truncation_with_timeout_penalty():
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    actions = jnp.zeros((2 * REF_EPISODE_LENGTH, 2))  # never shock: never defibrillated
    _, (obs, rewards, terminated, truncated, info, states) = env_rollout(
        env, params, jax.random.PRNGKey(0), actions
    )
    rewards = np.asarray(rewards)
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [99, 199])
    np.testing.assert_allclose(rewards[[99, 199]], -REF_STEP_PENALTY - REF_TIMEOUT_PENALTY)
    others = np.delete(rewards, [99, 199])
    np.testing.assert_allclose(others, -REF_STEP_PENALTY, rtol=1e-6)
    final = np.asarray(info["final_observation"])
    assert final[99, 3] == REF_EPISODE_LENGTH  # steps in fibrillation
    assert float(obs[99, 3]) == 0.0 and float(obs[99, 2]) == 1.0  # auto-reset
    assert int(states.time[99]) == 0


# ------------------------------------------------------------------ success


@pytest.mark.parametrize(
    ("base", "energy", "shocks_before"),
    [(1.0, 200.0, 0), (0.7, 360.0, 0), (1.0, 360.0, 10), (0.5, 100.0, 2), (1.0, 360.0, 3)],
)
def test_shock_success_probability_and_reward(base, energy, shocks_before):
    env, params = cardiosim_jax.make(ENV_ID, "medium", defibrillation_success_base=base)
    n = N_BATCH
    obs, state, reward, terminated, truncated, info = batched_first_step(
        env, params, [1.0, energy], n, seed=int(energy) + shocks_before, shocks_before=shocks_before
    )
    success = np.asarray(terminated)
    shocks = shocks_before + 1
    p = ref_success_prob(base, energy, shocks)
    assert abs(success.mean() - p) < 5.0 * np.sqrt(p * (1 - p) / n)
    shock_cost = REF_SHOCK_PENALTY + REF_ENERGY_PENALTY * energy
    bonus = REF_QUICK_BONUS if shocks <= 3 else 0.0
    np.testing.assert_allclose(
        np.asarray(reward)[success], REF_SUCCESS_REWARD + bonus - shock_cost, rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(reward)[~success], -REF_STEP_PENALTY - shock_cost, rtol=1e-6
    )
    assert not np.asarray(truncated).any()
    np.testing.assert_array_equal(np.asarray(info["defibrillated"]), success)
    final = np.asarray(info["final_observation"])
    np.testing.assert_array_equal(final[:, 4], shocks)
    np.testing.assert_allclose(final[:, 5], energy)
    # Success resets the cell near rest; fibrillation time is not incremented.
    np.testing.assert_allclose(final[success, 0], REF_POST_SHOCK[0], rtol=1e-6)
    np.testing.assert_allclose(final[success, 1], REF_POST_SHOCK[1], rtol=1e-6)
    np.testing.assert_array_equal(final[success, 3], 0.0)
    np.testing.assert_array_equal(final[~success, 3], 1.0)


def test_first_shot_success_reward_and_termination():
    energy = 250.0
    env, params = cardiosim_jax.make(ENV_ID, "easy", defibrillation_success_base=1.0)
    _, _, reward, terminated, truncated, info = batched_first_step(
        env, params, [0.9, energy], N_BATCH
    )
    success = np.asarray(terminated)
    assert success.sum() > N_BATCH // 2
    expected = 150.0 - 2.0 - 0.005 * energy
    np.testing.assert_allclose(np.asarray(reward)[success], expected, rtol=1e-6)
    assert not np.asarray(truncated).any()


def test_no_shock_below_decision_threshold_and_zero_energy_never_succeeds():
    env, params = cardiosim_jax.make(ENV_ID, "easy", defibrillation_success_base=1.0)
    _, _, reward, terminated, _, info = batched_first_step(env, params, [0.5, 360.0], N_BATCH)
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.asarray(info["shocks_delivered"]), 0)
    np.testing.assert_allclose(np.asarray(reward), -REF_STEP_PENALTY, rtol=1e-6)
    _, _, reward, terminated, _, info = batched_first_step(env, params, [1.0, 0.0], N_BATCH)
    assert not np.asarray(terminated).any()  # 1 - exp(0) = 0
    np.testing.assert_array_equal(np.asarray(info["shocks_delivered"]), 1)
    np.testing.assert_allclose(np.asarray(reward), -REF_STEP_PENALTY - REF_SHOCK_PENALTY)


# ------------------------------------------------------------------- actions


def assert_same_step(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    ("action", "equivalent"),
    [
        ([1.0, 1000.0], [1.0, 360.0]),  # energy clipped to 360 J
        ([1.0, np.inf], [1.0, 360.0]),
        ([1.0, -50.0], [1.0, 0.0]),
        ([1.0, np.nan], [1.0, 0.0]),  # NaN energy acts as 0 (documented departure)
        ([7.0, 200.0], [1.0, 200.0]),  # any decision above 0.5 shocks
        ([np.inf, 200.0], [1.0, 200.0]),
        ([-3.0, 200.0], [0.0, 200.0]),
        ([np.nan, 200.0], [0.0, 200.0]),  # NaN decision: no shock
    ],
)
def test_action_clipping(action, equivalent):
    env, params = cardiosim_jax.make(ENV_ID, "easy", defibrillation_success_base=1.0)
    for seed in range(4):
        key = jax.random.PRNGKey(seed)
        assert_same_step(
            one_step(env, params, action, key=key), one_step(env, params, equivalent, key=key)
        )


def test_info_keys_match_reference():
    ref = DefibrillationTimingEnv("medium")
    ref.reset(seed=0)
    *_, ref_info = ref.step(np.zeros(2, np.float32))
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    *_, info = one_step(env, params, [0.0, 0.0])
    assert set(info) == set(ref_info) | {"terminated", "truncated", "final_observation"}


# ------------------------------------------------------ exact reference match


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_by_step_matches_reference(seed):
    """No fibrillation stimulus, no noise, shocks that never succeed: deterministic."""
    env, params = cardiosim_jax.make(
        ENV_ID,
        "medium",
        fib_severity=0.0,
        membrane_noise_std=0.0,
        defibrillation_success_base=0.0,
    )
    rng = np.random.default_rng(seed)
    n = REF_EPISODE_LENGTH
    actions = np.stack([rng.uniform(0, 1, n), rng.uniform(0, 400, n)], axis=1).astype(np.float32)
    key = jax.random.PRNGKey(seed)
    reset_obs, (_, rewards, terminated, truncated, info, _) = env_rollout(env, params, key, actions)
    _, state = env.reset(jax.random.split(key)[0], params)
    ref = DefibrillationTimingEnv("medium")
    ref.reset(seed=0)
    ref.fib_severity = 0.0
    ref.cell_model.noise_std = 0.0
    ref.defibrillation_success_base = 0.0
    ref.cell_model.u, ref.cell_model.v = float(state.cell.u), float(state.cell.v)
    np.testing.assert_allclose(np.asarray(reset_obs), ref._get_obs(), rtol=1e-6)

    steps = [ref.step(action) for action in actions]
    ref_obs = np.array([s[0] for s in steps])
    np.testing.assert_allclose(np.asarray(info["final_observation"]), ref_obs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rewards), [s[1] for s in steps], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(terminated), [s[2] for s in steps])
    np.testing.assert_array_equal(np.asarray(truncated), [s[3] for s in steps])
    for name in steps[0][4]:
        np.testing.assert_allclose(
            np.asarray(info[name], np.float64),
            [float(s[4][name]) for s in steps],
            rtol=1e-5,
            err_msg=name,
        )
    # Not vacuous: the index moved off 1, shocks and energy accumulated.
    assert ref_obs[:, 2].min() < 0.5 and ref_obs[-1, 4] > 20 and ref_obs[-1, 5] > 5000


# ------------------------------------------------------- observation space


def test_observation_space_is_honest_about_shocks_and_energy():
    """A patient who never converts collects > 20 shocks and > 5000 J: the reference's
    declared bounds reject those observations, ours contain them."""
    env, params = cardiosim_jax.make(ENV_ID, "hard", defibrillation_success_base=0.0)
    actions = jnp.tile(jnp.array([[1.0, 360.0]]), (REF_EPISODE_LENGTH, 1))
    _, (_, rewards, _, _, info, _) = env_rollout(env, params, jax.random.PRNGKey(2), actions)
    final = np.asarray(info["final_observation"])
    space = env.observation_space(params)
    assert ((final >= np.asarray(space.low)) & (final <= np.asarray(space.high))).all()
    assert final[-1, 4] == REF_EPISODE_LENGTH and final[-1, 5] == REF_MAX_ENERGY * 100
    ref_space = DefibrillationTimingEnv("hard").observation_space
    assert not ref_space.contains(final[-1])
    assert np.isfinite(np.asarray(rewards)).all()


def test_observation_space_contains_random_rollouts():
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    keys = jax.random.split(jax.random.PRNGKey(9), 16)
    actions = jax.vmap(
        lambda k: jax.random.uniform(k, (REF_EPISODE_LENGTH, 2), maxval=jnp.array([1.0, 360.0]))
    )(keys)
    _, (obs, rewards, terminated, *_rest) = jax.vmap(lambda k, a: env_rollout(env, params, k, a))(
        keys, actions
    )
    obs = np.asarray(obs).reshape(-1, 6)
    space = env.observation_space(params)
    assert ((obs >= np.asarray(space.low)) & (obs <= np.asarray(space.high))).all()
    assert np.asarray(terminated).any()
    assert np.isfinite(np.asarray(rewards)).all()
