"""AntiarrhythmicDosing-v1: determinism, robustness, bounds, physiology, rewards, baselines."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.envs.antiarrhythmic_dosing import v1 as v1
from cardiosim_jax.envs.antiarrhythmic_dosing.heuristic_v1 import (
    HeuristicDosingV1Params,
    heuristic_dosing_v1_policy,
)
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.rollout import run_episodes

ENV = v1.AntiarrhythmicDosingV1()
TIERS = ("easy", "medium", "hard")
DECISIONS = 6  # 72 h at one decision per 12 h


def constant_doses(dose_mg: float, n: int = DECISIONS) -> jax.Array:
    return jnp.full((n, 1), dose_mg, jnp.float32)


def rollout(params, key, actions):
    """``(reset_obs, (obs, reward, terminated, truncated, info, state))`` of one episode."""
    return env_rollout(ENV, params, key, actions)


def episode_return(params, key, actions) -> float:
    return float(np.asarray(rollout(params, key, actions)[1][1]).sum())


# ------------------------------------------------------------------ determinism


def test_easy_tier_does_not_depend_on_the_key():
    params = ENV.params_for("easy")
    actions = jnp.array([[160.0], [0.0], [80.0], [40.0], [120.0], [80.0]])
    a = rollout(params, jax.random.PRNGKey(1), actions)
    b = rollout(params, jax.random.PRNGKey(2), actions)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_medium_and_hard_are_stochastic():
    for tier in ("medium", "hard"):
        params = ENV.params_for(tier)
        obs = [rollout(params, jax.random.PRNGKey(k), constant_doses(80.0))[1][0] for k in (1, 2)]
        assert not np.array_equal(obs[0], obs[1])


# ------------------------------------------------------------------- robustness


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_actions_keep_the_state_finite(bad):
    params = ENV.params_for("medium")
    actions = jnp.full((DECISIONS, 1), bad, jnp.float32)
    _, out = rollout(params, jax.random.PRNGKey(0), actions)
    for leaf in jax.tree.leaves(out):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert np.isfinite(np.asarray(leaf)).all()
    doses = np.asarray(out[5].last_dose_mg)
    assert set(np.unique(doses)) <= {0.0, v1.MAX_DOSE_MG}


def test_orders_are_dispensed_as_whole_tablets_never_above_the_order():
    orders = jnp.array(
        [-5.0, 0.0, 39.9, 40.0, 79.0, 80.0, 119.0, 200.0, 239.0, 300.0, 320.0, 999.0]
    )
    dispensed = np.asarray(v1.dispensed_dose_mg(orders))
    expected = [0, 0, 0, 40, 40, 80, 80, 160, 160, 240, 320, 320]
    np.testing.assert_array_equal(dispensed, expected)
    assert set(dispensed) <= set(v1.TABLET_DOSES_MG)


@pytest.mark.parametrize("tier", TIERS)
def test_observations_stay_inside_the_observation_space(tier):
    params = ENV.params_for(tier, observation_noise_std=1.0)
    space = ENV.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    keys = jax.random.split(jax.random.PRNGKey(11), 6)
    for k, key in enumerate(keys):
        scale = [1.0, 0.5, 0.25, 0.0][k % 4]  # from toxic to drug-free
        actions = random_actions(ENV, params, key, DECISIONS) * scale
        reset_obs, out = rollout(params, key, actions)
        final = np.asarray(out[4]["final_observation"])
        for obs in (np.asarray(reset_obs)[None], np.asarray(out[0]), final):
            assert np.all(obs >= low) and np.all(obs <= high), (obs.min(0), obs.max(0))
    assert space.shape == (11,)
    assert ENV.action_space(params).contains(jnp.array([v1.MAX_DOSE_MG]))


def test_get_obs_without_a_key_is_noise_free():
    params = ENV.params_for("hard", concentration_measured=1.0)
    _, out = rollout(params, jax.random.PRNGKey(2), constant_doses(160.0))
    state = jax.tree.map(lambda leaf: leaf[0], out[5])
    clean = np.asarray(ENV.get_obs(state, params))
    noisy = np.asarray(ENV.get_obs(state, params, jax.random.PRNGKey(9)))
    assert clean[3] == pytest.approx(float(state.interval_peak_qtc_ms))
    assert clean[9] == pytest.approx(float(state.drug.plasma_concentration))
    assert not np.array_equal(clean[[3, 4, 5, 6, 9]], noisy[[3, 4, 5, 6, 9]])
    np.testing.assert_array_equal(clean[[0, 1, 2, 7, 8, 10]], noisy[[0, 1, 2, 7, 8, 10]])


# ------------------------------------------------------------------- parameters


def test_bad_parameters_raise_naming_them():
    with pytest.raises(ValueError, match="'creatinine_clearance_ml_per_min'"):
        ENV.params_for("medium", creatinine_clearance_ml_per_min=500.0)
    with pytest.raises(ValueError, match="'pd.ikr_ic50_mg_per_l'"):
        ENV.params_for("medium", ikr_ic50_mg_per_l=-1.0)
    with pytest.raises(ValueError, match="'patient_variability'"):
        ENV.params_for("easy", patient_variability=2.0)
    with pytest.raises(ValueError, match="qtc_warning_ms"):
        ENV.params_for("medium", qtc_warning_ms=495.0, qtc_stop_ms=490.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        ENV.params_for("medium", not_a_parameter=1.0)


def test_every_float_field_and_patient_parameter_has_a_range():
    params = ENV.params_for("medium")
    top = {f for f in params.__dataclass_fields__ if f != "pd"}
    assert top == set(ENV.parameter_ranges)
    assert set(params.pd.__dataclass_fields__) == set(de.PARAMETER_RANGES)
    ranges = {**ENV.parameter_ranges, **de.PARAMETER_RANGES}
    for name, variability in v1.PATIENT_VARIABILITY.items():
        assert isinstance(ranges[name], ParameterRange)
        assert 0.0 < variability.cv <= 0.5 and variability.source
        ENV.params_for("hard", **{name: ranges[name].high})  # accepted as an override


def test_patients_vary_only_on_the_tiers_with_variability():
    keys = jax.random.split(jax.random.PRNGKey(4), 256)
    ranges = {**ENV.parameter_ranges, **de.PARAMETER_RANGES}
    spreads = {}
    for tier in TIERS:
        params = ENV.params_for(tier)
        _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
        for name in v1.PATIENT_VARIABILITY:
            values = np.asarray(getattr(states.patient, name))
            assert values.min() >= ranges[name].low and values.max() <= ranges[name].high
            spreads[tier, name] = values.std() / values.mean()
    for name, variability in v1.PATIENT_VARIABILITY.items():
        assert spreads["easy", name] < 1e-6  # one patient (float32 std of equal values)
        assert 0.0 < spreads["medium", name] < spreads["hard", name] < 1.5 * variability.cv
        # The tier scales the literature CV: medium near half of hard.
        assert spreads["medium", name] == pytest.approx(0.5 * spreads["hard", name], rel=0.3)


def test_baseline_qtc_varies_between_patients_on_hard():
    keys = jax.random.split(jax.random.PRNGKey(6), 128)
    _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, ENV.params_for("hard"))
    baseline = np.asarray(states.baseline_qtc_ms)
    assert 12.0 < baseline.std() < 30.0  # adult drug-free QTc SD ~20 ms


# ------------------------------------------------------------------- physiology


def test_enough_drug_suppresses_ectopy_and_none_leaves_it():
    params = ENV.params_for("easy")
    _, untreated = rollout(params, jax.random.PRNGKey(0), constant_doses(0.0))
    _, treated = rollout(params, jax.random.PRNGKey(0), constant_doses(160.0))
    assert np.all(np.asarray(untreated[4]["ectopic_hours"]) == 12.0)  # fires every hour
    assert np.asarray(untreated[4]["ectopic_rate_per_min"]).min() > 40.0
    assert np.asarray(treated[4]["ectopic_hours"])[2:].max() == 0.0  # from day 2: no ectopy


def test_qtc_tracks_concentration_and_there_is_no_early_termination():
    params = ENV.params_for("easy")
    _, out = rollout(params, jax.random.PRNGKey(0), constant_doses(v1.MAX_DOSE_MG))
    peak_qtc = np.asarray(out[4]["qtc_ms"])
    trough = np.asarray(out[4]["concentration"])
    assert np.all(np.diff(trough) > 0) and np.all(np.diff(peak_qtc) > 0)  # accumulation
    assert peak_qtc[-1] > float(params.qtc_stop_ms)  # 640 mg/day crosses the stop rule ...
    assert not np.asarray(out[2]).any()  # ... and the episode still runs to its end
    assert np.asarray(out[3])[-1] and not np.asarray(out[3])[:-1].any()


def test_an_overdose_never_pays():
    """Crossing the stop rule scores below giving nothing at all (the v1 exploit of issue 12)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    batch = jax.vmap(lambda p, k, a: rollout(p, k, a)[1][1].sum(), in_axes=(None, 0, None))
    for tier in TIERS:
        params = ENV.params_for(tier)
        overdose = np.asarray(batch(params, keys, constant_doses(v1.MAX_DOSE_MG)))
        nothing = np.asarray(batch(params, keys, constant_doses(0.0)))
        assert overdose.mean() < nothing.mean() - 100.0, (tier, overdose, nothing)
        assert np.mean(overdose < nothing) >= 0.75


