"""AntiarrhythmicDosing-v1: start oral sotalol in hospital against ectopy and QTc toxicity.

One step is one dosing decision of a 72 h in-hospital initiation (the sotalol
label asks for at least three days of ECG monitoring): every
``DOSING_INTERVAL_H`` (12 h) the agent prescribes an oral dose, which the
pharmacy dispenses as whole tablets (``dispensed_dose_mg``: the largest of
``TABLET_DOSES_MG`` not above the order, 0-320 mg). A zero order skips the
dose, so q24h and q48h regimens (renal impairment) are sequences of decisions.
Inside a step the patient is simulated hour by hour: a one-compartment PK
model (``pharmacokinetics``, four Euler substeps of 0.25 h; elimination from a
clearance tied to creatinine clearance) sets the plasma concentration, which
blocks IKr; the one block acts on two FitzHugh-Nagumo cells (``drug_effect``):
an ectopic focus whose drive sits above its Hopf threshold fires until the
block raises its threshold, and a ventricular myocyte whose action potential,
lengthened by the block, gives the QTc. Every hour ends with a monitoring
window (ectopy and QTc, as on telemetry). The focus drive follows the
patient's sympathetic tone (circadian, morning peak, plus an Ornstein-Uhlenbeck
fluctuation on medium and hard), which also sets the sinus rate.

Observation (11,), float32, summarising the interval since the last decision:
    0 normalised time: decisions made / max_steps_in_episode (0..1),
    1 mean ectopic rate over the interval's hourly windows (beats/min, 0..``MAX_ECTOPIC_RATE``),
    2 fraction of the interval's hours with an ectopic beat (0..1),
    3 peak QTc of the interval (ms, the 2-4 h post-dose ECG the label asks for),
    4 QTc now (ms, the trough before the next dose),
    5 baseline (admission, drug-free) QTc (ms),
    6 heart rate now (bpm),
    7 last dispensed dose (mg, 0..``MAX_DOSE_MG``),
    8 cumulative dose (g),
    9 plasma concentration now (mg/L; reads 0 where ``concentration_measured`` is 0),
    10 creatinine clearance (mL/min): the admission estimate, one per episode.
    QTc, heart rate and concentration carry measurement noise, and the
    creatinine-clearance estimate an error, scaled by ``observation_noise_std``
    (then clipped to the bounds).
Action (1,): ordered dose (mg), clipped to 0..``MAX_DOSE_MG`` and dispensed as tablets.
Reward per step: the sum over its hours of
    +1 if the hour's window held no ectopic beat, -1/60 per ectopic beat/min,
    -the torsades hazard cost ``5 (exp((QTc - 500)/20) - exp((QTc_0 - 500)/20))``,
    -0.05 per ms of QTc above ``qtc_warning_ms``,
    -``STOP_RULE_PENALTY`` and -``STOP_RULE_PENALTY_PER_MS`` per ms while QTc > ``qtc_stop_ms``,
    -``QTC_RISE_PENALTY_PER_MS`` per ms of QTc rise above ``qtc_rise_limit_ms`` from baseline,
    and -0.001 per mg dispensed.
Episode: ``max_steps_in_episode`` decisions (6 = 72 h); never terminates early:
    a QTc above the stop rule is an hour-by-hour cost the agent must end by
    withholding or reducing, never an exit from the episode's remaining costs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from cardiosim_jax.envs.base import (
    EPISODE_LENGTH_RANGE,
    CardioSimEnvironment,
    box,
    sanitize_action,
    stack_last,
)
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models import pharmacokinetics as pk
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability


@struct.dataclass
class PatientState:
    """This episode's patient: the parameters drawn at reset (units as in ``EnvParams``)."""

    creatinine_clearance_ml_per_min: jax.Array
    volume_of_distribution_l_per_kg: jax.Array
    ikr_ic50_mg_per_l: jax.Array
    max_repolarisation_slowing: jax.Array
    ventricle_tau: jax.Array
    focus_drive: jax.Array


