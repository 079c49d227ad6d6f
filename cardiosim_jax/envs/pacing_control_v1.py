"""PacingControl-v1: program a demand pacemaker for a patient with sick sinus syndrome.

The patient's sinus node alternates (Markov switching) between a bradycardic
rate and an adequate one, with a slow autonomic drift, respiratory sinus
arrhythmia and beat-to-beat jitter; P waves may fail to conduct (Mobitz II-like
AV block). A single-chamber demand pacemaker (NBG VVI; VDD atrial tracking on
the hard tier) paces the ventricle when no ventricular event is sensed within
the lower-rate interval; a pulse captures only above the patient's capture
threshold (which rises over the episode on the hard tier) and outside the
ventricular refractory period. Beat timing is event-driven
(:mod:`cardiosim_jax.models.pacemaker`): one step is 2 s, at most 16 events.

Observation (10,), float32:
    0 target heart rate (bpm, the tier's target, 50..100)
    1 heart rate (bpm, 0..300): 60000 / mean of the last 4 RR intervals
      (RR between consecutive ventricular depolarisations), or 60000 / the
      open interval during a pause; relative observation noise on medium/hard
    2 heart-rate error: observation 1 - observation 0 (bpm)
    3 heart-rate variability (ms, 0..5000): SD of the last 8 RR intervals;
      relative observation noise on medium/hard
    4 pacing pulses delivered in the last step (count, 0..16)
    5 pulses that captured in the last step (count, 0..16): fewer than
      observation 4 means loss of capture
    6 intrinsic (sensed, conducted) beats in the last step (count, 0..16)
    7 time since the last ventricular depolarisation (ms, 0..10000)
    8 programmed lower-rate limit (bpm, 30..120; 60 at reset)
    9 programmed pulse amplitude (V, 0..7.5; 3.5 at reset)
Action (2,): [lower-rate limit (bpm), pulse amplitude (V)], NaN -> 0, then
    clipped to [30, 120] and [0, 7.5]. A pulse width of 0.4 ms is implied.
Reward per step (2 s):
    -0.05 |HR - target| - 0.01 |HRV - target HRV| + 1 if |HR - target| < tolerance
    - 0.01 x sum over delivered pulses of amplitude^2 (V^2; battery drain)
    from the true (noise-free) heart rate and HRV.
Episode: 150 / 300 / 450 steps (5 / 10 / 15 min) on easy / medium / hard,
    never terminates early.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from cardiosim_jax.envs.base import (
    EPISODE_LENGTH_RANGE,
    CardioSimEnvironment,
    sanitize_action,
    stack_last,
)
from cardiosim_jax.models import pacemaker, prng
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability, lognormal_multiplier


@struct.dataclass
class EnvState(environment.EnvState):
    pacemaker: pacemaker.PacemakerState
    patient: pacemaker.PacedHeartParams  # this episode's patient, drawn at reset
    bradycardic_rate_bpm: jax.Array  # this patient's sinus rate while bradycardic
    adequate_rate_bpm: jax.Array  # this patient's sinus rate while chronotropically adequate
    sinus_adequate: jax.Array  # bool: sinus node currently in its adequate phase
    sinus_level_bpm: jax.Array  # autonomic sinus rate, relaxing towards the phase's rate
    sinus_drift_bpm: jax.Array  # slow Ornstein-Uhlenbeck drift added to the level
    counts: pacemaker.PacingCounts  # paces, captures, sensed beats, energy of the last step
    lower_rate_bpm: jax.Array  # programmed lower-rate limit
    amplitude_v: jax.Array  # programmed pulse amplitude
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    heart: pacemaker.PacedHeartParams = dataclasses.field(
        default_factory=pacemaker.PacedHeartParams
    )
    sinus_rate_bpm: jax.Array = 45.0  # bradycardic sinus rate (sick sinus)
    adequate_sinus_rate_bpm: jax.Array = 72.0  # sinus rate between bradycardic spells
    sinus_switch_prob: jax.Array = 0.01  # P(sinus phase switches) per step
    rate_drift_bpm: jax.Array = 3.0  # stationary SD of the slow sinus-rate drift
    target_heart_rate_bpm: jax.Array = 70.0
    target_hrv_ms: jax.Array = 20.0  # SD of 8 RR intervals the reward aims for
    hr_tolerance_bpm: jax.Array = 5.0  # in-band bonus when |HR - target| is below this
    observation_noise_std: jax.Array = 0.0  # relative SD of HR and HRV observation noise
    patient_variability: jax.Array = 0.5  # scale of the PATIENT_VARIABILITY CVs
    max_steps_in_episode: jax.Array = 300


#: Length of one environment step (ms).
STEP_MS = 2000.0
#: Events (P waves, conducted activations, paces) processed per step at most.
MAX_EVENTS = 16
#: Action bounds: lower-rate limit (bpm) and pulse amplitude (V).
LOWER_RATE_LIMITS = (30.0, 120.0)
AMPLITUDE_LIMITS = (0.0, 7.5)
#: Device programming at reset: common nominal (factory) settings.
NOMINAL_LOWER_RATE_BPM = 60.0
NOMINAL_AMPLITUDE_V = 3.5
#: Autonomic time constants of the sinus rate (s): phase changes, slow drift.
SINUS_RELAX_TIME_S = 10.0
RATE_DRIFT_TIME_S = 60.0
#: Sinus-rate clamp (bpm), matching the model's P-P interval bounds.
SINUS_RATE_LIMITS = (60000.0 / pacemaker.MAX_PP_MS, 60000.0 / pacemaker.MIN_PP_MS)
#: Reward weights: per bpm of HR error, per ms of HRV error, in-band bonus, per V^2 pulse.
HR_ERROR_WEIGHT = 0.05
HRV_ERROR_WEIGHT = 0.01
IN_BAND_BONUS = 1.0
ENERGY_WEIGHT = 0.01
#: Observation bounds. RR intervals are at least one refractory period (200 ms) and
#: at most MAX_SINCE_BEAT_MS, so HR <= 300 bpm and the SD of 8 of them < 5000 ms.
MAX_HEART_RATE_BPM = 300.0
MAX_HRV_MS = 0.5 * pacemaker.MAX_SINCE_BEAT_MS

#: Inter-patient variability drawn at reset (CV x ``patient_variability``), by override name.
PATIENT_VARIABILITY: dict[str, Variability] = {
    "capture_threshold_v": Variability(
        0.3, "chronic thresholds spread 0.5-3 V (Ellenbogen et al. 2011)"
    ),
    "threshold_rise_fraction": Variability(
        0.3, "maturation peak 1.5-3x acute (Ellenbogen et al. 2011)"
    ),
    "pr_interval_ms": Variability(0.15, "PR 120-200 ms (Kusumoto et al. 2019)"),
    "rsa_amplitude_ms": Variability(0.4, "short-term HRV spread (Nunan et al. 2010)"),
    "av_block_prob": Variability(0.3, "assumed"),
    "sinus_rate_bpm": Variability(0.2, "SND rates 30-50 bpm (Kusumoto et al. 2019)"),
    "adequate_sinus_rate_bpm": Variability(0.1, "resting HR spread (Nunan et al. 2010)"),
}


class PacingControlV1(CardioSimEnvironment[EnvState, EnvParams]):
    """Demand-pacemaker programming for sick sinus syndrome (v1 of PacingControl)."""

    env_id = "PacingControl-v1"
    patient_variation = PATIENT_VARIABILITY
    action_shape = (2,)
    tiers = {
        "easy": {
            "sinus_rate_bpm": 50.0,
            "sinus_switch_prob": 0.0,
            "rate_drift_bpm": 0.0,
            "rr_jitter_ms": 0.0,
            "av_block_prob": 0.0,
            "threshold_rise_fraction": 0.0,
            "atrial_tracking": 0.0,
            "hr_tolerance_bpm": 10.0,
            "observation_noise_std": 0.0,
            "patient_variability": 0.0,
            "max_steps_in_episode": 150,
        },
        "medium": {
            "sinus_rate_bpm": 45.0,
            "sinus_switch_prob": 0.01,
            "rate_drift_bpm": 3.0,
            "rr_jitter_ms": 10.0,
            "av_block_prob": 0.1,
            "threshold_rise_fraction": 0.5,
            "atrial_tracking": 0.0,
            "hr_tolerance_bpm": 5.0,
            "observation_noise_std": 0.02,
            "patient_variability": 0.5,
            "max_steps_in_episode": 300,
        },
        "hard": {
            "sinus_rate_bpm": 40.0,
            "sinus_switch_prob": 0.02,
            "rate_drift_bpm": 5.0,
            "rr_jitter_ms": 15.0,
            "av_block_prob": 0.3,
            "threshold_rise_fraction": 1.0,
            "atrial_tracking": 1.0,
            "hr_tolerance_bpm": 3.0,
            "observation_noise_std": 0.05,
            "patient_variability": 1.0,
            "max_steps_in_episode": 450,
        },
    }
    parameter_ranges = {
        "sinus_rate_bpm": ParameterRange(
            25.0, 60.0, "bpm", "sinus node dysfunction < 50 bpm (Kusumoto et al. 2019)"
        ),
        "adequate_sinus_rate_bpm": ParameterRange(
            50.0, 100.0, "bpm", "resting sinus rates (Nunan et al. 2010)"
        ),
        "sinus_switch_prob": ParameterRange(
            0.0, 0.2, "probability per 2 s step", "design (paroxysmal sinus node dysfunction)"
        ),
        "rate_drift_bpm": ParameterRange(0.0, 15.0, "bpm", "design (slow autonomic drift)"),
        "target_heart_rate_bpm": ParameterRange(
            50.0, 100.0, "bpm", "lower rates 50-70, rate-adaptive ~100 (Ellenbogen et al. 2011)"
        ),
        "target_hrv_ms": ParameterRange(
            5.0, 75.0, "ms", "short-term HRV norms (Nunan et al. 2010)"
        ),
        "hr_tolerance_bpm": ParameterRange(1.0, 20.0, "bpm", "design (paper: delta)"),
        "observation_noise_std": ParameterRange(0.0, 0.2, "relative SD", "design"),
        "patient_variability": ParameterRange(0.0, 1.0, "scale of CVs", "design"),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"heart": pacemaker.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def consistent_patients(self, varied: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sampled bradycardic rates never exceed the patient's adequate rate (as at reset)."""
        if "sinus_rate_bpm" in varied and "adequate_sinus_rate_bpm" in varied:
            adequate = np.maximum(varied["adequate_sinus_rate_bpm"], varied["sinus_rate_bpm"])
            varied = {**varied, "adequate_sinus_rate_bpm": adequate}
        return varied

    def check_consistency(self, params: EnvParams) -> None:
        if jnp.any(params.sinus_rate_bpm > params.adequate_sinus_rate_bpm):
            raise ValueError(
                f"sinus_rate_bpm ({params.sinus_rate_bpm}) must not exceed "
                f"adequate_sinus_rate_bpm ({params.adequate_sinus_rate_bpm})"
            )

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        action = sanitize_action(action)
        lower_rate = jnp.clip(action[0], *LOWER_RATE_LIMITS)
        amplitude = jnp.clip(action[1], *AMPLITUDE_LIMITS)
        key_switch, key_drift, key_beats, key_obs = prng.split(key, 4)

        switch = prng.uniform(key_switch) < params.sinus_switch_prob
        adequate = state.sinus_adequate ^ switch
        phase_rate = jnp.where(adequate, state.adequate_rate_bpm, state.bradycardic_rate_bpm)
        level, drift = pacemaker.sinus_rate_step(
            state.sinus_level_bpm,
            state.sinus_drift_bpm,
            phase_rate,
            params.rate_drift_bpm,
            prng.normal(key_drift),
            STEP_MS / 1000.0,
            SINUS_RELAX_TIME_S,
            RATE_DRIFT_TIME_S,
        )
        sinus_rate = jnp.clip(level + drift, *SINUS_RATE_LIMITS)

        clock_ms = state.time.astype(jnp.float32) * STEP_MS
        threshold = pacemaker.capture_threshold_v(state.patient, clock_ms / 1000.0)
        heart, counts = pacemaker.advance(
            state.pacemaker,
            state.patient,
            sinus_rate,
            lower_rate,
            amplitude,
            threshold,
            clock_ms,
            key_beats,
            STEP_MS,
            MAX_EVENTS,
        )

        heart_rate = pacemaker.heart_rate_bpm(heart)
        hrv = pacemaker.heart_rate_variability_ms(heart)
        hr_error = jnp.abs(heart_rate - params.target_heart_rate_bpm)
        in_band = hr_error < params.hr_tolerance_bpm
        reward = (
            -HR_ERROR_WEIGHT * hr_error
            - HRV_ERROR_WEIGHT * jnp.abs(hrv - params.target_hrv_ms)
            + jnp.where(in_band, IN_BAND_BONUS, 0.0)
            - ENERGY_WEIGHT * counts.energy_v2
        )

        state = state.replace(
            pacemaker=heart,
            sinus_adequate=adequate,
            sinus_level_bpm=level,
            sinus_drift_bpm=drift,
            counts=counts,
            lower_rate_bpm=lower_rate,
            amplitude_v=amplitude,
            time=state.time + 1,
        )
        info = {
            "heart_rate": heart_rate,
            "hr_error": hr_error,
            "hrv": hrv,
            "sinus_rate_bpm": sinus_rate,
            "capture_threshold_v": threshold,
            "paces": counts.paces,
            "captures": counts.captures,
            "energy_v2": counts.energy_v2,
        }
        return self.get_obs(state, params, key_obs), state, reward, jnp.array(False), info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_patient, key_obs = prng.split(key)
        drawn = self._draw_patient(key_patient, params)
        patient = params.heart.replace(
            **{name: drawn[name] for name in PATIENT_VARIABILITY if name in _HEART_FIELDS}
        )
        brady_rate = drawn["sinus_rate_bpm"]
        adequate_rate = jnp.maximum(drawn["adequate_sinus_rate_bpm"], brady_rate)
        zero = jnp.zeros((), jnp.float32)
        state = EnvState(
            pacemaker=pacemaker.initial_state(brady_rate),
            patient=patient,
            bradycardic_rate_bpm=brady_rate,
            adequate_rate_bpm=adequate_rate,
            sinus_adequate=jnp.array(False),  # every patient presents bradycardic
            sinus_level_bpm=brady_rate,
            sinus_drift_bpm=zero,
            counts=pacemaker.PacingCounts(paces=zero, captures=zero, sensed=zero, energy_v2=zero),
            lower_rate_bpm=jnp.asarray(NOMINAL_LOWER_RATE_BPM, jnp.float32),
            amplitude_v=jnp.asarray(NOMINAL_AMPLITUDE_V, jnp.float32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state, params, key_obs), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        heart_rate = pacemaker.heart_rate_bpm(state.pacemaker)
        hrv = pacemaker.heart_rate_variability_ms(state.pacemaker)
        if key is not None:
            noise = prng.normal(key, (2,))
            heart_rate = heart_rate * (1.0 + params.observation_noise_std * noise[0])
            hrv = hrv * (1.0 + params.observation_noise_std * noise[1])
        heart_rate = jnp.clip(heart_rate, 0.0, MAX_HEART_RATE_BPM)
        hrv = jnp.clip(hrv, 0.0, MAX_HRV_MS)
        counts = state.counts
        return stack_last(
            [
                params.target_heart_rate_bpm,
                heart_rate,
                heart_rate - params.target_heart_rate_bpm,
                hrv,
                counts.paces,
                counts.captures,
                counts.sensed,
                state.pacemaker.since_beat_ms,
                state.lower_rate_bpm,
                state.amplitude_v,
            ]
        )

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.array(False)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """[lower-rate limit (bpm), pulse amplitude (V)]."""
        return spaces.Box(
            low=jnp.array([LOWER_RATE_LIMITS[0], AMPLITUDE_LIMITS[0]], jnp.float32),
            high=jnp.array([LOWER_RATE_LIMITS[1], AMPLITUDE_LIMITS[1]], jnp.float32),
            shape=(2,),
            dtype=jnp.float32,
        )

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies."""
        # The target entry is bounded by the target's accepted range, not pinned to its
        # value: a Box with equal bounds is degenerate (Gymnasium's checker warns).
        target = params.target_heart_rate_bpm
        target_range = self.parameter_ranges["target_heart_rate_bpm"]
        low = stack_last(
            [target_range.low, 0.0, -target, 0.0, 0.0, 0.0, 0.0, 0.0, LOWER_RATE_LIMITS[0], 0.0]
        )
        high = stack_last(
            [
                target_range.high,
                MAX_HEART_RATE_BPM,
                MAX_HEART_RATE_BPM - target,
                MAX_HRV_MS,
                MAX_EVENTS,
                MAX_EVENTS,
                MAX_EVENTS,
                pacemaker.MAX_SINCE_BEAT_MS,
                LOWER_RATE_LIMITS[1],
                AMPLITUDE_LIMITS[1],
            ]
        )
        return spaces.Box(low=low, high=high, shape=(10,), dtype=jnp.float32)

    @staticmethod
    def _draw_patient(key: jax.Array, params: EnvParams) -> dict[str, jax.Array]:
        """This episode's values of the ``PATIENT_VARIABILITY`` parameters, clipped to range."""
        keys = prng.split(key, len(PATIENT_VARIABILITY))
        drawn = {}
        for i, (name, variability) in enumerate(PATIENT_VARIABILITY.items()):
            if name in _HEART_FIELDS:
                typical, bounds = getattr(params.heart, name), pacemaker.PARAMETER_RANGES[name]
            else:
                typical, bounds = getattr(params, name), PacingControlV1.parameter_ranges[name]
            factor = lognormal_multiplier(keys[i], variability.cv * params.patient_variability)
            drawn[name] = jnp.clip(typical * factor, bounds.low, bounds.high)
        return drawn


_HEART_FIELDS = frozenset(field.name for field in dataclasses.fields(pacemaker.PacedHeartParams))
