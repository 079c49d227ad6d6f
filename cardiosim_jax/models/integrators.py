"""Fixed-step fourth-order Runge-Kutta integration over arbitrary pytree states.

The vector field has the signature ``f(t, y, args) -> dy/dt`` where ``y`` is any
pytree of arrays (e.g. a ``flax.struct`` dataclass); the derivative has the same
structure. Everything here is pure and traceable, so it jits, vmaps and
differentiates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

State = TypeVar("State")
VectorField = Callable[[jax.Array, State, Any], State]


def _axpy(alpha: jax.Array, x: Any, y: Any) -> Any:
    """Pytree ``y + alpha * x``."""
    return jax.tree_util.tree_map(lambda xi, yi: yi + alpha * xi, x, y)


def rk4_step(
    vector_field: VectorField, t: jax.Array, y: State, dt: jax.Array, args: Any = None
) -> State:
    """Advance ``y`` from ``t`` to ``t + dt`` with one classical RK4 step."""
    half = 0.5 * dt
    k1 = vector_field(t, y, args)
    k2 = vector_field(t + half, _axpy(half, k1, y), args)
    k3 = vector_field(t + half, _axpy(half, k2, y), args)
    k4 = vector_field(t + dt, _axpy(dt, k3, y), args)
    return jax.tree_util.tree_map(
        lambda yi, a, b, c, d: yi + (dt / 6.0) * (a + 2.0 * b + 2.0 * c + d), y, k1, k2, k3, k4
    )


def rk4_solve(
    vector_field: VectorField,
    y0: State,
    dt: float | jax.Array,
    n_steps: int,
    args: Any = None,
    *,
    t0: float | jax.Array = 0.0,
    post_step: Callable[[State, Any], State] | None = None,
    step_inputs: Any = None,
    save_trajectory: bool = False,
) -> tuple[State, State | None]:
    """Integrate ``n_steps`` fixed RK4 steps of size ``dt`` in one ``lax.scan``.

    Args:
        vector_field: ``f(t, y, args)`` returning dy/dt with the structure of ``y``.
        y0: initial state (pytree).
        dt: step size, in the vector field's time unit.
        n_steps: number of steps; static (it sets the scan length).
        args: passed unchanged to ``vector_field`` (parameters, constant inputs).
        t0: initial time.
        post_step: optional ``g(y, step_input) -> y`` applied after every step,
            for clamping or additive noise (the reference models do both).
        step_inputs: pytree with leading axis ``n_steps`` fed to ``post_step``.
        save_trajectory: also return the state after every step (leading axis
            ``n_steps``); otherwise the second output is ``None``.

    Returns:
        ``(y_final, trajectory_or_None)``.
    """
    dt = jnp.asarray(dt)

    def body(carry, step_input):
        t, y = carry
        y = rk4_step(vector_field, t, y, dt, args)
        if post_step is not None:
            y = post_step(y, step_input)
        return (t + dt, y), (y if save_trajectory else None)

    t0 = jnp.asarray(t0, dtype=jnp.result_type(dt, float))
    (_, y_final), trajectory = jax.lax.scan(body, (t0, y0), step_inputs, length=n_steps)
    return y_final, trajectory
