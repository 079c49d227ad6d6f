"""VF termination, the rhythm that follows, hazards in PEA/asystole, survival decay."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from conftest import check_validate_contract

from cardiosim_jax.models import shock_response as sr

PARAMS = sr.ShockResponseParams()


def p_term(energy, m=0.3, cumulative=0.0, params=PARAMS):
    return np.asarray(
        sr.termination_probability(
            params,
            jnp.asarray(energy, jnp.float32),
            jnp.asarray(m, jnp.float32),
            jnp.asarray(cumulative, jnp.float32),
        )
    )


def rhythm(m, cumulative=0.0):
    return [
        np.asarray(x)
        for x in sr.post_shock_rhythm_probabilities(
            PARAMS, jnp.asarray(m, jnp.float32), jnp.asarray(cumulative, jnp.float32)
        )
    ]


def test_validate_contract():
    check_validate_contract(sr.validate, PARAMS, sr.PARAMETER_RANGES)


def test_termination_rises_with_energy_and_energy_state():
    assert np.all(np.diff(p_term(np.array([50.0, 100.0, 150.0, 200.0, 300.0, 360.0]))) > 0)
    assert np.all(np.diff(p_term(200.0, m=np.array([0.1, 0.3, 0.6, 0.9]))) > 0)


def test_termination_falls_with_delivered_energy():
    assert np.all(np.diff(p_term(200.0, cumulative=np.array([0.0, 720.0, 2000.0]))) < 0)


def test_e50_is_the_half_way_energy():
    e50 = sr.effective_e50(PARAMS, jnp.float32(0.4), jnp.float32(500.0))
    np.testing.assert_allclose(p_term(float(e50), m=0.4, cumulative=500.0), 0.5, 1e-5)
    # By hand: E50 x exp(-beta (m - m_ref)) x (1 + injury x kJ).
    expected = 60.0 * np.exp(-1.0 * (0.4 - 0.3)) * (1.0 + 0.15 * 0.5)
    np.testing.assert_allclose(float(e50), expected, rtol=1e-5)


def test_post_shock_rhythms_are_a_distribution_that_shifts_with_m():
    m = np.array([0.0, 0.2, 0.3, 0.5, 0.7, 1.0])
    rosc, pea, asystole = rhythm(m)
    np.testing.assert_allclose(rosc + pea + asystole, 1.0, atol=1e-6)
    assert np.all((rosc >= 0) & (pea >= 0) & (asystole >= 0))
    assert np.all(np.diff(rosc) > 0)  # a recovered heart more often keeps a pulse
    assert np.all(np.diff(asystole) < 0)  # a depleted one more often goes asystolic
    assert float(rosc[-1]) <= float(PARAMS.rosc_max_probability)
    # Prior energy (injury) lowers ROSC.
    assert float(rhythm(0.5, 2000.0)[0]) < float(rhythm(0.5, 0.0)[0])


def test_rosc_hazard_in_asystole_is_a_tenth_of_pea():
    pea = float(sr.rosc_rate_per_min(PARAMS, jnp.float32(0.5), jnp.array(False), jnp.float32(0)))
    asy = float(sr.rosc_rate_per_min(PARAMS, jnp.float32(0.5), jnp.array(True), jnp.float32(0)))
    np.testing.assert_allclose(asy, sr.ASYSTOLE_ROSC_FRACTION * pea, rtol=1e-6)
    assert 0.0 < pea < float(PARAMS.rosc_rate_per_min)


def test_extreme_inputs_stay_finite_and_bounded():
    values = p_term(
        np.array([0.0, -5.0, 1e9, np.inf, 200.0, 200.0, np.nan]),
        m=np.array([0.0, 1e6, -1e6, 0.5, np.inf, np.nan, 0.5]),
        cumulative=np.array([0.0, 1e9, 0.0, 5.0, 5.0, np.inf, 0.0]),
    )
    assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1))
    for m in (np.inf, -np.inf, np.nan, 1e9):
        probabilities = rhythm(m, 1e12)
        assert all(np.isfinite(x) and 0.0 <= x <= 1.0 for x in probabilities)


def test_survival_decays_faster_without_flow():
    no_flow = float(sr.survival_decay(PARAMS, jnp.float32(60.0), jnp.float32(0.0)))
    cpr = float(sr.survival_decay(PARAMS, jnp.float32(0.0), jnp.float32(60.0)))
    assert no_flow < cpr < 1.0
    np.testing.assert_allclose(no_flow, np.exp(-float(PARAMS.survival_decay_no_flow_per_min)))
    assert float(sr.survival_decay(PARAMS, jnp.float32(0.0), jnp.float32(0.0))) == 1.0