@struct.dataclass
class EnvState(environment.EnvState):
    focus: fhn.FitzHughNagumoState  # ectopic focus membrane, carried across hours
    drug: pk.PharmacokineticState  # gut amount (mg), plasma concentration (mg/L), total dose
    patient: PatientState
    tone_fluctuation: jax.Array  # OU part of the sympathetic tone (relative drive)
    ectopic_rate_per_min: jax.Array  # last hour's window: ectopic beats per minute
    qtc_ms: jax.Array  # last hour's window: QTc (ms)
    heart_rate_bpm: jax.Array  # sinus rate in the last hour (bpm)
    baseline_qtc_ms: jax.Array  # admission (drug-free) QTc (ms)
    creatinine_clearance_estimate: jax.Array  # admission Cockcroft-Gault estimate (mL/min)
    interval_mean_ectopic_rate: jax.Array  # mean over the interval's windows (beats/min)
    interval_ectopic_fraction: jax.Array  # fraction of the interval's hours with ectopy
    interval_peak_qtc_ms: jax.Array  # highest QTc of the interval (ms)
    last_dose_mg: jax.Array  # dispensed at the last decision (mg)
    time: jax.Array  # decisions made (int32)


@struct.dataclass
class EnvParams(environment.EnvParams):
    pd: de.DrugEffectParams = dataclasses.field(default_factory=de.DrugEffectParams)
    # Sotalol oral PK (Hanyok 1993; Berglund 1980): F ~0.95, V_d ~2 L/kg, cleared unchanged
    # by the kidney: CL = ratio * CrCl + non-renal, 140 mL/min at CrCl 100 (t1/2 11.6 h).
    creatinine_clearance_ml_per_min: jax.Array = 100.0
    renal_clearance_ratio: jax.Array = 1.16  # sotalol clearance per unit CrCl
    nonrenal_clearance_ml_per_min: jax.Array = 24.0  # sets the anuric t1/2 (~67 h)
    absorption_rate_per_h: jax.Array = 0.8
    volume_of_distribution_l_per_kg: jax.Array = 2.0
    bioavailability: jax.Array = 0.95
    body_weight_kg: jax.Array = 70.0
    # Sympathetic tone: relative change of the focus drive; also drives the sinus rate.
    resting_heart_rate_bpm: jax.Array = 72.0  # at neutral tone, drug-free
    heart_rate_tone_gain: jax.Array = 2.0  # relative HR change per unit relative tone
    circadian_amplitude: jax.Array = 0.06  # relative drive swing over the day
    circadian_peak_hour: jax.Array = 10.0  # clock hour of peak tone
    start_clock_hour: jax.Array = 8.0  # clock hour at reset (morning admission, first dose)
    tone_noise_std: jax.Array = 0.03  # stationary std of the OU fluctuation (relative)
    tone_correlation_h: jax.Array = 4.0  # OU time constant (h)
    membrane_noise_std: jax.Array = 0.02  # focus voltage noise per RK4 substep
    # Tiers and safety rules.
    observation_noise_std: jax.Array = 0.5  # fraction of clinical measurement error
    concentration_measured: jax.Array = 1.0  # 1: drug level observed, 0: reads 0
    patient_variability: jax.Array = 0.5  # scale on PATIENT_VARIABILITY's CVs
    qtc_warning_ms: jax.Array = 470.0  # QTc above this is penalised per ms
    qtc_stop_ms: jax.Array = 500.0  # QTc above this: the drug must be stopped or reduced
    qtc_rise_limit_ms: jax.Array = 60.0  # QTc rise from baseline above this is penalised
    max_steps_in_episode: jax.Array = 6  # dosing decisions (x 12 h = 72 h)


#: Per-episode patient variation (drawn at reset, scaled by ``patient_variability``).
PATIENT_VARIABILITY: dict[str, Variability] = {
    "creatinine_clearance_ml_per_min": Variability(
        0.3, "CrCl of cardiology in-patients; sotalol CL follows it, Berglund 1980"
    ),
    "volume_of_distribution_l_per_kg": Variability(
        0.2, "V_d 1.2-2.4 L/kg; Hanyok 1993 Am J Cardiol 72:19A"
    ),
    "ikr_ic50_mg_per_l": Variability(
        0.3, "drug sensitivity (efficacy and QT together); Hohnloser & Woosley 1994 NEJM"
    ),
    "max_repolarisation_slowing": Variability(
        0.3, "variable repolarisation reserve; Roden 1998 Pacing Clin Electrophysiol"
    ),
    "ventricle_tau": Variability(
        0.05, "drug-free QTc SD ~20 ms in adults; Drew et al. 2010 Circulation"
    ),
    "focus_drive": Variability(0.1, "design: keeps most patients' focus near threshold"),
}

