"""AntiarrhythmicDosing-v1: titrate an oral sotalol-like drug against ectopy and QTc toxicity.

One step is one hour of an in-hospital initiation (the sotalol label asks for
at least three days of ECG monitoring, hence 72 steps): hourly steps resolve
absorption (t_max 2-4 h) while a 12 h half-life reaches steady state within
the episode. Each hour the agent gives an oral dose; a one-compartment PK
model (``pharmacokinetics``, four Euler substeps of 0.25 h) sets the plasma
concentration, which acts on two FitzHugh-Nagumo cells (``drug_effect``): an
ectopic focus whose drive sits above its Hopf threshold fires spontaneously
until the drug raises its threshold; a ventricular myocyte whose action
potential, lengthened by IKr block, gives the QTc. The focus drive follows the
patient's sympathetic tone (circadian, morning peak, plus an Ornstein-Uhlenbeck
fluctuation on medium and hard), which also sets the sinus rate, so the
concentration needed changes over the day and heart rate hints at it.

Observation (7,), float32:
    0 normalised time t / max_steps_in_episode (0..1),
    1 ectopic beats per minute in the last monitoring window (0..``MAX_ECTOPIC_RATE``),
    2 QTc (ms, 0..``drug_effect.max_qtc_ms``),
    3 heart rate (bpm, 0..resting x (1 + tone gain x ``TONE_LIMIT``)),
    4 last dose (mg, 0..``MAX_DOSE_MG``),
    5 plasma concentration (mg/L, 0..``MAX_OBSERVED_CONCENTRATION``; reads 0 where
      ``concentration_measured`` is 0: drug levels are not a bedside measurement),
    6 cumulative dose (g, 0..``MAX_DOSE_MG`` x max_steps / 1000).
    QTc, heart rate and concentration carry measurement noise scaled by
    ``observation_noise_std`` (then clipped to the bounds).
Action (1,): oral dose this hour (mg), clipped to 0..``MAX_DOSE_MG``.
Reward per hour: +1 if the window held no ectopic beat; -1/60 per ectopic beat/min;
    -0.05 per ms of QTc above ``qtc_warning_ms``; -0.001 per mg; -50 on termination.
Episode: ``max_steps_in_episode`` hours (72); terminates when QTc exceeds
    ``qtc_stop_ms`` (500 ms, the clinical stop rule for torsades risk).
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
    sanitize_action,
    stack_last,
)
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models import pharmacokinetics as pk
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability, lognormal_multiplier


@struct.dataclass
class PatientState:
    """This episode's patient: the parameters drawn at reset (units as in ``EnvParams``)."""

    elimination_rate_per_h: jax.Array
    volume_of_distribution_l_per_kg: jax.Array
    antiarrhythmic_ec50_mg_per_l: jax.Array
    ikr_ic50_mg_per_l: jax.Array
    focus_drive: jax.Array


@struct.dataclass
class EnvState(environment.EnvState):
    focus: fhn.FitzHughNagumoState  # ectopic focus membrane, carried across hours
    drug: pk.PharmacokineticState  # gut amount (mg), plasma concentration (mg/L), total dose
    patient: PatientState
    tone_fluctuation: jax.Array  # OU part of the sympathetic tone (relative drive)
    ectopic_rate_per_min: jax.Array  # last window's ectopic beats per minute
    qtc_ms: jax.Array  # last window's QTc (ms)
    heart_rate_bpm: jax.Array  # sinus rate this hour (bpm)
    last_dose_mg: jax.Array
    time: jax.Array  # hours elapsed (int32)


@struct.dataclass
class EnvParams(environment.EnvParams):
    pd: de.DrugEffectParams = dataclasses.field(default_factory=de.DrugEffectParams)
    # Sotalol-like oral PK (Hanyok 1993): F ~0.95, V_d 1.2-2.4 L/kg, t1/2 ~12 h.
    elimination_rate_per_h: jax.Array = 0.058  # ln 2 / 12 h
    absorption_rate_per_h: jax.Array = 0.8
    volume_of_distribution_l_per_kg: jax.Array = 1.6
    bioavailability: jax.Array = 0.95
    body_weight_kg: jax.Array = 70.0
    # Sympathetic tone: relative change of the focus drive; also drives the sinus rate.
    resting_heart_rate_bpm: jax.Array = 72.0  # at neutral tone, drug-free
    heart_rate_tone_gain: jax.Array = 2.0  # relative HR change per unit relative tone
    circadian_amplitude: jax.Array = 0.06  # relative drive swing over the day
    circadian_peak_hour: jax.Array = 10.0  # clock hour of peak tone
    start_clock_hour: jax.Array = 8.0  # clock hour at reset (morning admission)
    tone_noise_std: jax.Array = 0.03  # stationary std of the OU fluctuation (relative)
    tone_correlation_h: jax.Array = 4.0  # OU time constant (h)
    membrane_noise_std: jax.Array = 0.02  # focus voltage noise per RK4 substep
    # Tiers and safety rules.
    observation_noise_std: jax.Array = 0.5  # fraction of clinical measurement error
    concentration_measured: jax.Array = 1.0  # 1: drug level observed, 0: reads 0
    patient_variability: jax.Array = 0.5  # scale on PATIENT_VARIABILITY's CVs
    qtc_warning_ms: jax.Array = 470.0  # QTc above this is penalised per ms
    qtc_stop_ms: jax.Array = 500.0  # QTc above this ends the episode
    max_steps_in_episode: jax.Array = 72


