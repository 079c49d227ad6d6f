"""DefibrillationTiming-v1: API properties, tiers, rhythm after shocks, rewards, baseline gap."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import env_rollout, random_actions

from cardiosim_jax.envs.defibrillation_timing.heuristic_v1 import (
    HeuristicDefibrillationV1Params,
    heuristic_defibrillation_v1_policy,
)
from cardiosim_jax.envs.defibrillation_timing.v1 import (
    ASYSTOLE,
    ENERGY_PENALTY_PER_J,
    FIBRILLATION_PENALTY,
    PATIENT_VARIABILITY,
    PEA,
    ROSC,
    SHOCK_PENALTY,
    SUCCESS_REWARD,
    TIMEOUT_PENALTY,
    VF,
    DefibrillationTimingV1,
)
from cardiosim_jax.models import shock_response, tissue
from cardiosim_jax.rollout import run_episodes

ENV = DefibrillationTimingV1()
DIFFICULTIES = ("easy", "medium", "hard")
STEPS = 24


def rollout(difficulty, key, action_key=None, **overrides):
    params = ENV.params_for(difficulty, **overrides)
    action_key = jax.random.PRNGKey(11) if action_key is None else action_key
    actions = random_actions(ENV, params, action_key, STEPS)
    return params, env_rollout(ENV, params, key, actions)


def test_easy_tier_does_not_depend_on_the_key():
    _, first = rollout("easy", jax.random.PRNGKey(1))
    _, second = rollout("easy", jax.random.PRNGKey(2))
    jax.tree.map(np.testing.assert_array_equal, first, second)


def test_medium_and_hard_depend_on_the_key():
    for difficulty in ("medium", "hard"):
        (_, (obs_a, *_)), (_, (obs_b, *_)) = (
            rollout(difficulty, jax.random.PRNGKey(k))[1] for k in (1, 2)
        )
        assert not np.array_equal(np.asarray(obs_a), np.asarray(obs_b))


def test_nan_and_inf_actions_keep_the_state_finite():
    params = ENV.params_for("hard")
    bad = jnp.array([[jnp.nan], [jnp.inf], [-jnp.inf], [1e30]] * 6)
    _, (obs, reward, _, _, _, states) = env_rollout(ENV, params, jax.random.PRNGKey(0), bad)
    for leaf in jax.tree.leaves((obs, reward, states)):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
    assert np.all(np.asarray(states.total_energy_j) <= 360.0 * STEPS)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_observations_inside_observation_space(difficulty):
    params = ENV.params_for(difficulty)
    space = ENV.observation_space(params)
    low, high = np.asarray(space.low), np.asarray(space.high)
    keys = jax.random.split(jax.random.PRNGKey(5), 16)
    reset_obs, (obs, *_rest) = jax.vmap(
        lambda k: env_rollout(ENV, params, k, random_actions(ENV, params, k, STEPS))
    )(keys)
    all_obs = np.concatenate([np.asarray(reset_obs)[:, None], np.asarray(obs)], axis=1)
    all_obs = all_obs.reshape(-1, all_obs.shape[-1])
    assert all_obs.dtype == np.float32 and all_obs.shape[-1] == 10
    assert np.all(all_obs >= low) and np.all(all_obs <= high)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shock_pause_s", 30.0),
        ("refibrillation_probability", 1.5),
        ("patient_variability", -0.1),
        ("e50_j", 5.0),
        ("shock.slope", 20.0),
        ("cpr_quality", 3.0),
        ("myocardium.ecg_gain_mv", 0.0),
    ],
)
def test_bad_parameter_raises_naming_it(name, value):
    with pytest.raises(ValueError, match=name.split(".")[-1]):
        ENV.params_for("medium", **{name: value})


def test_patient_variability_has_ranges_and_drives_the_patient():
    for name in PATIENT_VARIABILITY:
        field = name.split(".")[-1]
        assert (
            field in ENV.parameter_ranges
            or field in tissue.PARAMETER_RANGES
            or field in shock_response.PARAMETER_RANGES
        )
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    for difficulty, varies in (("easy", False), ("hard", True)):
        params = ENV.params_for(difficulty)
        _, states = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
        e50 = np.asarray(states.patient_shock.e50_j)
        gain = np.asarray(states.patient_myocardium.ecg_gain_mv)
        assert (np.std(e50) > 1.0) == varies and (np.std(gain) > 0.01) == varies
    # A fixed patient (what a cohort sets) is exactly the typical one.
    params = ENV.params_for("hard", patient_variability=0.0, e50_j=200.0)
    _, state = ENV.reset(jax.random.PRNGKey(9), params)
    assert float(state.patient_shock.e50_j) == 200.0


@functools.partial(jax.jit, static_argnums=0)
def _first_shock(n, params, energy, key):
    """Termination probability and outcome of one shock at arrival, for n patients."""

    def one(k):
        k_reset, k_step = jax.random.split(k)
        _, state = ENV.reset(k_reset, params)
        _, _, _, _, _, info = ENV.step(k_step, state, jnp.stack([energy]), params)
        return info["termination_probability"], info["terminated_vf"]

    return jax.vmap(one)(jax.random.split(key, n))


def test_termination_rises_with_energy_and_barely_falls_with_time_in_vf():
    key = jax.random.PRNGKey(7)
    params = ENV.params_for("medium", refibrillation_probability=0.0)
    p_low, won_low = _first_shock(2000, params, jnp.float32(50.0), key)
    p_high, won_high = _first_shock(2000, params, jnp.float32(360.0), key)
    assert float(jnp.mean(p_high)) > float(jnp.mean(p_low)) + 0.2
    assert float(jnp.mean(won_high)) > float(jnp.mean(won_low)) + 0.2
    # Biphasic shocks terminate VF late in VF too (ORCA: first shock at 8.9 min): the
    # effect of 2 vs 10 min of untreated VF is real but small.
    early = ENV.params_for("medium", refibrillation_probability=0.0, arrival_delay_min=2.0)
    late = ENV.params_for("medium", refibrillation_probability=0.0, arrival_delay_min=10.0)
    p_early, _ = _first_shock(2000, early, jnp.float32(200.0), key)
    p_late, _ = _first_shock(2000, late, jnp.float32(200.0), key)
    assert 0.0 < float(jnp.mean(p_early)) - float(jnp.mean(p_late)) < 0.1


def test_termination_does_not_depend_on_the_ecg_window():
    """Defect 2 of issue 12: the analysed window's noise must not decide the shock."""
    params = ENV.params_for("easy")
    _, state = ENV.reset(jax.random.PRNGKey(0), params)
    action = jnp.array([200.0])
    outs = [
        ENV.step_env(
            jax.random.PRNGKey(1), state.replace(window_index=jnp.int32(w)), action, params
        )
        for w in (0, 37, 101, 200)
    ]
    amsa = [float(o[1].amsa_intrinsic) for o in outs]
    probabilities = [float(o[4]["termination_probability"]) for o in outs]
    assert max(amsa) > 1.2 * min(amsa)  # the observed waveform feature does vary
    assert max(probabilities) == min(probabilities) > 0.5


