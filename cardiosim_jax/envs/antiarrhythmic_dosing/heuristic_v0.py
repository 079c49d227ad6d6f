"""The reference's rule-based dosing controller for AntiarrhythmicDosing-v0, as a pure JAX function.

It reads only the observation, so it works batched under ``jax.vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicDosingParams:
    """Loading / maintenance dosing with a withhold threshold (mg, mg/L)."""

    loading_dose_mg: jax.Array = 50.0
    maintenance_dose_mg: jax.Array = 10.0
    therapeutic_threshold: jax.Array = 1.5
    toxic_threshold: jax.Array = 5.0


def heuristic_dosing_policy(
    params: HeuristicDosingParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """AntiarrhythmicDosing action from concentration (obs[2]) and arrhythmia flag (obs[3]).

    Rules, first match wins: below half the therapeutic threshold give the
    loading dose; below the threshold twice the maintenance dose; above 80 %
    of the toxic threshold nothing; arrhythmic 1.5 x maintenance; else maintenance.
    """
    del key
    concentration, arrhythmia = obs[..., 2], obs[..., 3]
    maintenance = params.maintenance_dose_mg
    dose = jnp.where(
        concentration < 0.5 * params.therapeutic_threshold,
        params.loading_dose_mg,
        jnp.where(
            concentration < params.therapeutic_threshold,
            2.0 * maintenance,
            jnp.where(
                concentration > 0.8 * params.toxic_threshold,
                0.0,
                jnp.where(arrhythmia > 0.5, 1.5 * maintenance, maintenance),
            ),
        ),
    )
    return dose[..., None].astype(jnp.float32)
