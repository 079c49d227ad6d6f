"""FitzHugh-Nagumo cell model: agreement with cardiosim 0.1.0, noise placement, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.models import FitzHughNagumoModel
from cardiosim.models import fitzhugh_nagumo as reference_fhn
from conftest import check_validate_contract

from cardiosim_jax.models import fitzhugh_nagumo as fhn

N_STEPS = 2000
#: float32 scan vs the float64 reference: measured max abs error 4e-5 on |v| <= 2.2.
RTOL = ATOL = 1e-4


def pacing_schedule(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ventricular-beat driven current as in PacingControl: 0.5 while a beat fires, else 0."""
    beat = np.zeros(n, dtype=bool)
    t = 0
    while t < n:
        t += int(rng.integers(60, 400))
        beat[t : t + int(rng.integers(1, 30))] = True
    return np.where(beat, 0.5, 0.0)


def dosing_schedule(rng: np.random.Generator, n: int) -> np.ndarray:
    """AntiarrhythmicDosing current: 0.8 in arrhythmia, 0.3 otherwise, held for 20 substeps."""
    return np.where(rng.random(n // 20) < 0.4, 0.8, 0.3).repeat(20)


def run_reference(model: FitzHughNagumoModel, currents: np.ndarray) -> np.ndarray:
    return np.array([model.step(float(current)) for current in currents])


@jax.jit
def run_ours(state, params, currents):
    def body(s, current):
        s = fhn.step(s, params, current)
        return s, s

    return jax.lax.scan(body, state, currents)


@pytest.mark.parametrize("schedule", [pacing_schedule, dosing_schedule])
@pytest.mark.parametrize(
    "param_values", [(0.2, 0.7, 12.5), (0.35, 1.2, 6.0), (0.08, 0.3, 22.0)], ids=str
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_model(schedule, param_values, seed):
    rng = np.random.default_rng(seed)
    a, b, tau = param_values
    reference = FitzHughNagumoModel(a=a, b=b, tau=tau)
    v0, w0 = reference.reset(rng)
    currents = schedule(rng, N_STEPS)
    assert {0.0, 0.5} == set(currents) or {0.3, 0.8} == set(currents)
    expected = run_reference(reference, currents)

    params = fhn.FitzHughNagumoParams(a=a, b=b, tau=tau)
    state0 = fhn.FitzHughNagumoState(v=jnp.float32(v0), w=jnp.float32(w0))
    final, trajectory = run_ours(state0, params, jnp.asarray(currents, jnp.float32))
    got = np.stack([trajectory.v, trajectory.w], axis=1)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose([final.v, final.w], reference.get_state(), rtol=RTOL, atol=ATOL)
    # the trajectory really is excitable dynamics, not a flat line
    assert expected[:, 0].max() > 1.0 and expected[:, 0].min() < -1.0


@pytest.mark.parametrize("schedule", [pacing_schedule, dosing_schedule])
def test_matches_reference_to_rounding_in_float64(x64, schedule):
    """In float64 the two implementations do the same arithmetic: agreement to ~1e-13."""
    rng = np.random.default_rng(5)
    reference = FitzHughNagumoModel(a=0.3, b=0.9, tau=9.0)
    v0, w0 = reference.reset(rng)
    currents = schedule(rng, N_STEPS)
    expected = run_reference(reference, currents)
    _, trajectory = run_ours(
        fhn.FitzHughNagumoState(v=jnp.float64(v0), w=jnp.float64(w0)),
        fhn.FitzHughNagumoParams(a=0.3, b=0.9, tau=9.0),
        jnp.asarray(currents, jnp.float64),
    )
    assert trajectory.v.dtype == jnp.float64
    np.testing.assert_allclose(
        np.stack([trajectory.v, trajectory.w], axis=1), expected, rtol=0, atol=1e-10
    )


def test_integrate_with_noise_matches_reference_noise_placement(monkeypatch):
    """Noise is added to v only, after each RK4 step; the reference draws it from np.random."""
    rng = np.random.default_rng(7)
    noise_std, n = 0.02, 1000
    z = rng.standard_normal(n)
    draws = iter(z)

    def fake_normal(loc, scale):
        assert loc == 0 and scale == noise_std
        return noise_std * next(draws)

    monkeypatch.setattr(reference_fhn.np.random, "normal", fake_normal)
    reference = FitzHughNagumoModel(noise_std=noise_std)
    reference.v, reference.w = -0.9, -0.4
    expected = run_reference(reference, np.full(n, 0.5))

    final = jax.jit(fhn.integrate)(
        fhn.FitzHughNagumoState(v=jnp.float32(-0.9), w=jnp.float32(-0.4)),
        fhn.FitzHughNagumoParams(),
        jnp.float32(0.5),
        jnp.asarray(noise_std * z, jnp.float32),
    )
    np.testing.assert_allclose([final.v, final.w], expected[-1], rtol=RTOL, atol=ATOL)


def test_integrate_equals_repeated_steps():
    noise = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (300,))
    params = fhn.FitzHughNagumoParams(a=0.25, b=0.8, tau=10.0)
    state = fhn.FitzHughNagumoState(v=jnp.float32(-1.1), w=jnp.float32(-0.5))
    final = jax.jit(fhn.integrate)(state, params, jnp.float32(0.8), noise)
    step = jax.jit(fhn.step)
    for eps in np.asarray(noise):
        state = step(state, params, 0.8, eps)
    np.testing.assert_allclose([final.v, final.w], [state.v, state.w], rtol=1e-5, atol=1e-5)


def test_vector_field_matches_reference_derivatives():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b, tau = rng.uniform(0.05, 0.5), rng.uniform(0.1, 1.5), rng.uniform(5.0, 25.0)
        v, w, current = rng.uniform(-2.5, 2.5), rng.uniform(-1.0, 1.5), rng.uniform(0.0, 2.0)
        expected = FitzHughNagumoModel(a=a, b=b, tau=tau)._derivatives(v, w, current)
        got = fhn.vector_field(
            0.0,
            fhn.FitzHughNagumoState(v=jnp.float32(v), w=jnp.float32(w)),
            (fhn.FitzHughNagumoParams(a=a, b=b, tau=tau), current),
        )
        np.testing.assert_allclose([got.v, got.w], expected, rtol=1e-5, atol=1e-5)


def test_initial_state_distribution_and_resting_point():
    assert fhn.RESTING_STATE == FitzHughNagumoModel().reset()
    exact = fhn.initial_state(jax.random.PRNGKey(0), perturbation_std=0.0)
    np.testing.assert_allclose([exact.v, exact.w], fhn.RESTING_STATE, rtol=1e-7)

    keys = jax.random.split(jax.random.PRNGKey(42), 4000)
    states = jax.jit(jax.vmap(fhn.initial_state))(keys)
    for values, rest in ((states.v, fhn.RESTING_STATE[0]), (states.w, fhn.RESTING_STATE[1])):
        values = np.asarray(values)
        assert abs(values.mean() - rest) < 4 * 0.05 / np.sqrt(len(values))
        assert abs(values.std() - 0.05) < 0.004
    # v and w are perturbed independently
    assert abs(np.corrcoef(states.v, states.w)[0, 1]) < 0.07


def test_step_vmaps_over_population_parameters():
    params = fhn.FitzHughNagumoParams(
        a=jnp.asarray([0.1, 0.2, 0.4]),
        b=jnp.asarray([0.5, 0.7, 1.3]),
        tau=jnp.asarray([6.0, 12.5, 20.0]),
    )
    state = fhn.FitzHughNagumoState(
        v=jnp.asarray([-1.2, 0.3, 1.5]), w=jnp.asarray([-0.6, 0.1, 0.9])
    )
    batched = jax.jit(jax.vmap(fhn.step, in_axes=(0, 0, None)))(state, params, 0.5)
    for i in range(3):
        reference = FitzHughNagumoModel(
            a=float(params.a[i]), b=float(params.b[i]), tau=float(params.tau[i])
        )
        reference.v, reference.w = float(state.v[i]), float(state.w[i])
        np.testing.assert_allclose(
            [batched.v[i], batched.w[i]], reference.step(0.5), rtol=1e-5, atol=1e-6
        )


def test_parameter_ranges_match_reference():
    for name, bounds in fhn.PARAMETER_RANGES.items():
        info = reference_fhn.PARAMETER_RANGES[name]
        assert (bounds.low, bounds.high, bounds.source) == (
            info["min"],
            info["max"],
            info["source"],
        )
    info = reference_fhn.PARAMETER_RANGES["I_ext_range"]
    assert (fhn.STIMULUS_RANGE.low, fhn.STIMULUS_RANGE.high) == (info["min"], info["max"])


def test_validate():
    check_validate_contract(fhn.validate, fhn.FitzHughNagumoParams(), fhn.PARAMETER_RANGES)


@pytest.mark.parametrize("name", ["a", "b", "tau"])
def test_validate_rejects_what_the_reference_rejects(name):
    bounds = fhn.PARAMETER_RANGES[name]
    value = bounds.high * 1.01
    with pytest.raises(ValueError):
        FitzHughNagumoModel(**{name: value})
    with pytest.raises(ValueError, match=name):
        fhn.validate(fhn.FitzHughNagumoParams(**{name: value}))


def test_integrate_with_noise_function_equals_integrate():
    params = fhn.FitzHughNagumoParams()
    state = fhn.FitzHughNagumoState(v=jnp.float32(-1.1), w=jnp.float32(-0.55))
    noise = 0.03 * jax.random.normal(jax.random.PRNGKey(0), (20,))
    expected = jax.jit(fhn.integrate)(state, params, 0.8, noise)
    for unroll in (1, 4, True):
        got = jax.jit(
            lambda s, u=unroll: fhn.integrate_with(s, params, 0.8, 20, lambda i: noise[i], unroll=u)
        )(state)
        # The same arithmetic; an FMA may be contracted differently (last bit).
        np.testing.assert_allclose(float(got.v), float(expected.v), rtol=1e-6)
        np.testing.assert_allclose(float(got.w), float(expected.w), rtol=1e-6)


def test_integrate_with_noise_array_is_the_noise_function_bit_for_bit():
    """The scanned-noise form the dosing env uses: same arithmetic, one row per substep."""
    params = fhn.FitzHughNagumoParams()
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    states = fhn.FitzHughNagumoState(
        v=jnp.linspace(-1.5, 1.5, 64, dtype=jnp.float32), w=jnp.full(64, -0.5, jnp.float32)
    )
    noises = 0.03 * jax.vmap(lambda k: jax.random.normal(k, (20,)))(keys)

    def by_function(s, noise):
        return fhn.integrate_with(s, params, 0.8, 20, lambda i: noise[i], unroll=1)

    def by_array(s, noise):
        return fhn.integrate_with(s, params, 0.8, 20, noise, unroll=1)

    expected = jax.jit(jax.vmap(by_function))(states, noises)
    got = jax.jit(jax.vmap(by_array))(states, noises)
    np.testing.assert_array_equal(np.asarray(got.v), np.asarray(expected.v))
    np.testing.assert_array_equal(np.asarray(got.w), np.asarray(expected.w))
    with pytest.raises(ValueError, match=r"\(20,\)"):
        fhn.integrate_with(states, params, 0.8, 20, jnp.zeros(19))
