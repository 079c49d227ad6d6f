"""PacingControl-v0 semantics, checked against cardiosim 0.1.0's PacingControlEnv."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.envs.pacing_control import PacingControlEnv
from conftest import env_rollout

import cardiosim_jax

ENV_ID = "PacingControl-v0"
#: Reference constants, read off PacingControlEnv.step / _get_obs.
REF_TARGET_HR = 72.0
REF_EPISODE_LENGTH = 500
REF_TIME_SINCE_BEAT_AT_RESET = 1000.0  # a fresh model: last ventricular beat at -1000 ms


def synced_reference(state, difficulty="medium"):
    """A reference env put into our reset state, with conduction block switched off."""
    ref = PacingControlEnv(difficulty)
    ref.reset(seed=0)
    ref.conduction.conduction_block_prob = 0.0
    ref.conduction.set_sa_rate(float(state.conduction.sa_rate_bpm))
    ref.cell_model.v = float(state.cell.v)
    ref.cell_model.w = float(state.cell.w)
    return ref


# ----------------------------------------------------------------------- reset


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_reset_observation_layout(difficulty):
    env, params = cardiosim_jax.make(ENV_ID, difficulty)
    keys = jax.random.split(jax.random.PRNGKey(1), 512)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    obs = np.asarray(obs)
    low, high = float(params.sa_rate_low_bpm), float(params.sa_rate_high_bpm)
    # obs[2]: heart rate == the freshly drawn SA rate, uniform over the tier's range.
    np.testing.assert_array_equal(obs[:, 2], np.asarray(state.conduction.sa_rate_bpm))
    assert obs[:, 2].min() >= low and obs[:, 2].max() <= high
    assert obs[:, 2].min() < low + 0.05 * (high - low)
    assert obs[:, 2].max() > high - 0.05 * (high - low)
    assert abs(obs[:, 2].mean() - 0.5 * (low + high)) < 0.05 * (high - low)
    # obs[3]: time since the last ventricular beat, -(-1000 ms) at t = 0.
    np.testing.assert_array_equal(obs[:, 3], REF_TIME_SINCE_BEAT_AT_RESET)
    # obs[4]: HR error against the reference's 72 bpm target.
    np.testing.assert_allclose(obs[:, 4], obs[:, 2] - REF_TARGET_HR, rtol=0, atol=1e-5)
    # obs[5]: no RR intervals yet, so HRV 0.
    np.testing.assert_array_equal(obs[:, 5], 0.0)
    # obs[0:2]: FHN rest (-1.2, -0.6) + N(0, 0.05), as the reference's cell reset.
    for i, rest in ((0, -1.2), (1, -0.6)):
        assert abs(obs[:, i].mean() - rest) < 0.01
        assert 0.04 < obs[:, i].std() < 0.06
    assert obs.dtype == np.float32 and obs.shape == (512, 6)


def test_reset_matches_reference_observation_when_state_copied():
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    obs, state = env.reset(jax.random.PRNGKey(3), params)
    ref = synced_reference(state)
    np.testing.assert_allclose(np.asarray(obs), ref._get_obs(), rtol=1e-6)


# ------------------------------------------------------------- episode length


def test_episode_is_500_steps_by_truncation():
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    actions = jnp.zeros((2 * REF_EPISODE_LENGTH, 2))
    reset_obs, (obs, _, terminated, truncated, info, states) = env_rollout(
        env, params, jax.random.PRNGKey(0), actions
    )
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    assert not terminated.any()
    np.testing.assert_array_equal(np.flatnonzero(truncated), [499, 999])
    # Auto-reset: the state's clock restarts and the observation is a reset one.
    time = np.asarray(states.time)
    assert time[499] == 0 and time[498] == 499 and time[500] == 1
    assert float(obs[499, 3]) == REF_TIME_SINCE_BEAT_AT_RESET
    assert float(info["final_observation"][499, 3]) != REF_TIME_SINCE_BEAT_AT_RESET
    np.testing.assert_array_equal(np.asarray(info["truncated"]), truncated)


def test_episode_length_override():
    env, params = cardiosim_jax.make(ENV_ID, "easy", max_steps_in_episode=7)
    _, (_, _, _, truncated, _, _) = env_rollout(
        env, params, jax.random.PRNGKey(0), jnp.zeros((21, 2))
    )
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [6, 13, 20])


# ------------------------------------------------------------------- actions


def one_step(env, params, action):
    _, state = env.reset(jax.random.PRNGKey(6), params)
    return env.step(jax.random.PRNGKey(5), state, jnp.asarray(action, jnp.float32), params)


def assert_same_step(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    ("action", "equivalent"),
    [
        ([5.0, 7.0], [5.0, 1.0]),  # amplitude clipped to 1
        ([5.0, np.inf], [5.0, 1.0]),
        ([5.0, -3.0], [5.0, 0.0]),  # and to 0
        ([5.0, np.nan], [5.0, 0.0]),  # NaN acts as 0 (documented departure)
        ([np.nan, 0.5], [0.0, 0.5]),
        ([np.inf, 0.0], [1e9, 0.0]),  # the SA rate clamps to 200 bpm either way
        ([-np.inf, 0.0], [-1e9, 0.0]),
    ],
)
def test_action_clipping(action, equivalent):
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    out, expected = one_step(env, params, action), one_step(env, params, equivalent)
    assert_same_step(out, expected)
    assert np.isfinite(float(out[2]))


def test_rate_adjustment_moves_sa_rate_from_the_measured_heart_rate_unclipped():
    """New SA rate = HR + 0.1 x action[0] (not clipped to +-20), clamped to 30..200 bpm."""
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    for adjustment in (-500.0, -20.0, 0.0, 13.0, 20.0, 100.0, 5000.0):
        _, state, _, _, _, info = one_step(env, params, [adjustment, 0.0])
        expected = np.clip(float(info["heart_rate"]) + 0.1 * adjustment, 30.0, 200.0)
        assert float(state.conduction.sa_rate_bpm) == pytest.approx(expected, rel=1e-6)


def test_pacing_pulse_only_above_threshold():
    # With amplitude 0.1 nothing is paced (the reference paces when amplitude > 0.1).
    env, params = cardiosim_jax.make(ENV_ID, "medium", conduction_block_prob=0.0)
    obs_off, *_ = one_step(env, params, [0.0, 0.1])
    obs_none, *_ = one_step(env, params, [0.0, 0.0])
    obs_on, *_ = one_step(env, params, [0.0, 0.11])
    np.testing.assert_array_equal(np.asarray(obs_off), np.asarray(obs_none))
    # A pulse right after reset (ventricle not refractory) conducts: a beat is in flight.
    assert float(obs_on[3]) < 0.0 <= float(obs_none[3])


# -------------------------------------------------------------------- reward


@pytest.mark.parametrize(
    ("sa_rate", "target", "amplitude"),
    [
        (60.0, 60.0, 0.0),  # at target, no pacing: exactly the stability bonus
        (60.0, 65.0, 0.0),  # 5 bpm off: bonus minus (5/20)^2
        (60.0, 69.9, 0.0),  # 9.9 bpm: still inside the 10 bpm band
        (60.0, 70.0, 0.0),  # 10 bpm: no bonus (strict inequality)
        (60.0, 72.0, 0.05),  # amplitude below the pacing threshold still costs 0.1 x amp
        (45.0, 120.0, 0.0),
        (100.0, 40.0, 0.0),
    ],
)
def test_reward_components(sa_rate, target, amplitude):
    # With a fixed SA rate no RR interval is recorded in the first 10 ms, so the
    # measured heart rate is the SA rate and HRV is 0 (< 50 ms).
    env, params = cardiosim_jax.make(
        ENV_ID,
        "medium",
        sa_rate_low_bpm=sa_rate,
        sa_rate_high_bpm=sa_rate,
        target_heart_rate_bpm=target,
    )
    _, _, reward, terminated, truncated, info = one_step(env, params, [0.0, amplitude])
    error = abs(sa_rate - target)
    expected = -((error / 20.0) ** 2) - 0.1 * amplitude + (0.3 if error < 10.0 else 0.0)
    assert float(info["heart_rate"]) == pytest.approx(sa_rate, rel=1e-6)
    assert float(info["hrv"]) == 0.0
    assert float(reward) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert not bool(terminated) and not bool(truncated)


def test_info_keys_match_reference():
    ref = PacingControlEnv("medium")
    ref.reset(seed=0)
    *_, ref_info = ref.step(np.zeros(2, np.float32))
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    *_, info = one_step(env, params, [0.0, 0.0])
    assert set(info) == set(ref_info) | {"terminated", "truncated", "final_observation"}
    for name in ref_info:
        assert np.shape(info[name]) == ()


# ------------------------------------------------------ exact reference match


#: Our override name -> (reference object path, attribute).
REFERENCE_ATTRIBUTES = {
    "av_delay": ("conduction", "av_delay"),
    "his_purkinje_delay": ("conduction", "his_purkinje_delay"),
    "refractory_period": ("conduction", "refractory_period"),
    "a": ("cell_model", "a"),
    "b": ("cell_model", "b"),
    "tau": ("cell_model", "tau"),
    "target_heart_rate_bpm": (None, "target_hr"),
}


@pytest.mark.parametrize(
    ("seed", "pace_fraction", "overrides"),
    [
        (0, 0.0, {}),
        (1, 0.3, {}),
        (2, 1.0, {}),
        (3, 0.5, {"av_delay": 230.0, "his_purkinje_delay": 70.0, "refractory_period": 250.0}),
        (4, 0.2, {"tau": 20.0, "a": 0.3, "b": 0.5, "target_heart_rate_bpm": 60.0}),
    ],
)
def test_step_by_step_matches_reference(seed, pace_fraction, overrides):
    """A whole episode without conduction block (deterministic given the reset state)."""
    env, params = cardiosim_jax.make(ENV_ID, "medium", conduction_block_prob=0.0, **overrides)
    rng = np.random.default_rng(seed)
    n = REF_EPISODE_LENGTH
    adjustments = rng.uniform(-20.0, 20.0, n)
    amplitudes = np.where(rng.random(n) < pace_fraction, rng.uniform(0.0, 1.0, n), 0.0)
    actions = np.stack([adjustments, amplitudes], axis=1).astype(np.float32)

    key = jax.random.PRNGKey(seed)
    reset_obs, (_, rewards, terminated, truncated, info, _) = env_rollout(env, params, key, actions)
    _, state = env.reset(jax.random.split(key)[0], params)
    ref = synced_reference(state)
    for name, value in overrides.items():
        owner, attribute = REFERENCE_ATTRIBUTES[name]
        setattr(getattr(ref, owner) if owner else ref, attribute, value)
    np.testing.assert_allclose(np.asarray(reset_obs), ref._get_obs(), rtol=1e-6)

    ref_obs, ref_rewards, ref_info, ref_truncated = [], [], [], []
    for action in actions:
        o, r, term, trunc, i = ref.step(action)
        assert not term
        ref_obs.append(o)
        ref_rewards.append(r)
        ref_info.append(i)
        ref_truncated.append(trunc)
    ref_obs = np.array(ref_obs)
    obs = np.asarray(info["final_observation"])  # the last step auto-resets
    np.testing.assert_allclose(obs, ref_obs, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(np.asarray(rewards), ref_rewards, rtol=1e-4, atol=1e-4)
    for name in ref_info[0]:
        np.testing.assert_allclose(
            np.asarray(info[name], np.float64),
            [float(i[name]) for i in ref_info],
            rtol=1e-4,
            atol=1e-4,
            err_msg=name,
        )
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.asarray(truncated), ref_truncated)
    assert ref_truncated[-1] and not any(ref_truncated[:-1])
    # Not vacuous: beats were conducted, RR intervals recorded, the rate moved.
    assert ref_obs[:, 5].max() > 0.0
    assert ref_obs[:, 2].max() - ref_obs[:, 2].min() > 10.0
    assert ref_obs[:, 3].min() < 0.0


# ------------------------------------------------------- observation space


def test_observation_space_is_honest_under_over_pacing():
    """Over-pacing drives the HR far above the reference's 250 bpm bound; ours contains it."""
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    n = 500
    keys = jax.random.split(jax.random.PRNGKey(11), 8)
    actions = jax.vmap(
        lambda k: jax.random.uniform(k, (n, 2), minval=jnp.array([-20.0, 0.0]), maxval=20.0)
    )(keys)
    actions = actions.at[..., 1].set(jnp.minimum(actions[..., 1], 1.0))
    _, (obs, rewards, *_rest) = jax.vmap(lambda k, a: env_rollout(env, params, k, a))(keys, actions)
    obs = np.asarray(obs).reshape(-1, 6)
    space = env.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    assert ((obs >= low) & (obs <= high)).all()
    assert obs[:, 2].max() > 250.0  # the reference's declared heart-rate bound
    ref_space = PacingControlEnv("medium").observation_space
    assert not all(ref_space.contains(o) for o in obs)
    assert np.isfinite(np.asarray(rewards)).all()


