"""Aliev-Panfilov cell model: agreement with cardiosim 0.1.0, post-step clamp, noise, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.models import AlievPanfilovModel
from cardiosim.models import aliev_panfilov as reference_ap
from conftest import check_validate_contract

from cardiosim_jax.models import aliev_panfilov as ap

N_STEPS = 2000
#: float32 scan vs the float64 reference: measured max abs error 7.5e-5 (u at an upstroke with
#: the 'fast' parameters; ~2e-6 with the defaults).
RTOL = ATOL = 1e-4
#: DefibrillationTiming's fibrillation stimulus: U(0, 0.3) * fib_severity (0.8 on medium).
MAX_STIMULUS = 0.3 * 0.8

REFERENCE_NAMES = {
    "k": "k",
    "a": "a_param",
    "epsilon_0": "epsilon_0",
    "mu_1": "mu_1",
    "mu_2": "mu_2",
}


def reference_model(params: ap.AlievPanfilovParams, **kwargs) -> AlievPanfilovModel:
    values = {REFERENCE_NAMES[name]: float(getattr(params, name)) for name in REFERENCE_NAMES}
    return AlievPanfilovModel(**values, **kwargs)


def run_reference(model: AlievPanfilovModel, currents: np.ndarray) -> np.ndarray:
    return np.array([model.step(float(current)) for current in currents])


@jax.jit
def run_ours(state, params, currents):
    def body(s, current):
        s = ap.step(s, params, current)
        return s, s

    return jax.lax.scan(body, state, currents)


def defibrillation_currents(rng: np.random.Generator, n: int) -> np.ndarray:
    """A new U(0, 0.24) current every 20 substeps, with quiescent (post-shock) stretches."""
    currents = rng.uniform(0.0, MAX_STIMULUS, n // 20)
    currents[rng.random(n // 20) < 0.25] = 0.0
    return currents.repeat(20)


PARAMS = [
    ap.AlievPanfilovParams(),
    ap.AlievPanfilovParams(k=11.0, a=0.08, epsilon_0=0.008, mu_1=0.12, mu_2=0.38),
    ap.AlievPanfilovParams(k=4.5, a=0.19, epsilon_0=0.0012, mu_1=0.28, mu_2=0.22),
]


@pytest.mark.parametrize("params", PARAMS, ids=["default", "fast", "slow"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_model(params, seed):
    rng = np.random.default_rng(seed)
    reference = reference_model(params)
    reference.reset(rng)
    # DefibrillationTiming's fibrillation initial state
    reference.u, reference.v = rng.uniform(0.3, 0.9), rng.uniform(0.0, 5.0)
    state0 = ap.AlievPanfilovState(u=jnp.float32(reference.u), v=jnp.float32(reference.v))
    currents = defibrillation_currents(rng, N_STEPS)
    expected = run_reference(reference, currents)

    final, trajectory = run_ours(state0, params, jnp.asarray(currents, jnp.float32))
    got = np.stack([trajectory.u, trajectory.v], axis=1)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose([final.u, final.v], reference.get_state(), rtol=RTOL, atol=ATOL)
    assert np.ptp(expected[:, 0]) > 0.5  # u goes through an action potential


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference_from_states_outside_the_clamp_box(seed):
    """Start below the clamp box's floors, so the post-step clamp decides the first steps.

    (Starts far above the box, e.g. u > 1.5 with v > 20, make RK4 stages cross
    the epsilon singularity u = -mu_2, where the reference's epsilon changes sign
    and ours is guarded; the environments never get there.)
    """
    rng = np.random.default_rng(100 + seed)
    params = PARAMS[seed % len(PARAMS)]
    u0, v0 = [(-0.2, 0.0), (-0.15, 1.0), (0.05, -0.3), (-0.25, -0.3)][seed]
    reference = reference_model(params)
    reference.u, reference.v = u0, v0
    currents = defibrillation_currents(rng, 1000)
    currents[:20] = 0.0  # a stimulus would lift u off the floor within the first step
    expected = run_reference(reference, currents)

    _, trajectory = run_ours(
        ap.AlievPanfilovState(u=jnp.float32(u0), v=jnp.float32(v0)),
        params,
        jnp.asarray(currents, jnp.float32),
    )
    got = np.stack([trajectory.u, trajectory.v], axis=1)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    # the clamp was active on the first step in at least one variable
    first = expected[0]
    assert first[0] in ap.U_CLAMP or first[1] in ap.V_CLAMP
    assert got[0, 0] in ap.U_CLAMP or got[0, 1] in ap.V_CLAMP
    assert np.all(got[:, 0] >= ap.U_CLAMP[0]) and np.all(got[:, 0] <= ap.U_CLAMP[1])
    assert np.all(got[:, 1] >= ap.V_CLAMP[0]) and np.all(got[:, 1] <= ap.V_CLAMP[1])


@pytest.mark.parametrize("params", PARAMS, ids=["default", "fast", "slow"])
def test_matches_reference_to_rounding_in_float64(x64, params):
    """In float64 the two implementations do the same arithmetic: agreement to ~1e-13."""
    rng = np.random.default_rng(8)
    reference = reference_model(params)
    reference.u, reference.v = rng.uniform(0.3, 0.9), rng.uniform(0.0, 5.0)
    state0 = ap.AlievPanfilovState(u=jnp.float64(reference.u), v=jnp.float64(reference.v))
    currents = defibrillation_currents(rng, N_STEPS)
    expected = run_reference(reference, currents)
    _, trajectory = run_ours(state0, params, jnp.asarray(currents, jnp.float64))
    assert trajectory.u.dtype == jnp.float64
    np.testing.assert_allclose(
        np.stack([trajectory.u, trajectory.v], axis=1), expected, rtol=0, atol=1e-10
    )


def test_clamp_bounds_the_state():
    state = ap.AlievPanfilovState(
        u=jnp.asarray([-3.0, -0.1, 0.4, 1.5, 9.0]), v=jnp.asarray([-1.0, 30.0, 5.0, 20.0, -0.1])
    )
    clamped = ap.clamp(state)
    np.testing.assert_array_equal(clamped.u, np.array([-0.1, -0.1, 0.4, 1.5, 1.5], np.float32))
    np.testing.assert_array_equal(clamped.v, np.array([-0.1, 20.0, 5.0, 20.0, -0.1], np.float32))


def test_integrate_matches_reference_with_noise_after_clamp(monkeypatch):
    """The reference clamps, then adds np.random noise to u, so u may leave the clamp box."""
    rng = np.random.default_rng(11)
    noise_std, n = 0.05, 1000
    z = rng.standard_normal(n)
    draws = iter(z)

    def fake_normal(loc, scale):
        assert loc == 0 and scale == noise_std
        return noise_std * next(draws)

    monkeypatch.setattr(reference_ap.np.random, "normal", fake_normal)
    reference = AlievPanfilovModel(noise_std=noise_std)
    reference.u, reference.v = 0.6, 2.0
    expected = run_reference(reference, np.full(n, 0.1))

    final, u_history = jax.jit(ap.integrate)(
        ap.AlievPanfilovState(u=jnp.float32(0.6), v=jnp.float32(2.0)),
        ap.AlievPanfilovParams(),
        jnp.float32(0.1),
        jnp.asarray(noise_std * z, jnp.float32),
    )
    assert u_history.shape == (n,)
    np.testing.assert_allclose(u_history, expected[:, 0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose([final.u, final.v], expected[-1], rtol=RTOL, atol=ATOL)
    # the noise pushed u below the clamp's floor at some point, as in the reference
    assert expected[:, 0].min() < ap.U_CLAMP[0]
    assert float(u_history.min()) < ap.U_CLAMP[0]


def test_integrate_equals_repeated_steps():
    noise = 0.02 * jax.random.normal(jax.random.PRNGKey(5), (200,))
    params = PARAMS[1]
    state = ap.AlievPanfilovState(u=jnp.float32(0.7), v=jnp.float32(1.0))
    final, u_history = jax.jit(ap.integrate)(state, params, jnp.float32(0.2), noise)
    us = []
    step = jax.jit(ap.step)
    for eps in np.asarray(noise):
        state = step(state, params, 0.2, eps)
        us.append(state.u)
    np.testing.assert_allclose(u_history, us, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([final.u, final.v], [state.u, state.v], rtol=1e-5, atol=1e-6)


def test_vector_field_matches_reference_derivatives():
    rng = np.random.default_rng(4)
    for _ in range(20):
        params = ap.AlievPanfilovParams(
            k=rng.uniform(4.0, 12.0),
            a=rng.uniform(0.05, 0.2),
            epsilon_0=rng.uniform(0.001, 0.01),
            mu_1=rng.uniform(0.1, 0.3),
            mu_2=rng.uniform(0.2, 0.4),
        )
        u, v, current = rng.uniform(-0.1, 1.5), rng.uniform(-0.1, 20.0), rng.uniform(0, 0.3)
        expected = reference_model(params)._derivatives(u, v, current)
        got = ap.vector_field(
            0.0, ap.AlievPanfilovState(u=jnp.float32(u), v=jnp.float32(v)), (params, current)
        )
        np.testing.assert_allclose([got.u, got.v], expected, rtol=1e-5, atol=1e-5)


def test_vector_field_finite_at_the_epsilon_singularity():
    params = ap.AlievPanfilovParams()
    state = ap.AlievPanfilovState(u=-jnp.float32(params.mu_2), v=jnp.float32(1.0))
    derivative = ap.vector_field(0.0, state, (params, 0.0))
    assert np.isfinite(derivative.u) and np.isfinite(derivative.v)


def test_step_vmaps_over_states_and_parameters():
    params = jax.tree_util.tree_map(lambda *xs: jnp.asarray(xs), *PARAMS)
    state = ap.AlievPanfilovState(u=jnp.asarray([0.3, 0.6, 0.9]), v=jnp.asarray([0.0, 2.5, 5.0]))
    currents = jnp.asarray([0.0, 0.1, 0.24])
    batched = jax.jit(jax.vmap(ap.step))(state, params, currents)
    for i, one in enumerate(PARAMS):
        reference = reference_model(one)
        reference.u, reference.v = float(state.u[i]), float(state.v[i])
        np.testing.assert_allclose(
            [batched.u[i], batched.v[i]], reference.step(float(currents[i])), rtol=1e-5, atol=1e-6
        )


def test_parameter_ranges_match_reference():
    for name, bounds in ap.PARAMETER_RANGES.items():
        info = reference_ap.PARAMETER_RANGES[REFERENCE_NAMES[name]]
        assert (bounds.low, bounds.high, bounds.source) == (
            info["min"],
            info["max"],
            info["source"],
        )


def test_validate():
    check_validate_contract(ap.validate, ap.AlievPanfilovParams(), ap.PARAMETER_RANGES)


@pytest.mark.parametrize("name", list(REFERENCE_NAMES))
def test_validate_rejects_what_the_reference_rejects(name):
    value = ap.PARAMETER_RANGES[name].low * 0.9
    with pytest.raises(ValueError):
        AlievPanfilovModel(**{REFERENCE_NAMES[name]: value})
    with pytest.raises(ValueError, match=name):
        ap.validate(ap.AlievPanfilovParams(**{name: value}))


def test_integrate_with_noise_function_equals_integrate():
    params = ap.AlievPanfilovParams()
    state = ap.AlievPanfilovState(u=jnp.float32(0.6), v=jnp.float32(1.5))
    noise = 0.02 * jax.random.normal(jax.random.PRNGKey(0), (20,))
    expected, expected_u = jax.jit(ap.integrate)(state, params, 0.1, noise)
    for unroll in (1, 4):
        got, got_u = jax.jit(
            lambda s, u=unroll: ap.integrate_with(s, params, 0.1, 20, lambda i: noise[i], unroll=u)
        )(state)
        np.testing.assert_allclose(np.asarray(got_u), np.asarray(expected_u), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(got.v), float(expected.v), rtol=1e-6)


def test_integrate_with_noise_array_is_the_noise_function_bit_for_bit():
    """The scanned-noise form the defibrillation env uses: same arithmetic and history."""
    params = ap.AlievPanfilovParams()
    keys = jax.random.split(jax.random.PRNGKey(2), 64)
    states = ap.AlievPanfilovState(
        u=jnp.linspace(0.0, 1.0, 64, dtype=jnp.float32), v=jnp.linspace(0.0, 3.0, 64)
    )
    noises = 0.02 * jax.vmap(lambda k: jax.random.normal(k, (20,)))(keys)

    def by_function(s, noise):
        return ap.integrate_with(s, params, 0.1, 20, lambda i: noise[i])

    def by_array(s, noise):
        return ap.integrate_with(s, params, 0.1, 20, noise)

    expected = jax.jit(jax.vmap(by_function))(states, noises)
    got = jax.jit(jax.vmap(by_array))(states, noises)
    for a, b in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=r"\(20,\)"):
        ap.integrate_with(states, params, 0.1, 20, jnp.zeros((20, 2)))
