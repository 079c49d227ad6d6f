"""Single-compartment PK: agreement with cardiosim 0.1.0, efficacy, window flags, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.models import SingleCompartmentPKModel
from cardiosim.models import pharmacokinetics as reference_pk
from conftest import check_validate_contract

from cardiosim_jax.models import pharmacokinetics as pk

N_STEPS = 1500
#: float32 vs float64 Euler; measured max relative error ~1e-6.
RTOL = 1e-4
ATOL_CONCENTRATION = 1e-4  # mg/L
ATOL_GUT = 1e-3  # mg (gut holds up to a few hundred mg)
ATOL_EFFICACY = 1e-5

REFERENCE_NAMES = {
    "volume_of_distribution": "volume_of_distribution",
    "elimination_rate": "elimination_rate",
    "absorption_rate": "absorption_rate",
    "therapeutic_min": "therapeutic_min",
    "therapeutic_max": "therapeutic_max",
    "toxic_threshold": "toxic_threshold",
    "body_weight": "body_weight",
}


def reference_model(params: pk.PharmacokineticParams) -> SingleCompartmentPKModel:
    return SingleCompartmentPKModel(
        **{ref: float(getattr(params, name)) for name, ref in REFERENCE_NAMES.items()}
    )


def run_reference(model: SingleCompartmentPKModel, doses: np.ndarray) -> dict[str, np.ndarray]:
    keys = ("concentration", "gut", "efficacy", "total", "therapeutic", "sub", "toxic")
    out: dict[str, list] = {key: [] for key in keys}
    for dose in doses:
        model.step(float(dose))
        out["concentration"].append(model.concentration)
        out["gut"].append(model.gut_amount)
        out["efficacy"].append(model.get_efficacy())
        out["total"].append(model.total_dose_given)
        out["therapeutic"].append(model.is_therapeutic())
        out["sub"].append(model.is_subtherapeutic())
        out["toxic"].append(model.is_toxic())
    return {key: np.asarray(value) for key, value in out.items()}


@jax.jit
def run_ours(params, doses):
    def body(state, dose):
        state = pk.step(state, params, dose)
        c = state.plasma_concentration
        flags = (
            pk.is_therapeutic(c, params),
            pk.is_subtherapeutic(c, params),
            pk.is_toxic(c, params),
        )
        return state, (state, pk.efficacy(c, params), flags)

    return jax.lax.scan(body, pk.initial_state(), doses)


def dosing_schedule(rng: np.random.Generator, n: int, p_dose: float) -> np.ndarray:
    """Mostly no dose; otherwise 50 or 100 mg, sometimes an arbitrary clipped-action dose."""
    doses = np.where(rng.random(n) < 0.5, 50.0, 100.0)
    doses[rng.random(n) < 0.2] = rng.uniform(0.0, 100.0)
    doses[rng.random(n) > p_dose] = 0.0
    return doses


PATIENTS = [
    pk.PharmacokineticParams(),
    # dosing env's +-20 % variability on k_e and V_d
    pk.PharmacokineticParams(elimination_rate=0.12, volume_of_distribution=1.7),
    pk.PharmacokineticParams(
        volume_of_distribution=0.8,
        elimination_rate=0.35,
        absorption_rate=3.5,
        therapeutic_min=0.8,
        therapeutic_max=3.5,
        toxic_threshold=6.0,
        body_weight=55.0,
    ),
    pk.PharmacokineticParams(
        volume_of_distribution=6.0, elimination_rate=0.02, absorption_rate=0.2, body_weight=120.0
    ),
]


@pytest.mark.parametrize("params", PATIENTS, ids=["default", "env-varied", "fast", "slow"])
@pytest.mark.parametrize("p_dose", [0.03, 0.15])
def test_matches_reference_model(params, p_dose):
    rng = np.random.default_rng(int(1000 * p_dose))
    doses = dosing_schedule(rng, N_STEPS, p_dose)
    assert {0.0, 50.0, 100.0} <= set(doses)
    expected = run_reference(reference_model(params), doses)

    _, (states, efficacy, (therapeutic, sub, toxic)) = run_ours(
        params, jnp.asarray(doses, jnp.float32)
    )
    np.testing.assert_allclose(
        states.plasma_concentration, expected["concentration"], rtol=RTOL, atol=ATOL_CONCENTRATION
    )
    np.testing.assert_allclose(states.gut_amount, expected["gut"], rtol=RTOL, atol=ATOL_GUT)
    np.testing.assert_allclose(efficacy, expected["efficacy"], rtol=RTOL, atol=ATOL_EFFICACY)
    np.testing.assert_allclose(states.total_dose, expected["total"], rtol=1e-6)
    # window flags agree except where the concentration sits within float32 noise of a bound
    bounds = [params.therapeutic_min, params.therapeutic_max, params.toxic_threshold]
    distance = np.min([np.abs(expected["concentration"] - b) for b in bounds], axis=0)
    clear = distance > 1e-4
    for ours, theirs in ((therapeutic, "therapeutic"), (sub, "sub"), (toxic, "toxic")):
        np.testing.assert_array_equal(np.asarray(ours)[clear], expected[theirs][clear])
    assert expected["concentration"].max() > 0.5  # the doses did something


def test_matches_reference_to_rounding_in_float64(x64):
    """In float64 the two implementations do the same arithmetic: agreement to ~1e-13."""
    params = PATIENTS[2]
    doses = dosing_schedule(np.random.default_rng(6), N_STEPS, 0.1)
    expected = run_reference(reference_model(params), doses)
    zero = jnp.zeros((), jnp.float64)

    def body(state, dose):
        state = pk.step(state, params, dose)
        return state, (state, pk.efficacy(state.plasma_concentration, params))

    _, (states, efficacy) = jax.jit(
        lambda d: jax.lax.scan(body, pk.PharmacokineticState(zero, zero, zero), d)
    )(jnp.asarray(doses, jnp.float64))
    assert states.plasma_concentration.dtype == jnp.float64
    np.testing.assert_allclose(states.plasma_concentration, expected["concentration"], atol=1e-10)
    np.testing.assert_allclose(states.gut_amount, expected["gut"], atol=1e-9)
    np.testing.assert_allclose(efficacy, expected["efficacy"], atol=1e-12)


def test_zero_and_negative_doses_are_ignored():
    params = pk.PharmacokineticParams()
    state = pk.step(pk.initial_state(), params, 100.0)
    for dose in (0.0, -50.0):
        nxt = pk.step(state, params, dose)
        reference = reference_model(params)
        reference.step(100.0)
        reference.step(dose)
        assert float(nxt.total_dose) == 100.0 == reference.total_dose_given
        np.testing.assert_allclose(nxt.gut_amount, reference.gut_amount, rtol=1e-6)
        np.testing.assert_allclose(nxt.plasma_concentration, reference.concentration, rtol=1e-6)


def test_concentration_clamped_to_upper_bound_like_reference():
    params = pk.PharmacokineticParams(volume_of_distribution=0.5, body_weight=40.0)
    doses = np.full(60, 1e5)
    expected = run_reference(reference_model(params), doses)
    _, (states, efficacy, _) = run_ours(params, jnp.asarray(doses, jnp.float32))
    assert expected["concentration"].max() == pk.MAX_CONCENTRATION
    np.testing.assert_allclose(
        states.plasma_concentration, expected["concentration"], rtol=RTOL, atol=ATOL_CONCENTRATION
    )
    assert float(states.plasma_concentration.max()) == pk.MAX_CONCENTRATION
    np.testing.assert_allclose(efficacy, expected["efficacy"], rtol=RTOL)


def test_euler_step_without_dose_decays_geometrically():
    params = pk.PharmacokineticParams(elimination_rate=0.3, absorption_rate=2.0)
    state = pk.PharmacokineticState(
        gut_amount=jnp.float32(0.0),
        plasma_concentration=jnp.float32(4.0),
        total_dose=jnp.float32(0),
    )
    for _ in range(10):
        state = pk.step(state, params, 0.0)
    np.testing.assert_allclose(state.plasma_concentration, 4.0 * (1 - 0.3 * 0.1) ** 10, rtol=1e-5)
    state = pk.PharmacokineticState(
        gut_amount=jnp.float32(80.0),
        plasma_concentration=jnp.float32(0.0),
        total_dose=jnp.float32(0),
    )
    for _ in range(10):
        state = pk.step(state, params, 0.0)
    np.testing.assert_allclose(state.gut_amount, 80.0 * (1 - 2.0 * 0.1) ** 10, rtol=1e-5)


def test_efficacy_matches_reference_and_is_a_hill_curve():
    rng = np.random.default_rng(5)
    for _ in range(30):
        params = pk.PharmacokineticParams(
            therapeutic_min=rng.uniform(0.5, 3.0), therapeutic_max=rng.uniform(3.0, 10.0)
        )
        c = float(rng.choice([0.0, rng.uniform(0, 20), rng.uniform(0, 1000)]))
        reference = reference_model(params)
        reference.concentration = c
        np.testing.assert_allclose(
            pk.efficacy(jnp.float32(c), params), reference.get_efficacy(), rtol=1e-5, atol=1e-7
        )
    params = pk.PharmacokineticParams()
    ec50 = 0.5 * (params.therapeutic_min + params.therapeutic_max)
    np.testing.assert_allclose(pk.efficacy(jnp.float32(ec50), params), 0.5, rtol=1e-6)
    assert float(pk.efficacy(jnp.float32(0.0), params)) == 0.0
    assert float(pk.efficacy(jnp.float32(-1.0), params)) == 0.0
    grid = pk.efficacy(jnp.linspace(0.0, 100.0, 1001), params)
    assert np.all(np.diff(np.asarray(grid)) > 0) and float(grid[-1]) < 1.0


def test_window_flags_at_the_bounds():
    params = pk.PharmacokineticParams()
    c = jnp.asarray([1.4, 1.5, 5.0, 5.1, 8.0, 9.0])
    for fn, method in (
        (pk.is_therapeutic, "is_therapeutic"),
        (pk.is_subtherapeutic, "is_subtherapeutic"),
        (pk.is_toxic, "is_toxic"),
    ):
        expected = []
        for value in np.asarray(c):
            reference = reference_model(params)
            reference.concentration = float(value)
            expected.append(getattr(reference, method)())
        np.testing.assert_array_equal(fn(c, params), expected)


def test_step_vmaps_over_a_population():
    params = jax.tree_util.tree_map(lambda *xs: jnp.asarray(xs, jnp.float32), *PATIENTS)
    doses = jnp.asarray([50.0, 0.0, 100.0, 0.0, 0.0])

    def run(one_params):
        def body(state, dose):
            return pk.step(state, one_params, dose), None

        return jax.lax.scan(body, pk.initial_state(), doses)[0]

    batched = jax.jit(jax.vmap(run))(params)
    for i, patient in enumerate(PATIENTS):
        reference = reference_model(patient)
        for dose in np.asarray(doses):
            reference.step(float(dose))
        np.testing.assert_allclose(
            batched.plasma_concentration[i], reference.concentration, rtol=1e-5
        )


def test_parameter_ranges_match_reference():
    for name, bounds in pk.PARAMETER_RANGES.items():
        if name == "body_weight":  # the reference does not range-check it
            assert bounds.low <= 70.0 <= bounds.high
            continue
        info = reference_pk.PARAMETER_RANGES[name]
        assert (bounds.low, bounds.high, bounds.source) == (
            info["min"],
            info["max"],
            info["source"],
        )
        assert float(getattr(pk.PharmacokineticParams(), name)) == info["default"]


def test_validate():
    check_validate_contract(pk.validate, pk.PharmacokineticParams(), pk.PARAMETER_RANGES)
