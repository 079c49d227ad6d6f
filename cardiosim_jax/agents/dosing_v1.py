"""Clinical heuristic for AntiarrhythmicDosing-v1: twice-daily dosing with QTc-guided titration.

Mirrors how sotalol is started in hospital (Betapace AF label; Drew et al.
2010): a fixed dose every 12 h, stepped up while ectopy persists and QTc
allows, stepped down when QTc nears the warning zone and withheld near the
stop rule. It reads only the observation (never the concentration, which the
hard tier hides); the current regimen is recovered from the cumulative dose,
so it needs no memory and vmaps over patients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicDosingV1Params:
    """Regimen (mg, h) and QTc thresholds (ms) of the twice-daily rule."""

    episode_hours: jax.Array = 72.0  # converts the normalised time back to hours
    dosing_interval_h: jax.Array = 12.0
    starting_dose_mg: jax.Array = 80.0
    titration_step_mg: jax.Array = 40.0
    max_dose_mg: jax.Array = 160.0
    qtc_uptitrate_below_ms: jax.Array = 470.0  # step up on ectopy only below this QTc
    qtc_reduce_ms: jax.Array = 480.0  # step down at or above this QTc
    qtc_withhold_ms: jax.Array = 490.0  # withhold the dose at or above this QTc


def heuristic_dosing_v1_policy(
    params: HeuristicDosingV1Params, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """Dose (mg) for this hour from time (obs[0]), ectopy (obs[1]), QTc (obs[2]), total (obs[6]).

    On dosing hours (every ``dosing_interval_h``), first match wins: QTc at or
    above the withhold threshold gives nothing; at or above the reduce threshold
    the regimen dose (cumulative dose / doses so far) minus one step; ectopic
    beats with QTc below the uptitration threshold the regimen dose plus one
    step; else the regimen dose. The first dose is the starting dose. Nothing
    between doses.
    """
    del key
    hour = jnp.round(obs[..., 0] * params.episode_hours)
    dosing_hour = jnp.mod(hour, params.dosing_interval_h) < 0.5
    doses_given = jnp.floor((hour + 0.5) / params.dosing_interval_h)
    regimen = jnp.where(
        doses_given > 0,
        1000.0 * obs[..., 6] / jnp.maximum(doses_given, 1.0),
        params.starting_dose_mg,
    )
    ectopic, qtc = obs[..., 1] > 0.0, obs[..., 2]
    step_up = ectopic & (qtc < params.qtc_uptitrate_below_ms) & (doses_given > 0)
    dose = jnp.where(
        qtc >= params.qtc_withhold_ms,
        0.0,
        jnp.where(
            qtc >= params.qtc_reduce_ms,
            regimen - params.titration_step_mg,
            jnp.where(step_up, regimen + params.titration_step_mg, regimen),
        ),
    )
    dose = jnp.clip(dose, 0.0, params.max_dose_mg)
    return jnp.where(dosing_hour, dose, 0.0)[..., None].astype(jnp.float32)
