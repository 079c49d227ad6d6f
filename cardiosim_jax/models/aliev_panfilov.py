"""Aliev-Panfilov (AP) cardiac excitation model, as a pure function of (state, params, input).

Equations (Aliev & Panfilov 1996, single cell, no diffusion):

    du/dt = -k u (u - a)(u - 1) - u v + I_ext
    dv/dt = (epsilon_0 + mu_1 v / (u + mu_2)) (-v - k u (u - a - 1))

``u`` is the normalised transmembrane potential (0 = rest, 1 = peak), ``v`` the
recovery variable. The model is dimensionless: time is in model units (CardioSim
calls them ms, but they are not; v1 maps 1 unit to 12.9 ms, Aliev & Panfilov 1996),
so ``epsilon_0`` is a rate per model time unit. As in
CardioSim 0.1.0, every RK4 step (dt = 0.1) is followed by clamping u to
[-0.1, 1.5] and v to [-0.1, 20], and only then by optional Gaussian noise on u,
so u can leave its clamp range by the noise.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models.integrators import rk4_solve, rk4_step
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Integration step used by CardioSim's defibrillation environment (model time units).
DT = 0.1
#: Post-step clamp of the potential u (normalised).
U_CLAMP = (-0.1, 1.5)
#: Post-step clamp of the recovery variable v.
V_CLAMP = (-0.1, 20.0)

PARAMETER_RANGES: dict[str, ParameterRange] = {
    "k": ParameterRange(4.0, 12.0, "dimensionless", "Aliev & Panfilov, 1996"),
    "a": ParameterRange(0.05, 0.2, "dimensionless", "Aliev & Panfilov, 1996"),
    "epsilon_0": ParameterRange(0.001, 0.01, "1/model time unit", "Aliev & Panfilov, 1996"),
    "mu_1": ParameterRange(0.1, 0.3, "dimensionless", "Aliev & Panfilov, 1996"),
    "mu_2": ParameterRange(0.2, 0.4, "dimensionless", "Aliev & Panfilov, 1996"),
}


@struct.dataclass
class AlievPanfilovParams:
    """AP tissue parameters (dimensionless; ``epsilon_0`` is a rate per model time unit)."""

    k: jax.Array = 8.0
    a: jax.Array = 0.15
    epsilon_0: jax.Array = 0.002
    mu_1: jax.Array = 0.2
    mu_2: jax.Array = 0.3


@struct.dataclass
class AlievPanfilovState:
    """Normalised potential ``u`` and recovery variable ``v``."""

    u: jax.Array
    v: jax.Array


def validate(params: AlievPanfilovParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def vector_field(
    t: jax.Array, state: AlievPanfilovState, args: tuple[AlievPanfilovParams, jax.Array]
) -> AlievPanfilovState:
    """Time derivatives (du/dt, dv/dt) for stimulus current ``args[1]``."""
    del t
    params, stimulus_current = args
    u, v = state.u, state.v
    k, a = params.k, params.a
    # The clamp keeps u >= -0.1 > -mu_2, so the denominator stays positive
    # between steps; RK4 stages could in principle cross it, so guard anyway.
    denominator = jnp.maximum(u + params.mu_2, 1e-6)
    epsilon = params.epsilon_0 + params.mu_1 * v / denominator
    return AlievPanfilovState(
        u=-k * u * (u - a) * (u - 1.0) - u * v + stimulus_current,
        v=epsilon * (-v - k * u * (u - a - 1.0)),
    )


def clamp(state: AlievPanfilovState) -> AlievPanfilovState:
    """Clamp (u, v) to CardioSim's physiological box."""
    return AlievPanfilovState(u=jnp.clip(state.u, *U_CLAMP), v=jnp.clip(state.v, *V_CLAMP))


def step(
    state: AlievPanfilovState,
    params: AlievPanfilovParams,
    stimulus_current: jax.Array,
    potential_noise: jax.Array = 0.0,
    dt: float = DT,
) -> AlievPanfilovState:
    """One RK4 step, clamp, then add ``potential_noise`` (already scaled) to u."""
    new = clamp(rk4_step(vector_field, jnp.zeros(()), state, dt, (params, stimulus_current)))
    return new.replace(u=new.u + potential_noise)


def integrate(
    state: AlievPanfilovState,
    params: AlievPanfilovParams,
    stimulus_current: jax.Array,
    potential_noise: jax.Array,
    dt: float = DT,
) -> tuple[AlievPanfilovState, jax.Array]:
    """Run ``len(potential_noise)`` steps at constant current.

    Returns the final state and the potential u after every step (shape
    ``(n_steps,)``), which the defibrillation environment keeps as its
    voltage history.
    """

    def clamp_then_noise(y: AlievPanfilovState, noise: jax.Array) -> AlievPanfilovState:
        y = clamp(y)
        return y.replace(u=y.u + noise)

    final, trajectory = rk4_solve(
        vector_field,
        state,
        dt,
        potential_noise.shape[0],
        (params, stimulus_current),
        post_step=clamp_then_noise,
        step_inputs=potential_noise,
        save_trajectory=True,
    )
    return final, trajectory.u


def integrate_with(
    state: AlievPanfilovState,
    params: AlievPanfilovParams,
    stimulus_current: jax.Array,
    n_steps: int,
    potential_noise: Callable[[jax.Array], jax.Array] | jax.Array,
    dt: float = DT,
    unroll: int | bool = 1,
) -> tuple[AlievPanfilovState, jax.Array]:
    """:func:`integrate` with the noise of step ``i`` computed as ``potential_noise(i)``.

    Same arithmetic as ``integrate(state, params, current, noise)`` when
    ``potential_noise(i) == noise[i]``; drawing the noise inside the loop lets
    XLA fuse it with the step instead of materialising the noise vector first.
    ``unroll`` steps run per loop iteration. Returns ``(final, u after every step)``.

    ``potential_noise`` may instead be the noise itself, an array of shape
    ``(n_steps,)``, scanned as the loop's input (the same arithmetic): under
    ``vmap`` each step then reads one contiguous row of the batch instead of
    a strided column of a patient-major ``(batch, n_steps)`` array.
    """
    dt = jnp.asarray(dt, jnp.float32)  # as rk4_solve: dt/6 etc. rounded in float32
    t = jnp.zeros((), jnp.float32)
    if callable(potential_noise):
        noise_of, inputs = potential_noise, jnp.arange(n_steps)
    else:
        if jnp.shape(potential_noise) != (n_steps,):
            raise ValueError(
                f"potential_noise of shape {jnp.shape(potential_noise)}; expected ({n_steps},)"
            )
        noise_of, inputs = (lambda noise: noise), potential_noise

    def body(y: AlievPanfilovState, step_input: jax.Array) -> tuple[AlievPanfilovState, jax.Array]:
        y = clamp(rk4_step(vector_field, t, y, dt, (params, stimulus_current)))
        y = y.replace(u=y.u + noise_of(step_input))
        return y, y.u

    return jax.lax.scan(body, state, inputs, unroll=unroll)