def test_renal_impairment_accumulates_the_drug():
    troughs = []
    for crcl in (100.0, 50.0, 30.0):
        params = ENV.params_for("easy", creatinine_clearance_ml_per_min=crcl)
        _, out = rollout(params, jax.random.PRNGKey(0), constant_doses(80.0))
        troughs.append(float(out[4]["concentration"][-1]))
    assert troughs[0] < troughs[1] < troughs[2]
    assert troughs[2] > 1.8 * troughs[0]


def test_renal_cohorts_are_valid_overrides():
    for name, overrides in ENV.renal_cohorts.items():
        params = ENV.params_for("medium", **overrides)
        _, state = ENV.reset(jax.random.PRNGKey(0), params)
        assert "crcl" in name and float(params.creatinine_clearance_ml_per_min) < 60.0
        assert np.isfinite(float(state.patient.creatinine_clearance_ml_per_min))


def test_hard_tier_hides_the_concentration():
    params = ENV.params_for("hard")
    _, out = rollout(params, jax.random.PRNGKey(0), constant_doses(80.0))
    assert np.all(np.asarray(out[0])[:, 9] == 0.0)
    assert np.all(np.asarray(out[4]["concentration"]) > 0.0)


# ---------------------------------------------------------------------- rewards


def test_hourly_reward_terms_match_hand_computed_values():
    params = ENV.params_for("medium")  # warning 470, stop 500, rise limit 60
    reward = lambda ectopy, qtc, base: float(v1.hourly_reward(ectopy, qtc, base, params))  # noqa: E731
    # Sinus rhythm at the baseline QTc: the full +1, no drug-induced hazard.
    assert reward(0.0, 430.0, 430.0) == pytest.approx(1.0)
    # Ectopy at 90/min: no sinus bonus, -90/60.
    assert reward(90.0, 430.0, 430.0) == pytest.approx(-1.5)
    # Torsades hazard only: QTc 460 from 430 (below warning, rise 30 ms).
    hazard = 5.0 * (np.exp(-40.0 / 20.0) - np.exp(-70.0 / 20.0))
    assert reward(0.0, 460.0, 430.0) == pytest.approx(1.0 - hazard, rel=1e-5)
    # Warning zone and a 70 ms rise: QTc 480 from 410.
    hazard = 5.0 * (np.exp(-20.0 / 20.0) - np.exp(-90.0 / 20.0))
    expected = 1.0 - hazard - 0.05 * 10.0 - 0.2 * 10.0
    assert reward(0.0, 480.0, 410.0) == pytest.approx(expected, rel=1e-5)
    # Stop rule: QTc 510 from 430 (rise 80): hazard, warning 40 ms, flat 10, 0.5/ms x 10, rise 20.
    hazard = 5.0 * (np.exp(10.0 / 20.0) - np.exp(-70.0 / 20.0))
    expected = 1.0 - hazard - 0.05 * 40.0 - 10.0 - 0.5 * 10.0 - 0.2 * 20.0
    assert reward(0.0, 510.0, 430.0) == pytest.approx(expected, rel=1e-5)