def _state_in(rhythm, params, myocardial_energy=0.5, key=0):
    _, state = ENV.reset(jax.random.PRNGKey(key), params)
    return state.replace(rhythm=jnp.int32(rhythm), myocardial_energy=jnp.float32(myocardial_energy))


@pytest.mark.parametrize("rhythm", [PEA, ASYSTOLE])
def test_shocking_a_rhythm_that_is_not_vf_only_costs_a_pause(rhythm):
    params = ENV.params_for("medium", vf_recurrence_rate_per_min=0.0)
    state = _state_in(rhythm, params).replace(hazard_threshold=jnp.float32(100.0))
    key = jax.random.PRNGKey(3)
    _, no_shock, r_wait, _, _, _ = ENV.step(key, state, jnp.array([0.0]), params)
    _, shocked, r_shock, _, _, info = ENV.step(key, state, jnp.array([360.0]), params)
    assert int(shocked.rhythm) == int(no_shock.rhythm) == rhythm
    assert not bool(info["terminated_vf"])
    assert float(shocked.myocardial_energy) < float(no_shock.myocardial_energy)
    assert float(shocked.survival) < float(no_shock.survival)
    np.testing.assert_allclose(
        float(r_wait) - float(r_shock), SHOCK_PENALTY + ENERGY_PENALTY_PER_J * 360.0, rtol=1e-6
    )


