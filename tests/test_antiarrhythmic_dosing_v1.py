"""AntiarrhythmicDosing-v1: determinism, robustness, bounds, tiers, physiology, baselines."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.agents.dosing_v1 import HeuristicDosingV1Params, heuristic_dosing_v1_policy
from cardiosim_jax.envs import antiarrhythmic_dosing_v1 as v1
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models.validation import ParameterRange
from cardiosim_jax.rollout import run_episodes

ENV = v1.AntiarrhythmicDosingV1()
TIERS = ("easy", "medium", "hard")
HOURS = 72


def constant_doses(dose_mg: float, n: int = HOURS) -> jax.Array:
    return jnp.full((n, 1), dose_mg, jnp.float32)


def rollout(params, key, actions):
    """``(reset_obs, (obs, reward, terminated, truncated, info, state))`` of one episode."""
    return env_rollout(ENV, params, key, actions)


def first_episode(out):
    """Mask of the steps up to and including the first done."""
    done = np.asarray(out[2] | out[3])
    ends = np.flatnonzero(done)
    mask = np.ones_like(done)
    if ends.size:
        mask[ends[0] + 1 :] = False
    return mask


# ------------------------------------------------------------------ determinism


def test_same_key_same_episode():
    params = ENV.params_for("hard")
    actions = random_actions(ENV, params, jax.random.PRNGKey(5), HOURS)
    a = rollout(params, jax.random.PRNGKey(1), actions)
    b = rollout(params, jax.random.PRNGKey(1), actions)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_easy_tier_does_not_depend_on_the_key():
    params = ENV.params_for("easy")
    actions = jnp.tile(jnp.array([[60.0], [0.0], [0.0], [10.0]]), (HOURS // 4, 1))
    a = rollout(params, jax.random.PRNGKey(1), actions)
    b = rollout(params, jax.random.PRNGKey(2), actions)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_medium_and_hard_are_stochastic():
    for tier in ("medium", "hard"):
        params = ENV.params_for(tier)
        obs = [rollout(params, jax.random.PRNGKey(k), constant_doses(12.0))[1][0] for k in (1, 2)]
        assert not np.array_equal(obs[0], obs[1])


def test_jit_matches_eager_step():
    params = ENV.params_for("hard")
    key = jax.random.PRNGKey(7)
    _, state = jax.jit(ENV.reset_env)(key, params)
    action = jnp.array([80.0])
    jitted = jax.jit(ENV.step_env)(key, state, action, params)
    with jax.disable_jit():
        eager = ENV.step_env(key, state, action, params)
    for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3)


def test_vmap_matches_loop():
    params = ENV.params_for("hard")
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    actions = jnp.stack([constant_doses(d) for d in (0.0, 20.0, 160.0)])
    batched = jax.vmap(rollout, in_axes=(None, 0, 0))(params, keys, actions)
    for i in range(3):
        single = rollout(params, keys[i], actions[i])
        for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(x[i], y, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------- robustness


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_actions_keep_the_state_finite(bad):
    params = ENV.params_for("medium")
    actions = jnp.full((HOURS, 1), bad, jnp.float32)
    _, out = rollout(params, jax.random.PRNGKey(0), actions)
    for leaf in jax.tree.leaves(out):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert np.isfinite(np.asarray(leaf)).all()
    doses = np.asarray(out[5].last_dose_mg)
    assert set(np.unique(doses)) <= {0.0, v1.MAX_DOSE_MG}


@pytest.mark.parametrize("tier", TIERS)
def test_observations_stay_inside_the_observation_space(tier):
    params = ENV.params_for(tier, observation_noise_std=1.0)
    space = ENV.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    keys = jax.random.split(jax.random.PRNGKey(11), 8)
    for k, key in enumerate(keys):
        scale = [160.0, 40.0, 15.0, 0.0][k % 4]  # from toxic to drug-free
        actions = random_actions(ENV, params, key, HOURS) * scale / v1.MAX_DOSE_MG
        reset_obs, out = rollout(params, key, actions)
        final = np.asarray(out[4]["final_observation"])
        for obs in (np.asarray(reset_obs)[None], np.asarray(out[0]), final):
            assert np.all(obs >= low) and np.all(obs <= high), (obs.min(0), obs.max(0))
    assert space.shape == (7,)
    assert ENV.action_space(params).contains(jnp.array([v1.MAX_DOSE_MG]))


def test_get_obs_without_a_key_is_noise_free():
    params = ENV.params_for("hard", concentration_measured=1.0)
    _, out = rollout(params, jax.random.PRNGKey(2), constant_doses(100.0))
    state = jax.tree.map(lambda leaf: leaf[0], out[5])
    clean = np.asarray(ENV.get_obs(state, params))
    noisy = np.asarray(ENV.get_obs(state, params, jax.random.PRNGKey(9)))
    assert clean[2] == pytest.approx(float(state.qtc_ms))
    assert clean[5] == pytest.approx(float(state.drug.plasma_concentration))
    assert not np.array_equal(clean[[2, 3, 5]], noisy[[2, 3, 5]])
    np.testing.assert_array_equal(clean[[0, 1, 4, 6]], noisy[[0, 1, 4, 6]])


# ------------------------------------------------------------------- parameters


def test_bad_parameters_raise_naming_them():
    with pytest.raises(ValueError, match="'elimination_rate_per_h'"):
        ENV.params_for("medium", elimination_rate_per_h=5.0)
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


# ------------------------------------------------------------------- physiology


def test_enough_drug_suppresses_ectopy_and_none_leaves_it():
    params = ENV.params_for("easy")
    _, untreated = rollout(params, jax.random.PRNGKey(0), constant_doses(0.0))
    _, treated = rollout(params, jax.random.PRNGKey(0), constant_doses(15.0))
    untreated_rate = np.asarray(untreated[4]["ectopic_rate_per_min"])
    treated_rate = np.asarray(treated[4]["ectopic_rate_per_min"])
    assert untreated_rate.min() > 0.0  # the focus keeps firing without drug
    assert treated_rate[24:].max() == 0.0  # once loaded, no ectopic beat
    assert np.asarray(treated[1])[24:].sum() > np.asarray(untreated[1])[24:].sum() + 40.0


def test_qtc_tracks_concentration_and_toxicity_ends_the_episode():
    params = ENV.params_for("easy")
    _, out = rollout(params, jax.random.PRNGKey(0), constant_doses(v1.MAX_DOSE_MG))
    mask = first_episode(out)
    qtc = np.asarray(out[4]["qtc_ms"])[mask]
    concentration = np.asarray(out[4]["concentration"])[mask]
    assert np.all(np.diff(concentration) > 0) and np.all(np.diff(qtc) > 0)
    terminated = np.asarray(out[2])[mask]
    assert terminated[-1] and not terminated[:-1].any()
    assert qtc[-1] > float(params.qtc_stop_ms) >= qtc[-2]
    assert np.asarray(out[1])[mask][-1] < -v1.TORSADES_PENALTY + 1.0


def test_hard_tier_hides_the_concentration():
    params = ENV.params_for("hard")
    _, out = rollout(params, jax.random.PRNGKey(0), constant_doses(20.0))
    assert np.all(np.asarray(out[0])[:, 5] == 0.0)
    assert np.all(np.asarray(out[4]["concentration"]) > 0.0)


# -------------------------------------------------------------------- baselines


@pytest.mark.parametrize("tier", TIERS)
def test_heuristic_beats_random(tier):
    params = ENV.params_for(tier)
    key = jax.random.PRNGKey(0)
    random_returns = run_episodes(
        ENV, params, random_policy, random_policy_params(ENV, params), key, 64, HOURS
    ).episode_return
    heuristic_returns = run_episodes(
        ENV, params, heuristic_dosing_v1_policy, HeuristicDosingV1Params(), key, 64, HOURS
    ).episode_return
    gap = float(jnp.mean(heuristic_returns) - jnp.mean(random_returns))
    assert gap > 15.0
