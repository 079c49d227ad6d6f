"""Baseline policies: pure functions ``policy(policy_params, obs, key) -> action``."""

from __future__ import annotations

from typing import Any

from cardiosim_jax.agents.heuristic import (
    AlwaysShockParams,
    HeuristicDosingParams,
    HeuristicPacingParams,
    always_shock_policy,
    heuristic_dosing_policy,
    heuristic_pacing_policy,
)
from cardiosim_jax.agents.random import RandomPolicyParams, random_policy, random_policy_params

__all__ = [
    "AlwaysShockParams",
    "always_shock_policy",
    "baseline_policy",
    "HeuristicDosingParams",
    "HeuristicPacingParams",
    "RandomPolicyParams",
    "heuristic_dosing_policy",
    "heuristic_pacing_policy",
    "random_policy",
    "random_policy_params",
]


def baseline_policy(name: str, env: Any, env_params: Any) -> tuple[Any, Any]:
    """``(policy, policy_params)`` for ``"random"`` or ``"heuristic"`` on ``env``.

    The heuristic is the reference's rule for pacing and dosing, and shocking
    at maximum energy on every step for defibrillation.
    """
    if name == "random":
        return random_policy, random_policy_params(env, env_params)
    if name == "heuristic":
        heuristics = {
            "PacingControl-v0": (heuristic_pacing_policy, HeuristicPacingParams()),
            "AntiarrhythmicDosing-v0": (heuristic_dosing_policy, HeuristicDosingParams()),
            "DefibrillationTiming-v0": (always_shock_policy, AlwaysShockParams()),
        }
        return heuristics[env.env_id]
    raise ValueError(f"unknown baseline policy {name!r}; accepted: ['random', 'heuristic']")
