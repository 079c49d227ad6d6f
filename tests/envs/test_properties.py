"""Property tests: long auto-resetting rollouts stay finite and inside the observation space.

For every environment, hypothesis draws keys, a difficulty tier and parameter
overrides anywhere inside their accepted ranges (endpoints included); a batch
of ``N_ENVS`` environments then runs ``N_STEPS`` steps each (a jitted
``lax.scan`` under ``vmap``, compiled once per environment) with actions that
mix uniform samples from the action space with adversarial values (NaN,
+-inf, huge magnitudes, far out of bounds). At every step the observation, the
pre-reset final observation, the reward and every state leaf must be finite,
and both observations must lie in ``env.observation_space(params)``.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ALL_IDS, DIFFICULTIES, parameter_ranges
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cardiosim_jax

N_ENVS = 16
N_STEPS = 1000
#: Distinct patients per example; each runs in N_ENVS // N_PATIENTS environments.
N_PATIENTS = 4
#: Examples per environment; raise with CARDIOSIM_PROPERTY_EXAMPLES for a longer search.
MAX_EXAMPLES = int(os.environ.get("CARDIOSIM_PROPERTY_EXAMPLES", "8"))

ADVERSARIAL_ACTIONS = jnp.array(
    [np.nan, np.inf, -np.inf, 1e30, -1e30, 3.4e38, -3.4e38, 1e6, -1e6, 0.0, -1.0, 1e-30],
    jnp.float32,
)
#: Probability that an action component is replaced by an adversarial value.
ADVERSARIAL_PROB = 0.25


@functools.partial(jax.jit, static_argnums=0)
def checked_rollout(env, params, key):
    """Per-environment (vmapped over the params' and keys' leading axis) step records."""

    def one(params, key):
        space = env.observation_space(params)
        action_space = env.action_space(params)
        reset_key, loop_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def body(carry, step_key):
            _, state = carry
            k_uniform, k_mask, k_pick, k_step = jax.random.split(step_key, 4)
            shape = action_space.shape
            uniform = jax.random.uniform(
                k_uniform, shape, minval=action_space.low, maxval=action_space.high
            )
            adversarial = ADVERSARIAL_ACTIONS[
                jax.random.randint(k_pick, shape, 0, ADVERSARIAL_ACTIONS.shape[0])
            ]
            action = jnp.where(
                jax.random.uniform(k_mask, shape) < ADVERSARIAL_PROB, adversarial, uniform
            )
            obs, state, reward, terminated, truncated, info = env.step(
                k_step, state, action, params
            )
            state_finite = jnp.all(
                jnp.array(
                    [
                        jnp.all(jnp.isfinite(leaf))
                        for leaf in jax.tree_util.tree_leaves(state)
                        if jnp.issubdtype(leaf.dtype, jnp.floating)
                    ]
                )
            )
            record = (
                obs,
                info["final_observation"],
                reward,
                state_finite,
                terminated | truncated,
            )
            return (obs, state), record

        _, records = jax.lax.scan(body, (obs, state), jax.random.split(loop_key, N_STEPS))
        return obs, records, space.low, space.high

    return jax.vmap(one)(params, jax.random.split(key, N_ENVS))


#: Parameters that must stay ordered (low <= high), per environment.
ORDERED_PAIRS = {
    "PacingControl-v0": ("sa_rate_low_bpm", "sa_rate_high_bpm"),
    "PacingControl-v1": ("sinus_rate_bpm", "adequate_sinus_rate_bpm"),
    "AntiarrhythmicDosing-v1": ("qtc_warning_ms", "qtc_stop_ms"),
}


def overrides_strategy(env_id: str):
    env, _ = cardiosim_jax.make(env_id)
    ranges = parameter_ranges(env)

    def value(name, bounds):
        if name == "max_steps_in_episode":
            # Short episodes, so the batch auto-resets often (1 = reset every step).
            return st.one_of(st.just(1), st.integers(2, 300))
        return st.one_of(
            st.sampled_from([bounds.low, bounds.high]),
            st.floats(bounds.low, bounds.high, allow_nan=False),
        )

    @st.composite
    def draw(draw):
        names = draw(st.lists(st.sampled_from(sorted(ranges)), unique=True, max_size=len(ranges)))
        overrides = {name: draw(value(name, ranges[name])) for name in names}
        if env_id in ORDERED_PAIRS:
            # Keep ordered pairs ordered (a reversed pair is rejected by make).
            low_name, high_name = ORDERED_PAIRS[env_id]
            low = overrides.pop(low_name, None)
            high = overrides.pop(high_name, None)
            if low is not None or high is not None:
                pair = [v for v in (low, high) if v is not None]
                overrides.update({low_name: min(pair), high_name: max(pair)})
        return overrides

    return draw()


def build_params(env_id, difficulty, patients):
    """Stack one params pytree per patient, each repeated for N_ENVS // N_PATIENTS envs."""
    built = []
    for overrides in patients:
        try:
            _, params = cardiosim_jax.make(env_id, difficulty, **overrides)
        except ValueError:
            # Only cross-parameter constraints may fail (e.g. an SA range against the tier's).
            assume(False)
        built.append(params)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *built)
    return jax.tree.map(lambda leaf: jnp.repeat(leaf, N_ENVS // N_PATIENTS, axis=0), stacked)


def describe_violation(obs, low, high, label):
    bad = ~(np.isfinite(obs) & (obs >= low) & (obs <= high))
    env_index, step, component = np.argwhere(bad)[0]
    return (
        f"{label} outside observation_space: env {env_index}, step {step}, component "
        f"{component}: {obs[env_index, step]} not in [{low[env_index]}, {high[env_index]}] "
        f"({int(bad.any(axis=-1).sum())} bad steps)"
    )


@pytest.mark.parametrize("env_id", ALL_IDS)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_long_rollouts_stay_finite_and_inside_observation_space(env_id, data):
    difficulty = data.draw(st.sampled_from(DIFFICULTIES), label="difficulty")
    patients = data.draw(
        st.lists(overrides_strategy(env_id), min_size=N_PATIENTS, max_size=N_PATIENTS),
        label="patients",
    )
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    env, _ = cardiosim_jax.make(env_id)
    params = build_params(env_id, difficulty, patients)

    reset_obs, (obs, final_obs, rewards, state_finite, done), low, high = checked_rollout(
        env, params, jax.random.PRNGKey(seed)
    )
    reset_obs, obs, final_obs = map(np.asarray, (reset_obs, obs, final_obs))
    low, high = np.asarray(low)[:, None, :], np.asarray(high)[:, None, :]
    assert obs.shape[:2] == (N_ENVS, N_STEPS) and obs.dtype == np.float32
    # One compilation per environment class, whatever the tier and overrides.
    assert checked_rollout._cache_size() <= len(ALL_IDS)

    reset_in = np.isfinite(reset_obs) & (reset_obs >= low[:, 0]) & (reset_obs <= high[:, 0])
    assert reset_in.all(), describe_violation(reset_obs[:, None], low, high, "reset obs")
    for label, values in (("obs", obs), ("final_observation", final_obs)):
        inside = np.isfinite(values) & (values >= low) & (values <= high)
        assert inside.all(), describe_violation(values, low, high, label)
    assert np.isfinite(np.asarray(rewards)).all()
    assert np.asarray(state_finite).all()
    # Episodes end and the batch auto-resets (truncation at the latest).
    max_steps = np.asarray(params.max_steps_in_episode)
    assert (np.asarray(done).sum(axis=1) >= N_STEPS // max_steps).all()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_adversarial_only_actions(env_id):
    """Every action component adversarial, every step: still finite and in bounds."""
    env, params = cardiosim_jax.make(env_id, "hard")
    n = 200
    values = np.asarray(ADVERSARIAL_ACTIONS)
    grid = np.stack(np.meshgrid(values, values), axis=-1).reshape(-1, 2)
    actions = np.resize(grid[:, : env.num_actions], (n, env.num_actions)).astype(np.float32)

    @jax.jit
    def run(key):
        obs, state = env.reset(key, params)

        def body(state, inputs):
            k, a = inputs
            obs, state, reward, _, _, info = env.step(k, state, a, params)
            return state, (obs, info["final_observation"], reward)

        keys = jax.random.split(key, n)
        return jax.lax.scan(body, state, (keys, jnp.asarray(actions)))[1]

    obs, final_obs, rewards = map(np.asarray, run(jax.random.PRNGKey(0)))
    space = env.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    for values_ in (obs, final_obs):
        assert np.isfinite(values_).all()
        assert ((values_ >= low) & (values_ <= high)).all()
    assert np.isfinite(rewards).all()