def test_time_since_beat_never_below_in_flight_delay_with_fractional_delays():
    """Regression: in float32, ``t - (t + av + hp)`` can round below ``-(av + hp)``.

    Found by test_properties (av_delay = 120.5536733179774); the observation is
    clipped to the space's lower bound, which is -(av_delay + his_purkinje_delay).
    """
    env, params = cardiosim_jax.make(ENV_ID, "easy", av_delay=120.5536733179774)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    actions = jax.vmap(
        lambda k: jax.random.uniform(
            k, (REF_EPISODE_LENGTH, 2), minval=jnp.array([-20.0, 0.0]), maxval=20.0
        )
    )(keys)
    actions = actions.at[..., 1].set(jnp.minimum(actions[..., 1], 1.0))
    _, (obs, _, _, _, _, states) = jax.vmap(lambda k, a: env_rollout(env, params, k, a))(
        keys, actions
    )
    low = float(env.observation_space(params).low[3])
    raw = np.asarray(states.conduction.time_ms - states.conduction.last_ventricular_ms)
    assert low == pytest.approx(-(120.5536733179774 + 50.0), rel=1e-6)
    assert raw.min() < low + 1e-3  # beats were in flight at their full delay
    assert np.asarray(obs)[..., 3].min() >= low
    np.testing.assert_allclose(np.asarray(obs)[..., 3], np.minimum(raw, 5000.0), rtol=0, atol=1e-4)


