"""VasopressorTitration-v0: titrate norepinephrine to a mean arterial pressure target.

A template for adding an environment (see ``docs/adding-an-environment.md``):
a deliberately small model, every mechanism the base class expects, nothing else.

A hypotensive patient's mean arterial pressure (MAP) relaxes towards
``baseline + Emax x Ce / (EC50 + Ce)``, where the effect-site concentration
``Ce`` follows the infusion rate with a first-order delay; MAP also drifts
with slow noise. One step is one minute.

Observation (2,), float32:
    0 mean arterial pressure (mmHg, 0..200)
    1 infusion rate running now (ug/kg/min, 0..1)
Action (1,): infusion rate (ug/kg/min), NaN -> 0, clipped to [0, 1].
Reward per step: -(65 - MAP)+ / 5 (hypotension) - (MAP - 90)+ / 10 (hypertension)
    - 2 x rate (drug exposure: vasopressors are titrated to the lowest rate that works).
Episode: 60 steps (one hour), never terminates early.
"""

from __future__ import annotations

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
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange


@struct.dataclass
class EnvState(environment.EnvState):
    map_mmhg: jax.Array  # mean arterial pressure
    effect_site_rate: jax.Array  # effect-site concentration, as the rate it equilibrates with
    infusion_rate: jax.Array  # ug/kg/min running now
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    baseline_map_mmhg: jax.Array = 55.0  # MAP without drug (septic hypotension)
    max_effect_mmhg: jax.Array = 40.0  # Emax of norepinephrine on MAP
    ec50_rate: jax.Array = 0.2  # infusion rate (ug/kg/min) giving half the maximal effect
    effect_delay_min: jax.Array = 3.0  # effect-site equilibration time constant
    pressure_time_constant_min: jax.Array = 2.0  # how fast MAP follows the effect
    drift_mmhg: jax.Array = 2.0  # per-step SD of the MAP drift
    max_steps_in_episode: jax.Array = 60


#: Infusion rate bounds (ug/kg/min).
RATE_LIMITS = (0.0, 1.0)
#: MAP target band (mmHg) and the observation clip.
MAP_TARGET_LOW, MAP_TARGET_HIGH, MAX_MAP_MMHG = 65.0, 90.0, 200.0
STEP_MIN = 1.0
HYPOTENSION_SCALE_MMHG, HYPERTENSION_SCALE_MMHG, EXPOSURE_WEIGHT = 5.0, 10.0, 2.0


class VasopressorTitration(CardioSimEnvironment[EnvState, EnvParams]):
    """Norepinephrine titration to MAP >= 65 mmHg (a template environment)."""

    env_id = "VasopressorTitration-v0"
    action_shape = (1,)
    tiers = {
        "easy": {"baseline_map_mmhg": 60.0, "drift_mmhg": 0.0},
        "medium": {"baseline_map_mmhg": 55.0, "drift_mmhg": 2.0},
        "hard": {"baseline_map_mmhg": 50.0, "drift_mmhg": 4.0, "ec50_rate": 0.3},
    }
    parameter_ranges = {
        "baseline_map_mmhg": ParameterRange(30.0, 80.0, "mmHg", "design (hypotension)"),
        "max_effect_mmhg": ParameterRange(10.0, 80.0, "mmHg", "design"),
        "ec50_rate": ParameterRange(0.02, 1.0, "ug/kg/min", "design"),
        "effect_delay_min": ParameterRange(0.5, 10.0, "min", "design"),
        "pressure_time_constant_min": ParameterRange(0.5, 10.0, "min", "design"),
        "drift_mmhg": ParameterRange(0.0, 10.0, "mmHg", "design"),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        rate = jnp.clip(sanitize_action(action)[0], *RATE_LIMITS)
        effect_site = state.effect_site_rate + (rate - state.effect_site_rate) * (
            1.0 - jnp.exp(-STEP_MIN / params.effect_delay_min)
        )
        steady_map = params.baseline_map_mmhg + params.max_effect_mmhg * effect_site / (
            params.ec50_rate + effect_site
        )
        relax = 1.0 - jnp.exp(-STEP_MIN / params.pressure_time_constant_min)
        map_mmhg = state.map_mmhg + (steady_map - state.map_mmhg) * relax
        map_mmhg = jnp.clip(map_mmhg + params.drift_mmhg * prng.normal(key), 0.0, MAX_MAP_MMHG)
        reward = (
            -jnp.maximum(MAP_TARGET_LOW - map_mmhg, 0.0) / HYPOTENSION_SCALE_MMHG
            - jnp.maximum(map_mmhg - MAP_TARGET_HIGH, 0.0) / HYPERTENSION_SCALE_MMHG
            - EXPOSURE_WEIGHT * rate
        )
        state = EnvState(
            map_mmhg=map_mmhg,
            effect_site_rate=effect_site,
            infusion_rate=rate,
            time=state.time + 1,
        )
        info = {"map_mmhg": map_mmhg, "infusion_rate": rate}
        return self.observe(key, state, action, params), state, reward, jnp.array(False), info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        start = params.baseline_map_mmhg + params.drift_mmhg * prng.normal(key)
        zero = jnp.zeros((), jnp.float32)
        state = EnvState(
            map_mmhg=jnp.clip(start, 0.0, MAX_MAP_MMHG),
            effect_site_rate=zero,
            infusion_rate=zero,
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key, state, None, params), state

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        return stack_last([state.map_mmhg, state.infusion_rate])

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.array(False)

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """[infusion rate (ug/kg/min)]."""
        return box(RATE_LIMITS[0], RATE_LIMITS[1], (1,))

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return box([0.0, RATE_LIMITS[0]], [MAX_MAP_MMHG, RATE_LIMITS[1]], (2,))
