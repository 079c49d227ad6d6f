"""The public conformance checks (:mod:`cardiosim_jax.testing`) on every registered id.

Each check runs as its own test per environment, so a failure names both. The
v0 environments have no patient model, so their populations are hand-picked
overrides; the v1 populations come from :func:`cardiosim_jax.patients.sample`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ALL_IDS

import cardiosim_jax
from cardiosim_jax import patients, testing
from cardiosim_jax.models import prng

#: v0 populations (no patient model): three patients' overrides per environment.
V0_POPULATIONS = {
    "PacingControl-v0": {
        "av_delay": [130.0, 200.0, 290.0],
        "target_heart_rate_bpm": [60.0, 72.0, 100.0],
        "conduction_block_prob": [0.0, 0.3, 0.9],
    },
    "AntiarrhythmicDosing-v0": {
        "elimination_rate": [0.05, 0.1, 0.4],
        "toxic_threshold": [6.0, 8.0, 14.0],
        "arrhythmia_prob": [0.0, 0.5, 1.0],
    },
    "DefibrillationTiming-v0": {
        "fib_severity": [0.0, 0.5, 1.0],
        "epsilon_0": [0.001, 0.005, 0.01],
        "defibrillation_success_base": [0.2, 0.6, 1.0],
    },
}
#: Eager steps compared with jitted ones: a dosing-v1 step is 12 hourly simulations.
EAGER_STEPS = {"AntiarrhythmicDosing-v1": 1}
#: Absolute tolerance between batched and single execution: dosing-v1's excitable cells,
#: integrated over 12 hours a step, amplify float32 rounding to ~4e-4 in 32 steps.
ATOL = {"AntiarrhythmicDosing-v1": 1e-3}


def atol(env_id: str) -> float:
    return ATOL.get(env_id, testing.ATOL)


def population(env_id: str):
    if env_id in V0_POPULATIONS:
        overrides = {k: jnp.asarray(v) for k, v in V0_POPULATIONS[env_id].items()}
        return cardiosim_jax.make(env_id, "medium", **overrides)[1]
    return patients.sample(jax.random.PRNGKey(0), env_id, 3, "hard")


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_determinism(env_id):
    env, _ = cardiosim_jax.make(env_id)
    params = testing.registered_tiers(env_id)["hard"]
    testing.check_determinism(env, params)
    # A fresh environment object built the same way replays the same episode.
    actions = testing.random_actions(env, params, jax.random.PRNGKey(1), testing.ROLLOUT_STEPS)
    again, _ = cardiosim_jax.make(env_id)
    first = testing.rollout(env, params, jax.random.PRNGKey(0), actions)
    np.testing.assert_array_equal(
        first[1][1], testing.rollout(again, params, jax.random.PRNGKey(0), actions)[1][1]
    )


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_fused_and_rolled_threefry_give_the_same_rollout(env_id):
    """Draws traced with the fused Threefry (the default) or jax.random's rolled one
    (``CARDIOSIM_JAX_FUSED_PRNG=0``): the same trajectory, bit for bit, either way."""
    env, _ = cardiosim_jax.make(env_id)
    params = testing.registered_tiers(env_id)["hard"]
    actions = testing.random_actions(env, params, jax.random.PRNGKey(1), testing.ROLLOUT_STEPS)
    rollouts = []
    # Kept out of the persistent cache: its write of rolled programs crashed workers twice.
    cache = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        for fused in (True, False):
            with prng.fused_threefry(fused):  # a fresh jit: traced under the setting
                run = jax.jit(testing.rollout.__wrapped__, static_argnums=0)
                rollouts.append(run(env, params, jax.random.PRNGKey(5), actions))
    finally:
        jax.config.update("jax_enable_compilation_cache", cache)
    chex.assert_trees_all_equal(*rollouts)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_jit_matches_eager(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_jit_matches_eager(
        env,
        testing.registered_tiers(env_id)["medium"],
        EAGER_STEPS.get(env_id, 4),
        atol=atol(env_id),
    )


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_vmap_matches_loop(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_vmap_matches_loop(
        env, testing.registered_tiers(env_id)["hard"], atol=atol(env_id)
    )


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_population_vmap(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_population_vmap(env, population(env_id), 3, atol=atol(env_id))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_tiers_vmap(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_tiers_vmap(
        env, list(testing.registered_tiers(env_id).values()), atol=atol(env_id)
    )


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_one_compilation_serves_every_tier_and_patient(env_id):
    env, _ = cardiosim_jax.make(env_id)
    members = population(env_id)
    param_sets = [
        *testing.registered_tiers(env_id).values(),
        *(jax.tree_util.tree_map(lambda x, i=i: x[i], members) for i in range(3)),
        *(cardiosim_jax.make(env_id, max_steps_in_episode=10 + i)[1] for i in range(2)),
    ]
    testing.check_one_compilation(env, param_sets)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_non_finite_actions(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_non_finite_actions(env, testing.registered_tiers(env_id)["hard"])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_observations_in_space(env_id):
    # Hard only: test_properties.py draws tiers and patients at random for the same bounds.
    env, _ = cardiosim_jax.make(env_id)
    testing.check_observations_in_space(env, testing.registered_tiers(env_id)["hard"])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_observations_come_from_the_observe_hook(env_id):
    env, _ = cardiosim_jax.make(env_id)
    testing.check_observe_hook(env, testing.registered_tiers(env_id)["hard"])


def test_the_checks_catch_a_broken_environment():
    # (check_registered runs end to end in the README's example, tests/tooling/test_readme.py.)
    # An environment whose step ignores the key on stochastic parameters fails the
    # determinism check; one whose reward turns NaN on NaN actions fails its check.
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "hard")

    class KeyBlind(type(env)):
        def step_env(self, key, state, action, params):
            return super().step_env(jax.random.PRNGKey(0), state, action, params)

        def reset_env(self, key, params):
            return super().reset_env(jax.random.PRNGKey(0), params)

    with pytest.raises(AssertionError, match="another key"):
        testing.check_determinism(KeyBlind(), params)

    class NanLeak(type(env)):
        def step_env(self, key, state, action, params):
            obs, state, reward, done, info = super().step_env(key, state, action, params)
            return obs, state, reward + 0.0 * jnp.sum(action), done, info

    with pytest.raises(AssertionError, match="not finite"):
        testing.check_non_finite_actions(NanLeak(), params)

    # A gymnax-0.x style environment that observes with get_obs directly fails the
    # observe-hook check.
    class LegacyObservation(type(env)):
        def step_env(self, key, state, action, params):
            _, state, reward, done, info = super().step_env(key, state, action, params)
            return self.get_obs(state, params), state, reward, done, info

    with pytest.raises(AssertionError, match="step observation bypassed observe"):
        testing.check_observe_hook(LegacyObservation(), params)