def test_cpr_in_pea_reaches_rosc_or_vf_at_the_hazard_threshold():
    # Deterministic tier: the event fires once the integrated hazard reaches ln 2.
    params = ENV.params_for("easy", vf_recurrence_rate_per_min=0.0)
    state = _state_in(PEA, params, myocardial_energy=0.45).replace(
        hazard_threshold=jnp.float32(np.log(2.0))
    )
    rhythms, s = [], state
    for i in range(60):
        _, s, _, done, _ = ENV.step_env(jax.random.PRNGKey(i), s, jnp.array([0.0]), params)
        rhythms.append(int(s.rhythm))
        if bool(done):
            break
    assert rhythms[-1] == ROSC and set(rhythms[:-1]) == {PEA}
    # CPR keeps m between 0.45 and its CPR equilibrium (below 0.6), so the event fires
    # between ln 2 / rate(0.6) and ln 2 / rate(0.45) minutes (plus one step).
    rate_at = lambda m: float(  # noqa: E731
        shock_response.rosc_rate_per_min(
            params.shock, jnp.float32(m), jnp.array(False), jnp.float32(0.0)
        )
    )
    minutes = len(rhythms) * 10.0 / 60.0
    assert np.log(2.0) / rate_at(0.6) <= minutes <= np.log(2.0) / rate_at(0.45) + 1.0 / 6.0


def test_cpr_raises_amsa_and_shock_pauses_cost_perfusion():
    params = ENV.params_for("easy")
    cpr = jnp.zeros((STEPS, 1))  # four minutes of CPR, no shock: VF persists
    _, (obs_cpr, _, _, _, info_cpr, states_cpr) = env_rollout(
        ENV, params, jax.random.PRNGKey(0), cpr
    )
    reset_obs, _ = ENV.reset(jax.random.PRNGKey(0), params)
    amsa = np.asarray(obs_cpr)[:, 0]
    assert np.all(np.asarray(states_cpr.rhythm) == VF)
    # Mean AMSA over the third and fourth minutes above the value at arrival.
    assert amsa[12:].mean() > 1.2 * float(reset_obs[0])
    # Perfusion builds over the first seconds of CPR (Paradis 1990), then m rises steadily.
    assert np.all(np.diff(np.asarray(states_cpr.myocardial_energy))[1:] > 0)
    # Tiny shocks every step: same CPR time lost to pauses, energy state worse.
    tiny = jnp.full((STEPS, 1), 2.0)
    _, (_, _, _, _, _, states_shock) = env_rollout(ENV, params, jax.random.PRNGKey(0), tiny)
    assert float(states_shock.myocardial_energy[-1]) < float(states_cpr.myocardial_energy[-1])


def test_requests_below_the_smallest_energy_deliver_no_shock():
    params = ENV.params_for("easy")
    _, state = ENV.reset(jax.random.PRNGKey(0), params)
    for energy, shocked in ((0.0, False), (1.9, False), (2.0, True), (jnp.nan, False)):
        _, s, _, _, _, info = ENV.step(jax.random.PRNGKey(1), state, jnp.array([energy]), params)
        assert bool(info["shocked"]) == shocked
        assert int(s.shocks_delivered) == int(shocked)


# ------------------------------------------------------------------ reward terms, by hand


def test_reward_rosc_is_success_times_survival_minus_the_shock():
    # m = 1 and a certain ROSC after termination: the first 200 J shock gives ROSC.
    params = ENV.params_for("easy", rosc_max_probability=1.0)
    state = _state_in(VF, params, myocardial_energy=1.0).replace(survival=jnp.float32(0.8))
    _, new, reward, done, _ = ENV.step_env(jax.random.PRNGKey(0), state, jnp.array([200.0]), params)
    assert bool(done) and int(new.rhythm) == ROSC
    pause, cpr = 8.0, 2.0  # shock_pause_s, rest of the 10 s step
    survival = 0.8 * np.exp(-(0.1 * pause + 0.035 * cpr) / 60.0)
    expected = SUCCESS_REWARD * survival - (SHOCK_PENALTY + ENERGY_PENALTY_PER_J * 200.0)
    np.testing.assert_allclose(float(reward), expected, rtol=1e-5)


