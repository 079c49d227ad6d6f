"""DefibrillationTiming-v1: when to interrupt CPR for a shock, and how hard.

A rescuer arrives ``arrival_delay_min`` after an unwitnessed collapse in
ventricular fibrillation (VF) and runs CPR; every step (10 s) the agent picks
a shock energy, 0 J meaning "no shock, keep compressing". The monitor shows
the rhythm (VF, an organised rhythm without pulse, asystole) and, in VF, the
fibrillation waveform of an Aliev-Panfilov ring whose viable fraction follows
the myocardial energy state ``m`` (``cardiosim_jax.models.tissue``): ``m``
decays in untreated VF and in CPR pauses and recovers over minutes of CPR, and
AMSA (amplitude spectrum area) tracks it with window-to-window noise.

A shock of VF terminates it with high probability even late in VF
(``cardiosim_jax.models.shock_response``: logistic in energy, weakly modulated by
``m``); what follows depends on ``m``: ROSC (an organised rhythm with a pulse,
ends the episode), pulseless electrical activity (PEA), asystole, or VF again.
In PEA and asystole CPR continues; ROSC or recurrent VF arrive as competing
hazards. Shocking a rhythm that is not VF changes nothing. Every shock costs a
hands-off pause (``shock_pause_s`` without perfusion).

Observation (10,), float32:
    0 AMSA (mV x Hz, patient electrode gain x intrinsic, log-normal noise on
      harder tiers; 0 unless VF), 1 ECG peak-to-peak amplitude (mV, same),
    2 time since arrival (s), 3 time since the last shock (since arrival before
      the first) (s), 4 shocks delivered, 5 energy of the last shock (J),
    6 cumulative energy delivered (J), 7 VF on the monitor (0/1),
    8 organised rhythm without pulse (PEA) (0/1), 9 asystole (0/1).
Action (1,): shock energy (J, clipped to 0..360); below ``MIN_SHOCK_ENERGY_J``
    no shock is delivered. NaN counts as 0 (no shock); +inf shocks at 360 J.
Reward: on ROSC +100 x survival factor (exp(-0.1/min without flow, -0.035/min
    in CPR) since arrival); -0.1 per step without ROSC; -2 - 0.005 x E per
    shock (J), whatever the rhythm; -50 if the episode ends without ROSC (:func:`step_reward`).
Episode: 90 / 60 / 48 steps of 10 s (easy / medium / hard); terminates at ROSC.
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
from cardiosim_jax.models import prng, tissue
from cardiosim_jax.models import shock_response as shock_model
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability

#: Clinical time per environment step (s).
STEP_SECONDS = 10.0
#: Largest shock energy (J, biphasic).
MAX_ENERGY_J = 360.0
#: Smallest selectable energy of a manual defibrillator (J); a request below it delivers
#: no shock (0 J is "keep compressing").
MIN_SHOCK_ENERGY_J = 2.0
#: Observation noise is clipped to this many standard deviations.
NOISE_CLIP_SDS = 3.0
#: Monitor rhythms (``EnvState.rhythm``); ROSC ends the episode.
VF, PEA, ASYSTOLE, ROSC = 0, 1, 2, 3
#: Uniform draws are kept in [UNIFORM_FLOOR, 1] so that -log(u) stays finite.
UNIFORM_FLOOR = 1e-6
#: Reward constants (v0's, with the success reward scaled by survival).
SUCCESS_REWARD = 100.0
FIBRILLATION_PENALTY = 0.1
SHOCK_PENALTY = 2.0
ENERGY_PENALTY_PER_J = 0.005
TIMEOUT_PENALTY = 50.0
OBS_SIZE = 10


#: Inter-patient variability (log-normal CV), by override name; scaled by ``patient_variability``.
PATIENT_VARIABILITY: dict[str, Variability] = {
    "ecg_gain_mv": Variability(
        0.3, "VF amplitude and transthoracic impedance between patients, Povoas et al. 2002"
    ),
    "cpr_quality": Variability(0.25, "CPR quality varies widely, Wik et al. 2005 JAMA"),
    "ischaemia_time_constant_s": Variability(
        0.25, "rate of VF waveform deterioration between patients, Povoas et al. 2002"
    ),
    "e50_j": Variability(0.3, "transthoracic impedance 15-150 ohm, Kerber et al. 1981 Circulation"),
    "arrival_delay_min": Variability(
        0.4, "EMS collapse-to-arrival intervals, Larsen et al. 1993 Ann Emerg Med"
    ),
}


@struct.dataclass
class EnvState(environment.EnvState):
    myocardial_energy: jax.Array  # m in [0, 1]
    perfusion: jax.Array  # coronary perfusion, fraction of normal
    window_index: jax.Array  # int32, column of the ECG feature library
    amsa_intrinsic: jax.Array  # mV x Hz at unit gain if the heart fibrillates
    ecg_amplitude_intrinsic: jax.Array  # mV peak-to-peak at unit gain, same
    arrest_minutes: jax.Array  # since collapse (min)
    survival: jax.Array  # survival factor since arrival, (0, 1]
    rhythm: jax.Array  # int32: VF, PEA, ASYSTOLE or ROSC
    hazard_accumulated: jax.Array  # integrated PEA/asystole event hazard since entering it
    hazard_threshold: jax.Array  # -log(u): the next PEA/asystole event fires when reached
    shocks_delivered: jax.Array  # int32
    refibrillations: jax.Array  # int32, returns to VF after a terminating shock
    last_energy_j: jax.Array
    total_energy_j: jax.Array
    time_since_shock_s: jax.Array
    patient_myocardium: tissue.MyocardialParams  # this episode's patient
    patient_shock: shock_model.ShockResponseParams
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    myocardium: tissue.MyocardialParams = dataclasses.field(default_factory=tissue.MyocardialParams)
    shock: shock_model.ShockResponseParams = dataclasses.field(
        default_factory=shock_model.ShockResponseParams
    )
    arrival_delay_min: jax.Array = 7.0  # untreated VF before the rescuer arrives
    shock_pause_s: jax.Array = 8.0  # hands-off time around a shock (no perfusion)
    refibrillation_probability: jax.Array = 0.15  # VF recurs at once after a terminating shock
    stochasticity: jax.Array = 1.0  # 0: every draw is its median (deterministic)
    patient_variability: jax.Array = 0.5  # scales the CVs of PATIENT_VARIABILITY
    observation_noise_std: jax.Array = 0.05  # log-sd of multiplicative ECG-feature noise
    max_steps_in_episode: jax.Array = 60


def step_reward(
    rosc: jax.Array,
    survival: jax.Array,
    shock: jax.Array,
    energy_j: jax.Array,
    time: jax.Array,
    max_steps: jax.Array,
) -> jax.Array:
    """Reward of one 10 s step, from the quantities after the step.

    +100 x ``survival`` (the survival factor since arrival, this step's decay
    included) on ROSC, else -0.1; -(2 + 0.005 x ``energy_j``) if a shock was
    delivered, whatever the rhythm; -50 without ROSC at ``time`` (steps taken,
    this one included) >= ``max_steps``.
    """
    timed_out = (time >= max_steps) & ~rosc
    return (
        jnp.where(rosc, SUCCESS_REWARD * survival, -FIBRILLATION_PENALTY)
        - jnp.where(shock, SHOCK_PENALTY + ENERGY_PENALTY_PER_J * energy_j, 0.0)
        - jnp.where(timed_out, TIMEOUT_PENALTY, 0.0)
    )


class DefibrillationTimingV1(CardioSimEnvironment[EnvState, EnvParams]):
    """Shock timing and energy during CPR, with the monitor's rhythm and VF waveform."""

    env_id = "DefibrillationTiming-v1"
    action_shape = (1,)
    #: Never shock (CPR only).
    no_treatment_action = (0.0,)
    #: 360 J every 10 s, no CPR between shocks (stacked shocks).
    max_treatment_action = (MAX_ENERGY_J,)
    #: Probes that shock on most steps (stacked shocks without CPR starve the myocardium,
    #: and a shock of a rhythm that is not VF only costs its pause), and those that add
    #: useless low-energy shocks (7-36 J) to the heuristic during CPR (see the doc).
    harmful_probes = (
        "max_treatment",
        "corner_1",
        "centre",
        "random",
        "alternating_extremes",
        "dither_2pct",
        "dither_random_5pct",
        "swing_10pct",
    )
    tiers = {
        "easy": {
            "arrival_delay_min": 7.0,
            "refibrillation_probability": 0.0,
            "vf_recurrence_rate_per_min": 0.0,
            "stochasticity": 0.0,
            "patient_variability": 0.0,
            "observation_noise_std": 0.0,
            "max_steps_in_episode": 90,
        },
        "medium": {
            "arrival_delay_min": 7.0,
            "refibrillation_probability": 0.15,
            "stochasticity": 1.0,
            "patient_variability": 0.5,
            "observation_noise_std": 0.05,
            "max_steps_in_episode": 60,
        },
        "hard": {
            "arrival_delay_min": 8.0,
            "refibrillation_probability": 0.3,
            "stochasticity": 1.0,
            "patient_variability": 1.0,
            "observation_noise_std": 0.15,
            "max_steps_in_episode": 48,
        },
    }
    parameter_ranges = {
        "arrival_delay_min": ParameterRange(
            0.0, 15.0, "min", "collapse-to-EMS intervals, Larsen et al. 1993 Ann Emerg Med"
        ),
        "shock_pause_s": ParameterRange(
            3.0, 10.0, "s", "peri-shock pauses, Edelson et al. 2006; Cheskes et al. 2011"
        ),
        "refibrillation_probability": ParameterRange(
            0.0, 0.8, "probability", "recurrent VF after shocks, Koster et al. 2008 Resuscitation"
        ),
        "stochasticity": ParameterRange(
            0.0, 1.0, "fraction", "tier design: easy deterministic (CardioSim paper)"
        ),
        "patient_variability": ParameterRange(
            0.0, 1.0, "fraction", "tier design: per-patient variation on hard (CardioSim paper)"
        ),
        "observation_noise_std": ParameterRange(
            0.0, 0.3, "log-sd", "AMSA measurement variability, Ristagno et al. 2015"
        ),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"myocardium": tissue.validate, "shock": shock_model.validate}
    patient_variation = PATIENT_VARIABILITY

    def base_params(self) -> EnvParams:
        return EnvParams()

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        action = sanitize_action(action)
        requested_j = jnp.clip(jnp.reshape(action, (-1,))[0], 0.0, MAX_ENERGY_J)
        shock = requested_j >= MIN_SHOCK_ENERGY_J
        energy = jnp.where(shock, requested_j, 0.0)
        patient = state.patient_shock
        key_term, key_rhythm, key_refib, key_clock, key_event, key_obs = prng.split(key, 6)

        def draw(k: jax.Array) -> jax.Array:
            # stochasticity 0 (easy): every draw is its median, independent of the key.
            u = 0.5 + params.stochasticity * (prng.uniform(k) - 0.5)
            return jnp.clip(u, UNIFORM_FLOOR, 1.0)

        # 1. The shock: termination decided by the myocardial state m (never one ECG window).
        in_vf = state.rhythm == VF
        p_terminate = shock_model.termination_probability(
            patient, energy, state.myocardial_energy, state.total_energy_j
        )
        terminated = shock & in_vf & (draw(key_term) < p_terminate)
        p_rosc, p_pea, _ = shock_model.post_shock_rhythm_probabilities(
            patient, state.myocardial_energy, state.total_energy_j
        )
        u_rhythm = draw(key_rhythm)
        after_termination = jnp.where(
            u_rhythm < p_rosc, ROSC, jnp.where(u_rhythm < p_rosc + p_pea, PEA, ASYSTOLE)
        )
        refibrillated = terminated & (draw(key_refib) < params.refibrillation_probability)
        rhythm = jnp.where(
            terminated, jnp.where(refibrillated, VF, after_termination), state.rhythm
        ).astype(jnp.int32)
        # A new PEA/asystole episode draws the integrated hazard its next event needs.
        entered = terminated & ~refibrillated & (after_termination != ROSC)
        threshold = jnp.where(entered, -jnp.log(draw(key_clock)), state.hazard_threshold)
        accumulated = jnp.where(entered, 0.0, state.hazard_accumulated)

        # 2. CPR: the shock's pause without flow, compressions for the rest of the step
        # (none once ROSC is reached: the step ends the episode).
        pause_s = jnp.where(shock, params.shock_pause_s, 0.0)
        cpr_s = STEP_SECONDS - pause_s
        myocardium = state.patient_myocardium
        perfusion, energy_state = tissue.perfusion_step(
            state.perfusion, state.myocardial_energy, myocardium, pause_s, jnp.array(False)
        )
        perfusion, energy_state = tissue.perfusion_step(
            perfusion, energy_state, myocardium, cpr_s, jnp.array(True)
        )
        total_energy = state.total_energy_j + energy

        # 3. PEA / asystole during CPR: competing hazards of ROSC and recurrent VF.
        non_vf = (rhythm == PEA) | (rhythm == ASYSTOLE)
        rosc_rate = shock_model.rosc_rate_per_min(
            patient, energy_state, rhythm == ASYSTOLE, total_energy
        )
        event_rate = rosc_rate + patient.vf_recurrence_rate_per_min
        accumulated = accumulated + jnp.where(non_vf, event_rate * cpr_s / 60.0, 0.0)
        event = non_vf & (accumulated >= threshold)
        event_is_rosc = draw(key_event) * event_rate < rosc_rate
        rhythm = jnp.where(event, jnp.where(event_is_rosc, ROSC, VF), rhythm).astype(jnp.int32)
        recurred = refibrillated | (event & ~event_is_rosc)
        rosc = rhythm == ROSC

        survival = state.survival * shock_model.survival_decay(patient, pause_s, cpr_s)
        window_index = jnp.mod(state.window_index + 1, tissue.LIBRARY_WINDOWS)
        amsa, amplitude = tissue.read_features(energy_state, window_index)

        time = state.time + 1
        reward = step_reward(rosc, survival, shock, energy, time, params.max_steps_in_episode)

        state = state.replace(
            myocardial_energy=energy_state,
            perfusion=perfusion,
            window_index=window_index,
            amsa_intrinsic=amsa,
            ecg_amplitude_intrinsic=amplitude,
            arrest_minutes=state.arrest_minutes + STEP_SECONDS / 60.0,
            survival=survival,
            rhythm=rhythm,
            hazard_accumulated=jnp.where(event, 0.0, accumulated),
            hazard_threshold=threshold,
            shocks_delivered=state.shocks_delivered + shock.astype(jnp.int32),
            refibrillations=state.refibrillations + recurred.astype(jnp.int32),
            last_energy_j=jnp.where(shock, energy, state.last_energy_j),
            total_energy_j=total_energy,
            time_since_shock_s=jnp.where(shock, 0.0, state.time_since_shock_s) + STEP_SECONDS,
            time=time,
        )
        info = {
            "rhythm": rhythm,
            "in_fibrillation": rhythm == VF,
            "rosc": rosc,
            "shocked": shock,
            "shocked_vf": shock & in_vf,
            "terminated_vf": terminated,
            "refibrillated": recurred,
            "termination_probability": jnp.where(shock & in_vf, p_terminate, 0.0),
            "myocardial_energy": energy_state,
            "amsa_intrinsic": amsa,
            "survival": survival,
            "shocks_delivered": state.shocks_delivered,
            "total_energy": state.total_energy_j,
        }
        return self.observe(key_obs, state, action, params), state, reward, rosc, info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_patient, key_window, key_obs = prng.split(key, 3)
        patient = self.draw_patient(key_patient, params)
        arrival_delay_min = patient["arrival_delay_min"]
        myocardium = params.myocardium.replace(
            ecg_gain_mv=patient["ecg_gain_mv"],
            cpr_quality=patient["cpr_quality"],
            ischaemia_time_constant_s=patient["ischaemia_time_constant_s"],
        )
        shock_params = params.shock.replace(e50_j=patient["e50_j"])
        energy_state = tissue.no_flow_energy(arrival_delay_min, myocardium)
        window_index = jnp.floor(
            params.stochasticity * prng.uniform(key_window) * tissue.LIBRARY_WINDOWS
        ).astype(jnp.int32)
        amsa, amplitude = tissue.read_features(energy_state, window_index)
        zero = jnp.zeros((), jnp.float32)
        state = EnvState(
            myocardial_energy=energy_state,
            perfusion=zero,  # no bystander CPR before arrival
            window_index=window_index,
            amsa_intrinsic=amsa,
            ecg_amplitude_intrinsic=amplitude,
            arrest_minutes=jnp.asarray(arrival_delay_min, jnp.float32),
            survival=jnp.ones((), jnp.float32),
            rhythm=jnp.asarray(VF, jnp.int32),
            hazard_accumulated=zero,
            hazard_threshold=jnp.ones((), jnp.float32),
            shocks_delivered=jnp.zeros((), jnp.int32),
            refibrillations=jnp.zeros((), jnp.int32),
            last_energy_j=zero,
            total_energy_j=zero,
            time_since_shock_s=zero,
            patient_myocardium=myocardium,
            patient_shock=shock_params,
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key_obs, state, None, params), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        # The VF waveform features exist only while the heart fibrillates.
        fibrillating = state.rhythm == VF
        gain = jnp.where(fibrillating, state.patient_myocardium.ecg_gain_mv, 0.0)
        amsa = gain * state.amsa_intrinsic
        amplitude = gain * state.ecg_amplitude_intrinsic
        if key is not None:
            noise = jnp.clip(prng.normal(key, (2,)), -NOISE_CLIP_SDS, NOISE_CLIP_SDS)
            factor = jnp.exp(params.observation_noise_std * noise)
            amsa = amsa * factor[0]
            amplitude = amplitude * factor[1]
        return jnp.stack(
            [
                amsa,
                amplitude,
                state.time.astype(jnp.float32) * STEP_SECONDS,
                state.time_since_shock_s,
                state.shocks_delivered.astype(jnp.float32),
                state.last_energy_j,
                state.total_energy_j,
                fibrillating.astype(jnp.float32),
                (state.rhythm == PEA).astype(jnp.float32),
                (state.rhythm == ASYSTOLE).astype(jnp.float32),
            ]
        ).astype(jnp.float32)

    def clinical_summary(self, trajectory: Any, params: EnvParams) -> dict[str, jax.Array]:
        """What a recorded policy did, per episode, in a resuscitation team's terms.

        ``trajectory`` is a :class:`cardiosim_jax.rollout.Trajectory` (leading
        batch axis allowed). Returns ROSC (0/1), time from arrival to the first
        shock (s; NaN without a shock), its energy (J), shocks per episode,
        shocks given to a rhythm other than VF, and the CPR fraction (share of
        the episode with compressions: each shock costs ``shock_pause_s``).
        """
        valid = trajectory.valid
        shocked = valid & trajectory.info["shocked"]
        first = jnp.argmax(shocked, axis=-1)
        any_shock = jnp.any(shocked, axis=-1)
        energies = jnp.take_along_axis(trajectory.state.last_energy_j, first[..., None], -1)
        shocks = jnp.sum(shocked, axis=-1)
        seconds = STEP_SECONDS * jnp.sum(valid, axis=-1)
        return {
            "rosc": jnp.any(valid & trajectory.info["rosc"], axis=-1).astype(jnp.float32),
            "time_to_first_shock_s": jnp.where(any_shock, STEP_SECONDS * first, jnp.nan),
            "first_shock_energy_j": jnp.where(any_shock, energies[..., 0], jnp.nan),
            "shocks": shocks,
            "shocks_not_in_vf": jnp.sum(shocked & ~trajectory.info["shocked_vf"], axis=-1),
            "cpr_fraction": 1.0 - shocks * params.shock_pause_s / seconds,
        }

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.rhythm == ROSC

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """[shock energy (J); below MIN_SHOCK_ENERGY_J no shock]."""
        return box(0.0, MAX_ENERGY_J, (1,))

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies.

        ECG features: library maximum x the largest accepted electrode gain x
        the largest noise factor; counters and times: the episode length.
        """
        steps = params.max_steps_in_episode
        amsa_max, amplitude_max = tissue.library_bounds()
        gain_max = tissue.PARAMETER_RANGES["ecg_gain_mv"].high
        noise_max = jnp.exp(NOISE_CLIP_SDS * params.observation_noise_std)
        seconds = steps * STEP_SECONDS
        low = stack_last([0.0] * OBS_SIZE)
        high = stack_last(
            [
                amsa_max * gain_max * noise_max,
                amplitude_max * gain_max * noise_max,
                seconds,
                seconds,
                steps,
                MAX_ENERGY_J,
                MAX_ENERGY_J * steps,
                1.0,
                1.0,
                1.0,
            ]
        )
        return spaces.Box(low=low, high=high, shape=(OBS_SIZE,), dtype=jnp.float32)
