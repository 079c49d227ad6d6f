"""Fixed-step RK4 on pytree states: exactness, 4th-order convergence, post-step hooks, jit/vmap."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from scipy.integrate import solve_ivp

from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models.integrators import rk4_solve, rk4_step


@struct.dataclass
class Pair:
    x: jax.Array
    y: jax.Array


def linear_field(t, state, lam):
    """dy/dt = lam * y on every leaf of a pytree."""
    del t
    return jax.tree_util.tree_map(lambda leaf: lam * leaf, state)


def rk4_amplification(z: float) -> float:
    """RK4 applied to y' = lam y multiplies y by the degree-4 Taylor polynomial of exp(z)."""
    return sum(z**k / math.factorial(k) for k in range(5))


# --------------------------------------------------------------------------------------------
# Single steps


def test_rk4_step_linear_is_degree_four_taylor_polynomial_on_dict_state():
    state = {"a": jnp.asarray([1.0, -2.0, 0.5]), "nested": {"b": jnp.asarray(3.0)}}
    lam, dt = -1.3, 0.4
    out = rk4_step(linear_field, jnp.asarray(0.0), state, dt, lam)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(state)
    factor = rk4_amplification(lam * dt)
    np.testing.assert_allclose(out["a"], factor * np.array([1.0, -2.0, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(out["nested"]["b"], factor * 3.0, rtol=1e-6)
    # and the factor is not exp(z): RK4 truncates at 4th order
    assert abs(factor - math.exp(lam * dt)) > 1e-5


def test_rk4_step_uses_stage_times_cubic_in_t_is_exact():
    """RK4 on y' = f(t) is Simpson's rule, exact for cubics; this pins the stage times."""

    def field(t, state, args):
        del state, args
        return Pair(x=t**3, y=2.0 * t - 1.0)

    t0, dt = 1.5, 0.7
    out = rk4_step(field, jnp.asarray(t0), Pair(x=jnp.asarray(0.25), y=jnp.asarray(-1.0)), dt)
    t1 = t0 + dt
    np.testing.assert_allclose(out.x, 0.25 + (t1**4 - t0**4) / 4.0, rtol=1e-6)
    np.testing.assert_allclose(out.y, -1.0 + (t1**2 - t0**2) - dt, rtol=1e-6)


def test_rk4_step_matches_hand_written_rk4_on_fhn():
    params = fhn.FitzHughNagumoParams(a=0.3, b=0.9, tau=7.0)
    v, w, current, dt = 0.4, -0.2, 0.35, 0.05

    def f(v, w):
        return v - v**3 / 3.0 - w + current, (v + 0.3 - 0.9 * w) / 7.0

    k1 = f(v, w)
    k2 = f(v + 0.5 * dt * k1[0], w + 0.5 * dt * k1[1])
    k3 = f(v + 0.5 * dt * k2[0], w + 0.5 * dt * k2[1])
    k4 = f(v + dt * k3[0], w + dt * k3[1])
    expected_v = v + dt / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
    expected_w = w + dt / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    out = rk4_step(
        fhn.vector_field,
        jnp.asarray(0.0),
        fhn.FitzHughNagumoState(v=jnp.asarray(v), w=jnp.asarray(w)),
        dt,
        (params, current),
    )
    np.testing.assert_allclose([out.v, out.w], [expected_v, expected_w], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Convergence against a tight scipy solution (float64)


def forced_fhn_field(t, state, params):
    """FHN with a smooth time-dependent stimulus: nonlinear and non-autonomous."""
    current = 0.5 + 0.3 * jnp.sin(0.7 * t)
    return fhn.vector_field(t, state, (params, current))


def forced_fhn_numpy(t, y, a, b, tau):
    v, w = y
    current = 0.5 + 0.3 * np.sin(0.7 * t)
    return [v - v**3 / 3.0 - w + current, (v + a - b * w) / tau]


@pytest.mark.parametrize("method", ["DOP853", "Radau"])
def test_rk4_solve_converges_at_fourth_order(x64, method):
    a, b, tau = 0.2, 0.7, 12.5
    y0 = (-1.0, -0.5)
    t0, t_final = 0.3, 10.3
    reference = solve_ivp(
        forced_fhn_numpy,
        (t0, t_final),
        y0,
        method=method,
        rtol=1e-12,
        atol=1e-12,
        args=(a, b, tau),
    )
    assert reference.success
    exact = reference.y[:, -1]

    params = fhn.FitzHughNagumoParams(
        a=jnp.asarray(a, jnp.float64), b=jnp.asarray(b, jnp.float64), tau=jnp.asarray(tau)
    )
    state0 = fhn.FitzHughNagumoState(
        v=jnp.asarray(y0[0], jnp.float64), w=jnp.asarray(y0[1], jnp.float64)
    )
    errors = []
    for n_steps in (50, 100, 200):
        dt = (t_final - t0) / n_steps
        final, _ = rk4_solve(forced_fhn_field, state0, dt, n_steps, params, t0=t0)
        assert final.v.dtype == jnp.float64
        errors.append(np.hypot(float(final.v) - exact[0], float(final.w) - exact[1]))
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    print(f"RK4 errors at dt, dt/2, dt/4: {errors}; ratios {ratios} ({method})")
    assert errors[0] > 1e-9  # well above the reference's own error, so the ratio means something
    for ratio in ratios:
        assert 13.0 < ratio < 19.0


def test_rk4_solve_t0_advances_time_exactly_for_polynomial_forcing():
    def field(t, state, args):
        del state, args
        return {"y": t**3}

    t0, dt, n = -2.0, 0.25, 24
    final, trajectory = rk4_solve(
        field, {"y": jnp.asarray(0.0)}, dt, n, t0=t0, save_trajectory=True
    )
    times = t0 + dt * np.arange(1, n + 1)
    np.testing.assert_allclose(trajectory["y"], (times**4 - t0**4) / 4.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(final["y"], (times[-1] ** 4 - t0**4) / 4.0, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# post_step, step_inputs, trajectories


def test_post_step_receives_each_step_input_after_each_step():
    def zero_field(t, state, args):
        del t, args
        return jax.tree_util.tree_map(jnp.zeros_like, state)

    inputs = {"x": jnp.arange(1.0, 6.0), "y": jnp.arange(10.0).reshape(5, 2)}
    y0 = Pair(x=jnp.asarray(0.5), y=jnp.asarray([1.0, -1.0]))
    final, trajectory = rk4_solve(
        zero_field,
        y0,
        0.1,
        5,
        post_step=lambda state, inp: Pair(x=state.x + inp["x"], y=state.y * 2.0 + inp["y"]),
        step_inputs=inputs,
        save_trajectory=True,
    )
    expected_x = 0.5 + np.cumsum(np.arange(1.0, 6.0))
    np.testing.assert_allclose(trajectory.x, expected_x)
    expected_y = [np.array([1.0, -1.0])]
    for row in np.arange(10.0).reshape(5, 2):
        expected_y.append(expected_y[-1] * 2.0 + row)
    np.testing.assert_allclose(trajectory.y, np.stack(expected_y[1:]))
    np.testing.assert_allclose(final.x, expected_x[-1])
    np.testing.assert_allclose(final.y, expected_y[-1])


def test_rk4_solve_equals_manual_loop_with_clamping_post_step():
    lam, dt, n = 0.9, 0.2, 30
    ceiling = 3.0

    def clamp(state, noise):
        return jax.tree_util.tree_map(lambda leaf: jnp.minimum(leaf, ceiling) + noise, state)

    noise = 0.01 * jax.random.normal(jax.random.PRNGKey(3), (n,))
    y0 = {"u": jnp.asarray([0.1, 0.5, 1.0]), "v": jnp.asarray(-0.4)}
    final, trajectory = rk4_solve(
        linear_field, y0, dt, n, lam, post_step=clamp, step_inputs=noise, save_trajectory=True
    )
    one_step = jax.jit(lambda y, t, eps: clamp(rk4_step(linear_field, t, y, dt, lam), eps))
    state, t = y0, jnp.asarray(0.0)
    for i in range(n):
        state = one_step(state, t, noise[i])
        t = t + dt
        np.testing.assert_allclose(trajectory["u"][i], state["u"], rtol=1e-6)
        np.testing.assert_allclose(trajectory["v"][i], state["v"], rtol=1e-6)
    np.testing.assert_allclose(final["u"], state["u"], rtol=1e-6)
    # the clamp was active: growing entries sit at the ceiling (plus that step's noise)
    np.testing.assert_allclose(final["u"], ceiling + noise[-1], rtol=1e-6)


@pytest.mark.parametrize("save", [True, False])
def test_trajectory_shapes(save):
    y0 = {"s": jnp.asarray(1.0), "vec": jnp.ones(3), "mat": jnp.ones((2, 4))}
    final, trajectory = rk4_solve(linear_field, y0, 0.01, 17, -0.5, save_trajectory=save)
    assert jax.tree_util.tree_map(jnp.shape, final) == jax.tree_util.tree_map(jnp.shape, y0)
    if not save:
        assert trajectory is None
        return
    assert trajectory["s"].shape == (17,)
    assert trajectory["vec"].shape == (17, 3)
    assert trajectory["mat"].shape == (17, 2, 4)
    for name in y0:
        np.testing.assert_array_equal(trajectory[name][-1], final[name])
    np.testing.assert_allclose(
        trajectory["s"], rk4_amplification(-0.005) ** np.arange(1, 18), rtol=1e-5
    )


# --------------------------------------------------------------------------------------------
# Transformations


def test_rk4_solve_jits_with_traced_step_size_and_matches_eager():
    y0 = Pair(x=jnp.asarray(1.0), y=jnp.asarray(2.0))

    def solve(y, dt, lam):
        return rk4_solve(linear_field, y, dt, 40, lam)[0]

    eager = solve(y0, 0.05, -0.8)
    jitted = jax.jit(solve)(y0, jnp.asarray(0.05), jnp.asarray(-0.8))
    np.testing.assert_allclose([jitted.x, jitted.y], [eager.x, eager.y], rtol=1e-6)
    expected = rk4_amplification(-0.04) ** 40
    np.testing.assert_allclose([jitted.x, jitted.y], [expected, 2.0 * expected], rtol=1e-5)


def test_rk4_solve_vmaps_over_states_and_args():
    lams = jnp.asarray([-2.0, -0.5, 0.0, 0.3, 1.1])
    y0 = Pair(x=jnp.linspace(0.5, 1.5, 5), y=-jnp.arange(5.0))

    def solve(y, lam):
        return rk4_solve(linear_field, y, 0.1, 20, lam, save_trajectory=True)

    finals, trajectories = jax.jit(jax.vmap(solve))(y0, lams)
    assert finals.x.shape == (5,)
    assert trajectories.x.shape == (5, 20)
    for i in range(5):
        one, _ = solve(Pair(x=y0.x[i], y=y0.y[i]), lams[i])
        np.testing.assert_allclose(finals.x[i], one.x, rtol=1e-6)
        np.testing.assert_allclose(finals.y[i], one.y, rtol=1e-6)
        factor = rk4_amplification(0.1 * float(lams[i])) ** 20
        np.testing.assert_allclose(finals.x[i], factor * float(y0.x[i]), rtol=1e-5)


def test_rk4_solve_is_differentiable():
    n, dt = 10, 0.1

    def final_value(lam):
        return rk4_solve(linear_field, jnp.asarray(2.0), dt, n, lam)[0]

    lam = 0.7
    z = lam * dt
    poly = rk4_amplification(z)
    dpoly = sum(z ** (k - 1) / math.factorial(k - 1) for k in range(1, 5))
    expected = 2.0 * n * poly ** (n - 1) * dpoly * dt
    np.testing.assert_allclose(jax.grad(final_value)(lam), expected, rtol=1e-5)
