"""PacingControl-v1: program a demand pacemaker for a patient with sick sinus syndrome.

The patient's sinus node alternates (Markov switching) between a bradycardic
rate and an adequate one, with a slow autonomic drift, respiratory sinus
arrhythmia and beat-to-beat jitter; P waves may fail to conduct (Mobitz II-like
AV block). A single-chamber demand pacemaker (NBG VVI; VDD atrial tracking on
the hard tier) paces the ventricle when no ventricular event is sensed within
the lower-rate interval. Capture is probabilistic near threshold (a
strength-duration threshold with slow and beat-to-beat fluctuation) and needs
an excitable ventricle; the threshold rises over the episode on medium/hard.
Retrograde (VA) conduction, which lets pacing suppress the sinus node, is
present in only some patients. Beat timing is event-driven
(:mod:`cardiosim_jax.models.pacemaker`): one step is 2 s, at most 16 events.

Observation (11,), float32:
    0 heart rate (bpm, 0..300): 60000 / mean of the last 4 RR intervals, or
      60000 / the open interval during a pause; relative noise on medium/hard
    1 pacing pulses delivered in the last step (count, 0..16)
    2 pulses that captured in the last step (count, 0..16)
    3 intrinsic (sensed, conducted) beats in the last step (count, 0..16)
    4 time since the last ventricular depolarisation (ms, 0..10000)
    5 longest time without a ventricular depolarisation in the last step (ms, 0..10000)
    6 cumulative ventricular pacing, % of ventricular beats paced (device counter, 0..100)
    7 capture threshold measured at the follow-up (V at the programmed pulse width,
      rounded up to 0.25 V; constant over the episode)
    8 programmed lower-rate limit (bpm, 30..120; 60 at reset)
    9 programmed pulse amplitude (V, 0..7.5; 3.5 at reset)
    10 losses of capture so far (device counter, 0..16 x episode length)
Action (2,): requested [lower-rate limit (bpm), pulse amplitude (V)], NaN -> 0, then
    clipped to [30, 120] and [0, 7.5]; 0 V is output off. Pulse width 0.4 ms. The
    device is programmed on its grid: the request is rounded to 1 bpm and 0.1 V
    (:func:`programmed_setting`), and only a change of the rounded value is one.
Reward per step (2 s), all costs (see :func:`step_reward`):
    - 1 /s x 2 s x max(0, 1 - HR / symptomatic rate)       symptomatic bradycardia
    - 1 /s x 2 s x max(0, HR / 100 - 1)                    tachycardia at rest
    - 2 per second spent > 2 s after the last ventricular beat   pauses
    - 1 per loss of capture
    - 0.05 per paced ventricular beat                      pacing burden
    - 0.005 per microjoule of pulse energy                 battery
    - 2 x (|dLRL| / 90 bpm + |dV| / 7.5 V)                  reprogramming
    from the true (noise-free) heart rate.
Episode: 150 / 300 / 450 steps (5 / 10 / 15 min) on easy / medium / hard,
    never terminates early.
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
from cardiosim_jax.models import pacemaker, prng
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability


@struct.dataclass
class EnvState(environment.EnvState):
    pacemaker: pacemaker.PacemakerState
    patient: pacemaker.PacedHeartParams  # this episode's patient, drawn at reset
    bradycardic_rate_bpm: jax.Array  # this patient's sinus rate while bradycardic
    adequate_rate_bpm: jax.Array  # this patient's sinus rate while chronotropically adequate
    symptomatic_rate_bpm: jax.Array  # below this ventricular rate this patient has symptoms
    measured_threshold_v: jax.Array  # threshold found at the follow-up test (observed)
    threshold_log_drift: jax.Array  # slow fluctuation of log threshold (hidden)
    sinus_adequate: jax.Array  # bool: sinus node currently in its adequate phase
    sinus_level_bpm: jax.Array  # autonomic sinus rate, relaxing towards the phase's rate
    sinus_drift_bpm: jax.Array  # slow Ornstein-Uhlenbeck drift added to the level
    counts: pacemaker.PacingCounts  # paces, captures, sensed beats, ... of the last step
    total_captures: jax.Array  # paced ventricular beats so far
    total_sensed: jax.Array  # intrinsic ventricular beats so far
    total_lost: jax.Array  # losses of capture so far
    lower_rate_bpm: jax.Array  # programmed lower-rate limit
    amplitude_v: jax.Array  # programmed pulse amplitude
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    heart: pacemaker.PacedHeartParams = dataclasses.field(
        default_factory=lambda: pacemaker.PacedHeartParams(retrograde_conduction_prob=0.8)
    )
    sinus_rate_bpm: jax.Array = 40.0  # bradycardic sinus rate (sick sinus)
    adequate_sinus_rate_bpm: jax.Array = 72.0  # sinus rate between bradycardic spells
    sinus_switch_prob: jax.Array = 0.01  # P(sinus phase switches) per step
    rate_drift_bpm: jax.Array = 3.0  # stationary SD of the slow sinus-rate drift
    symptomatic_rate_bpm: jax.Array = 50.0  # typical rate below which symptoms appear
    va_conduction_prevalence: jax.Array = 0.5  # P(a patient has retrograde VA conduction)
    threshold_drift_cv: jax.Array = 0.15  # stationary SD of the slow log-threshold fluctuation
    observation_noise_std: jax.Array = 0.0  # relative SD of the heart-rate observation noise
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
#: Time constant of the slow threshold fluctuation (s; hours compressed, like the rise).
THRESHOLD_DRIFT_TIME_S = 120.0
#: Threshold tests step the output down in 0.25 V decrements; the last capturing one is read.
THRESHOLD_TEST_STEP_V = 0.25
#: Sinus-rate clamp (bpm), matching the model's P-P interval bounds.
SINUS_RATE_LIMITS = (60000.0 / pacemaker.MAX_PP_MS, 60000.0 / pacemaker.MIN_PP_MS)
#: Resting ventricular rate above which the rhythm is a tachycardia (bpm).
TACHYCARDIA_RATE_BPM = 100.0
#: Reward weights (costs). Rate terms are per second of fractional rate deficit/excess;
#: pause per second beyond 2 s; per lost capture; per paced beat; per microjoule.
BRADYCARDIA_WEIGHT = 1.0
TACHYCARDIA_WEIGHT = 1.0
PAUSE_WEIGHT = 2.0
LOST_CAPTURE_WEIGHT = 1.0
PACING_BURDEN_WEIGHT = 0.05
BATTERY_WEIGHT = 0.005
#: Per unit of reprogramming_size: a 10 bpm change costs 0.22, a 1 V change 0.27.
REPROGRAMMING_WEIGHT = 2.0
#: Programmable steps of the device: lower rate (bpm) and pulse amplitude (V).
LOWER_RATE_STEP_BPM = 1.0
AMPLITUDE_STEP_V = 0.1
#: Observation bounds. RR intervals are at least one refractory period (200 ms), so HR <= 300.
MAX_HEART_RATE_BPM = 300.0
MAX_MEASURED_THRESHOLD_V = 20.0

#: Inter-patient variability drawn at reset (CV x ``patient_variability``), by override name.
PATIENT_VARIABILITY: dict[str, Variability] = {
    "capture_threshold_v": Variability(
        0.3, "chronic thresholds spread 0.5-3 V (Ellenbogen et al. 2011)"
    ),
    "threshold_rise_fraction": Variability(
        0.3, "maturation peak 1.5-3x acute (Ellenbogen et al. 2011)"
    ),
    "chronaxie_ms": Variability(0.25, "assumed (lead-to-lead spread of chronaxie)"),
    "lead_impedance_ohm": Variability(
        0.2, "normal impedances 300-1500 ohm (Ellenbogen et al. 2011)"
    ),
    "pr_interval_ms": Variability(0.15, "PR 120-200 ms (Kusumoto et al. 2019)"),
    "rsa_amplitude_ms": Variability(0.4, "short-term HRV spread (Nunan et al. 2010)"),
    "av_block_prob": Variability(0.3, "assumed"),
    "sinus_rate_bpm": Variability(0.2, "SND rates 30-50 bpm (Kusumoto et al. 2019)"),
    "adequate_sinus_rate_bpm": Variability(0.1, "resting HR spread (Nunan et al. 2010)"),
    "symptomatic_rate_bpm": Variability(0.1, "assumed (symptoms at 40-60 bpm)"),
}


def programmed_setting(request: jax.Array, grid_step: float) -> jax.Array:
    """The setting a programming request gives: the request rounded to the device's grid.

    Programmers offer only grid values; rounding also means that a controller
    whose request moves by a fraction of a step between observations mostly
    keeps its program, rather than paying for a reprogramming at every step.
    """
    return jnp.round(request / grid_step) * grid_step


def reprogramming_size(
    old_lower_rate: jax.Array, old_amplitude: jax.Array, lower_rate: jax.Array, amplitude: jax.Array
) -> jax.Array:
    """Size of a programming change: the changes summed as fractions of the programmable
    ranges (a change of every setting across its whole range is 2)."""
    rate_range = LOWER_RATE_LIMITS[1] - LOWER_RATE_LIMITS[0]
    amplitude_range = AMPLITUDE_LIMITS[1] - AMPLITUDE_LIMITS[0]
    return (
        jnp.abs(lower_rate - old_lower_rate) / rate_range
        + jnp.abs(amplitude - old_amplitude) / amplitude_range
    )


def step_reward(
    counts: pacemaker.PacingCounts,
    heart_rate_bpm: jax.Array,
    symptomatic_rate_bpm: jax.Array,
    change: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Reward of one step and its cost terms (each >= 0; reward = -sum).

    ``change`` is :func:`reprogramming_size` of this step's programming change.
    """
    step_s = STEP_MS / 1000.0
    costs = {
        "bradycardia": BRADYCARDIA_WEIGHT
        * step_s
        * jnp.maximum(1.0 - heart_rate_bpm / symptomatic_rate_bpm, 0.0),
        "tachycardia": TACHYCARDIA_WEIGHT
        * step_s
        * jnp.maximum(heart_rate_bpm / TACHYCARDIA_RATE_BPM - 1.0, 0.0),
        "pause": PAUSE_WEIGHT * counts.pause_ms / 1000.0,
        "lost_capture": LOST_CAPTURE_WEIGHT * counts.lost,
        "pacing_burden": PACING_BURDEN_WEIGHT * counts.captures,
        "battery": BATTERY_WEIGHT * counts.energy_uj,
        "reprogramming": REPROGRAMMING_WEIGHT * change,
    }
    return -sum(costs.values()), costs


