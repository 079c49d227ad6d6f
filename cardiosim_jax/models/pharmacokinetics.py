"""Single-compartment pharmacokinetics with gut absorption and a sigmoid-Emax effect.

Per step of ``DT_HOURS`` (explicit Euler, as CardioSim 0.1.0 does):

    gut  <- gut + dose                        (mg)
    absorbed = k_a * gut * dt                 (mg)
    gut  <- gut - absorbed
    C    <- C + absorbed / (V_d * body_weight) - k_e * C * dt     (mg/L)
    C    <- clip(C, 0, 1000)

Efficacy is a Hill curve with coefficient 2 and EC50 at the middle of the
therapeutic window: E = (C/EC50)^2 / (1 + (C/EC50)^2), in [0, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Euler step of the PK model (hours); one environment step of dosing.
DT_HOURS = 0.1
#: Upper clamp CardioSim applies to plasma concentration (mg/L).
MAX_CONCENTRATION = 1000.0
#: Hill coefficient of the efficacy curve.
HILL_COEFFICIENT = 2.0

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "volume_of_distribution": ParameterRange(0.5, 10.0, "L/kg", "Derendorf & Meibohm, 1999"),
    "elimination_rate": ParameterRange(0.01, 0.5, "1/h", "Nattel & Singh, 1999"),
    "absorption_rate": ParameterRange(0.1, 5.0, "1/h", "Derendorf & Meibohm, 1999"),
    "therapeutic_min": ParameterRange(0.5, 3.0, "mg/L", "Nattel & Singh, 1999"),
    "therapeutic_max": ParameterRange(3.0, 10.0, "mg/L", "Nattel & Singh, 1999"),
    "toxic_threshold": ParameterRange(5.0, 15.0, "mg/L", "Nattel & Singh, 1999"),
    # Not range-checked by CardioSim; bounds are the adult weights the model is meant for.
    "body_weight": ParameterRange(40.0, 150.0, "kg", "adult body weight; CardioSim uses 70 kg"),
}


@struct.dataclass
class PharmacokineticParams:
    """Patient PK parameters and the therapeutic window."""

    volume_of_distribution: jax.Array = 2.0  # L/kg
    elimination_rate: jax.Array = 0.1  # 1/h
    absorption_rate: jax.Array = 1.0  # 1/h
    therapeutic_min: jax.Array = 1.5  # mg/L
    therapeutic_max: jax.Array = 5.0  # mg/L
    toxic_threshold: jax.Array = 8.0  # mg/L
    body_weight: jax.Array = 70.0  # kg


@struct.dataclass
class PharmacokineticState:
    """Drug in the gut (mg), plasma concentration (mg/L) and cumulative dose (mg)."""

    gut_amount: jax.Array
    plasma_concentration: jax.Array
    total_dose: jax.Array


def validate(params: PharmacokineticParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def initial_state() -> PharmacokineticState:
    """Drug-naive patient."""
    zero = jnp.zeros((), jnp.float32)
    return PharmacokineticState(gut_amount=zero, plasma_concentration=zero, total_dose=zero)


def step(
    state: PharmacokineticState,
    params: PharmacokineticParams,
    dose_mg: jax.Array,
    dt_hours: float = DT_HOURS,
) -> PharmacokineticState:
    """Give ``dose_mg`` (only a positive dose counts) and advance one Euler step."""
    dose = jnp.where(dose_mg > 0.0, dose_mg, 0.0)
    gut = state.gut_amount + dose
    absorbed = params.absorption_rate * gut * dt_hours
    total_volume_l = params.volume_of_distribution * params.body_weight
    concentration = (
        state.plasma_concentration
        + absorbed / total_volume_l
        - params.elimination_rate * state.plasma_concentration * dt_hours
    )
    return PharmacokineticState(
        gut_amount=gut - absorbed,
        plasma_concentration=jnp.clip(concentration, 0.0, MAX_CONCENTRATION),
        total_dose=state.total_dose + dose,
    )


def efficacy(concentration: jax.Array, params: PharmacokineticParams) -> jax.Array:
    """Fraction of maximal drug effect, sigmoid Emax with EC50 mid-window; 0 at C <= 0."""
    ec50 = 0.5 * (params.therapeutic_min + params.therapeutic_max)
    ratio_pow = (jnp.maximum(concentration, 0.0) / ec50) ** HILL_COEFFICIENT
    return ratio_pow / (1.0 + ratio_pow)


def is_therapeutic(concentration: jax.Array, params: PharmacokineticParams) -> jax.Array:
    """Concentration inside the closed therapeutic window."""
    return (concentration >= params.therapeutic_min) & (concentration <= params.therapeutic_max)


def is_subtherapeutic(concentration: jax.Array, params: PharmacokineticParams) -> jax.Array:
    return concentration < params.therapeutic_min


def is_toxic(concentration: jax.Array, params: PharmacokineticParams) -> jax.Array:
    return concentration >= params.toxic_threshold


# ---------------------------------------------------------------- renal clearance (v1)
#
# Sotalol is not metabolised: it leaves the body almost entirely unchanged in
# the urine, so its clearance follows creatinine clearance (Berglund 1980;
# Hanyok 1993). The v1 dosing environment derives elimination from clearance
# and volume instead of fixing a half-life, so renal impairment lengthens the
# half-life as it does in patients. v0 does not use these functions.

#: mL/min -> L/h.
ML_PER_MIN_TO_L_PER_H = 60.0 / 1000.0


def renal_drug_clearance_l_per_h(
    creatinine_clearance_ml_per_min: jax.Array,
    renal_clearance_ratio: jax.Array,
    nonrenal_clearance_ml_per_min: jax.Array,
) -> jax.Array:
    """Total drug clearance (L/h) of a renally cleared drug.

    ``CL = ratio * CrCl + CL_nonrenal`` (both in mL/min, converted to L/h):
    the renal part proportional to creatinine clearance, the non-renal part the
    residual clearance that sets the anuric half-life. Negative inputs count as 0.
    """
    renal = jnp.maximum(renal_clearance_ratio, 0.0) * jnp.maximum(
        creatinine_clearance_ml_per_min, 0.0
    )
    return (renal + jnp.maximum(nonrenal_clearance_ml_per_min, 0.0)) * ML_PER_MIN_TO_L_PER_H


def elimination_rate_from_clearance(
    clearance_l_per_h: jax.Array, volume_of_distribution_l_per_kg: jax.Array, body_weight: jax.Array
) -> jax.Array:
    """First-order elimination rate ``k_e = CL / V`` (1/h) of a one-compartment model."""
    return clearance_l_per_h / (volume_of_distribution_l_per_kg * body_weight)


def half_life_h(elimination_rate_per_h: jax.Array) -> jax.Array:
    """Elimination half-life ``ln 2 / k_e`` (h)."""
    return jnp.log(2.0) / elimination_rate_per_h
