"""AntiarrhythmicDosing-v1 calibration: each row of docs/v1/antiarrhythmic_dosing.md ## Calibration.

Every test measures its quantity by running the simulator (the env's own PK
and drug-effect path), then checks it against the literature value or range.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from conftest import env_rollout

from cardiosim_jax.envs.antiarrhythmic_dosing import v1 as v1
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models import pharmacokinetics as pk

ENV = v1.AntiarrhythmicDosingV1()


def pk_trace(crcl: float, doses_mg: list[float], hours_per_dose: int, extra_hours: int = 0):
    """Hourly plasma concentration (mg/L) of the typical patient on a dose schedule."""
    params = ENV.params_for("easy", creatinine_clearance_ml_per_min=crcl)
    _, state = ENV.reset(jax.random.PRNGKey(0), params)
    patient_pk = ENV.patient_pk(state, params)
    drug = pk.initial_state()
    trace = []
    schedule = [d for dose in doses_mg for d in [dose] + [0.0] * (hours_per_dose - 1)]
    for dose in schedule + [0.0] * extra_hours:
        for j in range(v1.PK_SUBSTEPS):
            given = params.bioavailability * dose if j == 0 else 0.0
            drug = pk.step(drug, patient_pk, jnp.float32(given), v1.HOUR / v1.PK_SUBSTEPS)
        trace.append(float(drug.plasma_concentration))
    return np.asarray(trace), params


def measured_half_life_h(crcl: float) -> float:
    trace, _ = pk_trace(crcl, [80.0], hours_per_dose=1, extra_hours=240)
    # Log-linear decay well after absorption (k_a 0.8/h: gut empty after ~12 h).
    late = trace[48:200]
    slope = np.polyfit(np.arange(late.size), np.log(late), 1)[0]
    return float(np.log(2.0) / -slope)


def test_calibration_clearance_at_normal_renal_function():
    # Hanyok 1993: total sotalol clearance ~150 mL/min (renal function normal).
    trace, params = pk_trace(100.0, [80.0], hours_per_dose=1, extra_hours=400)
    auc = trace.sum() * v1.HOUR  # mg h / L
    clearance_ml_per_min = float(params.bioavailability) * 80.0 / auc * 1000.0 / 60.0
    assert 120.0 <= clearance_ml_per_min <= 170.0


def test_calibration_half_life_normal_renal_function():
    assert 10.0 <= measured_half_life_h(100.0) <= 15.0  # Hanyok 1993: 10-20 h, typically ~12 h


def test_calibration_half_life_end_stage_renal_disease():
    assert 35.0 <= measured_half_life_h(10.0) <= 60.0  # Berglund 1980: ~42 h in ESRD


def test_calibration_half_life_anuric():
    assert 55.0 <= measured_half_life_h(0.0) <= 90.0  # Berglund 1980: ~69 h anuric


def test_calibration_time_to_peak():
    trace, _ = pk_trace(100.0, [80.0], hours_per_dose=1, extra_hours=23)
    assert 2 <= int(np.argmax(trace)) + 1 <= 4  # Hanyok 1993: t_max 2-4 h


def test_calibration_steady_state_concentrations():
    # Hanyok 1993: ~1-3 mg/L at steady state on 160-320 mg/day.
    low, params = pk_trace(100.0, [80.0] * 10, hours_per_dose=12)
    high, _ = pk_trace(100.0, [160.0] * 10, hours_per_dose=12)
    last_day = slice(-24, None)
    # 160 mg/day: trough >= 0.4 and peak <= 1.5 mg/L; 320 mg/day: 1.0 to 3.0 mg/L.
    assert low[last_day].min() >= 0.4
    assert low[last_day].max() <= 1.5
    assert high[last_day].min() >= 1.0
    assert high[last_day].max() <= 3.0
    # Mass balance at steady state: the mean concentration over a dosing interval is
    # F x dose / (clearance x interval), from the patient's own clearance.
    _, state = ENV.reset(jax.random.PRNGKey(0), params)
    clearance_l_per_h = float(ENV.clearance_l_per_h(state, params))
    for trace, dose_mg in ((low, 80.0), (high, 160.0)):
        expected = float(params.bioavailability) * dose_mg / (clearance_l_per_h * 12.0)
        assert abs(float(trace[last_day].mean()) - expected) <= 0.02 * expected
    # Linear (first-order) kinetics: twice the dose, twice the steady-state exposure.
    mean_low, mean_high = float(low[last_day].mean()), float(high[last_day].mean())
    assert abs(mean_high - 2.0 * mean_low) <= 0.05 * 2.0 * mean_low


def test_calibration_q24h_at_moderate_renal_impairment_matches_q12h_exposure():
    # Label: CrCl 40-60 mL/min -> the same dose q24h (renal elimination halves).
    normal, _ = pk_trace(100.0, [80.0] * 10, hours_per_dose=12)
    impaired, _ = pk_trace(50.0, [80.0] * 5, hours_per_dose=24)
    ratio = impaired[-24:].mean() / normal[-24:].mean()
    assert 0.6 <= ratio <= 1.4


def qtc_at(concentration: float, pd: de.DrugEffectParams) -> float:
    readout = de.simulate_window(
        de.initial_focus(), pd, jnp.float32(concentration), 0.0, jnp.zeros(de.WINDOW_SUBSTEPS)
    )
    return float(de.qtc_ms(readout.action_potential_units, pd))


def test_calibration_drug_free_qtc():
    assert 400.0 <= qtc_at(0.0, ENV.params_for("easy").pd) <= 450.0  # Drew 2010: 380-450 ms


def test_calibration_qtc_concentration_slope():
    # ~25 ms per mg/L, near-linear over 0-3 mg/L (review; Kimura 1996 / Hohnloser 1994).
    pd = ENV.params_for("easy").pd
    qtc = np.array([qtc_at(c, pd) for c in (0.0, 1.0, 2.0, 3.0)])
    slopes = np.diff(qtc)
    assert np.all((15.0 <= slopes) & (slopes <= 35.0))


def test_calibration_baseline_qtc_spread_between_patients():
    keys = jax.random.split(jax.random.PRNGKey(1), 256)
    _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, ENV.params_for("hard"))
    assert 14.0 <= float(np.std(np.asarray(states.baseline_qtc_ms))) <= 28.0  # adults: SD ~20 ms


def test_calibration_qtc_on_320_mg_per_day():
    # Hohnloser & Woosley 1994: mean QTc prolongation of roughly 25-60 ms at 320 mg/day.
    params = ENV.params_for("easy")
    _, out = env_rollout(ENV, params, jax.random.PRNGKey(0), jnp.full((6, 1), 160.0))
    # Day 3: mean of the last two intervals' peak and trough QTc.
    day3 = np.concatenate([np.asarray(out[4]["qtc_ms"])[-2:], np.asarray(out[0])[-2:, 4]])
    rise = day3.mean() - float(out[5].baseline_qtc_ms[0])
    assert 20.0 <= rise <= 60.0


def test_calibration_heart_rate_reduction():
    # Anderson & Prystowsky 1999: sotalol lowers the sinus rate by 10-25 %.
    pd = ENV.params_for("easy").pd
    reduction = 1.0 - float(de.heart_rate_bpm(jnp.float32(1.5), 72.0, pd)) / 72.0
    assert 0.10 <= reduction <= 0.25
