"""Probability that a biphasic shock ends ventricular fibrillation, and survival decay.

Dose-response: logistic in log energy (defibrillation dose-response curves are
sigmoid in energy; e.g. Davy et al. 1987 Am Heart J)::

    p(E) = 1 / (1 + (E50_eff / E)^slope)
    E50_eff = E50 x exp(-beta_amsa (AMSA - AMSA_ref)) x exp(beta_t t_VF) x (1 + injury x E_cum)

``AMSA`` is the intrinsic amplitude spectrum area of the fibrillating
myocardium (mV x Hz at unit electrode gain): high AMSA, a well-perfused
heart, lowers the energy needed (Ristagno et al. 2015 Resuscitation:
AMSA >= 15.5 mV x Hz predicts success). ``t_VF`` (minutes since collapse)
raises it beyond what AMSA shows (Weisfeldt & Becker 2002 JAMA, circulatory
phase). Cumulative delivered energy ``E_cum`` (kJ) injures the myocardium
(Xie et al. 1997 Circulation: post-shock dysfunction grows with energy).
With the defaults a shock early in VF (AMSA ~ 21) at 150-200 J succeeds
85-93 % of the time, as first biphasic shocks do (Schneider et al. 2000
Circulation, ORCA; Stiell et al. 2007 Circulation, BIPHASIC).

Survival to discharge decays per minute in VF, faster without flow than with
CPR (Larsen et al. 1993 Ann Emerg Med; Valenzuela et al. 1997 Circulation)::

    S <- S x exp(-lambda_noflow t_noflow - lambda_cpr t_cpr)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Smallest energy the logistic sees (J), so log(E) stays finite.
MIN_ENERGY_J = 1.0
#: Bound on the exponent of the E50 modifiers, so E50_eff stays finite for any input.
MAX_LOG_MODIFIER = 30.0

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "e50_j": ParameterRange(
        50.0, 300.0, "J", "biphasic first-shock success, Schneider et al. 2000 (ORCA)"
    ),
    "slope": ParameterRange(
        1.5, 6.0, "per log J", "energy escalation 200-360 J, Stiell et al. 2007 (BIPHASIC)"
    ),
    "amsa_reference_mv_hz": ParameterRange(
        10.0, 21.0, "mV x Hz", "AMSA success thresholds, Ristagno et al. 2015 Resuscitation"
    ),
    "amsa_sensitivity": ParameterRange(
        0.02, 0.3, "1/(mV x Hz)", "success vs AMSA, Young et al. 2004 Crit Care Med"
    ),
    "vf_duration_sensitivity": ParameterRange(
        0.0, 0.15, "1/min", "circulatory phase of VF, Weisfeldt & Becker 2002 JAMA"
    ),
    "injury_per_kj": ParameterRange(
        0.0, 0.5, "1/kJ", "energy-dependent myocardial injury, Xie et al. 1997 Circulation"
    ),
    "survival_decay_no_flow_per_min": ParameterRange(
        0.05, 0.12, "1/min", "7-10 %/min without CPR, Larsen et al. 1993; Valenzuela 1997"
    ),
    "survival_decay_cpr_per_min": ParameterRange(
        0.01, 0.05, "1/min", "3-4 %/min with CPR, Valenzuela et al. 1997 Circulation"
    ),
}


@struct.dataclass
class ShockResponseParams:
    """Dose-response and survival parameters (units in ``PARAMETER_RANGES``)."""

    e50_j: jax.Array = 150.0  # E50 at the reference AMSA, at collapse, no prior shocks
    slope: jax.Array = 3.0  # logistic slope in log energy
    amsa_reference_mv_hz: jax.Array = 15.5
    amsa_sensitivity: jax.Array = 0.12
    vf_duration_sensitivity: jax.Array = 0.04
    injury_per_kj: jax.Array = 0.15
    survival_decay_no_flow_per_min: jax.Array = 0.1
    survival_decay_cpr_per_min: jax.Array = 0.035


def validate(params: ShockResponseParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def effective_e50(
    params: ShockResponseParams,
    amsa_mv_hz: jax.Array,
    vf_minutes: jax.Array,
    cumulative_energy_j: jax.Array,
) -> jax.Array:
    """Energy (J) with a 50 % chance of defibrillation in the current state."""
    log_modifier = jnp.clip(
        -params.amsa_sensitivity * (amsa_mv_hz - params.amsa_reference_mv_hz)
        + params.vf_duration_sensitivity * vf_minutes,
        -MAX_LOG_MODIFIER,
        MAX_LOG_MODIFIER,
    )
    injury = 1.0 + params.injury_per_kj * jnp.maximum(cumulative_energy_j, 0.0) / 1000.0
    return params.e50_j * jnp.exp(log_modifier) * injury


def success_probability(
    params: ShockResponseParams,
    energy_j: jax.Array,
    amsa_mv_hz: jax.Array,
    vf_minutes: jax.Array,
    cumulative_energy_j: jax.Array,
) -> jax.Array:
    """Probability that a shock of ``energy_j`` terminates VF (in [0, 1]).

    ``cumulative_energy_j`` is the energy delivered before this shock.
    """
    e50 = effective_e50(params, amsa_mv_hz, vf_minutes, cumulative_energy_j)
    log_ratio = jnp.log(jnp.maximum(energy_j, MIN_ENERGY_J)) - jnp.log(e50)
    return jax.nn.sigmoid(params.slope * log_ratio)


def survival_decay(
    params: ShockResponseParams, no_flow_s: jax.Array, cpr_s: jax.Array
) -> jax.Array:
    """Multiplicative survival factor for ``no_flow_s`` s without and ``cpr_s`` s with CPR."""
    return jnp.exp(
        -(
            params.survival_decay_no_flow_per_min * no_flow_s
            + params.survival_decay_cpr_per_min * cpr_s
        )
        / 60.0
    )
