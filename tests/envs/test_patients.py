"""Patient cohorts: log-normal variation of the listed parameters, fixed named cohorts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax import patients
from cardiosim_jax.agents import random_policy, random_policy_params
from cardiosim_jax.models.variability import log_sd
from cardiosim_jax.rollout import run_episodes

V1_IDS = tuple(patients.envs_with_patient_model())


def leaves(params):
    return jax.tree_util.tree_leaves(params)


def test_every_v1_environment_has_a_patient_model_and_no_v0_does():
    assert len(V1_IDS) == 3
    assert all(env_id.endswith("-v1") for env_id in V1_IDS)


@pytest.mark.parametrize("env_id", V1_IDS)
def test_variation_table_names_accepted_parameters_with_ranges_and_sources(env_id):
    env, params = cardiosim_jax.make(env_id)
    for name, variability in env.patient_variation.items():
        assert 0.05 <= variability.cv <= 0.6, name
        assert variability.source, name
        bounds = env.parameter_range(name)  # raises if the name is unknown or unranged
        value = float(env.parameter_value(params, name))
        assert bounds.low <= value <= bounds.high, name


@pytest.mark.parametrize("env_id", V1_IDS)
@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_sample_varies_the_listed_parameters_only(env_id, difficulty):
    env, typical = cardiosim_jax.make(env_id, difficulty)
    n = 2000
    params = patients.sample(jax.random.PRNGKey(0), env_id, n, difficulty)
    assert all(np.shape(leaf)[:1] == (n,) for leaf in leaves(params))
    np.testing.assert_array_equal(np.asarray(params.patient_variability), 0.0)
    varied = set(env.patient_variation)
    # The tier's share of the literature CV: 0 on easy, 0.5 on medium, 1 on hard.
    tier_fraction = {"easy": 0.0, "medium": 0.5, "hard": 1.0}[difficulty]
    assert float(typical.patient_variability) == tier_fraction
    for name, variability in env.patient_variation.items():
        values = np.asarray(env.parameter_value(params, name), np.float64)
        bounds = env.parameter_range(name)
        assert np.all(values >= np.float32(bounds.low)) and np.all(
            values <= np.float32(bounds.high)
        )
        if tier_fraction == 0.0:
            # An easy cohort is n copies of the typical patient.
            typical_value = np.asarray(env.parameter_value(typical, name), np.float32)
            np.testing.assert_array_equal(values.astype(np.float32), typical_value, name)
            continue
        inside = (values > bounds.low) & (values < bounds.high)
        # Away from the range's clip, log-values spread with the tier's CV's log-sd.
        if inside.mean() > 0.9:
            spread = np.log(values[inside]).std()
            expected = float(log_sd(tier_fraction * variability.cv))
            assert spread == pytest.approx(expected, rel=0.25), name
    # Everything not listed (and not the switch-off) is the tier's value.
    flat_typical = jax.tree_util.tree_flatten_with_path(typical)[0]
    flat_params = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    for path, value in flat_typical:
        name = jax.tree_util.keystr(path).lstrip(".")
        short = name.split(".")[-1]
        if name in varied or short in varied or short == "patient_variability":
            continue
        np.testing.assert_array_equal(np.asarray(flat_params[path]), np.asarray(value), name)


@pytest.mark.parametrize("env_id", V1_IDS)
def test_sample_is_a_function_of_the_key(env_id):
    a = patients.sample(jax.random.PRNGKey(1), env_id, 16)
    b = patients.sample(jax.random.PRNGKey(1), env_id, 16)
    c = patients.sample(jax.random.PRNGKey(2), env_id, 16)
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert any(
        not np.array_equal(np.asarray(x), np.asarray(z))
        for x, z in zip(leaves(a), leaves(c), strict=True)
    )


def test_named_cohorts_are_fixed_and_differ_by_tier():
    env_id = V1_IDS[0]
    first = patients.cohort(env_id, "medium")
    again = patients.cohort(env_id, "medium")
    hard = patients.cohort(env_id, "hard")
    assert len(first) == patients.COHORT_SIZE
    assert first.names[0] == "patient-001" and first.names[-1] == "patient-100"
    assert first.seed == patients.cohort_seed(env_id, "medium") != hard.seed
    for x, y in zip(leaves(first.params), leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    one = first.patient("patient-007")
    assert all(np.ndim(leaf) == 0 for leaf in leaves(one))
    table = first.table()
    assert set(table) == set(cardiosim_jax.make(env_id)[0].patient_variation)
    assert all(v.shape == (patients.COHORT_SIZE,) for v in table.values())


@pytest.mark.parametrize("env_id", V1_IDS)
def test_a_cohort_runs_as_a_population(env_id):
    env, _ = cardiosim_jax.make(env_id)
    params = patients.sample(jax.random.PRNGKey(3), env_id, 8, "hard", max_steps_in_episode=5)
    stats = run_episodes(
        env, params, random_policy, random_policy_params(env, params), jax.random.PRNGKey(0), 8, 5
    )
    assert np.all(np.isfinite(np.asarray(stats.episode_return)))
    assert np.all(np.asarray(stats.length) >= 1)


def test_bad_requests_say_what_is_accepted():
    with pytest.raises(ValueError, match="no inter-patient variability model.*-v1"):
        patients.sample(jax.random.PRNGKey(0), "PacingControl-v0", 4)
    with pytest.raises(ValueError, match="positive number of patients"):
        patients.sample(jax.random.PRNGKey(0), V1_IDS[0], 0)
    with pytest.raises(ValueError, match="unknown environment id"):
        patients.sample(jax.random.PRNGKey(0), "Nope-v1", 4)
    with pytest.raises(ValueError, match="unknown difficulty"):
        patients.cohort(V1_IDS[0], "extreme")


@pytest.mark.parametrize("env_id", V1_IDS)
def test_reset_draw_scales_the_tier_variability_and_stays_in_range(env_id):
    env, hard = cardiosim_jax.make(env_id, "hard")
    keys = jax.random.split(jax.random.PRNGKey(3), 512)
    for params, spread in ((hard.replace(patient_variability=0.0), False), (hard, True)):
        drawn = jax.vmap(env.draw_patient, in_axes=(0, None))(keys, params)
        assert set(drawn) == set(env.patient_variation)
        for name, values in drawn.items():
            values = np.asarray(values)
            bounds = env.parameter_range(name)
            assert np.all((values >= bounds.low) & (values <= bounds.high)), name
            typical = float(np.clip(env.parameter_value(params, name), bounds.low, bounds.high))
            if not spread:  # no variability: every patient is the typical one
                np.testing.assert_allclose(values, typical, rtol=1e-6, err_msg=name)
                continue
            cv = env.patient_variation[name].cv * float(hard.patient_variability)
            inside = (values > bounds.low) & (values < bounds.high)
            assert inside.mean() > 0.5, name
            # Mean-one log-normal factors: the mean patient is the typical one and the
            # spread is the CV's (clipping to the range only trims the tails).
            assert 0.85 < np.mean(values / typical) < 1.15, name
            assert np.std(np.log(values / typical)) < 1.1 * log_sd(cv) + 1e-6, name
            assert np.std(np.log(values / typical)) > 0.3 * log_sd(cv), name


@pytest.mark.parametrize("env_id", V1_IDS)
def test_sample_is_the_resets_own_patient_draw(env_id):
    # One patient draw: patient i of a sample is env.draw_patient (what every reset
    # of that tier draws) with the i-th key of the split, consistency rules included
    # (to float32 rounding: the sample is vmapped, the reference call is not).
    env, hard = cardiosim_jax.make(env_id, "hard")
    key = jax.random.PRNGKey(11)
    params = patients.sample(key, env_id, 6, "hard")
    for i, patient_key in enumerate(jax.random.split(key, 6)):
        drawn = env.draw_patient(patient_key, hard)
        for name, value in drawn.items():
            sampled = np.asarray(env.parameter_value(params, name))[i]
            np.testing.assert_allclose(sampled, np.asarray(value), rtol=1e-6, err_msg=name)
    env.check_consistency(params)
