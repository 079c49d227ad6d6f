"""Pharmacodynamics of a sotalol-like class III antiarrhythmic on two FitzHugh-Nagumo cells.

Two excitable FitzHugh-Nagumo (FHN) cells (FitzHugh 1961's canonical
``a = 0.7``, ``b = 0.8``) share one plasma concentration ``C`` (mg/L):

* an **ectopic focus** with a depolarising drive current ``I`` above its Hopf
  threshold, so it fires spontaneously (automatic ectopy). The drug's
  class III effect comes from the same IKr block
  ``B = C / (C + IC50_IKr)`` that prolongs the QT: block lengthens the
  focus's refractoriness, modelled as a raised
  excitation threshold, ``a_focus = a + max_threshold_shift * B``; the Hopf
  current rises by ``max_threshold_shift * B / b``, so firing stops once
  ``C`` exceeds a drive-dependent effective concentration;
* a **ventricular myocyte** given one suprathreshold stimulus per window; the
  same block ``B`` slows its recovery,
  ``tau_v = ventricle_tau * (1 + max_repolarisation_slowing * B)``, which
  lengthens the action potential. Its duration above a repolarisation
  threshold, times ``ms_per_model_unit``, is the QTc readout. The beat starts
  from rest, so the cell has no restitution and the readout is already
  rate-corrected (QT at RR = 1 s, where Bazett and Fridericia are identities).

Beta-blockade ``E_beta = C / (C + EC50_beta)`` lowers the sinus rate by up to
``max_heart_rate_reduction``. Equations of each cell (model time units):

    dv/dt = v - v^3 / 3 - w + I
    dw/dt = (v + a - b w) / tau

Both are integrated with RK4 over one monitoring window of ``WINDOW_SUBSTEPS``
focus substeps of ``FOCUS_DT`` and half as many myocyte substeps of
``VENTRICLE_DT``; the focus carries its
state across windows, the myocyte restarts from rest each window.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models.integrators import rk4_step
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Focus RK4 substeps per monitoring window.
WINDOW_SUBSTEPS = 80
#: Focus substeps per myocyte substep (the myocyte needs a coarser step only).
FOCUS_SUBSTEPS_PER_MYOCYTE = 2
#: Substeps per iteration of the window loop (``lax.fori_loop`` unroll; 1 measured fastest).
SUBSTEP_UNROLL = 1
#: Focus substep (model time units); the focus window is 40 units, about two firing periods.
FOCUS_DT = 0.5
#: Myocyte substep (model time units): APD within 0.2 % of dt = 0.05; its 30-unit window
#: holds action potentials up to ~2.4x the drug-free one.
VENTRICLE_DT = 0.75
#: Upward crossings of this focus voltage count as ectopic beats (the spike peak is ~2).
SPIKE_THRESHOLD = 1.0
#: The myocyte is "depolarised" while v is above this (near the FHN resting-to-peak midpoint).
REPOLARISATION_THRESHOLD = -0.5
#: Stimulus: the myocyte starts the window this far above its resting voltage (suprathreshold).
STIMULUS_KICK = 1.0
#: Focus resting point used at reset (FHN rest of a = 0.7, b = 0.8 at I = 0).
FOCUS_RESET_STATE = (-1.2, -0.625)

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "excitability_a": ParameterRange(0.5, 0.9, "dimensionless", "FitzHugh 1961 (a = 0.7)"),
    "recovery_b": ParameterRange(0.6, 1.0, "dimensionless", "FitzHugh 1961 (b = 0.8)"),
    "focus_tau": ParameterRange(
        3.0, 12.5, "model time units", "FitzHugh 1961 (1/phi = 12.5); faster pacemaker focus"
    ),
    "ventricle_tau": ParameterRange(8.0, 20.0, "model time units", "FitzHugh 1961 (12.5)"),
    "focus_drive": ParameterRange(
        0.35, 0.8, "dimensionless", "FitzHugh 1961: oscillation above the Hopf current ~0.39"
    ),
    "max_threshold_shift": ParameterRange(
        0.0, 4.0, "dimensionless (FHN a)", "calibration: suppression at 0.5-1 mg/L (IKr-tied)"
    ),
    "ikr_ic50_mg_per_l": ParameterRange(
        3.0,
        40.0,
        "mg/L",
        "calibration: apparent in vivo IKr IC50 (efficacy and QT); Hohnloser & Woosley 1994",
    ),
    "max_repolarisation_slowing": ParameterRange(
        0.0, 2.0, "relative", "calibration: dose-dependent QTc rise, Hohnloser & Woosley 1994 NEJM"
    ),
    "beta_ec50_mg_per_l": ParameterRange(
        0.2, 5.0, "mg/L", "beta-blockade at low sotalol doses, Anderson & Prystowsky 1999"
    ),
    "max_heart_rate_reduction": ParameterRange(
        0.0, 0.4, "fraction", "sotalol lowers sinus rate 10-25%, Anderson & Prystowsky 1999"
    ),
    "ms_per_model_unit": ParameterRange(
        25.0, 40.0, "ms", "calibration: drug-free QTc 380-450 ms, Drew et al. 2010 Circulation"
    ),
}


@struct.dataclass
class DrugEffectParams:
    """FHN cells and the drug's concentration-effect curves (all Emax with Hill coefficient 1)."""

    excitability_a: jax.Array = 0.7  # FHN a of both cells without drug
    recovery_b: jax.Array = 0.8  # FHN b
    focus_tau: jax.Array = 5.0  # focus recovery time constant (model units)
    ventricle_tau: jax.Array = 12.5  # myocyte recovery time constant without drug (model units)
    focus_drive: jax.Array = 0.55  # focus depolarising current at neutral tone
    max_threshold_shift: jax.Array = 2.3  # increase of the focus's a at full IKr block
    ikr_ic50_mg_per_l: jax.Array = 10.0  # C for half-maximal IKr block (both effects)
    max_repolarisation_slowing: jax.Array = 1.0  # relative tau increase at full IKr block
    beta_ec50_mg_per_l: jax.Array = 0.8  # C for half-maximal beta-blockade
    max_heart_rate_reduction: jax.Array = 0.2  # fractional sinus-rate reduction at full blockade
    ms_per_model_unit: jax.Array = 33.5  # FHN time unit in ms (sets the drug-free QTc)


