"""Clinical heuristic for AntiarrhythmicDosing-v1: label sotalol initiation with QTc-guided steps.

Follows the sotalol label and Drew et al. 2010 at each 12 h decision, reading
only the observation (never the drug level, which the hard tier hides):

* interval from the admission creatinine clearance (Betapace label):
  q12h at CrCl >= 60 mL/min, q24h at 30-60, q48h below 30; nothing between doses;
* the first dose is a double dose (``loading_dose_mg``), the oral stand-in for
  the IV sotalol load now used to reach steady state within the monitored stay;
* then the label's 80 mg per dose, adjusted on the last interval's ECGs
  (the 2-4 h post-dose peak QTc and its rise from the admission baseline):
  withhold at QTc >= 500 ms or a rise >= 60 ms (label; Drew 2010); one tablet
  step down (40 mg) when QTc nears the warning zone or the rise exceeds
  ``rise_reduce_ms``; one step up (120 mg) when ectopy persisted (in at least
  ``ectopy_fraction_uptitrate`` of the interval's hourly ECGs) with a QTc and
  a rise well clear of those limits. Each decision starts again from the
  label dose, so the regimen never ratchets upward within the 3-day stay
  (the label allows increments only after 3 days).

Memoryless: everything comes from this observation, so it vmaps over patients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicDosingV1Params:
    """Regimen (mg, decisions) and ECG thresholds (ms) of the label rule."""

    decisions_per_episode: jax.Array = 6.0  # converts the normalised time back to decisions
    loading_dose_mg: jax.Array = 160.0
    maintenance_dose_mg: jax.Array = 80.0
    titration_step_mg: jax.Array = 40.0
    crcl_q24h_below: jax.Array = 60.0  # mL/min
    crcl_q48h_below: jax.Array = 30.0  # mL/min
    qtc_withhold_ms: jax.Array = 500.0
    rise_withhold_ms: jax.Array = 60.0
    qtc_reduce_ms: jax.Array = 470.0
    rise_reduce_ms: jax.Array = 45.0
    qtc_uptitrate_below_ms: jax.Array = 455.0
    ectopy_fraction_uptitrate: jax.Array = 0.25  # of the interval's hours
    rise_uptitrate_below_ms: jax.Array = 30.0


def heuristic_dosing_v1_policy(
    params: HeuristicDosingV1Params, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """Ordered dose (mg) at this decision from the observation (layout in the env docstring).

    Reads time (obs[0]), ectopic-hour fraction (obs[2]), peak QTc (obs[3]), baseline
    QTc (obs[5]) and creatinine clearance (obs[10]); first match wins on a dosing
    decision: withhold, reduce, increase, else the maintenance dose.
    """
    del key
    decision = jnp.round(obs[..., 0] * params.decisions_per_episode)
    crcl = obs[..., 10]
    every = jnp.where(
        crcl < params.crcl_q48h_below, 4.0, jnp.where(crcl < params.crcl_q24h_below, 2.0, 1.0)
    )
    due = jnp.mod(decision, every) < 0.5
    ectopy, peak_qtc = obs[..., 2] >= params.ectopy_fraction_uptitrate, obs[..., 3]
    rise = peak_qtc - obs[..., 5]
    maintenance = params.maintenance_dose_mg
    step = params.titration_step_mg
    dose = jnp.where(
        (peak_qtc >= params.qtc_withhold_ms) | (rise >= params.rise_withhold_ms),
        0.0,
        jnp.where(
            (peak_qtc >= params.qtc_reduce_ms) | (rise >= params.rise_reduce_ms),
            maintenance - step,
            jnp.where(
                ectopy
                & (peak_qtc < params.qtc_uptitrate_below_ms)
                & (rise < params.rise_uptitrate_below_ms),
                maintenance + step,
                maintenance,
            ),
        ),
    )
    dose = jnp.where(decision < 0.5, params.loading_dose_mg, dose)
    return jnp.where(due, dose, 0.0)[..., None].astype(jnp.float32)
