"""PacingControl-v0: steer a bradycardic heart to a target rate with a pacemaker.

A conduction model (SA -> AV -> ventricle, 1 ms steps) drives a FitzHugh-Nagumo
cell (a 0.5 stimulus on every ventricular activation). One environment step is
10 ms (10 substeps). Semantics follow CardioSim 0.1.0; see
``docs/reference-differences.md``.

Observation (6,), float32:
    0 membrane voltage v (FHN, dimensionless)
    1 recovery variable w (FHN, dimensionless)
    2 heart rate (bpm): 60000 / mean of the last 5 RR intervals
    3 time since the last ventricular activation (ms, capped at 5000; negative,
      down to -(av_delay + his_purkinje_delay), while a conducted beat is still
      on its way through the AV node)
    4 heart-rate error: heart rate - target (bpm)
    5 heart-rate variability: std of the last 10 RR intervals (ms)
Action (2,): [rate adjustment (bpm, nominal -20..20, not clipped),
    pulse amplitude (clipped to 0..1)].
    The SA rate becomes heart rate + 0.1 x adjustment, clamped to 30..200 bpm;
    an amplitude above 0.1 delivers a pacing pulse on every substep.
Reward: -(|HR - target| / 20)^2 - 0.1 x amplitude + 0.3 if HRV < 50 ms and |HR - target| < 10 bpm
    (:func:`step_reward`).
Episode: 500 steps, never terminates early.
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
from cardiosim_jax.models import conduction, prng
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models.validation import ParameterRange


@struct.dataclass
class EnvState(environment.EnvState):
    conduction: conduction.ConductionState
    cell: fhn.FitzHughNagumoState
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    conduction: conduction.ConductionParams = dataclasses.field(
        default_factory=conduction.ConductionParams
    )
    cell: fhn.FitzHughNagumoParams = dataclasses.field(default_factory=fhn.FitzHughNagumoParams)
    sa_rate_low_bpm: jax.Array = 40.0  # pathological SA rate drawn U(low, high) at reset
    sa_rate_high_bpm: jax.Array = 55.0
    target_heart_rate_bpm: jax.Array = 72.0
    ventricular_stimulus: jax.Array = 0.5  # FHN current on a ventricular activation
    max_steps_in_episode: jax.Array = 500


#: Conduction/FHN substeps per environment step (1 ms each).
SUBSTEPS = 10
#: Substeps per iteration of the substep loop (``lax.fori_loop`` unroll).
SUBSTEP_UNROLL = 1  # measured: 1 is fastest on CPU (benchmarks/profile_envs.py)
#: Pulse amplitudes at or below this deliver no pacing pulse.
PACING_THRESHOLD = 0.1
#: SA-rate change per unit of the rate-adjustment action (bpm).
RATE_GAIN = 0.1
#: Cap CardioSim applies to the time-since-beat observation (ms).
MAX_TIME_SINCE_BEAT_MS = 5000.0
#: Reward constants.
HR_ERROR_SCALE_BPM = 20.0
ENERGY_PENALTY = 0.1
STABILITY_BONUS = 0.3
STABLE_HRV_MS = 50.0
STABLE_HR_ERROR_BPM = 10.0
#: Largest heart rate the model can report: one RR interval of one substep (bpm).
MAX_HEART_RATE_BPM = 60000.0 / conduction.DT_MS
#: Largest HRV: std of values within [1, 3000] ms is at most half the range.
MAX_HRV_MS = conduction.MAX_RECORDED_RR_MS / 2.0


def step_reward(
    heart_rate_bpm: jax.Array,
    target_bpm: jax.Array,
    hrv_ms: jax.Array,
    pulse_amplitude: jax.Array,
) -> jax.Array:
    """Reward of one 10 ms step (CardioSim 0.1.0).

    ``-(|HR - target| / 20 bpm)^2 - 0.1 x amplitude``, plus 0.3 when the rhythm
    is stable: HRV < 50 ms and |HR - target| < 10 bpm (both strict).
    ``heart_rate_bpm`` and ``hrv_ms`` are measured after the step's substeps (before
    the SA rate update); ``pulse_amplitude`` is the clipped action (0..1).
    """
    hr_error = jnp.abs(heart_rate_bpm - target_bpm)
    stable = (hrv_ms < STABLE_HRV_MS) & (hr_error < STABLE_HR_ERROR_BPM)
    return (
        -((hr_error / HR_ERROR_SCALE_BPM) ** 2)
        - ENERGY_PENALTY * pulse_amplitude
        + jnp.where(stable, STABILITY_BONUS, 0.0)
    )


class PacingControl(CardioSimEnvironment[EnvState, EnvParams]):
    """Pacemaker rate control (CardioSim PacingControl-v0)."""

    env_id = "PacingControl-v0"
    action_shape = (2,)
    tiers = {
        "easy": {"conduction_block_prob": 0.1, "sa_rate_low_bpm": 55.0, "sa_rate_high_bpm": 65.0},
        "medium": {"conduction_block_prob": 0.3, "sa_rate_low_bpm": 40.0, "sa_rate_high_bpm": 55.0},
        "hard": {"conduction_block_prob": 0.5, "sa_rate_low_bpm": 30.0, "sa_rate_high_bpm": 45.0},
    }
    parameter_ranges = {
        "sa_rate_low_bpm": ParameterRange(*conduction.SA_RATE_LIMITS, "bpm", "CardioSim SA clamp"),
        "sa_rate_high_bpm": ParameterRange(*conduction.SA_RATE_LIMITS, "bpm", "CardioSim SA clamp"),
        "target_heart_rate_bpm": conduction.SA_RATE_RANGE,
        "ventricular_stimulus": fhn.STIMULUS_RANGE,
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"conduction": conduction.validate, "cell": fhn.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def check_consistency(self, params: EnvParams) -> None:
        if jnp.any(params.sa_rate_low_bpm > params.sa_rate_high_bpm):
            raise ValueError(
                f"sa_rate_low_bpm ({params.sa_rate_low_bpm}) must not exceed "
                f"sa_rate_high_bpm ({params.sa_rate_high_bpm})"
            )

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        action = sanitize_action(action)
        rate_adjustment = action[0]
        pulse_amplitude = jnp.clip(action[1], 0.0, 1.0)
        pacing_pulse = pulse_amplitude > PACING_THRESHOLD

        block_draws = prng.uniform(key, (SUBSTEPS,))
        # The SA rate only changes between env steps: divide once, not per substep.
        interval = conduction.sa_interval_ms(state.conduction.sa_rate_bpm)

        def substep(carry, block_draw):
            heart, cell = carry
            heart, events = conduction.advance(
                heart, params.conduction, pacing_pulse, block_draw, interval_ms=interval
            )
            current = jnp.where(events.conducted, params.ventricular_stimulus, 0.0)
            return (heart, fhn.step(cell, params.cell, current)), (events.record, events.rr_ms)

        (heart, cell), (records, rrs) = jax.lax.scan(
            substep, (state.conduction, state.cell), block_draws, unroll=SUBSTEP_UNROLL
        )
        # Apply the substeps' RR intervals in order, then the heart rate once: no
        # substep reads either, so this equals updating both on every substep.
        heart = conduction.refresh_heart_rate(conduction.push_rrs(heart, records, rrs))

        heart_rate = heart.heart_rate_bpm
        heart = conduction.set_sa_rate(heart, heart_rate + RATE_GAIN * rate_adjustment)
        hr_error = jnp.abs(heart_rate - params.target_heart_rate_bpm)
        hrv = conduction.heart_rate_variability(heart)
        reward = step_reward(heart_rate, params.target_heart_rate_bpm, hrv, pulse_amplitude)

        state = EnvState(conduction=heart, cell=cell, time=state.time + 1)
        info = {
            "heart_rate": heart_rate,
            "hr_error": hr_error,
            "hrv": hrv,
            "pulse_amplitude": pulse_amplitude,
        }
        return self.observe(key, state, action, params), state, reward, jnp.array(False), info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        # prng, not jax.random: the same numbers, without XLA:CPU's rolled Threefry
        # loops, which gymnax's auto-reset would run for every patient on every step.
        key_rate, key_cell = prng.split(key)
        sa_rate = prng.uniform(
            key_rate, minval=params.sa_rate_low_bpm, maxval=params.sa_rate_high_bpm
        )
        # A fresh CardioSim model last fired one 60-bpm interval before t = 0.
        state = EnvState(
            conduction=conduction.initial_state(sa_rate, last_sa_fire_ms=-1000.0),
            cell=fhn.initial_state(key_cell),
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key, state, None, params), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        heart = state.conduction
        # In float32, time - (time + in_flight) can round to slightly below
        # -in_flight; the lower clip only removes that rounding error.
        time_since_beat = jnp.clip(
            heart.time_ms - heart.last_ventricular_ms,
            -self._in_flight_ms(params),
            MAX_TIME_SINCE_BEAT_MS,
        )
        return jnp.stack(
            [
                state.cell.v,
                state.cell.w,
                heart.heart_rate_bpm,
                time_since_beat,
                heart.heart_rate_bpm - params.target_heart_rate_bpm,
                conduction.heart_rate_variability(heart),
            ]
        ).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.array(False)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """[rate adjustment (bpm), pulse amplitude]; CardioSim's nominal bounds."""
        return spaces.Box(
            low=jnp.array([-20.0, 0.0], jnp.float32),
            high=jnp.array([20.0, 1.0], jnp.float32),
            shape=(2,),
            dtype=jnp.float32,
        )

    @staticmethod
    def _in_flight_ms(params: EnvParams) -> jax.Array:
        """AV + His-Purkinje delay: how far ahead a conducted beat is scheduled (ms)."""
        return params.conduction.av_delay + params.conduction.his_purkinje_delay

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies (wider than CardioSim's, which are not)."""
        in_flight = self._in_flight_ms(params)
        target = params.target_heart_rate_bpm
        v_bound, w_low, w_high = fhn.state_bounds(params.cell, params.ventricular_stimulus)
        low = stack_last([-v_bound, w_low, 0.0, -in_flight, -target, 0.0])
        high = stack_last(
            [
                v_bound,
                w_high,
                MAX_HEART_RATE_BPM,
                MAX_TIME_SINCE_BEAT_MS,
                MAX_HEART_RATE_BPM - target,
                MAX_HRV_MS,
            ]
        )
        return spaces.Box(low=low, high=high, shape=(6,), dtype=jnp.float32)