def test_reward_step_without_rosc_and_shock_cost():
    params = ENV.params_for("easy")
    state = _state_in(ASYSTOLE, params).replace(hazard_threshold=jnp.float32(100.0))
    _, _, wait, _, _, _ = ENV.step(jax.random.PRNGKey(0), state, jnp.array([0.0]), params)
    np.testing.assert_allclose(float(wait), -FIBRILLATION_PENALTY, rtol=1e-6)
    _, _, shock, _, _, _ = ENV.step(jax.random.PRNGKey(0), state, jnp.array([100.0]), params)
    np.testing.assert_allclose(float(shock), -FIBRILLATION_PENALTY - 2.0 - 0.5, rtol=1e-6)


def test_reward_timeout_without_rosc():
    params = ENV.params_for("easy", max_steps_in_episode=5)
    state = _state_in(VF, params).replace(time=jnp.int32(4))
    _, _, reward, _, truncated, _ = ENV.step(jax.random.PRNGKey(0), state, jnp.array([0.0]), params)
    np.testing.assert_allclose(float(reward), -FIBRILLATION_PENALTY - TIMEOUT_PENALTY, rtol=1e-6)
    assert bool(truncated)


# --------------------------------------------------------------------------- baselines


def _baseline_or_probe(policy_params, obs, key):
    """One policy for one compilation: mode 0 ACLS, 1 a constant energy, 2 uniform random."""
    rule, mode, energy_j = policy_params
    acls = heuristic_defibrillation_v1_policy(rule, obs, key)
    uniform = jax.random.uniform(key, (1,), minval=0.0, maxval=360.0)
    return jnp.select([mode == 0, mode == 1], [acls, jnp.full((1,), energy_j)], uniform)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_acls_beats_random_never_shocking_and_stacked_shocks(difficulty):
    # One static bound on every tier (each ends at its own length), one compilation.
    steps = 90
    params = ENV.params_for(difficulty)
    key = jax.random.PRNGKey(8)
    rule = HeuristicDefibrillationV1Params()

    def mean_return(mode, energy_j=0.0):
        policy_params = (rule, jnp.int32(mode), jnp.float32(energy_j))
        stats = run_episodes(ENV, params, _baseline_or_probe, policy_params, key, 64, steps)
        return float(jnp.mean(stats.episode_return))

    acls, never, stacked, random_mean = (
        mean_return(0),
        mean_return(1),
        mean_return(1, 360.0),
        mean_return(2),
    )
    assert acls > never + 20.0
    assert never > stacked  # stacked shocks without CPR harm
    assert never > random_mean  # random energies shock on nearly every step


def test_heuristic_policy_rules():
    params = HeuristicDefibrillationV1Params()
    amsa_params = HeuristicDefibrillationV1Params(amsa_guided=jnp.float32(1.0))
    #           amsa, amp, t, since, shocks, last, total, vf, pea, asystole
    arrival = jnp.array([5.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    mid_cycle = jnp.array([20.0, 2.0, 60.0, 40.0, 1.0, 200.0, 200.0, 1.0, 0.0, 0.0])
    cycle_end = jnp.array([5.0, 0.5, 130.0, 120.0, 2.0, 300.0, 500.0, 1.0, 0.0, 0.0])
    pea_check = jnp.array([0.0, 0.0, 130.0, 120.0, 2.0, 300.0, 500.0, 0.0, 1.0, 0.0])
    policy = heuristic_defibrillation_v1_policy
    np.testing.assert_array_equal(policy(params, arrival), [200.0])
    np.testing.assert_array_equal(policy(params, mid_cycle), [0.0])
    np.testing.assert_array_equal(policy(params, cycle_end), [360.0])
    np.testing.assert_array_equal(policy(params, pea_check), [0.0])  # never shock PEA
    np.testing.assert_array_equal(policy(amsa_params, arrival), [0.0])
    np.testing.assert_array_equal(policy(amsa_params, mid_cycle), [300.0])
    batch = jnp.stack([arrival, mid_cycle, cycle_end, pea_check])
    assert policy(params, batch).shape == (4, 1)