#: Hours between dosing decisions (one step), and physiology steps per decision.
DOSING_INTERVAL_H = 12
#: Hours per physiology step inside a decision.
HOUR = 1.0
#: PK Euler substeps per hour (0.25 h each, k_a dt <= 0.5 over the accepted range).
PK_SUBSTEPS = 4
#: Doses the pharmacy can dispense from 40, 80, 120 and 160 mg sotalol tablets (mg).
TABLET_DOSES_MG = (0.0, 40.0, 80.0, 120.0, 160.0, 240.0, 320.0)
#: Largest single dose (mg): two 160 mg tablets.
MAX_DOSE_MG = TABLET_DOSES_MG[-1]
#: Sympathetic tone (relative drive change) is clipped to +-this.
TONE_LIMIT = 0.3
#: Cap on the reported ectopic rate (beats/min) and on the concentration observation (mg/L).
MAX_ECTOPIC_RATE = 300.0
MAX_OBSERVED_CONCENTRATION = 50.0
#: Measurement error at observation_noise_std = 1: manual QTc, HR, drug assay (relative) and
#: the Cockcroft-Gault estimate of creatinine clearance (relative).
QTC_MEASUREMENT_SD_MS = 10.0
HEART_RATE_MEASUREMENT_SD_BPM = 3.0
CONCENTRATION_ASSAY_CV = 0.1
CRCL_ESTIMATE_CV = 0.15
#: Reward constants (per hour, except the dose cost).
SINUS_RHYTHM_REWARD = 1.0
ECTOPY_PENALTY_PER_BPM = 1.0 / 60.0
QTC_PENALTY_PER_MS = 0.05
#: Torsades hazard: expected cost per hour at QTc = qtc_stop_ms, growing e-fold every
#: TORSADES_QTC_SCALE_MS (risk rises steeply with QTc; Drew et al. 2010), counted above the
#: patient's own drug-free hazard so only the drug's share is charged.
TORSADES_COST_PER_H_AT_STOP = 5.0
TORSADES_QTC_SCALE_MS = 20.0
TORSADES_QTC_CAP_MS = 30.0
#: Stop rule: every hour with QTc above qtc_stop_ms (the label says stop or reduce).
STOP_RULE_PENALTY = 10.0
STOP_RULE_PENALTY_PER_MS = 0.5
QTC_RISE_PENALTY_PER_MS = 0.2
#: The per-ms stop-rule and rise terms count at most this many ms (bounded hourly cost).
QTC_EXCESS_CAP_MS = 40.0
DOSE_COST_PER_MG = 0.001


def dispensed_dose_mg(ordered_mg: jax.Array) -> jax.Array:
    """Largest tablet dose (``TABLET_DOSES_MG``) not above the order (mg); NaN orders nothing.

    Rounding down is the safe direction for a QT-prolonging drug: the pharmacy
    never gives more than was ordered.
    """
    ordered = jnp.clip(sanitize_action(ordered_mg), 0.0, MAX_DOSE_MG)
    doses = jnp.asarray(TABLET_DOSES_MG, jnp.float32)
    # Small tolerance so an order of exactly a tablet dose survives float rounding.
    allowed = doses <= ordered[..., None] + 1e-3
    return jnp.max(jnp.where(allowed, doses, 0.0), axis=-1)


