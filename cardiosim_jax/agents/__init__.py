"""Baseline policies: pure functions ``policy(policy_params, obs, key) -> action``."""

from __future__ import annotations

from typing import Any

from cardiosim_jax.agents.defibrillation_v1 import (
    HeuristicDefibrillationV1Params,
    heuristic_defibrillation_v1_policy,
)
from cardiosim_jax.agents.dosing_v1 import HeuristicDosingV1Params, heuristic_dosing_v1_policy
from cardiosim_jax.agents.heuristic import (
    AlwaysShockParams,
    HeuristicDosingParams,
    HeuristicPacingParams,
    always_shock_policy,
    heuristic_dosing_policy,
    heuristic_pacing_policy,
)
from cardiosim_jax.agents.pacing_v1 import HeuristicPacingV1Params, heuristic_pacing_v1_policy
from cardiosim_jax.agents.random import RandomPolicyParams, random_policy, random_policy_params

__all__ = [
    "AlwaysShockParams",
    "always_shock_policy",
    "baseline_policy",
    "HeuristicDefibrillationV1Params",
    "HeuristicDosingParams",
    "HeuristicDosingV1Params",
    "HeuristicPacingParams",
    "HeuristicPacingV1Params",
    "RandomPolicyParams",
    "heuristic_defibrillation_v1_policy",
    "heuristic_dosing_policy",
    "heuristic_dosing_v1_policy",
    "heuristic_pacing_policy",
    "heuristic_pacing_v1_policy",
    "random_policy",
    "random_policy_params",
]


def baseline_policy(name: str, env: Any, env_params: Any) -> tuple[Any, Any]:
    """``(policy, policy_params)`` for ``"random"`` or ``"heuristic"`` on ``env``.

    v0: the reference's rule for pacing and dosing, and shocking at maximum
    energy on every step for defibrillation. v1: each environment's clinical
    heuristic (demand pacing at twice the threshold, sotalol titration by QTc
    and ectopy, ACLS shock timing); see ``docs/v1/``.
    """
    if name == "random":
        return random_policy, random_policy_params(env, env_params)
    if name == "heuristic":
        heuristics = {
            "PacingControl-v0": (heuristic_pacing_policy, HeuristicPacingParams()),
            "AntiarrhythmicDosing-v0": (heuristic_dosing_policy, HeuristicDosingParams()),
            "DefibrillationTiming-v0": (always_shock_policy, AlwaysShockParams()),
            "PacingControl-v1": (heuristic_pacing_v1_policy, HeuristicPacingV1Params()),
            "AntiarrhythmicDosing-v1": (heuristic_dosing_v1_policy, HeuristicDosingV1Params()),
            "DefibrillationTiming-v1": (
                heuristic_defibrillation_v1_policy,
                HeuristicDefibrillationV1Params(),
            ),
        }
        return heuristics[env.env_id]
    raise ValueError(f"unknown baseline policy {name!r}; accepted: ['random', 'heuristic']")
