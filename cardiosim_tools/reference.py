"""The reference package (``cardiosim==0.1.0``) as an oracle: its environments and returns.

Installed with the ``test`` extra. Shared by the fidelity tests, the benchmark
suite and ``baselines/reference_fidelity.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

#: Reference module and class of each v0 id.
REFERENCE_ENVS = {
    "PacingControl-v0": ("cardiosim.envs.pacing_control", "PacingControlEnv"),
    "AntiarrhythmicDosing-v0": ("cardiosim.envs.antiarrhythmic_dosing", "AntiarrhythmicDosingEnv"),
    "DefibrillationTiming-v0": ("cardiosim.envs.defibrillation_timing", "DefibrillationTimingEnv"),
}

#: ``policy(obs, rng, env) -> action`` for a reference environment.
ReferencePolicy = Callable[[np.ndarray, np.random.Generator, Any], np.ndarray]


def reference_env(env_id: str, difficulty: str) -> Any:
    """A fresh reference (NumPy, Gymnasium) environment; ``ImportError`` if not installed."""
    module, cls = REFERENCE_ENVS[env_id]
    return getattr(importlib.import_module(module), cls)(difficulty=difficulty)


def reference_returns(
    env_id: str, difficulty: str, policy: ReferencePolicy, n_episodes: int, seed: int
) -> np.ndarray:
    """Episode returns of the reference package.

    A fresh reference env per episode: that is the v0 semantics (the
    reference carries PK parameters and the SA interval across resets).
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


def reference_random_policy(obs: np.ndarray, rng: np.random.Generator, env: Any) -> np.ndarray:
    """Uniform random actions over the reference env's action box."""
    return rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