def test_complete_conduction_block_means_no_beats():
    """conduction_block_prob = 1: no beat ever conducts; the HR is the integrated SA rate."""
    env, params = cardiosim_jax.make(ENV_ID, "medium", conduction_block_prob=1.0)
    actions = jnp.tile(jnp.array([[4.0, 1.0]]), (REF_EPISODE_LENGTH, 1))  # pacing, every step
    reset_obs, (_, rewards, _, _, info, _) = env_rollout(
        env, params, jax.random.PRNGKey(0), actions
    )
    obs = np.asarray(info["final_observation"])
    steps = np.arange(1, REF_EPISODE_LENGTH + 1)
    np.testing.assert_array_equal(obs[:, 3], np.minimum(1000.0 + 10.0 * steps, 5000.0))
    np.testing.assert_array_equal(obs[:, 5], 0.0)
    # Each step the SA rate becomes HR + 0.1 x 4 bpm, and with no RR interval HR = SA rate.
    expected_hr = np.minimum(float(reset_obs[2]) + 0.4 * (steps - 1), 200.0)
    np.testing.assert_allclose(np.asarray(info["heart_rate"]), expected_hr, rtol=1e-5)
    error = np.abs(expected_hr - REF_TARGET_HR)
    expected = -((error / 20.0) ** 2) - 0.1 + np.where(error < 10.0, 0.3, 0.0)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------ optimised step_env


