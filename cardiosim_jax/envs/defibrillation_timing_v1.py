"""DefibrillationTiming-v1: when to shock a fibrillating heart during CPR, and how hard.

A rescuer arrives ``arrival_delay_min`` after an unwitnessed collapse in
ventricular fibrillation (VF) and runs CPR; every step (10 s) the agent
decides whether to interrupt CPR for a shock and at what energy. The
fibrillation signal comes from an Aliev-Panfilov ring whose viable fraction
follows the myocardial energy state ``m`` (``cardiosim_jax.models.tissue``):
``m`` decays during untreated VF and in CPR pauses and recovers over one to
two minutes of CPR, and AMSA (amplitude spectrum area of the pseudo-ECG)
tracks it. A shock succeeds with a logistic energy dose-response whose E50
falls with AMSA and rises with time in VF and delivered energy
(``cardiosim_jax.models.shock_response``). Each shock costs a hands-off pause
(``shock_pause_s`` without perfusion), so shocking a poorly perfused heart
wastes a shock, energy and perfusion, while waiting lets survival decay.
On harder tiers a successful shock can be followed by refibrillation.

Observation (8,), float32:
    0 AMSA (mV x Hz; measured: patient electrode gain x intrinsic, times
      log-normal noise on harder tiers), 1 ECG peak-to-peak amplitude (mV, same),
    2 time since arrival (s), 3 time since the last shock (since arrival before
      the first) (s), 4 shocks delivered, 5 energy of the last shock (J),
    6 cumulative energy delivered (J), 7 refibrillations so far.
Action (2,): [shock decision (shock if > 0.5), energy (J, clipped to 0..360)],
    the v0 layout. NaN counts as 0 (no shock, 0 J); +inf shocks at 360 J.
Reward: on ROSC (a shock ends VF and no refibrillation follows)
    +100 x survival factor (exp(-0.1/min without flow, -0.035/min in CPR) since
    arrival); -0.1 per step still in VF; -2 - 0.005 x E per shock (J);
    -50 if the episode times out in VF. Range about [-280, 100] per episode.
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
    sanitize_action,
    stack_last,
)
from cardiosim_jax.models import prng, tissue
from cardiosim_jax.models import shock_response as shock_model
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.models.variability import Variability, lognormal_multiplier

#: Clinical time per environment step (s).
STEP_SECONDS = 10.0
#: Largest shock energy (J, biphasic).
MAX_ENERGY_J = 360.0
#: Shock decisions above this deliver a shock.
SHOCK_THRESHOLD = 0.5
#: Observation noise is clipped to this many standard deviations.
NOISE_CLIP_SDS = 3.0
#: Reward constants (v0's, with the success reward scaled by survival).
SUCCESS_REWARD = 100.0
FIBRILLATION_PENALTY = 0.1
SHOCK_PENALTY = 2.0
ENERGY_PENALTY_PER_J = 0.005
TIMEOUT_PENALTY = 50.0

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
    amsa_intrinsic: jax.Array  # mV x Hz at unit gain, current ECG window
    ecg_amplitude_intrinsic: jax.Array  # mV peak-to-peak at unit gain
    vf_minutes: jax.Array  # since collapse (min)
    survival: jax.Array  # survival factor since arrival, (0, 1]
    in_fibrillation: jax.Array  # bool
    shocks_delivered: jax.Array  # int32
    refibrillations: jax.Array  # int32
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
    refibrillation_probability: jax.Array = 0.15  # VF recurs after a successful shock
    stochasticity: jax.Array = 1.0  # 0: shock outcomes and signal deterministic
    patient_variability: jax.Array = 0.5  # scales the CVs of PATIENT_VARIABILITY
    observation_noise_std: jax.Array = 0.05  # log-sd of multiplicative ECG-feature noise
    max_steps_in_episode: jax.Array = 60


class DefibrillationTimingV1(CardioSimEnvironment[EnvState, EnvParams]):
    """Shock timing and energy during CPR, guided by an AMSA-like ECG feature."""

    env_id = "DefibrillationTiming-v1"
    action_shape = (2,)
    tiers = {
        "easy": {
            "arrival_delay_min": 7.0,
            "refibrillation_probability": 0.0,
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
        shock = action[0] > SHOCK_THRESHOLD
        energy = jnp.where(shock, jnp.clip(action[1], 0.0, MAX_ENERGY_J), 0.0)

        key_success, key_refib, key_obs = prng.split(key, 3)
        # The ECG analysed before the shock decides its outcome (intrinsic AMSA,
        # independent of this patient's electrode gain).
        success_prob = shock_model.success_probability(
            state.patient_shock,
            energy,
            state.amsa_intrinsic,
            state.vf_minutes,
            state.total_energy_j,
        )
        # stochasticity 0 (easy): success iff p > 1/2, independent of the key.
        draw = 0.5 + params.stochasticity * (prng.uniform(key_success) - 0.5)
        success = shock & state.in_fibrillation & (draw < success_prob)
        refibrillated = success & (prng.uniform(key_refib) < params.refibrillation_probability)
        rosc = success & ~refibrillated
        in_fibrillation = state.in_fibrillation & ~rosc

        # A shock interrupts CPR for shock_pause_s; compressions fill the rest of the step.
        pause_s = jnp.where(shock, params.shock_pause_s, 0.0)
        myocardium = state.patient_myocardium
        perfusion, energy_state = tissue.perfusion_step(
            state.perfusion, state.myocardial_energy, myocardium, pause_s, jnp.array(False)
        )
        perfusion, energy_state = tissue.perfusion_step(
            perfusion, energy_state, myocardium, STEP_SECONDS - pause_s, jnp.array(True)
        )
        survival = state.survival * shock_model.survival_decay(
            state.patient_shock, pause_s, STEP_SECONDS - pause_s
        )
        window_index = jnp.mod(state.window_index + 1, tissue.LIBRARY_WINDOWS)
        amsa, amplitude = tissue.read_features(energy_state, window_index)

        time = state.time + 1
        timed_out = (time >= params.max_steps_in_episode) & in_fibrillation
        reward = (
            jnp.where(rosc, SUCCESS_REWARD * survival, -FIBRILLATION_PENALTY)
            - jnp.where(shock, SHOCK_PENALTY + ENERGY_PENALTY_PER_J * energy, 0.0)
            - jnp.where(timed_out, TIMEOUT_PENALTY, 0.0)
        )

        state = state.replace(
            myocardial_energy=energy_state,
            perfusion=perfusion,
            window_index=window_index,
            amsa_intrinsic=amsa,
            ecg_amplitude_intrinsic=amplitude,
            vf_minutes=state.vf_minutes + STEP_SECONDS / 60.0,
            survival=survival,
            in_fibrillation=in_fibrillation,
            shocks_delivered=state.shocks_delivered + shock.astype(jnp.int32),
            refibrillations=state.refibrillations + refibrillated.astype(jnp.int32),
            last_energy_j=jnp.where(shock, energy, state.last_energy_j),
            total_energy_j=state.total_energy_j + energy,
            time_since_shock_s=jnp.where(shock, 0.0, state.time_since_shock_s) + STEP_SECONDS,
            time=time,
        )
        info = {
            "in_fibrillation": in_fibrillation,
            "defibrillated": rosc,
            "refibrillated": refibrillated,
            "success_probability": jnp.where(shock, success_prob, 0.0),
            "myocardial_energy": energy_state,
            "amsa_intrinsic": amsa,
            "survival": survival,
            "shocks_delivered": state.shocks_delivered,
            "total_energy": state.total_energy_j,
        }
        return self.get_obs(state, params, key_obs), state, reward, rosc, info

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
            vf_minutes=jnp.asarray(arrival_delay_min, jnp.float32),
            survival=jnp.ones((), jnp.float32),
            in_fibrillation=jnp.array(True),
            shocks_delivered=jnp.zeros((), jnp.int32),
            refibrillations=jnp.zeros((), jnp.int32),
            last_energy_j=zero,
            total_energy_j=zero,
            time_since_shock_s=zero,
            patient_myocardium=myocardium,
            patient_shock=shock_params,
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state, params, key_obs), state

    def draw_patient(self, key: jax.Array, params: EnvParams) -> dict[str, jax.Array]:
        """This episode's values of the PATIENT_VARIABILITY parameters, clipped to their ranges."""
        typical = {
            "ecg_gain_mv": params.myocardium.ecg_gain_mv,
            "cpr_quality": params.myocardium.cpr_quality,
            "ischaemia_time_constant_s": params.myocardium.ischaemia_time_constant_s,
            "e50_j": params.shock.e50_j,
            "arrival_delay_min": params.arrival_delay_min,
        }
        ranges = {
            **tissue.PARAMETER_RANGES,
            **shock_model.PARAMETER_RANGES,
            **self.parameter_ranges,
        }
        keys = prng.split(key, len(PATIENT_VARIABILITY))
        drawn = {}
        for name_key, (name, variability) in zip(keys, PATIENT_VARIABILITY.items(), strict=True):
            factor = lognormal_multiplier(name_key, variability.cv * params.patient_variability)
            bounds = ranges[name]
            drawn[name] = jnp.clip(typical[name] * factor, bounds.low, bounds.high)
        return drawn

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        gain = state.patient_myocardium.ecg_gain_mv
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
                state.refibrillations.astype(jnp.float32),
            ]
        ).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return ~state.in_fibrillation

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """[shock decision, energy (J)]."""
        return spaces.Box(
            low=jnp.zeros((2,), jnp.float32),
            high=jnp.array([1.0, MAX_ENERGY_J], jnp.float32),
            shape=(2,),
            dtype=jnp.float32,
        )

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
        low = stack_last([0.0] * 8)
        high = stack_last(
            [
                amsa_max * gain_max * noise_max,
                amplitude_max * gain_max * noise_max,
                seconds,
                seconds,
                steps,
                MAX_ENERGY_J,
                MAX_ENERGY_J * steps,
                steps,
            ]
        )
        return spaces.Box(low=low, high=high, shape=(8,), dtype=jnp.float32)
