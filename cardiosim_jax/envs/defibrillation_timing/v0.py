"""DefibrillationTiming-v0: end ventricular fibrillation with few, low-energy shocks.

An Aliev-Panfilov cell (20 RK4 substeps of 0.1 per step) is driven by a random
stimulus while fibrillating. A shock succeeds with probability
``base x (1 - exp(-E / 150 J)) x 0.95^shocks`` (independent of the cell state,
as in CardioSim 0.1.0); success resets the cell near rest and ends the episode.
See ``docs/reference-differences.md``.

Observation (6,), float32:
    0 potential u (AP, normalised), 1 recovery variable v (AP),
    2 fibrillation index: variance of the last 50 u samples / 0.1, capped at 1,
    3 steps spent in fibrillation, 4 shocks delivered, 5 cumulative energy (J).
Action (2,): [shock decision (shock if > 0.5, not clipped), energy (J, clipped to 0..360)].
Reward: +100 (+50 more with at most 3 shocks) on success, else -0.1 per step;
    -2 - 0.005 x E per shock; -50 if the episode times out in fibrillation (:func:`step_reward`).
Episode: 100 steps, terminates on successful defibrillation.
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
from cardiosim_jax.models import aliev_panfilov as ap
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange

#: AP substeps per environment step.
SUBSTEPS = 20
#: Potential samples used for the fibrillation index.
HISTORY = 50
#: Substeps per iteration of the substep loop (``lax.scan`` unroll).
SUBSTEP_UNROLL = 1  # measured: 1 is fastest on CPU (benchmarks/profile_envs.py)


@struct.dataclass
class EnvState(environment.EnvState):
    cell: ap.AlievPanfilovState
    voltage_history: jax.Array  # (HISTORY,), last u samples, oldest first
    history_count: jax.Array  # int32, samples recorded so far
    in_fibrillation: jax.Array  # bool
    fibrillation_time: jax.Array  # steps spent in fibrillation
    shocks_delivered: jax.Array  # int32
    total_energy: jax.Array  # J
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    cell: ap.AlievPanfilovParams = dataclasses.field(default_factory=ap.AlievPanfilovParams)
    fib_severity: jax.Array = 0.5  # scales the U(0, 0.3) fibrillation stimulus
    defibrillation_success_base: jax.Array = 0.5  # success probability at infinite energy
    membrane_noise_std: jax.Array = 0.02  # N(0, std) added to u after every substep
    max_steps_in_episode: jax.Array = 100


#: Largest shock energy (J, biphasic).
MAX_ENERGY_J = 360.0
#: Energy scale of the success curve (J).
ENERGY_SCALE_J = 150.0
#: Success probability is multiplied by this per shock delivered.
FATIGUE = 0.95
#: Shock decisions above this deliver a shock.
SHOCK_THRESHOLD = 0.5
#: Fibrillation stimulus is U(0, this) x fib_severity.
MAX_FIBRILLATION_STIMULUS = 0.3
#: Near-rest state after a successful shock.
POST_SHOCK_STATE = (0.05, 0.01)
#: Initial fibrillating state is drawn from these ranges.
INITIAL_U_RANGE = (0.3, 0.9)
INITIAL_V_RANGE = (0.0, 5.0)
#: Fewer history samples than this: the index is 1 in fibrillation, else 0.
MIN_HISTORY = 10
FIBRILLATION_VARIANCE_SCALE = 0.1
#: Reward constants.
SUCCESS_REWARD = 100.0
QUICK_SUCCESS_BONUS = 50.0
QUICK_SUCCESS_MAX_SHOCKS = 3
FIBRILLATION_PENALTY = 0.1
SHOCK_PENALTY = 2.0
ENERGY_PENALTY_PER_J = 0.005
TIMEOUT_PENALTY = 50.0
#: u is clamped to [-0.1, 1.5] and then gets N(0, <= 0.05) noise (8 sd of margin); v to [-0.1, 20].
U_BOUNDS = (-0.5, 2.0)
V_BOUNDS = (-0.5, 25.0)


def step_reward(
    in_fibrillation: jax.Array,
    shock: jax.Array,
    energy_j: jax.Array,
    shocks_delivered: jax.Array,
    time: jax.Array,
    max_steps: jax.Array,
) -> jax.Array:
    """Reward of one step (CardioSim 0.1.0), from the quantities after the step.

    +100 once out of fibrillation, else -0.1; -(2 + 0.005 x ``energy_j``) if a
    shock was delivered (``energy_j`` clipped to 0..360 J); +50 more out of
    fibrillation if ``shocks_delivered`` (this step's shock included) is at most 3;
    -50 if still fibrillating at ``time`` (steps taken, this one included) >= ``max_steps``.
    """
    timed_out = (time >= max_steps) & in_fibrillation
    return (
        jnp.where(in_fibrillation, -FIBRILLATION_PENALTY, SUCCESS_REWARD)
        - jnp.where(shock, SHOCK_PENALTY + ENERGY_PENALTY_PER_J * energy_j, 0.0)
        + jnp.where(
            ~in_fibrillation & (shocks_delivered <= QUICK_SUCCESS_MAX_SHOCKS),
            QUICK_SUCCESS_BONUS,
            0.0,
        )
        - jnp.where(timed_out, TIMEOUT_PENALTY, 0.0)
    )


class DefibrillationTiming(CardioSimEnvironment[EnvState, EnvParams]):
    """Defibrillation shock timing and dosing (CardioSim DefibrillationTiming-v0)."""

    env_id = "DefibrillationTiming-v0"
    action_shape = (2,)
    tiers = {
        "easy": {
            "fib_severity": 0.3,
            "defibrillation_success_base": 0.7,
            "membrane_noise_std": 0.01,
        },
        "medium": {
            "fib_severity": 0.5,
            "defibrillation_success_base": 0.5,
            "membrane_noise_std": 0.02,
        },
        "hard": {
            "fib_severity": 0.8,
            "defibrillation_success_base": 0.3,
            "membrane_noise_std": 0.03,
        },
    }
    parameter_ranges = {
        "fib_severity": ParameterRange(0.0, 1.0, "relative", "CardioSim tiers 0.3-0.8"),
        "defibrillation_success_base": ParameterRange(0.0, 1.0, "probability", "definition"),
        "membrane_noise_std": ParameterRange(
            0.0, 0.05, "dimensionless", "CardioSim tiers 0.01-0.03"
        ),
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"cell": ap.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        action = sanitize_action(action)
        shock = action[0] > SHOCK_THRESHOLD
        energy = jnp.clip(action[1], 0.0, MAX_ENERGY_J)

        key_stim, key_noise, key_success = prng.split(key, 3)
        stimulus = jnp.where(
            state.in_fibrillation,
            prng.uniform(key_stim, maxval=MAX_FIBRILLATION_STIMULUS) * params.fib_severity,
            0.0,
        )
        # Scaled noise materialised before the loop (one fused threefry + erfinv): drawn
        # inside the loop, XLA may contract v + std * n into an FMA in one program and
        # not another, and vmapped and single-patient trajectories would drift apart.
        # Read by index, not scanned as rows: scanning (``integrate_with`` takes the array)
        # gives the same bits and is 1.1x faster at 1M patients on CPU, but transposing the
        # (batch, SUBSTEPS) block costs 2-5 % at 4,096 (benchmarks/results/optimisation.md).
        noise = params.membrane_noise_std * prng.normal(key_noise, (SUBSTEPS,))
        cell, potentials = ap.integrate_with(
            state.cell,
            params.cell,
            stimulus,
            SUBSTEPS,
            lambda i: noise[i],
            unroll=SUBSTEP_UNROLL,
        )
        # The newest HISTORY samples, oldest first: a static slice and concatenation
        # (no ring index, no dynamic-update-slice).
        history = jnp.concatenate([state.voltage_history[SUBSTEPS:], potentials])

        shocks = state.shocks_delivered + shock.astype(jnp.int32)
        total_energy = state.total_energy + jnp.where(shock, energy, 0.0)
        success_prob = (
            params.defibrillation_success_base
            * (1.0 - jnp.exp(-energy / ENERGY_SCALE_J))
            * FATIGUE ** shocks.astype(jnp.float32)
        )
        success = shock & state.in_fibrillation & (prng.uniform(key_success) < success_prob)
        in_fibrillation = state.in_fibrillation & ~success
        cell = jax.tree_util.tree_map(
            lambda rest, now: jnp.where(success, rest, now),
            ap.AlievPanfilovState(
                u=jnp.float32(POST_SHOCK_STATE[0]), v=jnp.float32(POST_SHOCK_STATE[1])
            ),
            cell,
        )

        time = state.time + 1
        reward = step_reward(
            in_fibrillation, shock, energy, shocks, time, params.max_steps_in_episode
        )

        state = EnvState(
            cell=cell,
            voltage_history=history,
            history_count=state.history_count + SUBSTEPS,
            in_fibrillation=in_fibrillation,
            fibrillation_time=state.fibrillation_time + in_fibrillation.astype(jnp.float32),
            shocks_delivered=shocks,
            total_energy=total_energy,
            time=time,
        )
        info = {
            "in_fibrillation": in_fibrillation,
            "fibrillation_time": state.fibrillation_time,
            "shocks_delivered": shocks,
            "total_energy": total_energy,
            "defibrillated": ~in_fibrillation,
        }
        return self.observe(key, state, action, params), state, reward, ~in_fibrillation, info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_u, key_v = prng.split(key)
        state = EnvState(
            cell=ap.AlievPanfilovState(
                u=prng.uniform(key_u, minval=INITIAL_U_RANGE[0], maxval=INITIAL_U_RANGE[1]),
                v=prng.uniform(key_v, minval=INITIAL_V_RANGE[0], maxval=INITIAL_V_RANGE[1]),
            ),
            voltage_history=jnp.zeros((HISTORY,), jnp.float32),
            history_count=jnp.zeros((), jnp.int32),
            in_fibrillation=jnp.array(True),
            fibrillation_time=jnp.zeros((), jnp.float32),
            shocks_delivered=jnp.zeros((), jnp.int32),
            total_energy=jnp.zeros((), jnp.float32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key, state, None, params), state

    @staticmethod
    def fibrillation_index(state: EnvState) -> jax.Array:
        """Variance of the last (up to 50) potential samples / 0.1, capped at 1."""
        n = jnp.minimum(state.history_count, HISTORY)
        mask = jnp.arange(HISTORY) >= HISTORY - n
        count = jnp.maximum(n, 1).astype(jnp.float32)
        mean = jnp.sum(jnp.where(mask, state.voltage_history, 0.0)) / count
        variance = jnp.sum(jnp.where(mask, (state.voltage_history - mean) ** 2, 0.0)) / count
        from_history = jnp.minimum(1.0, variance / FIBRILLATION_VARIANCE_SCALE)
        return jnp.where(
            state.history_count < MIN_HISTORY,
            state.in_fibrillation.astype(jnp.float32),
            from_history,
        )

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        return jnp.stack(
            [
                state.cell.u,
                state.cell.v,
                self.fibrillation_index(state),
                state.fibrillation_time,
                state.shocks_delivered.astype(jnp.float32),
                state.total_energy,
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
        """Bounds every reachable observation satisfies (CardioSim's shock/energy bounds don't)."""
        steps = params.max_steps_in_episode
        low = stack_last([U_BOUNDS[0], V_BOUNDS[0], 0.0, 0.0, 0.0, 0.0])
        high = stack_last([U_BOUNDS[1], V_BOUNDS[1], 1.0, steps, steps, MAX_ENERGY_J * steps])
        return spaces.Box(low=low, high=high, shape=(6,), dtype=jnp.float32)