def test_hourly_cost_is_bounded():
    params = ENV.params_for("hard")
    worst = float(v1.hourly_reward(300.0, 1000.0, 380.0, params))
    capped = v1.TORSADES_COST_PER_H_AT_STOP * np.exp(
        v1.TORSADES_QTC_CAP_MS / v1.TORSADES_QTC_SCALE_MS
    )
    bound = 5.0 + capped + 0.05 * 80.0 + 10.0 + 0.5 * 40.0 + 0.2 * 40.0
    assert -bound - 1e-3 <= worst < -50.0


def test_step_reward_is_the_sum_of_its_hours_minus_the_dose_cost():
    params = ENV.params_for("easy")
    _, state = ENV.reset(jax.random.PRNGKey(0), params)
    key = jax.random.PRNGKey(1)
    _, new, reward, _, _ = ENV.step_env(key, state, jnp.array([130.0]), params)
    key_hours = jax.random.split(key, 2)[0]
    _, rewards, (qtc, ectopy) = ENV.simulate_interval(key_hours, state, jnp.float32(120.0), params)
    hours = jax.vmap(v1.hourly_reward, in_axes=(0, 0, None, None))(
        ectopy, qtc, new.baseline_qtc_ms, params
    )
    np.testing.assert_allclose(np.asarray(rewards), np.asarray(hours), rtol=1e-6)
    assert float(reward) == pytest.approx(float(hours.sum()) - 0.001 * 120.0, rel=1e-5)
    assert float(new.last_dose_mg) == 120.0  # a 130 mg order is dispensed as 120 mg
    assert float(new.interval_peak_qtc_ms) == pytest.approx(float(qtc.max()))


