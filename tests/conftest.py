"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest

import cardiosim_jax

#: (env id, reference module, reference class) for cross-checks against cardiosim 0.1.0.
REFERENCE_ENVS = {
    "PacingControl-v0": ("cardiosim.envs.pacing_control", "PacingControlEnv"),
    "AntiarrhythmicDosing-v0": ("cardiosim.envs.antiarrhythmic_dosing", "AntiarrhythmicDosingEnv"),
    "DefibrillationTiming-v0": ("cardiosim.envs.defibrillation_timing", "DefibrillationTimingEnv"),
}

ENV_IDS = tuple(cardiosim_jax.registered_envs)
DIFFICULTIES = ("easy", "medium", "hard")


def reference_env(env_id: str, difficulty: str):
    """A fresh reference (NumPy, Gymnasium) environment."""
    module, cls = REFERENCE_ENVS[env_id]
    return getattr(importlib.import_module(module), cls)(difficulty=difficulty)


def reference_returns(
    env_id: str, difficulty: str, policy, n_episodes: int, seed: int
) -> np.ndarray:
    """Episode returns of the reference package.

    A fresh reference env per episode: that is the v0 semantics (the
    reference carries PK parameters and the SA interval across resets).
    ``policy(obs, rng, env) -> action``.
    """
    rng = np.random.default_rng(seed)
    returns = np.empty(n_episodes)
    for episode in range(n_episodes):
        env = reference_env(env_id, difficulty)
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, rng, env))
            total += reward
            done = terminated or truncated
        returns[episode] = total
    return returns


def reference_random_policy(obs, rng, env):
    return rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)


@pytest.fixture(params=ENV_IDS)
def env_id(request) -> str:
    return request.param


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


def random_actions(env, params, key, n: int) -> jax.Array:
    """``n`` actions drawn uniformly from the action space, shape ``(n, *action_shape)``."""
    space = env.action_space(params)
    return jax.random.uniform(key, (n, *space.shape), minval=space.low, maxval=space.high)