#: Per-episode patient variation (drawn at reset, scaled by ``patient_variability``).
PATIENT_VARIABILITY: dict[str, Variability] = {
    "elimination_rate_per_h": Variability(
        0.3, "sotalol clearance follows renal function; Hanyok 1993 Am J Cardiol 72:19A"
    ),
    "volume_of_distribution_l_per_kg": Variability(
        0.2, "V_d 1.2-2.4 L/kg; Hanyok 1993 Am J Cardiol 72:19A"
    ),
    "antiarrhythmic_ec50_mg_per_l": Variability(
        0.4, "variable dose-response of ectopy suppression; Anderson & Prystowsky 1999 AHJ"
    ),
    "ikr_ic50_mg_per_l": Variability(
        0.3, "variable repolarisation reserve; Roden 1998 Pacing Clin Electrophysiol"
    ),
    "focus_drive": Variability(0.1, "design: keeps most patients' focus near threshold"),
}

#: Hours per step.
STEP_HOURS = 1.0
#: PK Euler substeps per step (0.25 h each, k_a dt <= 0.5 over the accepted range).
PK_SUBSTEPS = 4
#: Largest oral dose per hour (mg): the largest sotalol tablet.
MAX_DOSE_MG = 160.0
#: Sympathetic tone (relative drive change) is clipped to +-this.
TONE_LIMIT = 0.3
#: Cap on the reported ectopic rate (beats/min) and on the concentration observation (mg/L).
MAX_ECTOPIC_RATE = 300.0
MAX_OBSERVED_CONCENTRATION = 50.0
#: Measurement error at observation_noise_std = 1: manual QTc, HR, and drug assay (relative).
QTC_MEASUREMENT_SD_MS = 10.0
HEART_RATE_MEASUREMENT_SD_BPM = 3.0
CONCENTRATION_ASSAY_CV = 0.1
#: Reward constants.
SINUS_RHYTHM_REWARD = 1.0
ECTOPY_PENALTY_PER_BPM = 1.0 / 60.0
QTC_PENALTY_PER_MS = 0.05
DOSE_COST_PER_MG = 0.001
TORSADES_PENALTY = 50.0