class PacingControlV1(CardioSimEnvironment[EnvState, EnvParams]):
    """Demand-pacemaker programming for sick sinus syndrome (v1 of PacingControl)."""

    env_id = "PacingControl-v1"
    patient_variation = PATIENT_VARIABILITY
    action_shape = (2,)
    #: Pacing off: the lowest rate at 0 V (no pulse is delivered).
    no_treatment_action = (LOWER_RATE_LIMITS[0], AMPLITUDE_LIMITS[0])
    #: Asynchronous-like pacing at the highest rate and output.
    max_treatment_action = (LOWER_RATE_LIMITS[1], AMPLITUDE_LIMITS[1])
    #: Probes a clinician calls harmful (see docs/v1/pacing_control.md).
    harmful_probes: tuple[str, ...] = ("max_treatment",)
    tiers = {
        "easy": {
            "sinus_rate_bpm": 42.0,
            "sinus_switch_prob": 0.0,
            "rate_drift_bpm": 0.0,
            "rr_jitter_ms": 0.0,
            "av_block_prob": 0.0,
            "threshold_rise_fraction": 0.0,
            "atrial_tracking": 0.0,
            "va_conduction_prevalence": 0.0,
            "observation_noise_std": 0.0,
            "patient_variability": 0.0,
            "max_steps_in_episode": 150,
        },
        "medium": {
            "sinus_rate_bpm": 40.0,
            "sinus_switch_prob": 0.01,
            "rate_drift_bpm": 3.0,
            "rr_jitter_ms": 10.0,
            "av_block_prob": 0.1,
            "threshold_rise_fraction": 0.5,
            "atrial_tracking": 0.0,
            "va_conduction_prevalence": 0.5,
            "observation_noise_std": 0.02,
            "patient_variability": 0.5,
            "max_steps_in_episode": 300,
        },
        "hard": {
            "sinus_rate_bpm": 36.0,
            "sinus_switch_prob": 0.02,
            "rate_drift_bpm": 5.0,
            "rr_jitter_ms": 15.0,
            "av_block_prob": 0.3,
            "threshold_rise_fraction": 1.0,
            "atrial_tracking": 1.0,
            "va_conduction_prevalence": 0.5,
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
        "symptomatic_rate_bpm": ParameterRange(
            40.0, 60.0, "bpm", "bradycardia < 50 bpm (Kusumoto et al. 2019); design"
        ),
        "va_conduction_prevalence": ParameterRange(
            0.0, 1.0, "fraction of patients", "design (VA conduction in part of SND patients)"
        ),
        "threshold_drift_cv": ParameterRange(
            0.0, 0.4, "SD of log threshold", "design (threshold varies with sleep, meals, drugs)"
        ),
        "observation_noise_std": ParameterRange(0.0, 0.2, "relative SD", "design"),
        "patient_variability": ParameterRange(0.0, 1.0, "scale of CVs", "design"),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"heart": pacemaker.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def consistent_patients(self, drawn: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """A drawn bradycardic rate never exceeds the patient's adequate rate."""
        adequate = jnp.maximum(drawn["adequate_sinus_rate_bpm"], drawn["sinus_rate_bpm"])
        return {**drawn, "adequate_sinus_rate_bpm": adequate}

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
        lower_rate = jnp.clip(
            programmed_setting(action[0], LOWER_RATE_STEP_BPM), *LOWER_RATE_LIMITS
        )
        amplitude = jnp.clip(programmed_setting(action[1], AMPLITUDE_STEP_V), *AMPLITUDE_LIMITS)
        key_switch, key_drift, key_beats, key_obs, key_threshold = prng.split(key, 5)

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
        threshold_drift = pacemaker.log_threshold_drift_step(
            state.threshold_log_drift,
            params.threshold_drift_cv,
            prng.normal(key_threshold),
            STEP_MS / 1000.0,
            THRESHOLD_DRIFT_TIME_S,
        )
        threshold = pacemaker.capture_threshold_v(state.patient, clock_ms / 1000.0) * jnp.exp(
            threshold_drift
        )
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
        change = reprogramming_size(state.lower_rate_bpm, state.amplitude_v, lower_rate, amplitude)
        reward, costs = step_reward(counts, heart_rate, state.symptomatic_rate_bpm, change)

        state = state.replace(
            pacemaker=heart,
            threshold_log_drift=threshold_drift,
            sinus_adequate=adequate,
            sinus_level_bpm=level,
            sinus_drift_bpm=drift,
            counts=counts,
            total_captures=state.total_captures + counts.captures,
            total_sensed=state.total_sensed + counts.sensed,
            total_lost=state.total_lost + counts.lost,
            lower_rate_bpm=lower_rate,
            amplitude_v=amplitude,
            time=state.time + 1,
        )
        info = {
            "heart_rate": heart_rate,
            "sinus_rate_bpm": sinus_rate,
            "capture_threshold_v": threshold,
            "paces": counts.paces,
            "captures": counts.captures,
            "sensed": counts.sensed,
            "lost_captures": counts.lost,
            "energy_uj": counts.energy_uj,
            "pause_ms": counts.pause_ms,
            "longest_interval_ms": counts.longest_interval_ms,
            **{f"cost_{name}": value for name, value in costs.items()},
        }
        return self.observe(key_obs, state, action, params), state, reward, jnp.array(False), info

    def clinical_summary(self, trajectory: Any, params: EnvParams) -> dict[str, jax.Array]:
        """What a recorded policy did, per episode, in a device clinic's terms.

        ``trajectory`` is a :class:`cardiosim_jax.rollout.Trajectory` (leading
        batch axis allowed). Returns the pacing burden (% of ventricular beats
        paced), the mean programmed lower rate (bpm), the capture margin (mean
        programmed amplitude over the true mean threshold), the share of pulses
        that failed to capture (%), the longest pause (s), the mean heart rate
        (bpm) and the number of steps that changed the programming after the first.
        """
        valid = trajectory.valid
        steps = jnp.maximum(jnp.sum(valid, axis=-1), 1)

        def total(name: str) -> jax.Array:
            return jnp.sum(jnp.where(valid, trajectory.info[name], 0.0), axis=-1)

        def mean(values: jax.Array) -> jax.Array:
            return jnp.sum(jnp.where(valid, values, 0.0), axis=-1) / steps

        state = trajectory.state
        beats = jnp.maximum(total("captures") + total("sensed"), 1.0)
        previous = jnp.concatenate(
            [
                jnp.stack([state.lower_rate_bpm[..., :1], state.amplitude_v[..., :1]], -1),
                jnp.stack([state.lower_rate_bpm[..., :-1], state.amplitude_v[..., :-1]], -1),
            ],
            axis=-2,
        )
        programmed = jnp.stack([state.lower_rate_bpm, state.amplitude_v], -1)
        changed = valid & jnp.any(programmed != previous, axis=-1)
        return {
            "pacing_burden_pct": 100.0 * total("captures") / beats,
            "lower_rate_bpm": mean(state.lower_rate_bpm),
            "capture_margin": mean(state.amplitude_v)
            / mean(trajectory.info["capture_threshold_v"]),
            "lost_capture_pct": 100.0 * total("lost_captures") / jnp.maximum(total("paces"), 1.0),
            "longest_pause_s": jnp.max(
                jnp.where(valid, trajectory.info["longest_interval_ms"], 0.0), axis=-1
            )
            / 1000.0,
            "heart_rate_bpm": mean(trajectory.info["heart_rate"]),
            "reprogramming_steps": jnp.sum(changed, axis=-1),
        }

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_patient, key_obs, key_va, key_threshold = prng.split(key, 4)
        drawn = self.draw_patient(key_patient, params)
        # Retrograde conduction is a property of the patient: present or absent.
        has_va = prng.uniform(key_va) < params.va_conduction_prevalence
        patient = params.heart.replace(
            **{name: drawn[name] for name in PATIENT_VARIABILITY if name in _HEART_FIELDS},
            retrograde_conduction_prob=jnp.where(
                has_va, params.heart.retrograde_conduction_prob, 0.0
            ),
        )
        brady_rate = drawn["sinus_rate_bpm"]
        adequate_rate = drawn["adequate_sinus_rate_bpm"]
        # The slow threshold fluctuation starts from its stationary distribution; the
        # follow-up threshold test measures today's threshold in 0.25 V decrements.
        threshold_drift = params.threshold_drift_cv * prng.normal(key_threshold)
        threshold_now = pacemaker.capture_threshold_v(patient, 0.0) * jnp.exp(threshold_drift)
        measured = THRESHOLD_TEST_STEP_V * jnp.ceil(threshold_now / THRESHOLD_TEST_STEP_V)
        zero = jnp.zeros((), jnp.float32)
        state = EnvState(
            pacemaker=pacemaker.initial_state(brady_rate),
            patient=patient,
            bradycardic_rate_bpm=brady_rate,
            adequate_rate_bpm=adequate_rate,
            symptomatic_rate_bpm=drawn["symptomatic_rate_bpm"],
            measured_threshold_v=jnp.minimum(measured, MAX_MEASURED_THRESHOLD_V),
            threshold_log_drift=threshold_drift,
            sinus_adequate=jnp.array(False),  # every patient presents bradycardic
            sinus_level_bpm=brady_rate,
            sinus_drift_bpm=zero,
            counts=pacemaker.zero_counts(),
            total_captures=zero,
            total_sensed=zero,
            total_lost=zero,
            lower_rate_bpm=jnp.asarray(NOMINAL_LOWER_RATE_BPM, jnp.float32),
            amplitude_v=jnp.asarray(NOMINAL_AMPLITUDE_V, jnp.float32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key_obs, state, None, params), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        heart_rate = pacemaker.heart_rate_bpm(state.pacemaker)
        if key is not None:
            heart_rate = heart_rate * (1.0 + params.observation_noise_std * prng.normal(key))
        heart_rate = jnp.clip(heart_rate, 0.0, MAX_HEART_RATE_BPM)
        counts = state.counts
        beats = state.total_captures + state.total_sensed
        percent_paced = 100.0 * state.total_captures / jnp.maximum(beats, 1.0)
        return stack_last(
            [
                heart_rate,
                counts.paces,
                counts.captures,
                counts.sensed,
                state.pacemaker.since_beat_ms,
                counts.longest_interval_ms,
                percent_paced,
                state.measured_threshold_v,
                state.lower_rate_bpm,
                state.amplitude_v,
                state.total_lost,
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
        max_lost = MAX_EVENTS * jnp.asarray(params.max_steps_in_episode, jnp.float32)
        low = stack_last([0.0] * 8 + [LOWER_RATE_LIMITS[0], 0.0, 0.0])
        high = stack_last(
            [
                MAX_HEART_RATE_BPM,
                MAX_EVENTS,
                MAX_EVENTS,
                MAX_EVENTS,
                pacemaker.MAX_SINCE_BEAT_MS,
                pacemaker.MAX_SINCE_BEAT_MS,
                100.0,
                MAX_MEASURED_THRESHOLD_V,
                LOWER_RATE_LIMITS[1],
                AMPLITUDE_LIMITS[1],
                max_lost,
            ]
        )
        return spaces.Box(low=low, high=high, shape=(11,), dtype=jnp.float32)


_HEART_FIELDS = frozenset(field.name for field in dataclasses.fields(pacemaker.PacedHeartParams))
