"""Logistic energy dose-response modulated by AMSA, time in VF and delivered energy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from conftest import check_validate_contract

from cardiosim_jax.models import shock_response as sr

PARAMS = sr.ShockResponseParams()


def p(energy, amsa=15.5, minutes=5.0, cumulative=0.0, params=PARAMS):
    return np.asarray(
        sr.success_probability(
            params,
            jnp.asarray(energy, jnp.float32),
            jnp.asarray(amsa, jnp.float32),
            jnp.asarray(minutes, jnp.float32),
            jnp.asarray(cumulative, jnp.float32),
        )
    )


def test_validate_contract():
    check_validate_contract(sr.validate, PARAMS, sr.PARAMETER_RANGES)


def test_success_rises_with_energy():
    assert np.all(np.diff(p(np.array([50.0, 100.0, 150.0, 200.0, 300.0, 360.0]))) > 0)


def test_success_falls_with_time_in_fibrillation():
    assert np.all(np.diff(p(200.0, minutes=np.array([1.0, 4.0, 8.0, 12.0]))) < 0)


def test_success_rises_with_amsa_and_falls_with_delivered_energy():
    assert np.all(np.diff(p(200.0, amsa=np.array([5.0, 10.0, 15.5, 21.0]))) > 0)
    assert np.all(np.diff(p(200.0, cumulative=np.array([0.0, 720.0, 2000.0]))) < 0)


def test_early_biphasic_first_shock_matches_trials():
    # ORCA / BIPHASIC: 85-95 % first-shock success at 150-200 J early in VF.
    early = p(np.array([150.0, 200.0]), amsa=21.0, minutes=1.0)
    assert np.all((early > 0.8) & (early < 0.97))


def test_e50_is_the_half_way_energy():
    e50 = sr.effective_e50(PARAMS, jnp.float32(12.0), jnp.float32(6.0), jnp.float32(500.0))
    np.testing.assert_allclose(p(float(e50), amsa=12.0, minutes=6.0, cumulative=500.0), 0.5, 1e-5)


def test_extreme_inputs_stay_finite_and_bounded():
    values = p(
        np.array([0.0, -5.0, 1e9, np.inf, 200.0, 200.0]),
        amsa=np.array([0.0, 1e6, -1e6, 15.0, np.inf, 15.0]),
        minutes=np.array([0.0, 1e6, 0.0, 5.0, 5.0, 1e9]),
    )
    assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))


def test_survival_decays_faster_without_flow():
    no_flow = float(sr.survival_decay(PARAMS, jnp.float32(60.0), jnp.float32(0.0)))
    cpr = float(sr.survival_decay(PARAMS, jnp.float32(0.0), jnp.float32(60.0)))
    assert no_flow < cpr < 1.0
    np.testing.assert_allclose(no_flow, np.exp(-float(PARAMS.survival_decay_no_flow_per_min)))
    assert float(sr.survival_decay(PARAMS, jnp.float32(0.0), jnp.float32(0.0))) == 1.0
