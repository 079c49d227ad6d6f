"""Baseline policies: pure functions ``policy(policy_params, obs, key) -> action``."""

from cardiosim_jax.agents.heuristic import (
    HeuristicDosingParams,
    HeuristicPacingParams,
    heuristic_dosing_policy,
    heuristic_pacing_policy,
)
from cardiosim_jax.agents.random import RandomPolicyParams, random_policy, random_policy_params

__all__ = [
    "HeuristicDosingParams",
    "HeuristicPacingParams",
    "RandomPolicyParams",
    "heuristic_dosing_policy",
    "heuristic_pacing_policy",
    "random_policy",
    "random_policy_params",
]