# -------------------------------------------------------------------- baselines


def test_heuristic_follows_the_label_interval_and_withholds_at_high_qtc():
    params = HeuristicDosingV1Params()
    obs = np.zeros(11, np.float32)
    obs[3] = obs[4] = obs[5] = 430.0
    obs[10] = 100.0
    act = lambda o: float(heuristic_dosing_v1_policy(params, jnp.asarray(o))[0])  # noqa: E731
    assert act(obs) == 160.0  # first decision: the double (loading) dose
    obs[0] = 1 / 6
    assert act(obs) == 80.0  # label maintenance dose, q12h
    obs[10] = 50.0
    assert act(obs) == 0.0  # CrCl 40-60: q24h, decision 1 is off
    obs[0] = 2 / 6
    assert act(obs) == 80.0
    obs[3] = 505.0
    assert act(obs) == 0.0  # QTc above 500 ms: withhold
    obs[3] = 475.0
    assert act(obs) == 40.0  # near the warning zone: one tablet step down


def _heuristic_random_or_never(policy_params, obs, key):
    """One policy for one compilation: mode 0 the heuristic, 1 uniform random, 2 no dose."""
    rule, bounds, mode = policy_params
    heuristic = heuristic_dosing_v1_policy(rule, obs, key)
    uniform = random_policy(bounds, obs, key)
    return jnp.select([mode == 0, mode == 1], [heuristic, uniform], jnp.zeros((1,), jnp.float32))


@pytest.mark.parametrize("tier", TIERS)
def test_heuristic_beats_random_and_never_treating(tier):
    params = ENV.params_for(tier)
    key = jax.random.PRNGKey(0)
    n = 16
    bounds = random_policy_params(ENV, params)

    def returns(mode):
        policy_params = (HeuristicDosingV1Params(), bounds, jnp.int32(mode))
        return np.asarray(
            run_episodes(
                ENV, params, _heuristic_random_or_never, policy_params, key, n, DECISIONS
            ).episode_return
        )

    heuristic, rand, never = returns(0), returns(1), returns(2)
    assert heuristic.mean() > rand.mean() + 15.0
    assert heuristic.mean() > never.mean() + 60.0