@struct.dataclass
class WindowReadout:
    """What one monitoring window yields."""

    focus: fhn.FitzHughNagumoState  # focus state at the window's end
    ectopic_beats: jax.Array  # focus spikes in the window (float32 count)
    action_potential_units: jax.Array  # myocyte time above the repolarisation threshold


def validate(params: DrugEffectParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def _emax(concentration: jax.Array, ec50: jax.Array) -> jax.Array:
    concentration = jnp.maximum(concentration, 0.0)
    return concentration / (concentration + ec50)


def antiarrhythmic_effect(concentration: jax.Array, params: DrugEffectParams) -> jax.Array:
    """Fraction (0..1) of the maximal threshold shift at plasma concentration ``C`` (mg/L).

    For a class III drug this is the IKr block itself: efficacy and QT
    prolongation share one mechanism and one IC50 (Hohnloser & Woosley 1994).
    """
    return ikr_block(concentration, params)


def ikr_block(concentration: jax.Array, params: DrugEffectParams) -> jax.Array:
    """Fraction (0..1) of IKr blocked at ``C`` (mg/L)."""
    return _emax(concentration, params.ikr_ic50_mg_per_l)


def beta_blockade(concentration: jax.Array, params: DrugEffectParams) -> jax.Array:
    """Fraction (0..1) of maximal beta-blockade at ``C`` (mg/L)."""
    return _emax(concentration, params.beta_ec50_mg_per_l)


def focus_cell(concentration: jax.Array, params: DrugEffectParams) -> fhn.FitzHughNagumoParams:
    """FHN parameters of the ectopic focus under the drug (threshold ``a`` raised)."""
    shift = params.max_threshold_shift * antiarrhythmic_effect(concentration, params)
    return fhn.FitzHughNagumoParams(
        a=params.excitability_a + shift, b=params.recovery_b, tau=params.focus_tau
    )


def ventricle_cell(concentration: jax.Array, params: DrugEffectParams) -> fhn.FitzHughNagumoParams:
    """FHN parameters of the ventricular myocyte under the drug (recovery slowed by IKr block)."""
    slowing = 1.0 + params.max_repolarisation_slowing * ikr_block(concentration, params)
    return fhn.FitzHughNagumoParams(
        a=params.excitability_a, b=params.recovery_b, tau=params.ventricle_tau * slowing
    )


def hopf_current(cell: fhn.FitzHughNagumoParams) -> jax.Array:
    """Drive current above which the FHN rest state loses stability (spontaneous firing).

    The Jacobian's trace ``1 - v^2 - b / tau`` vanishes at ``v_H = -sqrt(1 - b / tau)``;
    the current whose rest point sits there is ``(v_H + a) / b - v_H + v_H^3 / 3``.
    """
    v_h = -jnp.sqrt(jnp.maximum(1.0 - cell.b / cell.tau, 0.0))
    return (v_h + cell.a) / cell.b - v_h + v_h**3 / 3.0


def resting_voltage(cell: fhn.FitzHughNagumoParams, current: jax.Array = 0.0) -> jax.Array:
    """Most negative root of ``v - v^3/3 - (v + a)/b + I = 0`` (Newton from below)."""
    v = jnp.full(jnp.shape(cell.a), -2.5, jnp.float32)
    for _ in range(8):  # the cubic is concave-increasing left of its root: monotone steps
        residual = v - v**3 / 3.0 - (v + cell.a) / cell.b + current
        slope = 1.0 - v**2 - 1.0 / cell.b
        v = v - residual / slope
    return v


def initial_focus() -> fhn.FitzHughNagumoState:
    """Focus at the drug-free resting point (deterministic)."""
    return fhn.FitzHughNagumoState(
        v=jnp.asarray(FOCUS_RESET_STATE[0], jnp.float32),
        w=jnp.asarray(FOCUS_RESET_STATE[1], jnp.float32),
    )


def _time_above(previous: jax.Array, current: jax.Array, dt: float) -> jax.Array:
    """Time within one substep that a linearly interpolated v spends above the threshold."""
    above_prev = previous - REPOLARISATION_THRESHOLD
    above_now = current - REPOLARISATION_THRESHOLD
    both = (above_prev > 0) & (above_now > 0)
    crossed = (above_prev > 0) != (above_now > 0)
    span = jnp.where(crossed, jnp.abs(current - previous), 1.0)
    fraction = jnp.maximum(above_prev, above_now) / span
    return dt * jnp.where(both, 1.0, jnp.where(crossed, fraction, 0.0))


def simulate_window(
    focus: fhn.FitzHughNagumoState,
    params: DrugEffectParams,
    concentration: jax.Array,
    drive: jax.Array,
    focus_noise: jax.Array,
) -> WindowReadout:
    """Integrate both cells over one monitoring window at constant ``C`` (mg/L).

    ``drive`` is the focus current (dimensionless); ``focus_noise`` holds the
    already-scaled voltage perturbations of the focus, one per substep (shape
    ``(WINDOW_SUBSTEPS,)``; zeros for a noise-free focus).
    """
    focus_params = focus_cell(concentration, params)
    ventricle_params = ventricle_cell(concentration, params)
    v_rest = resting_voltage(ventricle_params)
    myocyte = fhn.FitzHughNagumoState(
        v=v_rest + STIMULUS_KICK, w=(v_rest + ventricle_params.a) / ventricle_params.b
    )
    t = jnp.zeros((), jnp.float32)
    zero = jnp.zeros((), jnp.float32)

    def focus_substep(j: jax.Array, focus: fhn.FitzHughNagumoState) -> tuple:
        new = rk4_step(fhn.vector_field, t, focus, FOCUS_DT, (focus_params, drive))
        new = new.replace(v=new.v + focus_noise[j])
        spike = (focus.v < SPIKE_THRESHOLD) & (new.v >= SPIKE_THRESHOLD)
        return new, spike.astype(jnp.float32)

    def body(i: jax.Array, carry: tuple) -> tuple:
        focus, myocyte, beats, apd = carry
        for k in range(FOCUS_SUBSTEPS_PER_MYOCYTE):
            focus, spike = focus_substep(FOCUS_SUBSTEPS_PER_MYOCYTE * i + k, focus)
            beats = beats + spike
        new_myocyte = rk4_step(fhn.vector_field, t, myocyte, VENTRICLE_DT, (ventricle_params, 0.0))
        apd = apd + _time_above(myocyte.v, new_myocyte.v, VENTRICLE_DT)
        return focus, new_myocyte, beats, apd

    n_iterations = WINDOW_SUBSTEPS // FOCUS_SUBSTEPS_PER_MYOCYTE
    focus, _, beats, apd = jax.lax.fori_loop(
        0, n_iterations, body, (focus, myocyte, zero, zero), unroll=SUBSTEP_UNROLL
    )
    return WindowReadout(focus=focus, ectopic_beats=beats, action_potential_units=apd)


def focus_window_ms(params: DrugEffectParams) -> jax.Array:
    """Length of the focus's monitoring window in ms."""
    return WINDOW_SUBSTEPS * FOCUS_DT * params.ms_per_model_unit


def ectopic_rate_per_min(ectopic_beats: jax.Array, params: DrugEffectParams) -> jax.Array:
    """Focus spikes in a window as beats per minute."""
    return ectopic_beats * 60_000.0 / focus_window_ms(params)


def qtc_ms(action_potential_units: jax.Array, params: DrugEffectParams) -> jax.Array:
    """Rate-corrected QT (ms) from the myocyte's action-potential duration (model units)."""
    return action_potential_units * params.ms_per_model_unit


def max_qtc_ms(params: DrugEffectParams) -> jax.Array:
    """Largest QTc the window can report (the myocyte depolarised throughout), ms."""
    myocyte_substeps = WINDOW_SUBSTEPS // FOCUS_SUBSTEPS_PER_MYOCYTE
    return myocyte_substeps * VENTRICLE_DT * params.ms_per_model_unit


def heart_rate_bpm(
    concentration: jax.Array, sympathetic_heart_rate_bpm: jax.Array, params: DrugEffectParams
) -> jax.Array:
    """Sinus rate (bpm) after beta-blockade of a drug-free rate ``sympathetic_heart_rate_bpm``."""
    reduction = params.max_heart_rate_reduction * beta_blockade(concentration, params)
    return sympathetic_heart_rate_bpm * (1.0 - reduction)