class AntiarrhythmicDosingV1(CardioSimEnvironment[EnvState, EnvParams]):
    """Sotalol-like titration: suppress an ectopic focus, keep QTc under the stop rule."""

    env_id = "AntiarrhythmicDosing-v1"
    action_shape = (1,)
    patient_variation = PATIENT_VARIABILITY
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
        "elimination_rate_per_h": ParameterRange(
            0.02, 0.15, "1/h", "sotalol t1/2 5-35 h incl. renal impairment; Hanyok 1993"
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
        dose = jnp.clip(sanitize_action(action)[0], 0.0, MAX_DOSE_MG)
        key_tone, key_membrane, key_obs = prng.split(key, 3)

        drug = state.drug
        patient_pk = self.patient_pk(state, params)
        for i in range(PK_SUBSTEPS):  # the dose enters the gut at the start of the hour
            given = params.bioavailability * dose if i == 0 else jnp.zeros_like(dose)
            drug = pk.step(drug, patient_pk, given, STEP_HOURS / PK_SUBSTEPS)
        # pk counts the absorbed fraction; the record keeps the dose given.
        drug = drug.replace(total_dose=state.drug.total_dose + dose)

        # Exact OU update over one hour.
        decay = jnp.exp(-STEP_HOURS / params.tone_correlation_h)
        tone_fluctuation = state.tone_fluctuation * decay + params.tone_noise_std * jnp.sqrt(
            1.0 - decay**2
        ) * prng.normal(key_tone)
        time = state.time + 1
        tone = self._tone(time, tone_fluctuation, params)

        state = state.replace(
            drug=drug, tone_fluctuation=tone_fluctuation, last_dose_mg=dose, time=time
        )
        state = self._monitor(state, tone, key_membrane, params)
        terminated = self.is_terminated(state, params)
        reward = self._reward(state, dose, terminated, params)
        info = {
            "concentration": drug.plasma_concentration,
            "ectopic_rate_per_min": state.ectopic_rate_per_min,
            "qtc_ms": state.qtc_ms,
            "sympathetic_tone": tone,
        }
        return self.get_obs(state, params, key_obs), state, reward, terminated, info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_patient, key_tone, key_membrane, key_obs = prng.split(key, 4)
        patient_keys = prng.split(key_patient, len(PATIENT_VARIABILITY))
        drawn = {}
        ranges = {**self.parameter_ranges, **de.PARAMETER_RANGES}
        for patient_key, (name, variability) in zip(
            patient_keys, PATIENT_VARIABILITY.items(), strict=True
        ):
            typical = getattr(params.pd if name in de.PARAMETER_RANGES else params, name)
            value = typical * lognormal_multiplier(
                patient_key, params.patient_variability * variability.cv
            )
            drawn[name] = jnp.clip(value, ranges[name].low, ranges[name].high)
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
            last_dose_mg=zero,
            time=jnp.zeros((), jnp.int32),
        )
        # Admission ECG: one drug-free monitoring window.
        tone = self._tone(state.time, tone_fluctuation, params)
        state = self._monitor(state, tone, key_membrane, params)
        return self.get_obs(state, params, key_obs), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        concentration = state.drug.plasma_concentration * params.concentration_measured
        qtc, heart_rate = state.qtc_ms, state.heart_rate_bpm
        if key is not None:
            noise = params.observation_noise_std * prng.normal(key, (3,))
            qtc = qtc + QTC_MEASUREMENT_SD_MS * noise[0]
            heart_rate = heart_rate + HEART_RATE_MEASUREMENT_SD_BPM * noise[1]
            concentration = concentration * (1.0 + CONCENTRATION_ASSAY_CV * noise[2])
        obs = stack_last(
            [
                state.time / params.max_steps_in_episode,
                state.ectopic_rate_per_min,
                qtc,
                heart_rate,
                state.last_dose_mg,
                concentration,
                state.drug.total_dose / 1000.0,
            ]
        )
        low, high = self._obs_bounds(params)
        return jnp.clip(obs, low, high)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.qtc_ms > params.qtc_stop_ms

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Oral dose this hour (mg)."""
        return spaces.Box(
            low=jnp.zeros((1,), jnp.float32),
            high=jnp.full((1,), MAX_DOSE_MG, jnp.float32),
            shape=(1,),
            dtype=jnp.float32,
        )

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies (observations are clipped to them)."""
        low, high = self._obs_bounds(params)
        return spaces.Box(low=low, high=high, shape=(7,), dtype=jnp.float32)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _obs_bounds(params: EnvParams) -> tuple[jax.Array, jax.Array]:
        max_heart_rate = params.resting_heart_rate_bpm * (
            1.0 + params.heart_rate_tone_gain * TONE_LIMIT
        )
        low = stack_last([0.0] * 7)
        high = stack_last(
            [
                1.0,
                MAX_ECTOPIC_RATE,
                de.max_qtc_ms(params.pd),
                max_heart_rate,
                MAX_DOSE_MG,
                MAX_OBSERVED_CONCENTRATION,
                MAX_DOSE_MG * params.max_steps_in_episode / 1000.0,
            ]
        )
        return low, high

    @staticmethod
    def patient_pk(state: EnvState, params: EnvParams) -> pk.PharmacokineticParams:
        """PK parameters of this episode's patient (the window fields are unused here)."""
        return pk.PharmacokineticParams(
            volume_of_distribution=state.patient.volume_of_distribution_l_per_kg,
            elimination_rate=state.patient.elimination_rate_per_h,
            absorption_rate=params.absorption_rate_per_h,
            body_weight=params.body_weight_kg,
        )

    @staticmethod
    def patient_pd(state: EnvState, params: EnvParams) -> de.DrugEffectParams:
        """Drug-effect parameters of this episode's patient."""
        return params.pd.replace(
            antiarrhythmic_ec50_mg_per_l=state.patient.antiarrhythmic_ec50_mg_per_l,
            ikr_ic50_mg_per_l=state.patient.ikr_ic50_mg_per_l,
            focus_drive=state.patient.focus_drive,
        )

    @staticmethod
    def _tone(time: jax.Array, fluctuation: jax.Array, params: EnvParams) -> jax.Array:
        """Sympathetic tone (relative focus-drive change) at ``time`` hours into the episode."""
        clock = params.start_clock_hour + STEP_HOURS * time
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

    @staticmethod
    def _reward(
        state: EnvState, dose: jax.Array, terminated: jax.Array, params: EnvParams
    ) -> jax.Array:
        sinus = jnp.where(state.ectopic_rate_per_min <= 0.0, SINUS_RHYTHM_REWARD, 0.0)
        qt_excess = jnp.maximum(state.qtc_ms - params.qtc_warning_ms, 0.0)
        return (
            sinus
            - ECTOPY_PENALTY_PER_BPM * state.ectopic_rate_per_min
            - QTC_PENALTY_PER_MS * qt_excess
            - DOSE_COST_PER_MG * dose
            - jnp.where(terminated, TORSADES_PENALTY, 0.0)
        )
