"""FitzHugh-Nagumo (FHN) excitable-membrane model, as a pure function of (state, params, input).

Equations (the form CardioSim 0.1.0 integrates; the paper writes epsilon = 1/tau):

    dv/dt = v - v^3 / 3 - w + I_ext
    dw/dt = (v + a - b * w) / tau

``v`` is a dimensionless membrane-voltage analogue (about -2.2 to 2.2 in use),
``w`` the slow recovery variable. The model is dimensionless, time included:
CardioSim's docs call a time unit "ms", but nothing in the equations fixes a
scale, and each use calibrates its own (v1 dosing maps 33.5 ms to one unit, so
that the drug-free QTc is physiological). CardioSim integrates it with RK4 at
dt = 0.05 and adds optional Gaussian noise to ``v`` after every step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.models import prng
from cardiosim_jax.models.integrators import rk4_solve, rk4_step
from cardiosim_jax.models.validation import ParameterRange, validate_parameters

#: Integration step used by every CardioSim environment that drives FHN (model time units).
DT = 0.05

#: Accepted values of each parameter.
PARAMETER_RANGES: dict[str, ParameterRange] = {
    "a": ParameterRange(0.05, 0.5, "dimensionless", "FitzHugh, 1961"),
    "b": ParameterRange(0.1, 1.5, "dimensionless", "FitzHugh, 1961"),
    "tau": ParameterRange(5.0, 25.0, "dimensionless (model time units)", "FitzHugh, 1961"),
}

#: Accepted stimulus currents I_ext (dimensionless).
STIMULUS_RANGE = ParameterRange(0.0, 2.0, "dimensionless", "FitzHugh, 1961")


@struct.dataclass
class FitzHughNagumoParams:
    """FHN shape parameters (dimensionless ``a``, ``b``; ``tau`` in model time units)."""

    a: jax.Array = 0.2
    b: jax.Array = 0.7
    tau: jax.Array = 12.5


@struct.dataclass
class FitzHughNagumoState:
    """Membrane voltage analogue ``v`` and recovery variable ``w`` (both dimensionless)."""

    v: jax.Array
    w: jax.Array


#: Resting point CardioSim resets to (before its N(0, 0.05) perturbation).
RESTING_STATE = (-1.2, -0.6)


def validate(params: FitzHughNagumoParams, prefix: str = "") -> None:
    """Raise ``ValueError`` naming any parameter outside ``PARAMETER_RANGES``."""
    validate_parameters(params, PARAMETER_RANGES, prefix=prefix)


def vector_field(
    t: jax.Array, state: FitzHughNagumoState, args: tuple[FitzHughNagumoParams, jax.Array]
) -> FitzHughNagumoState:
    """Time derivatives (dv/dt, dw/dt) for stimulus current ``args[1]``."""
    del t
    params, stimulus_current = args
    v, w = state.v, state.w
    return FitzHughNagumoState(
        v=v - v**3 / 3.0 - w + stimulus_current,
        w=(v + params.a - params.b * w) / params.tau,
    )


def initial_state(key: jax.Array, perturbation_std: float = 0.05) -> FitzHughNagumoState:
    """Resting state with independent N(0, perturbation_std) perturbations of v and w."""
    noise = perturbation_std * prng.normal(key, (2,))
    return FitzHughNagumoState(v=RESTING_STATE[0] + noise[0], w=RESTING_STATE[1] + noise[1])


def step(
    state: FitzHughNagumoState,
    params: FitzHughNagumoParams,
    stimulus_current: jax.Array,
    voltage_noise: jax.Array = 0.0,
    dt: float = DT,
) -> FitzHughNagumoState:
    """One RK4 step of size ``dt``, then ``voltage_noise`` (already scaled) added to v."""
    new = rk4_step(vector_field, jnp.zeros(()), state, dt, (params, stimulus_current))
    return new.replace(v=new.v + voltage_noise)


def integrate(
    state: FitzHughNagumoState,
    params: FitzHughNagumoParams,
    stimulus_current: jax.Array,
    voltage_noise: jax.Array,
    dt: float = DT,
) -> FitzHughNagumoState:
    """Run ``len(voltage_noise)`` RK4 steps at constant current, adding one noise draw per step.

    ``voltage_noise`` has shape ``(n_steps,)`` and holds the already-scaled
    Gaussian perturbations (zeros for a noise-free cell).
    """
    final, _ = rk4_solve(
        vector_field,
        state,
        dt,
        voltage_noise.shape[0],
        (params, stimulus_current),
        post_step=lambda y, noise: y.replace(v=y.v + noise),
        step_inputs=voltage_noise,
    )
    return final


def integrate_with(
    state: FitzHughNagumoState,
    params: FitzHughNagumoParams,
    stimulus_current: jax.Array,
    n_steps: int,
    voltage_noise: Callable[[jax.Array], jax.Array] | jax.Array,
    dt: float = DT,
    unroll: int | bool = True,
) -> FitzHughNagumoState:
    """:func:`integrate` with the noise of step ``i`` computed as ``voltage_noise(i)``.

    Same arithmetic as ``integrate(state, params, current, noise)`` when
    ``voltage_noise(i) == noise[i]``. Computing the noise inside the loop lets
    XLA fuse its generation with the RK4 stages instead of materialising the
    whole noise vector first; ``unroll`` substeps run per loop iteration.

    ``voltage_noise`` may instead be the noise itself, an array of shape
    ``(n_steps,)``: it is then the loop's scanned input, one entry per step
    (the same arithmetic). Under ``vmap`` that stores it step-major, so each
    substep reads one contiguous row of the batch; indexing ``noise[i]`` from
    a function reads a strided column of a patient-major ``(batch, n_steps)``
    array, one cache line per patient per substep.
    """
    dt = jnp.asarray(dt, jnp.float32)  # as rk4_solve: dt/6 etc. rounded in float32
    t = jnp.zeros((), jnp.float32)

    def rk4(y: FitzHughNagumoState) -> FitzHughNagumoState:
        return rk4_step(vector_field, t, y, dt, (params, stimulus_current))

    if not callable(voltage_noise):
        if jnp.shape(voltage_noise) != (n_steps,):
            raise ValueError(
                f"voltage_noise of shape {jnp.shape(voltage_noise)}; expected ({n_steps},)"
            )

        def scanned(y: FitzHughNagumoState, noise: jax.Array) -> tuple:
            y = rk4(y)
            return y.replace(v=y.v + noise), None

        return jax.lax.scan(scanned, state, voltage_noise, unroll=unroll)[0]

    def body(i: jax.Array, y: FitzHughNagumoState) -> FitzHughNagumoState:
        y = rk4(y)
        return y.replace(v=y.v + voltage_noise(i))

    return jax.lax.fori_loop(0, n_steps, body, state, unroll=unroll)


def state_bounds(
    params: FitzHughNagumoParams, max_stimulus: jax.Array, noise_margin: jax.Array = 0.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """An invariant box ``|v| <= V``, ``w_low <= w <= w_high`` for stimuli in ``[0, max_stimulus]``.

    On the box's faces the vector field points inward: ``dw/dt <= 0`` at
    ``w = (a + V) / b`` and ``>= 0`` at ``w = (a - V) / b`` whenever ``|v| <= V``,
    and ``dv/dt`` has the inward sign at ``v = +-V`` for every such ``w`` once
    ``V^3 / 3 >= (1 + 1/b) V + max(I_max - a/b, a/b)``. ``V`` is the largest root
    of that cubic (Newton from above), widened by ``noise_margin`` for noisy
    cells. Returns ``(V, w_low, w_high)``.
    """
    slope = 1.0 + 1.0 / params.b
    offset = jnp.maximum(max_stimulus - params.a / params.b, params.a / params.b)
    bound = 2.0 * jnp.sqrt(3.0 * slope) + jnp.cbrt(3.0 * offset) + 1.0  # above the root
    for _ in range(30):  # convex and increasing above the root: monotone convergence
        cubic = bound**3 / 3.0 - slope * bound - offset
        bound = bound - cubic / (bound**2 - slope)
    bound = bound + 1e-3 + noise_margin
    return bound, (params.a - bound) / params.b, (params.a + bound) / params.b