def test_step_env_equals_straightforward_substep_loop():
    """The fused step (draws up front, ring and heart rate once per step) is exact."""
    from cardiosim_jax.models import conduction, fitzhugh_nagumo

    env, params = cardiosim_jax.make(ENV_ID, "hard")

    def straightforward(key, state, action):
        action = jnp.asarray(action, jnp.float32)
        pulse = jnp.clip(action[1], 0.0, 1.0) > 0.1

        def substep(carry, block_draw):
            heart, cell = carry
            heart, events = conduction.step(heart, params.conduction, pulse, block_draw)
            current = jnp.where(events.ventricular_fired, params.ventricular_stimulus, 0.0)
            return (heart, fitzhugh_nagumo.step(cell, params.cell, current)), None

        draws = jax.random.uniform(key, (10,))
        (heart, cell), _ = jax.lax.scan(substep, (state.conduction, state.cell), draws)
        return heart.replace(sa_rate_bpm=state.conduction.sa_rate_bpm), cell

    n = 256
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    straight = jax.jit(jax.vmap(straightforward))
    fused = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, 0, None)))
    for t in range(400):  # the first RR interval is recorded after two SA intervals
        actions = jnp.stack(
            [jnp.zeros(n), jnp.linspace(0.0, 1.0, n)], axis=1
        )  # half the patients over-paced
        step_keys = jax.vmap(lambda k, t=t: jax.random.fold_in(k, t))(keys)
        heart, cell = straight(step_keys, states, actions)
        _, states, *_ = fused(step_keys, states, actions, params)
        # The cell: the same arithmetic, up to how XLA contracts an FMA in each program.
        np.testing.assert_allclose(
            np.asarray(states.cell.v), np.asarray(cell.v), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(states.cell.w), np.asarray(cell.w), rtol=1e-5, atol=1e-6
        )
        for name in ("rr_intervals_ms", "rr_count", "heart_rate_bpm", "last_ventricular_ms"):
            np.testing.assert_array_equal(
                np.asarray(getattr(states.conduction, name)), np.asarray(getattr(heart, name))
            )
    assert int(np.asarray(states.conduction.rr_count).max()) > 0
