"""AntiarrhythmicDosing-v0: keep a drug in its therapeutic window while suppressing arrhythmia.

A single-compartment PK model (explicit Euler, 0.1 h per step) sets the plasma
concentration; its sigmoid-Emax efficacy suppresses the arrhythmia (and its
recurrence). The arrhythmia switches the stimulus of a noisy FitzHugh-Nagumo
cell between 0.3 and 0.8 (20 RK4 substeps of 0.05 per step); the drug does not
act on the cell itself. Semantics follow CardioSim 0.1.0; see
``docs/reference-differences.md``.

Observation (6,), float32:
    0 membrane voltage v (FHN), 1 recovery variable w (FHN),
    2 plasma concentration (mg/L, capped at 50),
    3 arrhythmia indicator (0 or 1),
    4 drug efficacy (0..1),
    5 fraction of steps so far with the concentration in the therapeutic window (0..1).
Action (1,): dose (mg), clipped to 0..100.
Reward: +1 in the window, -0.3 below it, -3 at or above the toxic threshold;
    -0.5 while arrhythmic; -0.0001 x dose (:func:`step_reward`).
Episode: 200 steps; terminates early when the concentration exceeds 12 mg/L
    (and the toxic threshold).
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
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models import pharmacokinetics as pk
from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange


@struct.dataclass
class EnvState(environment.EnvState):
    cell: fhn.FitzHughNagumoState
    drug: pk.PharmacokineticState
    elimination_rate: jax.Array  # this patient's k_e (1/h), drawn at reset
    volume_of_distribution: jax.Array  # this patient's V_d (L/kg), drawn at reset
    arrhythmia_active: jax.Array  # bool
    therapeutic_steps: jax.Array  # int32, steps ended inside the window
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    cell: fhn.FitzHughNagumoParams = dataclasses.field(default_factory=fhn.FitzHughNagumoParams)
    pk: pk.PharmacokineticParams = dataclasses.field(default_factory=pk.PharmacokineticParams)
    arrhythmia_prob: jax.Array = 0.5  # P(arrhythmic at reset); scales recurrence
    membrane_noise_std: jax.Array = 0.03  # N(0, std) added to v after every substep
    pk_variability: jax.Array = 0.2  # k_e and V_d scaled by 1 + U(-var, var) at reset
    normal_stimulus: jax.Array = 0.3  # FHN current in sinus rhythm
    arrhythmic_stimulus: jax.Array = 0.8  # FHN current while arrhythmic
    max_steps_in_episode: jax.Array = 200


#: FHN substeps per environment step.
SUBSTEPS = 20
#: Substeps per iteration of the substep loop (``lax.fori_loop`` unroll).
SUBSTEP_UNROLL = 1  # measured: 1 is fastest on CPU (benchmarks/profile_envs.py)
#: Largest dose per step (mg).
MAX_DOSE_MG = 100.0
#: Per-step suppression probability is this times efficacy.
MAX_SUPPRESSION = 0.8
#: Per-step recurrence probability is this times arrhythmia_prob times (1 - efficacy).
RECURRENCE_SCALE = 0.05
#: Episode ends once the concentration is toxic and above this (mg/L).
TERMINATION_CONCENTRATION = 12.0
#: Cap on the concentration observation (mg/L).
MAX_OBSERVED_CONCENTRATION = 50.0
#: Reward constants.
THERAPEUTIC_REWARD = 1.0
SUBTHERAPEUTIC_PENALTY = 0.3
TOXIC_PENALTY = 3.0
ARRHYTHMIA_PENALTY = 0.5
DOSE_PENALTY_PER_MG = 0.01 / 100.0
#: Extra room in the FHN bounds per unit of membrane noise std (10 sd).
NOISE_MARGIN_SDS = 10.0


def step_reward(
    concentration: jax.Array,
    arrhythmic: jax.Array,
    dose_mg: jax.Array,
    window: pk.PharmacokineticParams,
) -> jax.Array:
    """Reward of one 0.1 h step (CardioSim 0.1.0).

    From the plasma concentration after the step (mg/L) and ``window``'s
    thresholds (defaults 1.5, 5 and 8 mg/L): +1 inside the closed therapeutic
    window [min, max], -0.3 below it, -3 at or above the toxic threshold, 0 in
    between; -0.5 if arrhythmic after the step; -0.0001 per mg of the (clipped) dose.
    """
    therapeutic = pk.is_therapeutic(concentration, window)
    subtherapeutic = pk.is_subtherapeutic(concentration, window)
    toxic = pk.is_toxic(concentration, window)
    window_reward = jnp.where(
        therapeutic,
        THERAPEUTIC_REWARD,
        jnp.where(subtherapeutic, -SUBTHERAPEUTIC_PENALTY, jnp.where(toxic, -TOXIC_PENALTY, 0.0)),
    )
    return (
        window_reward
        - jnp.where(arrhythmic, ARRHYTHMIA_PENALTY, 0.0)
        - DOSE_PENALTY_PER_MG * dose_mg
    )


class AntiarrhythmicDosing(CardioSimEnvironment[EnvState, EnvParams]):
    """Antiarrhythmic drug titration (CardioSim AntiarrhythmicDosing-v0)."""

    env_id = "AntiarrhythmicDosing-v0"
    action_shape = (1,)
    reference_carries_params = True  # k_e and V_d drift over resets (params_after_resets)
    tiers = {
        "easy": {"arrhythmia_prob": 0.3, "membrane_noise_std": 0.01, "pk_variability": 0.0},
        "medium": {"arrhythmia_prob": 0.5, "membrane_noise_std": 0.03, "pk_variability": 0.2},
        "hard": {"arrhythmia_prob": 0.7, "membrane_noise_std": 0.05, "pk_variability": 0.4},
    }
    parameter_ranges = {
        "arrhythmia_prob": ParameterRange(0.0, 1.0, "probability", "definition"),
        "membrane_noise_std": ParameterRange(
            0.0, 0.05, "dimensionless", "CardioSim tiers 0.01-0.05"
        ),
        "pk_variability": ParameterRange(0.0, 0.5, "relative", "CardioSim tiers 0-0.4"),
        "normal_stimulus": fhn.STIMULUS_RANGE,
        "arrhythmic_stimulus": fhn.STIMULUS_RANGE,
        "max_steps_in_episode": EPISODE_LENGTH_RANGE,
    }
    model_validators = {"cell": fhn.validate, "pk": pk.validate}

    def base_params(self) -> EnvParams:
        return EnvParams()

    def check_consistency(self, params: EnvParams) -> None:
        if jnp.any(params.pk.therapeutic_min >= params.pk.therapeutic_max):
            raise ValueError(
                f"pk.therapeutic_min ({params.pk.therapeutic_min}) must be below "
                f"pk.therapeutic_max ({params.pk.therapeutic_max})"
            )

    def patient_pk(self, state: EnvState, params: EnvParams) -> pk.PharmacokineticParams:
        """PK parameters of the current episode's patient."""
        return params.pk.replace(
            elimination_rate=state.elimination_rate,
            volume_of_distribution=state.volume_of_distribution,
        )

    def step_env(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        dose = jnp.clip(sanitize_action(action)[0], 0.0, MAX_DOSE_MG)
        patient = self.patient_pk(state, params)
        drug = pk.step(state.drug, patient, dose)
        concentration = drug.plasma_concentration
        efficacy = pk.efficacy(concentration, patient)

        key_rhythm, key_noise = prng.split(key)
        draw = prng.uniform(key_rhythm)
        suppressed = state.arrhythmia_active & (draw < MAX_SUPPRESSION * efficacy)
        recurrence_prob = RECURRENCE_SCALE * params.arrhythmia_prob * (1.0 - efficacy)
        recurred = ~state.arrhythmia_active & (draw < recurrence_prob)
        arrhythmia = (state.arrhythmia_active & ~suppressed) | recurred

        current = jnp.where(arrhythmia, params.arrhythmic_stimulus, params.normal_stimulus)
        # Scaled noise materialised before the loop (one fused threefry + erfinv): drawn
        # inside the loop, XLA may contract v + std * n into an FMA in one program and
        # not another, and vmapped and single-patient trajectories would drift apart.
        # Read by index, not scanned as rows: scanning (``integrate_with`` takes the array)
        # gives the same bits and is 1.1x faster at 1M patients on CPU, but transposing the
        # (batch, SUBSTEPS) block costs 2-5 % at 4,096 (benchmarks/results/optimisation.md).
        noise = params.membrane_noise_std * prng.normal(key_noise, (SUBSTEPS,))
        cell = fhn.integrate_with(
            state.cell,
            params.cell,
            current,
            SUBSTEPS,
            lambda i: noise[i],
            unroll=SUBSTEP_UNROLL,
        )

        therapeutic = pk.is_therapeutic(concentration, patient)
        toxic = pk.is_toxic(concentration, patient)
        reward = step_reward(concentration, arrhythmia, dose, patient)

        state = state.replace(
            cell=cell,
            drug=drug,
            arrhythmia_active=arrhythmia,
            therapeutic_steps=state.therapeutic_steps + therapeutic.astype(jnp.int32),
            time=state.time + 1,
        )
        terminated = toxic & (concentration > TERMINATION_CONCENTRATION)
        info = {
            "concentration": concentration,
            "arrhythmia_active": arrhythmia,
            "efficacy": efficacy,
            "is_therapeutic": therapeutic,
            "is_toxic": toxic,
            "therapeutic_fraction": self._therapeutic_fraction(state),
        }
        return self.observe(key, state, action, params), state, reward, terminated, info

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        key_cell, key_ke, key_vd, key_rhythm = prng.split(key, 4)
        var = params.pk_variability
        state = EnvState(
            cell=fhn.initial_state(key_cell),
            drug=pk.initial_state(),
            elimination_rate=params.pk.elimination_rate
            * (1.0 + prng.uniform(key_ke, minval=-var, maxval=var)),
            volume_of_distribution=params.pk.volume_of_distribution
            * (1.0 + prng.uniform(key_vd, minval=-var, maxval=var)),
            arrhythmia_active=prng.uniform(key_rhythm) < params.arrhythmia_prob,
            therapeutic_steps=jnp.zeros((), jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.observe(key, state, None, params), state

    def params_after_resets(
        self, key: jax.Array, params: EnvParams, resets: jax.Array | int
    ) -> EnvParams:
        """The reference scales k_e and V_d of its env object in place at every reset,
        so they drift: after ``resets`` resets each is its default times ``resets``
        factors 1 + U(-var, var), the ``i``-th drawn from ``fold_in(key, i)`` (this env
        draws them fresh instead: docs/reference-differences.md item 3)."""
        var = params.pk_variability

        def one_reset(i: jax.Array, drift: jax.Array) -> jax.Array:
            factors = 1.0 + prng.uniform(jax.random.fold_in(key, i), (2,), -var, var)
            return drift * factors

        elimination_drift, volume_drift = jax.lax.fori_loop(
            0, resets, one_reset, jnp.ones((2,), jnp.float32)
        )
        return params.replace(
            pk=params.pk.replace(
                elimination_rate=params.pk.elimination_rate * elimination_drift,
                volume_of_distribution=params.pk.volume_of_distribution * volume_drift,
            )
        )

    @staticmethod
    def _therapeutic_fraction(state: EnvState) -> jax.Array:
        return state.therapeutic_steps / jnp.maximum(state.time, 1)

    def get_obs(self, state: EnvState, params: EnvParams, key: Any = None) -> jax.Array:
        concentration = state.drug.plasma_concentration
        return jnp.stack(
            [
                state.cell.v,
                state.cell.w,
                jnp.minimum(concentration, MAX_OBSERVED_CONCENTRATION),
                state.arrhythmia_active.astype(jnp.float32),
                pk.efficacy(concentration, self.patient_pk(state, params)),
                self._therapeutic_fraction(state),
            ]
        ).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        concentration = state.drug.plasma_concentration
        return pk.is_toxic(concentration, self.patient_pk(state, params)) & (
            concentration > TERMINATION_CONCENTRATION
        )

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Dose in mg."""
        return box(0.0, MAX_DOSE_MG, (1,))

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Bounds every reachable observation satisfies."""
        v_bound, w_low, w_high = fhn.state_bounds(
            params.cell,
            jnp.maximum(params.normal_stimulus, params.arrhythmic_stimulus),
            NOISE_MARGIN_SDS * params.membrane_noise_std,
        )
        low = stack_last([-v_bound, w_low, 0.0, 0.0, 0.0, 0.0])
        high = stack_last([v_bound, w_high, MAX_OBSERVED_CONCENTRATION, 1.0, 1.0, 1.0])
        return spaces.Box(low=low, high=high, shape=(6,), dtype=jnp.float32)