def torsades_hazard_cost(
    qtc_ms: jax.Array, baseline_qtc_ms: jax.Array, params: EnvParams
) -> jax.Array:
    """Expected torsades cost of one hour (>= 0): the drug's share of an exponential hazard."""

    def hazard(qtc: jax.Array) -> jax.Array:
        # Capped at TORSADES_QTC_CAP_MS above the stop rule: past it the stop-rule terms
        # dominate, and a bounded cost keeps returns (and their paired comparisons) finite.
        excess = jnp.minimum(qtc - params.qtc_stop_ms, TORSADES_QTC_CAP_MS)
        return jnp.exp(excess / TORSADES_QTC_SCALE_MS)

    return TORSADES_COST_PER_H_AT_STOP * jnp.maximum(hazard(qtc_ms) - hazard(baseline_qtc_ms), 0.0)


def hourly_reward(
    ectopic_rate_per_min: jax.Array,
    qtc_ms: jax.Array,
    baseline_qtc_ms: jax.Array,
    params: EnvParams,
) -> jax.Array:
    """Reward of one monitored hour (without the dose cost)."""
    sinus = jnp.where(ectopic_rate_per_min <= 0.0, SINUS_RHYTHM_REWARD, 0.0)
    warning_excess = jnp.clip(qtc_ms - params.qtc_warning_ms, 0.0, 2.0 * QTC_EXCESS_CAP_MS)
    stop_excess = jnp.clip(qtc_ms - params.qtc_stop_ms, 0.0, QTC_EXCESS_CAP_MS)
    rise_excess = jnp.clip(
        qtc_ms - baseline_qtc_ms - params.qtc_rise_limit_ms, 0.0, QTC_EXCESS_CAP_MS
    )
    return (
        sinus
        - torsades_hazard_cost(qtc_ms, baseline_qtc_ms, params)
        - ECTOPY_PENALTY_PER_BPM * ectopic_rate_per_min
        - QTC_PENALTY_PER_MS * warning_excess
        - jnp.where(qtc_ms > params.qtc_stop_ms, STOP_RULE_PENALTY, 0.0)
        - STOP_RULE_PENALTY_PER_MS * stop_excess
        - QTC_RISE_PENALTY_PER_MS * rise_excess
    )


