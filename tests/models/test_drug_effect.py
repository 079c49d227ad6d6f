"""Drug-effect PD model: spontaneous ectopy, its suppression, QTc prolongation, validation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_validate_contract

from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models import fitzhugh_nagumo as fhn
from cardiosim_jax.models.integrators import rk4_solve

PARAMS = jax.tree.map(jnp.float32, de.DrugEffectParams())
#: Step of the reference solution (model units).
FINE_DT = 0.025
NO_NOISE = jnp.zeros((de.WINDOW_SUBSTEPS,), jnp.float32)


@functools.partial(jax.jit, static_argnames="windows")
def ectopic_beats(
    concentration: jax.Array, drive: jax.Array, windows: int, noise_std: float = 0.0
) -> jax.Array:
    """Focus spikes per window over ``windows`` consecutive windows (state carried)."""

    def body(focus, key):
        noise = noise_std * jax.random.normal(key, (de.WINDOW_SUBSTEPS,))
        readout = de.simulate_window(focus, PARAMS, concentration, drive, noise)
        return readout.focus, readout.ectopic_beats

    keys = jax.random.split(jax.random.PRNGKey(0), windows)
    return jax.lax.scan(body, de.initial_focus(), keys)[1]


@jax.jit
def window_qtc(concentration: jax.Array) -> jax.Array:
    readout = de.simulate_window(de.initial_focus(), PARAMS, concentration, 0.5, NO_NOISE)
    return de.qtc_ms(readout.action_potential_units, PARAMS)


def test_validate_contract():
    check_validate_contract(de.validate, de.DrugEffectParams(), de.PARAMETER_RANGES)


def test_focus_fires_above_hopf_threshold_and_not_below():
    threshold = float(de.hopf_current(de.focus_cell(0.0, PARAMS)))
    above = np.asarray(ectopic_beats(0.0, threshold + 0.03, windows=8))
    below = np.asarray(ectopic_beats(0.0, threshold - 0.03, windows=8))
    assert above[2:].min() >= 1  # spontaneous firing, every window
    assert below[1:].sum() == 0  # quiescent after the switch-on transient: excitable, silent


def test_drug_raises_focus_threshold_and_suppresses_ectopy():
    concentrations = jnp.array([0.0, 0.5, 1.0, 2.0, 4.0])
    thresholds = np.asarray(
        jax.vmap(lambda c: de.hopf_current(de.focus_cell(c, PARAMS)))(concentrations)
    )
    assert np.all(np.diff(thresholds) > 0)
    drive = PARAMS.focus_drive
    drug_free = np.asarray(ectopic_beats(0.0, drive, windows=10))
    treated = np.asarray(ectopic_beats(3.0, drive, windows=10))
    assert drug_free[2:].min() >= 1
    assert treated[2:].sum() == 0  # after the first window's transient, no ectopic beats
    # Suppression happens at the concentration where the threshold passes the drive.
    effective = float(jnp.interp(drive, jnp.asarray(thresholds), concentrations))
    assert np.asarray(ectopic_beats(0.7 * effective, drive, windows=10))[2:].min() >= 1
    assert np.asarray(ectopic_beats(1.5 * effective, drive, windows=10))[2:].sum() == 0


def test_noise_makes_near_threshold_ectopy_graded():
    drive = PARAMS.focus_drive
    rates = [
        float(ectopic_beats(c, drive, windows=200, noise_std=0.03)[10:].mean())
        for c in (0.35, 0.55, 0.75, 1.5)
    ]
    assert rates[0] > rates[1] > rates[2] >= rates[3]
    assert 0.0 < rates[1] < rates[0]


def test_efficacy_and_qt_prolongation_share_one_ikr_block():
    """Class III: one block fraction B = C/(C + IC50) drives the focus threshold and the QT."""
    concentrations = jnp.array([0.0, 0.5, 1.0, 3.0, 10.0])
    block = np.asarray(de.ikr_block(concentrations, PARAMS))
    np.testing.assert_allclose(np.asarray(de.antiarrhythmic_effect(concentrations, PARAMS)), block)
    np.testing.assert_allclose(
        block, np.asarray(concentrations) / (np.asarray(concentrations) + 10.0), rtol=1e-6
    )
    # A patient twice as sensitive (IC50 halved) gets both effects at half the concentration.
    sensitive = PARAMS.replace(ikr_ic50_mg_per_l=PARAMS.ikr_ic50_mg_per_l / 2.0)
    for c in (0.5, 2.0):
        half, full = jnp.float32(c / 2.0), jnp.float32(c)
        assert float(de.focus_cell(half, sensitive).a) == pytest.approx(
            float(de.focus_cell(full, PARAMS).a), rel=1e-5
        )
        assert float(de.ventricle_cell(half, sensitive).tau) == pytest.approx(
            float(de.ventricle_cell(full, PARAMS).tau), rel=1e-5
        )
        assert float(de.focus_cell(full, PARAMS).a) > float(PARAMS.excitability_a)


def test_qtc_prolongs_with_concentration():
    concentrations = jnp.array([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0])
    qtc = np.asarray(jax.vmap(window_qtc)(concentrations))
    assert np.all(np.diff(qtc) > 0)
    assert 380.0 < qtc[0] < 450.0  # drug-free QTc in the normal range (Drew et al. 2010)
    assert 480.0 < qtc[-1] < float(de.max_qtc_ms(PARAMS))  # toxic levels pass the stop rule


def test_qtc_matches_a_finely_resolved_action_potential():
    """The window's coarse RK4 and interpolated crossings agree with a fine RK4 to 0.5 %."""
    for concentration in (0.0, 3.0):
        cell = de.ventricle_cell(jnp.float32(concentration), PARAMS)
        v_rest = de.resting_voltage(cell)
        start = fhn.FitzHughNagumoState(v=v_rest + de.STIMULUS_KICK, w=(v_rest + cell.a) / cell.b)
        n_steps = int(30.0 / FINE_DT)  # the whole 30-unit window
        _, trajectory = rk4_solve(
            fhn.vector_field, start, FINE_DT, n_steps, (cell, 0.0), save_trajectory=True
        )
        fine_apd = FINE_DT * float(jnp.sum(trajectory.v > de.REPOLARISATION_THRESHOLD))
        fine_qtc = fine_apd * float(PARAMS.ms_per_model_unit)
        assert float(window_qtc(concentration)) == pytest.approx(fine_qtc, rel=5e-3)


