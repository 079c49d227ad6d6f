"""VF termination by a biphasic shock, the rhythm that follows, and survival decay.

A shock does two separable things (Kerber 2000 consensus; the ORCA, BIPHASIC and
ROC trials report them separately): it terminates VF or not, and the heart then
shows an organised rhythm with a pulse (ROSC), pulseless electrical activity
(PEA), asystole, or fibrillates again. Termination is easy in biphasic practice
even late in VF; ROSC is what the myocardial energy state decides.

**Termination**, logistic in log energy (sigmoid dose-response; Davy et al.
1987 Am Heart J), modulated weakly by the myocardial energy state ``m`` and
by cumulative delivered energy (injury; Xie et al. 1997 Circulation)::

    p_term(E) = 1 / (1 + (E50_eff / E)^slope)
    E50_eff = E50 x exp(-beta_m (m - m_ref)) x (1 + injury x E_cum / 1000)

With the defaults a first 150 / 200 / 360 J shock at the energy state of 7-9 min
of untreated VF terminates VF in about 87 / 92 / 97 % (ORCA: 96 % at 150 J with
call-to-shock 8.9 +- 3.0 min, Schneider et al. 2000 Circulation 102:1780; van Alem
et al. 2003 Resuscitation: 98 % biphasic first-shock efficacy).

**Rhythm after termination** (no refibrillation)::

    p_ROSC = rosc_max x sigmoid((m - m_half) / width) / (1 + injury x E_cum / 1000)
    p_PEA  = (1 - p_ROSC) x sigmoid((m - m_asystole) / width)
    p_asystole = the rest

**During CPR in PEA or asystole** two competing hazards (per minute of CPR):
ROSC ``rosc_rate x sigmoid((m - m_half) / width)`` (a tenth of it in asystole,
whose outcome is poor) and recurrence of VF ``vf_recurrence_rate``. A shock of
a non-VF rhythm changes nothing but costs its pause.

**Survival** to discharge decays per minute, faster without flow than with CPR
(Larsen et al. 1993 Ann Emerg Med; Valenzuela et al. 1997 Circulation)::

    S <- S x exp(-lambda_noflow t_noflow - lambda_cpr t_cpr)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Smallest energy the logistic sees (J), so log(E) stays finite.
MIN_ENERGY_J = 1.0
#: Bound on the exponent of the E50 modifier, so E50_eff stays finite for any input.
MAX_LOG_MODIFIER = 30.0
#: Asystole's ROSC hazard as a fraction of PEA's (a model choice: asystole has the poorest
#: outcome of the arrest rhythms).
ASYSTOLE_ROSC_FRACTION = 0.1

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "e50_j": ParameterRange(
        20.0, 200.0, "J", "biphasic first-shock termination 87-98 %, Schneider 2000; van Alem 2003"
    ),
    "slope": ParameterRange(
        1.0, 6.0, "per log J", "termination 150 vs 360 J, Stiell et al. 2007 (BIPHASIC)"
    ),
    "energy_state_sensitivity": ParameterRange(
        0.0, 3.0, "per unit m", "termination barely falls with VF duration in biphasic trials"
    ),
    "reference_energy_state": ParameterRange(
        0.1, 0.9, "fraction", "energy state after 7 min of untreated VF (tissue model)"
    ),
    "injury_per_kj": ParameterRange(
        0.0, 0.5, "1/kJ", "energy-dependent myocardial injury, Xie et al. 1997 Circulation"
    ),
    "rosc_max_probability": ParameterRange(
        0.2, 1.0, "probability", "ROSC after terminated VF, Stiell et al. 2007 (BIPHASIC)"
    ),
    "rosc_half_energy_state": ParameterRange(
        0.2, 0.8, "fraction", "ROSC rises with AMSA / myocardial state, Ristagno et al. 2015"
    ),
    "asystole_half_energy_state": ParameterRange(
        0.0, 0.6, "fraction", "post-shock asystole in depleted myocardium, van Alem et al. 2003"
    ),
    "rhythm_width": ParameterRange(
        0.05, 0.3, "fraction", "spread of the rhythm outcome over m (model choice)"
    ),
    "rosc_rate_per_min": ParameterRange(
        0.05, 1.0, "1/min", "ROSC from PEA during CPR (poor), Vayrynen et al. 2008 Resuscitation"
    ),
    "vf_recurrence_rate_per_min": ParameterRange(
        0.0, 1.0, "1/min", "VF recurs in most patients, Koster et al. 2008 Resuscitation"
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
    """Termination, post-shock rhythm and survival parameters (units in ``PARAMETER_RANGES``)."""

    e50_j: jax.Array = 60.0  # termination E50 at the reference energy state, no prior shocks
    slope: jax.Array = 2.0  # logistic slope in log energy
    energy_state_sensitivity: jax.Array = 1.0  # termination gets easier in a recovered heart
    reference_energy_state: jax.Array = 0.3  # m after about 7 min of untreated VF
    injury_per_kj: jax.Array = 0.15
    rosc_max_probability: jax.Array = 0.25  # ROSC after termination in a fully recovered heart
    rosc_half_energy_state: jax.Array = 0.45
    asystole_half_energy_state: jax.Array = 0.25
    rhythm_width: jax.Array = 0.15
    rosc_rate_per_min: jax.Array = 0.15  # PEA -> ROSC during CPR, fully recovered heart
    vf_recurrence_rate_per_min: jax.Array = 0.1  # PEA or asystole -> VF during CPR
    survival_decay_no_flow_per_min: jax.Array = 0.1
    survival_decay_cpr_per_min: jax.Array = 0.035


def validate(params: ShockResponseParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def _injury_factor(params: ShockResponseParams, cumulative_energy_j: jax.Array) -> jax.Array:
    """1 + injury x E_cum (kJ): >= 1, grows with the energy delivered before."""
    return 1.0 + params.injury_per_kj * jnp.clip(cumulative_energy_j, 0.0, 1e7) / 1000.0


def effective_e50(
    params: ShockResponseParams, myocardial_energy: jax.Array, cumulative_energy_j: jax.Array
) -> jax.Array:
    """Energy (J) with a 50 % chance of terminating VF in the current state."""
    log_modifier = jnp.clip(
        -params.energy_state_sensitivity
        * (jnp.nan_to_num(myocardial_energy) - params.reference_energy_state),
        -MAX_LOG_MODIFIER,
        MAX_LOG_MODIFIER,
    )
    return params.e50_j * jnp.exp(log_modifier) * _injury_factor(params, cumulative_energy_j)


def termination_probability(
    params: ShockResponseParams,
    energy_j: jax.Array,
    myocardial_energy: jax.Array,
    cumulative_energy_j: jax.Array,
) -> jax.Array:
    """Probability that a shock of ``energy_j`` terminates VF (in [0, 1]).

    ``myocardial_energy`` is the state ``m`` itself (never one ECG window);
    ``cumulative_energy_j`` is the energy delivered before this shock.
    """
    e50 = effective_e50(params, myocardial_energy, cumulative_energy_j)
    energy = jnp.clip(jnp.nan_to_num(energy_j), MIN_ENERGY_J, 1e7)
    return jax.nn.sigmoid(params.slope * (jnp.log(energy) - jnp.log(e50)))


def _recovery(params: ShockResponseParams, myocardial_energy: jax.Array) -> jax.Array:
    """How far the myocardium is from the state that sustains a perfusing rhythm, in (0, 1)."""
    return jax.nn.sigmoid(
        (jnp.nan_to_num(myocardial_energy) - params.rosc_half_energy_state) / params.rhythm_width
    )


def post_shock_rhythm_probabilities(
    params: ShockResponseParams, myocardial_energy: jax.Array, cumulative_energy_j: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(p_rosc, p_pea, p_asystole)`` after VF was terminated (sum to 1)."""
    p_rosc = (
        params.rosc_max_probability
        * _recovery(params, myocardial_energy)
        / _injury_factor(params, cumulative_energy_j)
    )
    organised = jax.nn.sigmoid(
        (jnp.nan_to_num(myocardial_energy) - params.asystole_half_energy_state)
        / params.rhythm_width
    )
    p_pea = (1.0 - p_rosc) * organised
    return p_rosc, p_pea, 1.0 - p_rosc - p_pea


def rosc_rate_per_min(
    params: ShockResponseParams,
    myocardial_energy: jax.Array,
    asystole: jax.Array,
    cumulative_energy_j: jax.Array,
) -> jax.Array:
    """Hazard (1/min of CPR) of ROSC from PEA, or from asystole (a tenth of it)."""
    rate = (
        params.rosc_rate_per_min
        * _recovery(params, myocardial_energy)
        / _injury_factor(params, cumulative_energy_j)
    )
    return jnp.where(asystole, ASYSTOLE_ROSC_FRACTION * rate, rate)


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
