"""Fibrillating Aliev-Panfilov ring, pseudo-ECG, AMSA and myocardial perfusion model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_validate_contract

from cardiosim_jax.models import prng, tissue


def test_validate_contract():
    check_validate_contract(tissue.validate, tissue.MyocardialParams(), tissue.PARAMETER_RANGES)


def test_validate_ring_contract():
    check_validate_contract(tissue.validate_ring, tissue.RingParams(), tissue.RING_PARAMETER_RANGES)


def _library_means():
    amsa, peak_to_peak = tissue.feature_library()
    return amsa.mean(axis=1), peak_to_peak.mean(axis=1), amsa, peak_to_peak


def test_amsa_rises_with_myocardial_energy():
    amsa_mean, ptp_mean, _, _ = _library_means()
    levels = np.linspace(0.0, 1.0, tissue.LIBRARY_LEVELS)
    # Over the clinically relevant range (fine to coarse VF) both features grow with m.
    idx = [int(np.argmin(np.abs(levels - m))) for m in (0.25, 0.375, 0.5, 0.625, 0.75)]
    assert np.all(np.diff(amsa_mean[idx]) > 0)
    assert np.all(np.diff(ptp_mean[idx]) > 0)
    # Depleted myocardium fades to asystole; a healthy one fibrillates coarsely.
    assert amsa_mean[0] < 0.5 and amsa_mean[-1] > 15.0


def test_signal_stays_irregular_while_fibrillating():
    _, _, amsa, peak_to_peak = _library_means()
    for level in (16, 24, 32):  # m = 0.5, 0.75, 1
        # Hardly ever flat (wavelets die out and foci restart them), and window-to-window
        # variation as in recorded VF (not a periodic rhythm).
        assert np.mean(peak_to_peak[level] < 0.1) < 0.03
        assert amsa[level].std() / amsa[level].mean() > 0.1
    assert peak_to_peak[24:].min() > 0.1  # coarse VF never flat


def test_live_ring_keeps_fibrillating_and_stays_finite():
    params = tissue.RingParams()

    @jax.jit
    def run(m, key):
        def body(state, k):
            state = tissue.advance(state, params, m, prng.uniform(k, (tissue.SAMPLES_PER_STEP,)))
            return state, tissue.spectral_features(state.ecg_window)

        return jax.lax.scan(body, tissue.initial_ring(), prng.split(key, 80))

    state, (amsa, ptp) = run(jnp.float32(1.0), jax.random.PRNGKey(0))
    assert np.all(np.isfinite(np.asarray(state.u))) and np.all(np.isfinite(np.asarray(state.v)))
    assert np.asarray(ptp)[-40:].min() > 0.1  # still fibrillating after 80 snippets
    _, (amsa_dead, _) = run(jnp.float32(0.0), jax.random.PRNGKey(0))
    assert np.asarray(amsa_dead)[-20:].max() < 0.1 * np.asarray(amsa)[-20:].mean()


def test_spectral_features_of_a_sine():
    # A sine at a bin frequency: one band amplitude A, AMSA = A x f, peak-to-peak 2A.
    bin_index, amplitude = 4, 0.7
    f = bin_index * tissue.SAMPLE_RATE_HZ / tissue.WINDOW
    t = np.arange(tissue.WINDOW) / tissue.SAMPLE_RATE_HZ
    ecg = amplitude * np.sin(2 * np.pi * f * t) + 0.3  # offset is removed
    amsa, ptp = tissue.spectral_features(jnp.asarray(ecg, jnp.float32))
    np.testing.assert_allclose(float(amsa), amplitude * f, rtol=1e-3)
    np.testing.assert_allclose(float(ptp), 2 * amplitude, rtol=1e-2)


def test_read_features_interpolates_between_levels():
    amsa, _ = tissue.feature_library()
    m = jnp.float32(10.5 / (tissue.LIBRARY_LEVELS - 1))
    value, _ = tissue.read_features(m, jnp.int32(7))
    np.testing.assert_allclose(float(value), 0.5 * (amsa[10, 7] + amsa[11, 7]), rtol=1e-5)
    wrapped, _ = tissue.read_features(m, jnp.int32(7 + tissue.LIBRARY_WINDOWS))
    assert float(wrapped) == float(value)


@pytest.mark.parametrize("start", [0.2, 0.5, 0.9])
def test_cpr_restores_and_no_flow_depletes_energy(start):
    params = tissue.MyocardialParams()
    c, m = jnp.float32(0.0), jnp.float32(start)
    c_cpr, m_cpr = tissue.perfusion_step(c, m, params, jnp.float32(120.0), jnp.array(True))
    c_nf, m_nf = tissue.perfusion_step(c, m, params, jnp.float32(120.0), jnp.array(False))
    assert float(m_nf) < start
    assert float(m_cpr) > float(m_nf)
    assert 0.8 * float(params.cpr_quality) < float(c_cpr) <= float(params.cpr_quality)
    # A pause washes perfusion out.
    c_pause, _ = tissue.perfusion_step(c_cpr, m_cpr, params, jnp.float32(8.0), jnp.array(False))
    assert float(c_pause) < float(c_cpr)


def test_perfusion_step_composes_and_is_identity_at_zero_duration():
    params = tissue.MyocardialParams()
    c, m = jnp.float32(params.cpr_quality), jnp.float32(0.4)  # c at its CPR target: exact
    whole = tissue.perfusion_step(c, m, params, jnp.float32(60.0), jnp.array(True))
    half = tissue.perfusion_step(c, m, params, jnp.float32(30.0), jnp.array(True))
    halves = tissue.perfusion_step(*half, params, jnp.float32(30.0), jnp.array(True))
    np.testing.assert_allclose(np.asarray(whole), np.asarray(halves), rtol=1e-5)
    same = tissue.perfusion_step(c, m, params, jnp.float32(0.0), jnp.array(True))
    np.testing.assert_allclose(np.asarray(same), [float(c), 0.4], rtol=1e-6)


def test_no_flow_energy_decays_with_minutes():
    params = tissue.MyocardialParams()
    values = np.asarray(tissue.no_flow_energy(jnp.array([0.0, 3.0, 6.0, 12.0]), params))
    assert values[0] == pytest.approx(1.0)
    assert np.all(np.diff(values) < 0)
