"""Baseline policies: pure functions ``policy(policy_params, obs, key) -> action``.

The random policy, the MPC oracle and the probe policies are generic and live
here; each environment's heuristic lives in its package (``cardiosim_jax.envs``)
and is re-exported here.
"""

from __future__ import annotations

from typing import Any

from cardiosim_jax.agents.random import RandomPolicyParams, random_policy, random_policy_params
from cardiosim_jax.envs.antiarrhythmic_dosing import (
    HeuristicDosingParams,
    HeuristicDosingV1Params,
    heuristic_dosing_policy,
    heuristic_dosing_v1_policy,
)
from cardiosim_jax.envs.defibrillation_timing import (
    AlwaysShockParams,
    HeuristicDefibrillationV1Params,
    always_shock_policy,
    heuristic_defibrillation_v1_policy,
)
from cardiosim_jax.envs.pacing_control import (
    HeuristicPacingParams,
    HeuristicPacingV1Params,
    heuristic_pacing_policy,
    heuristic_pacing_v1_policy,
)
from cardiosim_jax.registration import spec

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
        heuristic = spec(env.env_id).heuristic
        if heuristic is None:
            raise ValueError(f"{env.env_id} registers no heuristic; accepted: ['random']")
        return heuristic
    raise ValueError(f"unknown baseline policy {name!r}; accepted: ['random', 'heuristic']")
