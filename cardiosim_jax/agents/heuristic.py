"""The reference's rule-based pacing and dosing controllers, as pure JAX functions.

Both read only the observation, so they work batched under ``jax.vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicPacingParams:
    """Proportional rate control: adjustment = -gain x HR error, amplitude = |error| / scale."""

    gain: jax.Array = 0.5
    max_adjustment_bpm: jax.Array = 20.0
    amplitude_scale_bpm: jax.Array = 30.0


def heuristic_pacing_policy(
    params: HeuristicPacingParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """PacingControl action from the heart-rate error (obs[4], bpm)."""
    del key
    hr_error = obs[..., 4]
    adjustment = jnp.clip(
        -params.gain * hr_error, -params.max_adjustment_bpm, params.max_adjustment_bpm
    )
    amplitude = jnp.minimum(1.0, jnp.abs(hr_error) / params.amplitude_scale_bpm)
    return jnp.stack([adjustment, amplitude], axis=-1).astype(jnp.float32)


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


@struct.dataclass
class AlwaysShockParams:
    """Shock on every step at a fixed energy (J)."""

    energy_j: jax.Array = 360.0


def always_shock_policy(
    params: AlwaysShockParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """DefibrillationTiming action: shock now at ``energy_j``.

    CardioSim ships no defibrillation heuristic; since shock success ignores
    the cell state, shocking at maximum energy on every step is the natural
    rule-based comparator (about 140 on easy).
    """
    del key
    ones = jnp.ones(obs.shape[:-1], jnp.float32)
    return jnp.stack([ones, ones * params.energy_j], axis=-1)