def test_resting_voltage_is_a_fixed_point():
    cell = de.ventricle_cell(jnp.float32(0.0), PARAMS)
    v = de.resting_voltage(cell)
    w = (v + cell.a) / cell.b
    derivative = fhn.vector_field(0.0, fhn.FitzHughNagumoState(v=v, w=w), (cell, 0.0))
    assert abs(float(derivative.v)) < 1e-5 and abs(float(derivative.w)) < 1e-5


def test_beta_blockade_lowers_heart_rate():
    rates = np.asarray(de.heart_rate_bpm(jnp.array([0.0, 1.0, 3.0, 100.0]), 70.0, PARAMS))
    assert rates[0] == pytest.approx(70.0)
    assert np.all(np.diff(rates) < 0)
    assert rates[-1] > 70.0 * (1.0 - float(PARAMS.max_heart_rate_reduction)) - 1e-3


def test_window_vmap_matches_loop_and_jit_matches_eager():
    concentrations = jnp.array([0.0, 1.0, 2.5], jnp.float32)
    drives = jnp.array([0.45, 0.55, 0.6], jnp.float32)
    noise = 0.02 * jax.random.normal(jax.random.PRNGKey(3), (3, de.WINDOW_SUBSTEPS))

    def run(c, d, n):
        return de.simulate_window(de.initial_focus(), PARAMS, c, d, n)

    batched = jax.jit(jax.vmap(run))(concentrations, drives, noise)
    for i in range(3):
        single = jax.jit(run)(concentrations[i], drives[i], noise[i])
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)
    with jax.disable_jit():
        eager = run(concentrations[1], drives[1], noise[1])
    jitted = jax.jit(run)(concentrations[1], drives[1], noise[1])
    for got, want in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_extreme_concentrations_stay_finite():
    for concentration in (0.0, 1e3, 1e6):
        readout = de.simulate_window(
            de.initial_focus(), PARAMS, jnp.float32(concentration), 0.8, NO_NOISE
        )
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(readout))
        assert (
            0.0
            < float(readout.action_potential_units)
            <= float(de.max_qtc_ms(PARAMS)) / float(PARAMS.ms_per_model_unit)
        )