class AntiarrhythmicDosingV1(CardioSimEnvironment[EnvState, EnvParams]):
    """In-hospital sotalol initiation: suppress an ectopic focus, keep QTc under the stop rule."""

    env_id = "AntiarrhythmicDosing-v1"
    action_shape = (1,)
    patient_variation = PATIENT_VARIABILITY
    #: Exploit-audit interface: no drug; two 160 mg tablets at every decision (640 mg/day).
    no_treatment_action = (0.0,)
    max_treatment_action = (MAX_DOSE_MG,)
    #: 640 mg/day from the first dose, or alternating 0 and 320 mg, in a drug-naive patient
    #: (label start 160 mg/day) push QTc past the stop rule: harmful, not just unhelpful.
    harmful_probes = ("max_treatment", "corner_1")
    #: The label's starting regimen, 80 mg q12h, never adjusted (no load, no renal interval,
    #: no QTc check): the audit requires titration to be worth more than a fixed order.
    extra_probes = {"label_no_adjustment": (80.0,)}
    #: Renal-impairment cohorts (``params_for(tier, **cohort)``): the label gives sotalol
    #: q24h at CrCl 40-60 mL/min and contraindicates it for AF below 40 (q36-48h for VT).
    renal_cohorts = {
        "crcl_40_60": {"creatinine_clearance_ml_per_min": 50.0},
        "crcl_below_40": {"creatinine_clearance_ml_per_min": 30.0},
    }
    tiers = {
        "easy": {
            "tone_noise_std": 0.0,
            "membrane_noise_std": 0.0,
            "observation_noise_std": 0.0,
            "patient_variability": 0.0,
            "concentration_measured": 1.0,
            "qtc_warning_ms": 480.0,
        },
        "medium": {
            "tone_noise_std": 0.03,
            "membrane_noise_std": 0.02,
            "observation_noise_std": 0.5,
            "patient_variability": 0.5,
            "concentration_measured": 1.0,
            "qtc_warning_ms": 470.0,
        },
        "hard": {
            "tone_noise_std": 0.05,
            "membrane_noise_std": 0.03,
            "observation_noise_std": 1.0,
            "patient_variability": 1.0,
            "concentration_measured": 0.0,
            "qtc_warning_ms": 460.0,
        },
    }
    parameter_ranges = {
        "creatinine_clearance_ml_per_min": ParameterRange(
            0.0, 150.0, "mL/min", "anuric to normal renal function; Berglund 1980"
        ),
        "renal_clearance_ratio": ParameterRange(
            0.8, 1.5, "relative", "calibration: CL ~150 mL/min at normal CrCl; Hanyok 1993"
        ),
        "nonrenal_clearance_ml_per_min": ParameterRange(
            10.0, 40.0, "mL/min", "calibration: anuric t1/2 ~69 h; Berglund 1980"
        ),
        "absorption_rate_per_h": ParameterRange(
            0.3, 2.0, "1/h", "sotalol t_max 2-4 h; Hanyok 1993 Am J Cardiol"
        ),
        "volume_of_distribution_l_per_kg": ParameterRange(
            1.2, 2.4, "L/kg", "Hanyok 1993 Am J Cardiol 72:19A"
        ),
        "bioavailability": ParameterRange(0.9, 1.0, "fraction", "Hanyok 1993 Am J Cardiol"),
        "body_weight_kg": ParameterRange(40.0, 150.0, "kg", "adult body weight"),
        "resting_heart_rate_bpm": ParameterRange(
            50.0, 100.0, "bpm", "sotalol contraindicated below 50 bpm; Betapace AF label"
        ),
        "heart_rate_tone_gain": ParameterRange(
            0.0, 3.0, "relative", "design: day-night sinus swing 10-20 bpm"
        ),
        "circadian_amplitude": ParameterRange(
            0.0, 0.2, "relative drive", "morning peak of ventricular arrhythmia; Lampert 1994"
        ),
        "circadian_peak_hour": ParameterRange(
            0.0, 24.0, "clock hour", "peak 10:00-11:00; Lampert et al. 1994 Circulation"
        ),
        "start_clock_hour": ParameterRange(0.0, 24.0, "clock hour", "design: admission time"),
        "tone_noise_std": ParameterRange(
            0.0, 0.1, "relative drive", "design: sympathetic tone fluctuation"
        ),
        "tone_correlation_h": ParameterRange(1.0, 24.0, "h", "design: hours-long tone drift"),
        "membrane_noise_std": ParameterRange(
            0.0, 0.1, "dimensionless", "CardioSim membrane noise 0.01-0.05"
        ),
        "observation_noise_std": ParameterRange(
            0.0, 1.0, "fraction of measurement error", "CardioSim tiers (hard: noise)"
        ),
        "concentration_measured": ParameterRange(
            0.0, 1.0, "flag", "design: sotalol levels not a bedside test"
        ),
        "patient_variability": ParameterRange(
            0.0, 1.0, "fraction of literature CV", "CardioSim tiers (hard: variation)"
        ),
        "qtc_warning_ms": ParameterRange(
            440.0, 500.0, "ms", "QTc > 470-480 ms warrants caution; Drew et al. 2010 Circulation"
        ),
        "qtc_stop_ms": ParameterRange(
            480.0, 550.0, "ms", "QTc > 500 ms: stop or reduce; Drew et al. 2010 Circulation"
        ),
        "qtc_rise_limit_ms": ParameterRange(
            30.0, 100.0, "ms", "QTc rise > 60 ms from baseline; Drew et al. 2010 Circulation"
        ),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"pd": de.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def check_consistency(self, params: EnvParams) -> None:
        if jnp.any(params.qtc_warning_ms >= params.qtc_stop_ms):
            raise ValueError(
                f"qtc_warning_ms ({params.qtc_warning_ms}) must be below "
                f"qtc_stop_ms ({params.qtc_stop_ms})"
            )

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        dose = dispensed_dose_mg(jnp.asarray(action, jnp.float32)[0])
        key_hours, key_obs = prng.split(key, 2)
        new, hourly_rewards, _ = self.simulate_interval(key_hours, state, dose, params)
        reward = jnp.sum(hourly_rewards) - DOSE_COST_PER_MG * dose
        terminated = self.is_terminated(new, params)
        info = {
            "concentration": new.drug.plasma_concentration,
            "dose_mg": dose,
            "ectopic_rate_per_min": new.interval_mean_ectopic_rate,
            "ectopic_hours": new.interval_ectopic_fraction * DOSING_INTERVAL_H,
            "qtc_ms": new.interval_peak_qtc_ms,
        }
        return self.observe(key_obs, new, action, params), new, reward, terminated, info

    def simulate_interval(
        self, key: jax.Array, state: EnvState, dose: jax.Array, params: EnvParams
    ) -> tuple[EnvState, jax.Array, tuple[jax.Array, jax.Array]]:
        """Give ``dose`` (mg, dispensed) and simulate the interval hour by hour.

        Returns the state after the interval, the hourly rewards (without the
        dose cost, shape ``(DOSING_INTERVAL_H,)``) and the hourly QTc (ms) and
        ectopic rate (beats/min) traces.
        """
        patient_pk = self.patient_pk(state, params)
        start_hour = state.time * DOSING_INTERVAL_H

        def hour(state: EnvState, inputs: tuple) -> tuple:
            i, hour_key = inputs
            key_tone, key_membrane = prng.split(hour_key, 2)
            drug = state.drug
            for j in range(PK_SUBSTEPS):  # the dose enters the gut at the start of the interval
                given = jnp.where((i == 0) & (j == 0), params.bioavailability * dose, 0.0)
                drug = pk.step(drug, patient_pk, given, HOUR / PK_SUBSTEPS)
            # Exact OU update over one hour.
            decay = jnp.exp(-HOUR / params.tone_correlation_h)
            fluctuation = state.tone_fluctuation * decay + params.tone_noise_std * jnp.sqrt(
                1.0 - decay**2
            ) * prng.normal(key_tone)
            tone = self._tone(start_hour + i + 1, fluctuation, params)
            state = state.replace(drug=drug, tone_fluctuation=fluctuation)
            state = self._monitor(state, tone, key_membrane, params)
            reward = hourly_reward(
                state.ectopic_rate_per_min, state.qtc_ms, state.baseline_qtc_ms, params
            )
            return state, (reward, state.qtc_ms, state.ectopic_rate_per_min)

        hours = jnp.arange(DOSING_INTERVAL_H, dtype=jnp.int32)
        new, (rewards, qtc, ectopy) = jax.lax.scan(
            hour, state, (hours, prng.split(key, DOSING_INTERVAL_H))
        )
        # pk counts the absorbed fraction; the record keeps the dose dispensed.
        new = new.replace(
            drug=new.drug.replace(total_dose=state.drug.total_dose + dose),
            interval_mean_ectopic_rate=jnp.mean(ectopy),
            interval_ectopic_fraction=jnp.mean((ectopy > 0.0).astype(jnp.float32)),
            interval_peak_qtc_ms=jnp.max(qtc),
            last_dose_mg=dose,
            time=state.time + 1,
        )
        return new, rewards, (qtc, ectopy)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_patient, key_tone, key_membrane, key_obs, key_crcl = prng.split(key, 5)
        drawn = self.draw_patient(key_patient, params)
        zero = jnp.zeros((), jnp.float32)
        tone_fluctuation = params.tone_noise_std * prng.normal(key_tone)  # stationary start
        state = EnvState(
            focus=de.initial_focus(),
            drug=pk.initial_state(),
            patient=PatientState(**drawn),
            tone_fluctuation=tone_fluctuation,
            ectopic_rate_per_min=zero,
            qtc_ms=zero,
            heart_rate_bpm=zero,
            baseline_qtc_ms=zero,
            creatinine_clearance_estimate=zero,
            interval_mean_ectopic_rate=zero,
            interval_ectopic_fraction=zero,
            interval_peak_qtc_ms=zero,
            last_dose_mg=zero,
            time=jnp.zeros((), jnp.int32),
        )
        # Admission ECG: one drug-free monitoring window gives the baseline.
        tone = self._tone(state.time, tone_fluctuation, params)
        state = self._monitor(state, tone, key_membrane, params)
        # One admission estimate of renal function, kept for the episode (it sets the interval).
        crcl_error = params.observation_noise_std * CRCL_ESTIMATE_CV * prng.normal(key_crcl)
        state = state.replace(
            baseline_qtc_ms=state.qtc_ms,
            creatinine_clearance_estimate=jnp.maximum(
                drawn["creatinine_clearance_ml_per_min"] * (1.0 + crcl_error), 0.0
            ),
            interval_mean_ectopic_rate=state.ectopic_rate_per_min,
            interval_ectopic_fraction=(state.ectopic_rate_per_min > 0.0).astype(jnp.float32),
            interval_peak_qtc_ms=state.qtc_ms,
        )
        return self.observe(key_obs, state, None, params), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        concentration = state.drug.plasma_concentration * params.concentration_measured
        peak_qtc, qtc, baseline_qtc = (
            state.interval_peak_qtc_ms,
            state.qtc_ms,
            state.baseline_qtc_ms,
        )
        heart_rate = state.heart_rate_bpm
        if key is not None:
            noise = params.observation_noise_std * prng.normal(key, (5,))
            peak_qtc = peak_qtc + QTC_MEASUREMENT_SD_MS * noise[0]
            qtc = qtc + QTC_MEASUREMENT_SD_MS * noise[1]
            baseline_qtc = baseline_qtc + QTC_MEASUREMENT_SD_MS * noise[2]
            heart_rate = heart_rate + HEART_RATE_MEASUREMENT_SD_BPM * noise[3]
            concentration = concentration * (1.0 + CONCENTRATION_ASSAY_CV * noise[4])
        obs = stack_last(
            [
                state.time / params.max_steps_in_episode,
                state.interval_mean_ectopic_rate,
                state.interval_ectopic_fraction,
                peak_qtc,
                qtc,
                baseline_qtc,
                heart_rate,
                state.last_dose_mg,
                state.drug.total_dose / 1000.0,
                concentration,
                state.creatinine_clearance_estimate,
            ]
        )
        low, high = self._obs_bounds(params)
        return jnp.clip(obs, low, high)

    def clinical_summary(self, trajectory: Any, params: EnvParams) -> dict[str, jax.Array]:
        """What a recorded policy did, per episode, in a clinician's terms.

        ``trajectory`` is a :class:`cardiosim_jax.rollout.Trajectory` (leading
        batch axis allowed). Returns dose per day (mg/day), hours per dose given
        (the effective dosing interval), the first dose (mg), peak QTc (ms), the
        largest QTc rise over baseline (ms), 12 h intervals whose peak QTc passed
        the 500 ms stop rule, and hours with ectopy.
        """
        valid = trajectory.valid
        dose = jnp.where(valid, trajectory.info["dose_mg"], 0.0)
        hours = DOSING_INTERVAL_H * jnp.sum(valid, axis=-1)
        doses_given = jnp.sum(dose > 0.0, axis=-1)
        peak_qtc = jnp.where(valid, trajectory.info["qtc_ms"], -jnp.inf)
        rise = peak_qtc - trajectory.state.baseline_qtc_ms
        return {
            "dose_per_day_mg": 24.0 * jnp.sum(dose, axis=-1) / hours,
            "hours_per_dose": hours / jnp.maximum(doses_given, 1),
            "first_dose_mg": dose[..., 0],
            "peak_qtc_ms": jnp.max(peak_qtc, axis=-1),
            "max_qtc_rise_ms": jnp.max(rise, axis=-1),
            "intervals_over_500_ms": jnp.sum(peak_qtc > 500.0, axis=-1),
            "ectopic_hours": jnp.sum(
                jnp.where(valid, trajectory.info["ectopic_hours"], 0.0), axis=-1
            ),
        }

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Never: the stop rule is a cost to act on, not an exit (see the module docstring)."""
        return jnp.zeros((), bool)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Ordered oral dose at this decision (mg), dispensed as tablets."""
        return box(0.0, MAX_DOSE_MG, (1,))

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies (observations are clipped to them)."""
        low, high = self._obs_bounds(params)
        return spaces.Box(low=low, high=high, shape=(11,), dtype=jnp.float32)

    # ------------------------------------------------------------------ helpers

    @classmethod
    def _obs_bounds(cls, params: EnvParams) -> tuple[jax.Array, jax.Array]:
        max_heart_rate = params.resting_heart_rate_bpm * (
            1.0 + params.heart_rate_tone_gain * TONE_LIMIT
        )
        max_qtc = de.max_qtc_ms(params.pd)  # the window length: holds every patient's QTc
        crcl_high = cls.parameter_ranges["creatinine_clearance_ml_per_min"].high
        low = stack_last([0.0] * 11)
        high = stack_last(
            [
                1.0,
                MAX_ECTOPIC_RATE,
                1.0,
                max_qtc,
                max_qtc,
                max_qtc,
                max_heart_rate,
                MAX_DOSE_MG,
                MAX_DOSE_MG * params.max_steps_in_episode / 1000.0,
                MAX_OBSERVED_CONCENTRATION,
                2.0 * crcl_high,
            ]
        )
        return low, high

    @staticmethod
    def clearance_l_per_h(state: EnvState, params: EnvParams) -> jax.Array:
        """This patient's sotalol clearance (L/h) from their creatinine clearance."""
        return pk.renal_drug_clearance_l_per_h(
            state.patient.creatinine_clearance_ml_per_min,
            params.renal_clearance_ratio,
            params.nonrenal_clearance_ml_per_min,
        )

    @classmethod
    def patient_pk(cls, state: EnvState, params: EnvParams) -> pk.PharmacokineticParams:
        """PK parameters of this episode's patient (the window fields are unused here)."""
        volume = state.patient.volume_of_distribution_l_per_kg
        return pk.PharmacokineticParams(
            volume_of_distribution=volume,
            elimination_rate=pk.elimination_rate_from_clearance(
                cls.clearance_l_per_h(state, params), volume, params.body_weight_kg
            ),
            absorption_rate=params.absorption_rate_per_h,
            body_weight=params.body_weight_kg,
        )

    @staticmethod
    def patient_pd(state: EnvState, params: EnvParams) -> de.DrugEffectParams:
        """Drug-effect parameters of this episode's patient."""
        return params.pd.replace(
            ikr_ic50_mg_per_l=state.patient.ikr_ic50_mg_per_l,
            max_repolarisation_slowing=state.patient.max_repolarisation_slowing,
            ventricle_tau=state.patient.ventricle_tau,
            focus_drive=state.patient.focus_drive,
        )

    @staticmethod
    def _tone(time_h: jax.Array, fluctuation: jax.Array, params: EnvParams) -> jax.Array:
        """Sympathetic tone (relative focus-drive change) ``time_h`` hours into the episode."""
        clock = params.start_clock_hour + HOUR * time_h
        phase = 2.0 * jnp.pi * (clock - params.circadian_peak_hour) / 24.0
        tone = params.circadian_amplitude * jnp.cos(phase) + fluctuation
        return jnp.clip(tone, -TONE_LIMIT, TONE_LIMIT)

    def _monitor(
        self, state: EnvState, tone: jax.Array, key: jax.Array, params: EnvParams
    ) -> EnvState:
        """Run one monitoring window at the current concentration and store its readouts."""
        pd_params = self.patient_pd(state, params)
        concentration = state.drug.plasma_concentration
        noise = params.membrane_noise_std * prng.normal(key, (de.WINDOW_SUBSTEPS,))
        readout = de.simulate_window(
            state.focus, pd_params, concentration, pd_params.focus_drive * (1.0 + tone), noise
        )
        sympathetic_rate = params.resting_heart_rate_bpm * (
            1.0 + params.heart_rate_tone_gain * tone
        )
        return state.replace(
            focus=readout.focus,
            ectopic_rate_per_min=jnp.minimum(
                de.ectopic_rate_per_min(readout.ectopic_beats, pd_params), MAX_ECTOPIC_RATE
            ),
            qtc_ms=de.qtc_ms(readout.action_potential_units, pd_params),
            heart_rate_bpm=de.heart_rate_bpm(concentration, sympathetic_rate, pd_params),
        )
