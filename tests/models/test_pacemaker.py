"""Pacemaker timing model: capture, refractoriness, rate following, HRV, threshold, validation."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_validate_contract

from cardiosim_jax.models import pacemaker

DURATION_MS = 2000.0
MAX_EVENTS = 16


def quiet_heart(**overrides) -> pacemaker.PacedHeartParams:
    """No respiratory modulation, no jitter, no block: exact timings."""
    values = {
        "rsa_amplitude_ms": 0.0,
        "rr_jitter_ms": 0.0,
        "av_block_prob": 0.0,
        "threshold_beat_cv": 0.0,
        **overrides,
    }
    return pacemaker.PacedHeartParams(**{k: jnp.float32(v) for k, v in values.items()})


@partial(jax.jit, static_argnames="steps")
def simulate(params, sinus_bpm, lower_rate_bpm, amplitude_v, threshold_v, key, steps=30):
    """``steps`` calls of :func:`pacemaker.advance`; final state and per-call counts."""

    def body(state, inputs):
        i, k = inputs
        state, counts = pacemaker.advance(
            state,
            params,
            jnp.float32(sinus_bpm),
            jnp.float32(lower_rate_bpm),
            jnp.float32(amplitude_v),
            jnp.float32(threshold_v),
            i * DURATION_MS,
            k,
            DURATION_MS,
            MAX_EVENTS,
        )
        return state, counts

    inputs = (jnp.arange(steps, dtype=jnp.float32), jax.random.split(key, steps))
    return jax.lax.scan(body, pacemaker.initial_state(sinus_bpm), inputs)


def test_validate_contract():
    check_validate_contract(
        pacemaker.validate, pacemaker.PacedHeartParams(), pacemaker.PARAMETER_RANGES
    )


def test_pulses_capture_above_threshold_and_not_below():
    params = quiet_heart()
    key = jax.random.PRNGKey(0)
    _, above = simulate(params, 40.0, 70.0, 1.1, 1.0, key)
    _, below = simulate(params, 40.0, 70.0, 0.9, 1.0, key)
    assert float(above.paces.sum()) > 40
    np.testing.assert_array_equal(above.captures, above.paces)
    assert float(below.paces.sum()) > 20
    assert float(below.captures.sum()) == 0.0
    # V^2 pw / R: 1.21 V^2 x 0.4 ms / 500 ohm = 0.968 microjoules per pulse.
    np.testing.assert_allclose(above.energy_uj, above.paces * 0.968, rtol=1e-5)


def test_pulse_into_refractory_ventricle_does_not_capture():
    params = quiet_heart()
    # A tracked pace due now, 100 ms after a depolarisation (refractory period 280 ms).
    state = pacemaker.initial_state(60.0).replace(
        since_beat_ms=jnp.float32(100.0), to_tracked_pace_ms=jnp.float32(0.0)
    )
    _, counts = pacemaker.advance(
        state, params, 60.0, 60.0, 5.0, 1.0, 0.0, jax.random.PRNGKey(0), 50.0, 4
    )
    assert float(counts.paces) == 1.0 and float(counts.captures) == 0.0
    state = state.replace(since_beat_ms=jnp.float32(400.0))
    _, counts = pacemaker.advance(
        state, params, 60.0, 60.0, 5.0, 1.0, 0.0, jax.random.PRNGKey(0), 50.0, 4
    )
    assert float(counts.captures) == 1.0


@pytest.mark.parametrize("lower_rate", [60.0, 75.0, 90.0])
def test_heart_rate_follows_lower_rate_when_intrinsic_rate_is_lower(lower_rate):
    state, counts = simulate(quiet_heart(), 40.0, lower_rate, 3.5, 1.0, jax.random.PRNGKey(1))
    np.testing.assert_allclose(pacemaker.heart_rate_bpm(state), lower_rate, rtol=1e-3)
    # Overdrive suppression: once paced, no sinus beat gets through.
    assert float(counts.sensed[5:].sum()) == 0.0
    np.testing.assert_allclose(state.rr_intervals_ms, 60000.0 / lower_rate, rtol=1e-4)


def test_loss_of_capture_leaves_the_intrinsic_rate():
    state, counts = simulate(quiet_heart(), 40.0, 70.0, 0.5, 1.0, jax.random.PRNGKey(1))
    np.testing.assert_allclose(pacemaker.heart_rate_bpm(state), 40.0, rtol=1e-3)
    assert float(counts.captures.sum()) == 0.0


def test_intrinsic_rhythm_above_lower_rate_inhibits_pacing():
    state, counts = simulate(quiet_heart(), 80.0, 60.0, 3.5, 1.0, jax.random.PRNGKey(2))
    assert float(counts.paces.sum()) == 0.0
    np.testing.assert_allclose(pacemaker.heart_rate_bpm(state), 80.0, rtol=1e-3)
    np.testing.assert_allclose(float(counts.sensed.sum()), 80.0 * 60.0 / 60.0, atol=1.0)


def test_av_block_in_vvi_and_vdd():
    blocked_vvi = quiet_heart(av_block_prob=0.9)
    state, counts = simulate(blocked_vvi, 80.0, 60.0, 3.5, 1.0, jax.random.PRNGKey(3), steps=60)
    # Most P waves blocked: the ventricle escapes at the lower rate, with a few conducted beats.
    assert float(counts.paces.sum()) > float(counts.sensed.sum())
    assert 55.0 < float(pacemaker.heart_rate_bpm(state)) < 80.0
    # Tracking (VDD) restores the sinus rate through the block.
    blocked_vdd = quiet_heart(av_block_prob=0.9, atrial_tracking=1.0)
    state, counts = simulate(blocked_vdd, 80.0, 60.0, 3.5, 1.0, jax.random.PRNGKey(3), steps=60)
    np.testing.assert_allclose(pacemaker.heart_rate_bpm(state), 80.0, rtol=1e-3)
    assert float(counts.paces.sum()) > 100


def test_no_beats_means_falling_heart_rate():
    params = quiet_heart(av_block_prob=0.9)
    state, _ = simulate(params, 50.0, 30.0, 0.0, 1.0, jax.random.PRNGKey(4), steps=3)
    paused = state.replace(since_beat_ms=jnp.float32(6000.0))
    np.testing.assert_allclose(pacemaker.heart_rate_bpm(paused), 10.0, rtol=1e-6)


def test_hrv_from_respiratory_sinus_arrhythmia():
    still = quiet_heart()
    state, _ = simulate(still, 60.0, 30.0, 3.5, 1.0, jax.random.PRNGKey(5))
    assert float(pacemaker.heart_rate_variability_ms(state)) < 1e-3
    modulated = quiet_heart(rsa_amplitude_ms=40.0)
    hrvs = []
    state = pacemaker.initial_state(60.0)
    for i in range(30):
        state, _ = pacemaker.advance(
            state,
            modulated,
            60.0,
            30.0,
            3.5,
            1.0,
            i * DURATION_MS,
            jax.random.PRNGKey(i),
            DURATION_MS,
            MAX_EVENTS,
        )
        hrvs.append(float(pacemaker.heart_rate_variability_ms(state)))
    # A sinusoid of amplitude A has SD A / sqrt(2); 8 beats span ~2 breaths.
    assert 15.0 < np.mean(hrvs[5:]) < 40.0
    # A fixed-rate paced rhythm has none.
    state, _ = simulate(modulated, 40.0, 70.0, 3.5, 1.0, jax.random.PRNGKey(5))
    assert float(pacemaker.heart_rate_variability_ms(state)) < 1e-2


def test_jitter_is_random_and_key_dependent():
    params = quiet_heart(rr_jitter_ms=20.0)
    a, _ = simulate(params, 60.0, 30.0, 3.5, 1.0, jax.random.PRNGKey(6))
    b, _ = simulate(params, 60.0, 30.0, 3.5, 1.0, jax.random.PRNGKey(7))
    c, _ = simulate(params, 60.0, 30.0, 3.5, 1.0, jax.random.PRNGKey(6))
    assert not np.allclose(a.rr_intervals_ms, b.rr_intervals_ms)
    np.testing.assert_array_equal(a.rr_intervals_ms, c.rr_intervals_ms)
    assert 5.0 < float(pacemaker.heart_rate_variability_ms(a)) < 40.0


def test_capture_threshold_rises_to_its_plateau():
    params = pacemaker.PacedHeartParams(
        capture_threshold_v=0.8, threshold_rise_fraction=1.5, threshold_rise_time_s=100.0
    )
    times = jnp.array([0.0, 50.0, 100.0, 300.0, 5000.0])
    thresholds = np.asarray(pacemaker.capture_threshold_v(params, times))
    assert thresholds[0] == pytest.approx(0.8)
    assert np.all(np.diff(thresholds) > 0)
    assert thresholds[-1] == pytest.approx(0.8 * 2.5, rel=1e-4)
    flat = params.replace(threshold_rise_fraction=0.0)
    np.testing.assert_allclose(pacemaker.capture_threshold_v(flat, times), 0.8)


def test_sinus_rate_relaxes_and_drift_is_stationary():
    level, drift = pacemaker.sinus_rate_step(40.0, 0.0, 80.0, 0.0, 0.0, 2.0, 10.0, 60.0)
    assert 40.0 < float(level) < 80.0 and float(drift) == 0.0
    noise = jax.random.normal(jax.random.PRNGKey(0), (4000, 200))

    def run(drift, n):
        return pacemaker.sinus_rate_step(60.0, drift, 60.0, 5.0, n, 2.0, 10.0, 60.0)[1], None

    drift, _ = jax.lax.scan(lambda d, n: run(d, n), jnp.zeros(200), noise)
    assert float(jnp.std(drift)) == pytest.approx(5.0, rel=0.15)


def test_state_stays_finite_and_bounded_with_extreme_inputs():
    params = pacemaker.PacedHeartParams(
        av_block_prob=0.9, rr_jitter_ms=40.0, rsa_amplitude_ms=100.0
    )
    for sinus, lrl, amp in [(20.0, 30.0, 0.0), (150.0, 120.0, 7.5), (150.0, 30.0, 7.5)]:
        state, counts = simulate(params, sinus, lrl, amp, 1.0, jax.random.PRNGKey(8), steps=40)
        for leaf in jax.tree_util.tree_leaves((state, counts)):
            assert np.all(np.isfinite(np.asarray(leaf)))
        assert float(state.since_beat_ms) <= pacemaker.MAX_SINCE_BEAT_MS
        assert np.all(np.asarray(state.rr_intervals_ms) >= 200.0)
