"""AntiarrhythmicDosing-v0 semantics, checked against cardiosim 0.1.0's AntiarrhythmicDosingEnv."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.envs.antiarrhythmic_dosing import AntiarrhythmicDosingEnv
from conftest import env_rollout

import cardiosim_jax

ENV_ID = "AntiarrhythmicDosing-v0"
#: Reference constants, read off AntiarrhythmicDosingEnv.step and SingleCompartmentPKModel.
REF_EPISODE_LENGTH = 200
REF_THERAPEUTIC_REWARD = 1.0
REF_SUBTHERAPEUTIC_REWARD = -0.3
REF_TOXIC_REWARD = -3.0
REF_ARRHYTHMIA_PENALTY = 0.5
REF_DOSE_PENALTY = 0.01 / 100.0  # per mg
REF_TERMINATION_CONCENTRATION = 12.0
REF_KE, REF_KA, REF_VD, REF_WEIGHT, REF_DT = 0.1, 1.0, 2.0, 70.0, 0.1
REF_THERAPEUTIC_MIN, REF_THERAPEUTIC_MAX, REF_TOXIC = 1.5, 5.0, 8.0


def deterministic_params(arrhythmia: bool, **overrides):
    """No PK variability, no membrane noise, and no rhythm transitions.

    Arrhythmia off at reset with arrhythmia_prob = 0 never recurs; on at reset
    with arrhythmia_prob = 1 is never suppressed while no drug is given.
    """
    return cardiosim_jax.make(
        ENV_ID,
        "medium",
        pk_variability=0.0,
        membrane_noise_std=0.0,
        arrhythmia_prob=1.0 if arrhythmia else 0.0,
        **overrides,
    )


def synced_reference(state, arrhythmia: bool):
    ref = AntiarrhythmicDosingEnv("medium")
    ref.reset(seed=0)
    ref._pk_variability = 0.0
    ref.pk_model.ke, ref.pk_model.vd = REF_KE, REF_VD  # undo the reset's random factors
    ref.cell_model.noise_std = 0.0
    ref.arrhythmia_prob = 1.0 if arrhythmia else 0.0
    ref.arrhythmia_active = arrhythmia
    ref.cell_model.v = float(state.cell.v)
    ref.cell_model.w = float(state.cell.w)
    return ref


# ----------------------------------------------------------------------- reset


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_reset_observation_layout(difficulty):
    env, params = cardiosim_jax.make(ENV_ID, difficulty)
    n = 2000
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(2), n), params
    )
    obs = np.asarray(obs)
    np.testing.assert_array_equal(obs[:, 2], 0.0)  # drug-naive
    np.testing.assert_array_equal(obs[:, 4], 0.0)  # no efficacy
    np.testing.assert_array_equal(obs[:, 5], 0.0)  # no therapeutic steps yet
    assert set(np.unique(obs[:, 3])) <= {0.0, 1.0}
    p = float(params.arrhythmia_prob)
    assert abs(obs[:, 3].mean() - p) < 4.0 * np.sqrt(p * (1 - p) / n)
    for i, rest in ((0, -1.2), (1, -0.6)):
        assert abs(obs[:, i].mean() - rest) < 0.01
        assert 0.04 < obs[:, i].std() < 0.06
    # PK parameters of each episode's patient: k_e, V_d x (1 + U(-var, var)).
    var = float(params.pk_variability)
    for name, default in (("elimination_rate", REF_KE), ("volume_of_distribution", REF_VD)):
        values = np.asarray(getattr(state, name))
        assert values.min() >= default * (1 - var) - 1e-6
        assert values.max() <= default * (1 + var) + 1e-6
        if var > 0:
            assert values.max() - values.min() > 1.8 * var * default
        else:
            np.testing.assert_allclose(values, default, rtol=1e-7)


def test_patients_do_not_drift_across_resets():
    """The reference compounds k_e/V_d factors over resets; each of our resets draws fresh."""
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    actions = jnp.zeros((5 * REF_EPISODE_LENGTH, 1))
    _, (_, _, _, truncated, _, states) = env_rollout(env, params, jax.random.PRNGKey(3), actions)
    starts = np.flatnonzero(np.asarray(truncated))
    assert len(starts) == 5
    ke = np.asarray(states.elimination_rate)[starts[:-1]]  # state right after each auto-reset
    assert ((ke >= 0.06 - 1e-6) & (ke <= 0.14 + 1e-6)).all()
    assert len(set(ke.tolist())) == len(ke)


# ------------------------------------------------------------- episode length


def test_episode_is_200_steps_by_truncation():
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    actions = jnp.full((2 * REF_EPISODE_LENGTH, 1), 5.0)
    _, (obs, _, terminated, truncated, info, states) = env_rollout(
        env, params, jax.random.PRNGKey(0), actions
    )
    assert not np.asarray(terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(truncated)), [199, 399])
    assert float(obs[199, 2]) == 0.0  # auto-reset: drug-naive again
    assert float(info["final_observation"][199, 2]) > 0.0
    assert int(states.time[199]) == 0 and int(states.time[200]) == 1


def test_terminates_when_concentration_exceeds_12():
    env, params = cardiosim_jax.make(ENV_ID, "medium", pk_variability=0.0)
    actions = jnp.full((REF_EPISODE_LENGTH, 1), 100.0)  # the largest dose, every step
    _, (_, rewards, terminated, truncated, info, _) = env_rollout(
        env, params, jax.random.PRNGKey(0), actions
    )
    terminated = np.asarray(terminated)
    concentration = np.asarray(info["concentration"])
    first = int(np.argmax(terminated))
    assert terminated.any() and first < REF_EPISODE_LENGTH - 1
    assert not np.asarray(truncated)[: first + 1].any()
    # Terminates exactly on the first step with C > 12 (C >= toxic threshold 8 as well).
    assert concentration[first] > REF_TERMINATION_CONCENTRATION
    assert (concentration[:first] <= REF_TERMINATION_CONCENTRATION).all()
    assert concentration[first - 1] > REF_TOXIC  # toxic, but not yet terminated
    assert float(info["final_observation"][first, 2]) == pytest.approx(concentration[first])
    arrhythmic = np.asarray(info["arrhythmia_active"])[first]
    expected = REF_TOXIC_REWARD - REF_ARRHYTHMIA_PENALTY * arrhythmic - REF_DOSE_PENALTY * 100.0
    assert float(rewards[first]) == pytest.approx(expected, rel=1e-6)


def test_terminates_at_lower_toxic_threshold_only_above_12():
    """Termination needs C >= toxic threshold AND C > 12: a threshold of 14 delays it."""
    env, params = cardiosim_jax.make(ENV_ID, "medium", pk_variability=0.0, toxic_threshold=14.0)
    actions = jnp.full((REF_EPISODE_LENGTH, 1), 100.0)
    _, (_, _, terminated, _, info, _) = env_rollout(env, params, jax.random.PRNGKey(0), actions)
    first = int(np.argmax(np.asarray(terminated)))
    concentration = np.asarray(info["concentration"])
    assert concentration[first] >= 14.0
    assert (concentration[:first] < 14.0).all()


# ------------------------------------------------------------------- actions


def one_step(env, params, action, state=None):
    if state is None:
        _, state = env.reset(jax.random.PRNGKey(6), params)
    return env.step(jax.random.PRNGKey(5), state, jnp.asarray(action, jnp.float32), params)


def assert_same_step(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    ("action", "equivalent"),
    [
        ([250.0], [100.0]),
        ([1e30], [100.0]),
        ([np.inf], [100.0]),
        ([-5.0], [0.0]),
        ([-np.inf], [0.0]),
        ([np.nan], [0.0]),  # documented departure: NaN acts as no dose
    ],
)
def test_action_clipping(action, equivalent):
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    assert_same_step(one_step(env, params, action), one_step(env, params, equivalent))


def test_dose_reaches_plasma_by_euler_absorption():
    env, params = deterministic_params(arrhythmia=False)
    _, _, _, _, _, info = one_step(env, params, [70.0])
    # C1 = ka * dose * dt / (Vd * weight), from the reference's PK step.
    expected = REF_KA * 70.0 * REF_DT / (REF_VD * REF_WEIGHT)
    assert float(info["concentration"]) == pytest.approx(expected, rel=1e-6)


# -------------------------------------------------------------------- reward


def expected_reward(concentration, arrhythmic, dose):
    if REF_THERAPEUTIC_MIN <= concentration <= REF_THERAPEUTIC_MAX:
        band = REF_THERAPEUTIC_REWARD
    elif concentration < REF_THERAPEUTIC_MIN:
        band = REF_SUBTHERAPEUTIC_REWARD
    elif concentration >= REF_TOXIC:
        band = REF_TOXIC_REWARD
    else:
        band = 0.0  # between the window and the toxic threshold
    return band - REF_ARRHYTHMIA_PENALTY * arrhythmic - REF_DOSE_PENALTY * dose


@pytest.mark.parametrize(
    "previous",
    [0.0, 1.0, 1.6, 3.0, 5.0, 5.1, 6.5, 8.0, 8.2, 11.0, 12.5, 30.0],
)
@pytest.mark.parametrize("dose", [0.0, 40.0, 100.0])
@pytest.mark.parametrize("arrhythmia", [False, True])
def test_reward_in_each_concentration_band(previous, dose, arrhythmia):
    env, params = deterministic_params(arrhythmia=arrhythmia)
    _, state = env.reset(jax.random.PRNGKey(1), params)
    state = state.replace(
        drug=state.drug.replace(plasma_concentration=jnp.float32(previous)),
        arrhythmia_active=jnp.array(arrhythmia),
    )
    _, _, reward, terminated, _, info = one_step(env, params, [dose], state=state)
    # Euler step of the reference's PK model, by hand (empty gut before the dose).
    concentration = (
        previous + REF_KA * dose * REF_DT / (REF_VD * REF_WEIGHT) - REF_KE * previous * REF_DT
    )
    assert float(info["concentration"]) == pytest.approx(concentration, rel=1e-5)
    # Suppression is random while the drug is effective: use the realised rhythm.
    arrhythmic = bool(info["arrhythmia_active"])
    if not arrhythmia:
        assert not arrhythmic  # arrhythmia_prob = 0: no recurrence
    assert float(reward) == pytest.approx(
        expected_reward(concentration, arrhythmic, dose), rel=1e-5, abs=1e-6
    )
    toxic_and_high = concentration >= REF_TOXIC and concentration > REF_TERMINATION_CONCENTRATION
    assert bool(terminated) == toxic_and_high
    assert bool(info["is_toxic"]) == (concentration >= REF_TOXIC)
    assert bool(info["is_therapeutic"]) == (
        REF_THERAPEUTIC_MIN <= concentration <= REF_THERAPEUTIC_MAX
    )
    # Efficacy: Hill curve, coefficient 2, EC50 mid-window.
    ratio = (concentration / (0.5 * (REF_THERAPEUTIC_MIN + REF_THERAPEUTIC_MAX))) ** 2
    assert float(info["efficacy"]) == pytest.approx(ratio / (1 + ratio), rel=1e-5, abs=1e-7)


def test_arrhythmia_is_never_suppressed_without_drug():
    env, params = deterministic_params(arrhythmia=True)
    _, (_, rewards, _, _, info, _) = env_rollout(
        env, params, jax.random.PRNGKey(4), jnp.zeros((REF_EPISODE_LENGTH, 1))
    )
    np.testing.assert_array_equal(np.asarray(info["final_observation"])[:, 3], 1.0)
    np.testing.assert_allclose(
        np.asarray(rewards), REF_SUBTHERAPEUTIC_REWARD - REF_ARRHYTHMIA_PENALTY, rtol=1e-6
    )


def test_therapeutic_fraction_observation():
    env, params = deterministic_params(arrhythmia=False)
    actions = jnp.concatenate(
        [jnp.full((30, 1), 60.0), jnp.full((REF_EPISODE_LENGTH - 30, 1), 3.0)]
    )
    _, (_, _, _, _, info, _) = env_rollout(env, params, jax.random.PRNGKey(0), actions)
    obs = info["final_observation"]
    therapeutic = np.asarray(info["is_therapeutic"])
    assert 0 < therapeutic.sum() < len(therapeutic)
    expected = np.cumsum(therapeutic) / np.arange(1, len(therapeutic) + 1)
    np.testing.assert_allclose(np.asarray(obs)[:, 5], expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info["therapeutic_fraction"]), expected, rtol=1e-6)


def test_info_keys_match_reference():
    ref = AntiarrhythmicDosingEnv("medium")
    ref.reset(seed=0)
    *_, ref_info = ref.step(np.zeros(1, np.float32))
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    *_, info = one_step(env, params, [0.0])
    assert set(info) == set(ref_info) | {"terminated", "truncated", "final_observation"}


# ------------------------------------------------------ exact reference match


@pytest.mark.parametrize(
    ("arrhythmia", "dosing", "seed"),
    [(False, "random", 0), (False, "heuristic", 1), (True, "none", 2), (False, "max", 3)],
)
def test_step_by_step_matches_reference(arrhythmia, dosing, seed):
    """No noise, no PK variability, no rhythm transitions: deterministic given the reset state."""
    env, params = deterministic_params(arrhythmia)
    rng = np.random.default_rng(seed)
    n = REF_EPISODE_LENGTH
    if dosing == "random":
        doses = rng.uniform(0.0, 20.0, n)  # steady state ~7 mg/L: crosses every band but 12
    elif dosing == "heuristic":  # loading then small maintenance doses: visits the window
        doses = np.where(np.arange(n) < 4, 50.0, rng.uniform(0.0, 12.0, n))
    elif dosing == "max":
        doses = np.full(n, 100.0)
    else:
        doses = np.zeros(n)
    actions = doses[:, None].astype(np.float32)
    key = jax.random.PRNGKey(seed)
    reset_obs, (_, rewards, terminated, truncated, info, _) = env_rollout(env, params, key, actions)
    _, state = env.reset(jax.random.split(key)[0], params)
    ref = synced_reference(state, arrhythmia)
    np.testing.assert_allclose(np.asarray(reset_obs), ref._get_obs(), rtol=1e-6)

    final_obs = np.asarray(info["final_observation"])
    for t, action in enumerate(actions):
        ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(action)
        np.testing.assert_allclose(final_obs[t], ref_obs, rtol=1e-4, atol=1e-4, err_msg=str(t))
        assert float(rewards[t]) == pytest.approx(ref_reward, rel=1e-5, abs=1e-5), t
        assert bool(terminated[t]) == ref_term, t
        assert bool(truncated[t]) == ref_trunc, t
        for name, value in ref_info.items():
            assert float(info[name][t]) == pytest.approx(float(value), rel=1e-4, abs=1e-5), name
        if ref_term or ref_trunc:
            break
    if dosing == "max":
        assert ref_term and t < n - 1
    else:
        assert ref_trunc and t == n - 1
    if dosing == "heuristic":
        assert 0.0 < ref_obs[5] < 1.0  # the window was visited (and left)


# ------------------------------------------------------- observation space


def test_observation_space_contains_rollouts():
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    keys = jax.random.split(jax.random.PRNGKey(8), 8)
    actions = jax.vmap(lambda k: jax.random.uniform(k, (400, 1), maxval=100.0))(keys)
    _, (obs, rewards, *_rest) = jax.vmap(lambda k, a: env_rollout(env, params, k, a))(keys, actions)
    obs = np.asarray(obs).reshape(-1, 6)
    space = env.observation_space(params)
    assert ((obs >= np.asarray(space.low)) & (obs <= np.asarray(space.high))).all()
    assert np.isfinite(np.asarray(rewards)).all()


@functools.partial(jax.jit, static_argnums=0)
def _steps_from(env, params, state, key):
    """One zero-dose step from the same state under 4000 keys."""
    return jax.vmap(lambda k: env.step(k, state, jnp.zeros(1), params))(jax.random.split(key, 4000))


@pytest.mark.parametrize(
    ("active", "previous", "arrhythmia_prob"),
    [(True, 3.0, 0.5), (True, 8.0, 0.5), (True, 1.0, 0.5), (False, 0.0, 1.0), (False, 3.3, 0.7)],
)
def test_rhythm_transition_probabilities(active, previous, arrhythmia_prob):
    """Suppression 0.8 x efficacy while arrhythmic; recurrence 0.05 x p x (1 - efficacy)."""
    env, params = cardiosim_jax.make(
        ENV_ID, "medium", pk_variability=0.0, arrhythmia_prob=arrhythmia_prob
    )
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(
        drug=state.drug.replace(plasma_concentration=jnp.float32(previous)),
        arrhythmia_active=jnp.array(active),
    )
    *_, info = _steps_from(env, params, state, jax.random.PRNGKey(1))
    efficacy = float(info["efficacy"][0])
    arrhythmic = np.asarray(info["arrhythmia_active"])
    if active:
        changed, p = ~arrhythmic, 0.8 * efficacy
    else:
        changed, p = arrhythmic, 0.05 * arrhythmia_prob * (1.0 - efficacy)
    n = len(arrhythmic)
    assert 0.0 < p < 1.0
    assert abs(changed.mean() - p) < 5.0 * np.sqrt(p * (1 - p) / n), (changed.mean(), p)
