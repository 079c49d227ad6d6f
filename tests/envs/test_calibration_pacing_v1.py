"""PacingControl-v1 calibration: each row of the doc's table measured from the simulator."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from cardiosim_jax.envs.pacing_control.v1 import PacingControlV1
from cardiosim_jax.models import pacemaker

ENV = PacingControlV1()


@partial(jax.jit, static_argnames="steps")
def _capture_fraction(params, amplitude_v, threshold_v, key, steps=40):
    """Fraction of delivered pulses that capture, VVI 60 over a 40 bpm sinus, fixed threshold."""

    def body(state, inputs):
        i, k = inputs
        state, counts = pacemaker.advance(
            state, params, 40.0, 60.0, amplitude_v, threshold_v, i * 2000.0, k, 2000.0, 16
        )
        return state, counts

    inputs = (jnp.arange(steps, dtype=jnp.float32), jax.random.split(key, steps))
    _, counts = jax.lax.scan(body, pacemaker.initial_state(40.0), inputs)
    return counts.captures.sum() / counts.paces.sum()


def _quiet(**values):
    base = {"rsa_amplitude_ms": 0.0, "rr_jitter_ms": 0.0, "av_block_prob": 0.0}
    return pacemaker.PacedHeartParams(**{k: jnp.float32(v) for k, v in {**base, **values}.items()})


def test_calibration_chronaxie():
    """Lapicque: at a pulse width equal to the chronaxie the 50 % capture amplitude is
    twice the rheobase (the threshold at a very long pulse)."""
    chronaxie = 0.4
    key = jax.random.PRNGKey(0)
    heart = _quiet(chronaxie_ms=chronaxie, pulse_width_ms=chronaxie, threshold_beat_cv=0.05)
    threshold = pacemaker.capture_threshold_v(heart, 0.0)
    amplitudes = np.linspace(0.8, 1.2, 41) * float(threshold)
    fractions = [float(_capture_fraction(heart, a, threshold, key)) for a in amplitudes]
    half = amplitudes[int(np.argmin(np.abs(np.asarray(fractions) - 0.5)))]
    rheobase = float(pacemaker.strength_duration_threshold_v(1.0, chronaxie, 1e6))
    np.testing.assert_allclose(half / rheobase, 2.0, rtol=0.03)


def test_calibration_pulse_energy():
    """2.5 V, 0.4 ms into 500 ohm: V^2 pw / R = 5 microjoules per pulse."""
    heart = _quiet(pulse_width_ms=0.4, lead_impedance_ohm=500.0, threshold_beat_cv=0.0)
    state, counts = pacemaker.advance(
        pacemaker.initial_state(40.0), heart, 40.0, 60.0, 2.5, 1.0, 0.0,
        jax.random.PRNGKey(0), 2000.0, 16,
    )  # fmt: skip
    np.testing.assert_allclose(counts.energy_uj / counts.paces, 5.0, rtol=1e-4)


def test_calibration_capture_at_twice_threshold():
    """A 2:1 voltage safety margin captures every pulse despite the threshold fluctuation;
    at the threshold itself capture is a coin toss."""
    params = ENV.params_for("medium", max_steps_in_episode=100)
    keys = jax.random.split(jax.random.PRNGKey(1), 64)

    def lost_fraction(margin):
        def episode(key):
            obs, state = ENV.reset(key, params)

            def body(state, k):
                threshold = pacemaker.capture_threshold_v(state.patient, 0.0)
                action = jnp.stack([jnp.float32(60.0), margin * threshold])
                _, state, _, _, info = ENV.step_env(k, state, action, params)
                return state, (info["lost_captures"], info["paces"])

            _, out = jax.lax.scan(body, state, jax.random.split(key, 100))
            return out

        lost, paces = jax.vmap(episode)(keys)
        return float(lost.sum() / paces.sum())

    assert lost_fraction(1.0) > 0.3
    # Rise of the threshold over 200 s on medium is at most ~1.5x, so 2.5x stays safe.
    assert lost_fraction(2.5) < 1e-3


def test_calibration_paced_rate_equals_lower_rate():
    """Device timing: escape interval 60000 / LRL; paced rate within 0.5 % of the LRL."""
    heart = _quiet(threshold_beat_cv=0.0, retrograde_conduction_prob=1.0)
    for rate in (50.0, 60.0, 70.0):

        def body(state, inputs, rate=rate):
            i, k = inputs
            state, _ = pacemaker.advance(
                state, heart, 40.0, rate, 2.5, 1.0, i * 2000.0, k, 2000.0, 16
            )
            return state, None

        inputs = (jnp.arange(20, dtype=jnp.float32), jax.random.split(jax.random.PRNGKey(2), 20))
        state, _ = jax.lax.scan(body, pacemaker.initial_state(40.0), inputs)
        np.testing.assert_allclose(pacemaker.heart_rate_bpm(state), rate, rtol=5e-3)


def test_calibration_va_conduction_prevalence():
    """Fraction of medium-tier patients whose paced beats conduct back to the atria."""
    params = ENV.params_for("medium")
    _, states = jax.vmap(ENV.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(3), 1000), params
    )
    fraction = float((np.asarray(states.patient.retrograde_conduction_prob) > 0).mean())
    assert 0.4 <= fraction <= 0.6
