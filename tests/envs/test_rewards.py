"""Every reward term of every environment, pinned to hand-computed values.

Two kinds of test per environment:

* the module's pure reward function on hand-picked inputs, with the expected
  value written out from the documented numbers (module docstrings,
  ``docs/reference-differences.md``, ``docs/v1/*.md``), not from the module's
  constants, so a changed constant, sign, factor, threshold or comparison at
  its boundary fails;
* ``env.step`` from constructed states (or parameters that make the outcome
  certain), its reward compared with the same hand formula evaluated on that
  step's post-step quantities (the pre-reset ``final_observation``, the next
  state, ``info``), so the wiring inside ``step_env`` is pinned too: a reward
  computed from a pre-step quantity, an unclipped action or the wrong
  parameter fails. Each such test also asserts that its cases tell the right
  quantity from the wrong one (e.g. that the pre-step value would give another
  reward), so it cannot pass vacuously.

Each environment's step compiles once (batched with ``vmap`` or scanned).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiosim_jax.envs.antiarrhythmic_dosing import v0 as dosing_v0
from cardiosim_jax.envs.antiarrhythmic_dosing import v1 as dosing_v1
from cardiosim_jax.envs.defibrillation_timing import v0 as defib_v0
from cardiosim_jax.envs.defibrillation_timing import v1 as defib_v1
from cardiosim_jax.envs.pacing_control import v0 as pacing_v0
from cardiosim_jax.envs.pacing_control import v1 as pacing_v1
from cardiosim_jax.models import pacemaker
from cardiosim_jax.models import pharmacokinetics as pk

RTOL, ATOL = 1e-6, 1e-6
#: Rewards accumulated from float32 quantities of a simulated step.
STEP_RTOL, STEP_ATOL = 1e-5, 1e-5


def f32(value) -> jax.Array:
    return jnp.asarray(value, jnp.float32)


def batch(trees):
    """Stack equal-structured pytrees along a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@functools.partial(jax.jit, static_argnums=0)
def step_batch(env, params, keys, states, actions):
    """``env.step`` (auto-reset included) over a batch of keys, states and actions."""
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)


@functools.partial(jax.jit, static_argnums=0)
def step_sequence(env, params, state, keys, actions):
    """``env.step`` over ``actions`` from ``state``; the rewards, infos and next states."""

    def body(state, inputs):
        key, action = inputs
        _, new, reward, _, _, info = env.step(key, state, action, params)
        return new, (reward, info, new)

    return jax.lax.scan(body, state, (keys, actions))[1]


def previous_states(state0, states):
    """The state before each step of a sequence: ``state0``, then ``states[:-1]``."""
    return jax.tree.map(
        lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), state0, states
    )


# =============================================================== PacingControl-v0
#
# -(|HR - target| / 20)^2 - 0.1 x amplitude + 0.3 if HRV < 50 ms and |HR - target| < 10 bpm.


def pacing_v0_by_hand(heart_rate, target, hrv, amplitude):
    error = np.abs(np.asarray(heart_rate, np.float64) - target)
    stable = (np.asarray(hrv) < 50.0) & (error < 10.0)
    return -((error / 20.0) ** 2) - 0.1 * np.asarray(amplitude) + np.where(stable, 0.3, 0.0)


@pytest.mark.parametrize(
    ("heart_rate", "target", "hrv", "amplitude", "expected"),
    [
        pytest.param(72.0, 72.0, 0.0, 0.0, 0.3, id="on-target-steady-bonus-only"),
        pytest.param(92.0, 72.0, 0.0, 0.0, -1.0, id="20-above"),
        pytest.param(52.0, 72.0, 0.0, 0.0, -1.0, id="20-below-error-is-absolute"),
        pytest.param(112.0, 72.0, 0.0, 0.0, -4.0, id="40-above-quadratic"),
        pytest.param(81.5, 72.0, 49.5, 0.0, -(9.5**2) / 400.0 + 0.3, id="inside-band-above"),
        pytest.param(62.5, 72.0, 49.5, 0.0, -(9.5**2) / 400.0 + 0.3, id="inside-band-below"),
        pytest.param(82.0, 72.0, 0.0, 0.0, -0.25, id="error-exactly-10-no-bonus"),
        pytest.param(62.0, 72.0, 0.0, 0.0, -0.25, id="error-exactly-minus-10-no-bonus"),
        pytest.param(72.0, 72.0, 50.0, 0.0, 0.0, id="hrv-exactly-50-no-bonus"),
        pytest.param(72.0, 72.0, 60.0, 0.6, -0.06, id="amplitude-0.1-per-unit"),
        pytest.param(92.0, 72.0, 60.0, 1.0, -1.1, id="error-and-full-amplitude"),
        pytest.param(72.0, 72.0, 10.0, 0.5, 0.25, id="bonus-and-amplitude"),
        pytest.param(80.0, 90.0, 10.0, 0.5, -0.25 - 0.05, id="target-is-an-argument-edge"),
        pytest.param(85.0, 90.0, 10.0, 0.5, -0.0625 - 0.05 + 0.3, id="target-is-an-argument"),
    ],
)
def test_pacing_v0_step_reward(heart_rate, target, hrv, amplitude, expected):
    reward = pacing_v0.step_reward(f32(heart_rate), f32(target), f32(hrv), f32(amplitude))
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=ATOL)
    assert float(pacing_v0_by_hand(heart_rate, target, hrv, amplitude)) == pytest.approx(expected)


def test_pacing_v0_step_rewards_the_heart_rate_after_the_step():
    """12 s near the target from a constructed RR history; each reward from its own next obs.

    Observation 2 is the heart rate and 5 the HRV the step measured (the SA-rate update
    after them changes neither); the amplitude is the action clipped to 0..1. The RR
    history (alternating 800 and 905 ms: HRV 52.5 ms) settles below 50 ms, then pacing
    on every substep at the end makes it irregular again.
    """
    env = pacing_v0.PacingControl()
    target = 70.0
    params = env.params_for(
        "easy",
        sa_rate_low_bpm=70.0,
        sa_rate_high_bpm=70.0,
        target_heart_rate_bpm=target,
        max_steps_in_episode=2000,
    )
    steps = 1200
    key_reset, key_steps, key_rate, key_amp = jax.random.split(jax.random.PRNGKey(7), 4)
    rate = jax.random.uniform(key_rate, (steps,), minval=-20.0, maxval=20.0)
    amplitude = jax.random.uniform(key_amp, (steps,), minval=-0.3, maxval=0.1)
    amplitude = amplitude.at[-100:].set(1.4)  # clipped to 1: a pulse on every substep
    actions = jnp.stack([rate, amplitude], axis=-1)
    _, state0 = env.reset(key_reset, params)
    history = state0.conduction.replace(rr_intervals_ms=f32([800.0, 905.0] * 5), rr_count=10)
    state0 = state0.replace(conduction=history)
    rewards, info, _ = step_sequence(
        env, params, state0, jax.random.split(key_steps, steps), actions
    )
    obs = np.asarray(info["final_observation"], np.float64)
    clipped = np.clip(np.asarray(amplitude), 0.0, 1.0)
    expected = pacing_v0_by_hand(obs[:, 2], target, obs[:, 5], clipped)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=STEP_ATOL)

    # The cases tell the right quantities from the wrong ones.
    obs0 = np.asarray(env.get_obs(state0, params), np.float64)
    assert obs0[5] == pytest.approx(52.5)
    hr_before = np.concatenate([[obs0[2]], obs[:-1, 2]])
    hrv_before = np.concatenate([[obs0[5]], obs[:-1, 5]])
    stable = (obs[:, 5] < 50.0) & (np.abs(obs[:, 2] - target) < 10.0)
    assert stable.any() and (~stable).any()
    assert np.abs(pacing_v0_by_hand(hr_before, target, obs[:, 5], clipped) - expected).max() > 0.1
    assert np.abs(pacing_v0_by_hand(obs[:, 2], target, hrv_before, clipped) - expected).max() > 0.1
    raw = np.asarray(amplitude)
    assert np.abs(pacing_v0_by_hand(obs[:, 2], target, obs[:, 5], raw) - expected).max() > 0.01


# =============================================================== PacingControl-v1
#
# Costs per 2 s step (docs/v1/pacing_control.md): bradycardia 1 /s x 2 s x max(0, 1 - HR /
# f_sympt); tachycardia 1 /s x 2 s x max(0, HR / 100 - 1); pause 2 per s; 1 per lost
# capture; 0.05 per paced beat; 0.005 per microjoule; reprogramming 2 x (|dLRL| / 90 bpm +
# |dV| / 7.5 V). Reward = -sum.


def pacing_counts(**values) -> pacemaker.PacingCounts:
    fields = dict.fromkeys(
        ["paces", "captures", "sensed", "lost", "energy_uj", "pause_ms", "longest_interval_ms"],
        0.0,
    )
    fields.update(values)
    return pacemaker.PacingCounts(**{name: f32(value) for name, value in fields.items()})


def pacing_v1_by_hand(heart_rate, symptomatic, pause_ms, lost, captures, energy_uj, d_rate, d_amp):
    heart_rate = np.asarray(heart_rate, np.float64)
    costs = {
        "bradycardia": 2.0 * np.maximum(1.0 - heart_rate / symptomatic, 0.0),
        "tachycardia": 2.0 * np.maximum(heart_rate / 100.0 - 1.0, 0.0),
        "pause": 2.0 * np.asarray(pause_ms) / 1000.0,
        "lost_capture": 1.0 * np.asarray(lost),
        "pacing_burden": 0.05 * np.asarray(captures),
        "battery": 0.005 * np.asarray(energy_uj),
        "reprogramming": 2.0 * (np.abs(d_rate) / 90.0 + np.abs(d_amp) / 7.5),
    }
    return -sum(costs.values()), costs


@pytest.mark.parametrize(
    ("counts", "heart_rate", "symptomatic", "change", "costs"),
    [
        pytest.param({}, 40.0, 50.0, 0.0, {"bradycardia": 0.4}, id="brady-40-of-50"),
        pytest.param({}, 45.0, 60.0, 0.0, {"bradycardia": 0.5}, id="brady-symptomatic-argument"),
        pytest.param({}, 50.0, 50.0, 0.0, {}, id="at-symptomatic-rate"),
        pytest.param({}, 60.0, 50.0, 0.0, {}, id="above-symptomatic-no-credit"),
        pytest.param({}, 120.0, 50.0, 0.0, {"tachycardia": 0.4}, id="tachy-120"),
        pytest.param({}, 150.0, 50.0, 0.0, {"tachycardia": 1.0}, id="tachy-150"),
        pytest.param({}, 100.0, 50.0, 0.0, {}, id="at-100-no-tachy"),
        pytest.param({}, 80.0, 50.0, 0.0, {}, id="below-100-no-credit"),
        pytest.param({"pause_ms": 750.0}, 60.0, 50.0, 0.0, {"pause": 1.5}, id="pause"),
        pytest.param({"lost": 3.0}, 60.0, 50.0, 0.0, {"lost_capture": 3.0}, id="lost"),
        pytest.param({"captures": 20.0}, 60.0, 50.0, 0.0, {"pacing_burden": 1.0}, id="burden"),
        pytest.param({"paces": 20.0}, 60.0, 50.0, 0.0, {}, id="pulses-alone-cost-nothing"),
        pytest.param({"energy_uj": 10.0}, 60.0, 50.0, 0.0, {"battery": 0.05}, id="battery"),
        pytest.param({}, 60.0, 50.0, 0.1, {"reprogramming": 0.2}, id="reprogramming"),
        pytest.param(
            {"pause_ms": 1500.0, "lost": 2.0, "captures": 10.0, "energy_uj": 40.0, "paces": 12.0},
            30.0,
            50.0,
            0.5,
            {
                "bradycardia": 0.8,
                "pause": 3.0,
                "lost_capture": 2.0,
                "pacing_burden": 0.5,
                "battery": 0.2,
                "reprogramming": 1.0,
            },
            id="all-at-once",
        ),
    ],
)
def test_pacing_v1_step_reward(counts, heart_rate, symptomatic, change, costs):
    reward, got = pacing_v1.step_reward(
        pacing_counts(**counts), f32(heart_rate), f32(symptomatic), f32(change)
    )
    names = [
        "bradycardia",
        "tachycardia",
        "pause",
        "lost_capture",
        "pacing_burden",
        "battery",
        "reprogramming",
    ]
    assert sorted(got) == sorted(names)
    for name in names:
        assert float(got[name]) == pytest.approx(costs.get(name, 0.0), rel=RTOL, abs=ATOL), name
    assert float(reward) == pytest.approx(-sum(costs.values()), rel=RTOL, abs=ATOL)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param((60.0, 3.5), (60.0, 3.5), 0.0, id="unchanged"),
        pytest.param((60.0, 3.5), (70.0, 3.5), 10.0 / 90.0, id="rate-up"),
        pytest.param((70.0, 3.5), (60.0, 3.5), 10.0 / 90.0, id="rate-down"),
        pytest.param((60.0, 3.5), (60.0, 2.5), 1.0 / 7.5, id="amplitude-down"),
        pytest.param((60.0, 3.5), (70.0, 4.5), 10.0 / 90.0 + 1.0 / 7.5, id="both"),
        pytest.param((30.0, 0.0), (120.0, 7.5), 2.0, id="whole-ranges"),
    ],
)
def test_pacing_v1_reprogramming_size(old, new, expected):
    size = pacing_v1.reprogramming_size(f32(old[0]), f32(old[1]), f32(new[0]), f32(new[1]))
    assert float(size) == pytest.approx(expected, rel=RTOL, abs=ATOL)


def test_pacing_v1_step_costs_the_step_s_counts_rate_and_programming():
    """Scripted programming from a constructed patient; every cost from post-step quantities.

    Patient: bradycardic sinus at 25 bpm (pauses of 2.4 s), symptomatic below 55 bpm
    (not the tier's 50: the state's own rate must be used). The programs cover pacing
    off, sub-threshold pacing (lost captures), capture, tachycardic pacing and requests
    that round to the current program (no reprogramming).
    """
    env = pacing_v1.PacingControlV1()
    params = env.params_for("easy")  # noise-free heart-rate observation
    _, state0 = env.reset(jax.random.PRNGKey(3), params)
    state0 = state0.replace(
        bradycardic_rate_bpm=f32(25.0), sinus_level_bpm=f32(25.0), symptomatic_rate_bpm=f32(55.0)
    )
    programs = [
        ([30.0, 0.0], 10),  # off: sinus at 25 bpm, pauses
        ([70.3, 0.32], 6),  # 70 bpm at 0.3 V: below threshold, losses of capture
        ([70.0, 2.46], 6),  # 70 bpm at 2.5 V: capture
        ([120.0, 7.5], 6),  # 120 bpm at 7.5 V: tachycardia
        ([119.6, 7.54], 4),  # rounds to the same program: no reprogramming cost
    ]
    actions = jnp.concatenate([jnp.tile(f32(a), (n, 1)) for a, n in programs])
    steps = actions.shape[0]
    rewards, info, states = step_sequence(
        env, params, state0, jax.random.split(jax.random.PRNGKey(4), steps), actions
    )
    before = previous_states(state0, states)
    heart_rate = np.asarray(info["final_observation"][:, 0], np.float64)
    counts = states.counts
    d_rate = np.asarray(states.lower_rate_bpm - before.lower_rate_bpm)
    d_amp = np.asarray(states.amplitude_v - before.amplitude_v)

    def by_hand(heart_rate=heart_rate, symptomatic=55.0, d_rate=d_rate, d_amp=d_amp):
        return pacing_v1_by_hand(
            heart_rate,
            symptomatic,
            np.asarray(counts.pause_ms),
            np.asarray(counts.lost),
            np.asarray(counts.captures),
            np.asarray(counts.energy_uj),
            d_rate,
            d_amp,
        )

    expected, costs = by_hand()
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=STEP_ATOL)
    # The programs are the requests rounded to 1 bpm and 0.1 V.
    firsts = [10, 16, 22, 28]
    np.testing.assert_allclose(np.asarray(states.lower_rate_bpm)[firsts], [70, 70, 120, 120])
    np.testing.assert_allclose(np.asarray(states.amplitude_v)[firsts], [0.3, 2.5, 7.5, 7.5])

    # Every term is exercised, and the wrong quantities would give other rewards.
    for name, cost in costs.items():
        assert np.any(cost > 1e-3), name
    assert np.any(costs["reprogramming"] == 0.0)
    hr_before = np.concatenate(
        [[float(pacemaker.heart_rate_bpm(state0.pacemaker))], heart_rate[:-1]]
    )
    assert np.abs(by_hand(heart_rate=hr_before)[0] - expected).max() > 0.1
    assert np.abs(by_hand(symptomatic=50.0)[0] - expected).max() > 0.1
    assert np.any(np.asarray(counts.paces) != np.asarray(counts.captures))  # burden: captures
    requests = np.diff(np.concatenate([[[60.0, 3.5]], np.asarray(actions)]), axis=0)
    unrounded = by_hand(d_rate=requests[:, 0], d_amp=requests[:, 1])[0]
    assert np.abs(unrounded - expected).max() > 1e-3


# ======================================================== AntiarrhythmicDosing-v0
#
# +1 in the closed window [1.5, 5] mg/L, -0.3 below it, -3 at or above 8 mg/L, 0 between
# 5 and 8; -0.5 while arrhythmic; -0.0001 per mg.


def dosing_v0_by_hand(concentration, arrhythmic, dose, low=1.5, high=5.0, toxic=8.0):
    c = np.asarray(concentration, np.float64)
    window = np.where(
        (c >= low) & (c <= high), 1.0, np.where(c < low, -0.3, np.where(c >= toxic, -3.0, 0.0))
    )
    return window - 0.5 * np.asarray(arrhythmic, np.float64) - 0.0001 * np.asarray(dose)


@pytest.mark.parametrize(
    ("concentration", "arrhythmic", "dose", "expected"),
    [
        pytest.param(3.0, False, 0.0, 1.0, id="therapeutic"),
        pytest.param(1.5, False, 0.0, 1.0, id="window-low-edge-inside"),
        pytest.param(5.0, False, 0.0, 1.0, id="window-high-edge-inside"),
        pytest.param(1.49, False, 0.0, -0.3, id="just-below-window"),
        pytest.param(0.0, False, 0.0, -0.3, id="drug-free"),
        pytest.param(5.01, False, 0.0, 0.0, id="just-above-window"),
        pytest.param(7.99, False, 0.0, 0.0, id="just-below-toxic"),
        pytest.param(8.0, False, 0.0, -3.0, id="toxic-edge"),
        pytest.param(20.0, False, 0.0, -3.0, id="toxic"),
        pytest.param(3.0, True, 0.0, 0.5, id="arrhythmic"),
        pytest.param(3.0, False, 100.0, 0.99, id="dose-100"),
        pytest.param(3.0, False, 40.0, 0.996, id="dose-40"),
        pytest.param(0.0, True, 100.0, -0.81, id="all-costs"),
        pytest.param(9.0, True, 50.0, -3.505, id="toxic-arrhythmic-dose"),
    ],
)
def test_dosing_v0_step_reward(concentration, arrhythmic, dose, expected):
    window = pk.PharmacokineticParams()
    reward = dosing_v0.step_reward(f32(concentration), jnp.array(arrhythmic), f32(dose), window)
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=ATOL)


@pytest.mark.parametrize(
    ("concentration", "expected"),
    [(1.8, -0.3), (2.0, 1.0), (4.0, 1.0), (4.5, 0.0), (5.5, 0.0), (6.0, -3.0)],
)
def test_dosing_v0_step_reward_uses_the_window_it_is_given(concentration, expected):
    window = pk.PharmacokineticParams(therapeutic_min=2.0, therapeutic_max=4.0, toxic_threshold=6.0)
    reward = dosing_v0.step_reward(f32(concentration), jnp.array(False), f32(0.0), window)
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=ATOL)


def test_dosing_v0_step_rewards_the_concentration_and_rhythm_after_the_step():
    """Constructed concentrations whose band changes during the step; 32 keys each.

    The reward must use the post-step concentration (observation 2 of the pre-reset
    observation), rhythm (observation 3), the patient's window (here [2, 4] mg/L, toxic
    at 6, not the defaults) and the dose clipped to 0..100 mg; the last case is toxic
    above 12 mg/L (terminates: the reward is the final step's).
    """
    env = dosing_v0.AntiarrhythmicDosing()
    window = {"therapeutic_min": 2.0, "therapeutic_max": 4.0, "toxic_threshold": 6.0}
    # pk_variability 0 on easy: the patient's k_e and V_d are the defaults.
    params = env.params_for("easy", arrhythmia_prob=1.0, **window)
    _, reset_state = env.reset(jax.random.PRNGKey(0), params)
    cases = [  # (concentration before, arrhythmic before, dose action)
        (1.95, True, 100.0),  # subtherapeutic -> therapeutic (2.006 mg/L)
        (4.03, False, 0.0),  # above the window -> inside (3.99)
        (6.04, True, -5.0),  # toxic -> between window and toxic (5.98); dose clipped to 0
        (6.1, False, 150.0),  # stays toxic (6.11; the default window: no cost); 100 mg
        (0.5, True, 40.0),  # subtherapeutic
        (13.0, True, 100.0),  # toxic above 12 mg/L: terminates
    ]
    n_keys = 32
    states, actions, c_before, arrhythmic_before = [], [], [], []
    for concentration, arrhythmic, dose in cases:
        state = reset_state.replace(
            drug=reset_state.drug.replace(plasma_concentration=f32(concentration)),
            arrhythmia_active=jnp.array(arrhythmic),
        )
        states += [state] * n_keys
        actions += [f32([dose])] * n_keys
        c_before += [concentration] * n_keys
        arrhythmic_before += [arrhythmic] * n_keys
    keys = jax.random.split(jax.random.PRNGKey(1), len(states))
    _, _, rewards, terminated, _, info = step_batch(
        env, params, keys, batch(states), jnp.stack(actions)
    )
    final = np.asarray(info["final_observation"], np.float64)
    concentration, arrhythmic = final[:, 2], final[:, 3]
    dose = np.clip(np.asarray(jnp.stack(actions))[:, 0], 0.0, 100.0)
    expected = dosing_v0_by_hand(concentration, arrhythmic, dose, low=2.0, high=4.0, toxic=6.0)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_array_equal(np.asarray(terminated), concentration > 12.0)
    assert np.asarray(terminated)[-n_keys:].all()

    # Pre-step concentration, pre-step rhythm, the default window or the raw dose would
    # give other rewards.
    pre_step = dosing_v0_by_hand(np.asarray(c_before), arrhythmic, dose, 2.0, 4.0, 6.0)
    assert np.sum(np.abs(pre_step - expected) > 0.2) >= 3 * n_keys
    assert np.any(arrhythmic != np.asarray(arrhythmic_before, np.float64))
    default_window = dosing_v0_by_hand(concentration, arrhythmic, dose)
    assert np.abs(default_window - expected).max() > 1.0
    raw = np.asarray(jnp.stack(actions))[:, 0]
    raw_dose = dosing_v0_by_hand(concentration, arrhythmic, raw, 2.0, 4.0, 6.0)
    assert np.abs(raw_dose - expected).max() > 1e-3


# ======================================================== AntiarrhythmicDosing-v1
#
# Per hour (docs/v1/antiarrhythmic_dosing.md):
#   1[no ectopy] - ectopy/60 - 5 (exp(min(QTc - stop, 30)/20) - exp(min(QTc_0 - stop, 30)/20))^+
#   - 0.05 min((QTc - warning)^+, 80) - 10 1[QTc > stop] - 0.5 min((QTc - stop)^+, 40)
#   - 0.2 min((QTc - QTc_0 - rise_limit)^+, 40);  per step: the hours' sum - 0.001 per mg.


def hazard(qtc, baseline, stop=500.0):
    def h(q):
        return np.exp(np.minimum(np.asarray(q, np.float64) - stop, 30.0) / 20.0)

    return 5.0 * np.maximum(h(qtc) - h(baseline), 0.0)


def dosing_v1_hour_by_hand(ectopy, qtc, baseline, warning=470.0, stop=500.0, rise=60.0):
    ectopy = np.asarray(ectopy, np.float64)
    qtc = np.asarray(qtc, np.float64)
    return (
        np.where(ectopy <= 0.0, 1.0, 0.0)
        - ectopy / 60.0
        - hazard(qtc, baseline, stop)
        - 0.05 * np.clip(qtc - warning, 0.0, 80.0)
        - np.where(qtc > stop, 10.0, 0.0)
        - 0.5 * np.clip(qtc - stop, 0.0, 40.0)
        - 0.2 * np.clip(qtc - baseline - rise, 0.0, 40.0)
    )


def e(x):
    return float(np.exp(x))


@pytest.mark.parametrize(
    ("ectopy", "qtc", "baseline", "expected"),
    [
        pytest.param(0.0, 430.0, 430.0, 1.0, id="sinus-at-baseline"),
        pytest.param(90.0, 430.0, 430.0, -1.5, id="ectopy-90"),
        pytest.param(0.6, 430.0, 430.0, -0.01, id="any-ectopy-loses-sinus-reward"),
        pytest.param(0.0, 470.0, 470.0, 1.0, id="at-warning"),
        pytest.param(0.0, 480.0, 480.0, 0.5, id="warning-10"),
        pytest.param(0.0, 500.0, 500.0, -0.5, id="at-stop-no-stop-penalty"),
        pytest.param(0.0, 510.0, 510.0, 1.0 - 2.0 - 10.0 - 5.0, id="stop-10"),
        pytest.param(0.0, 560.0, 560.0, 1.0 - 4.0 - 10.0 - 20.0, id="warning-and-stop-capped"),
        pytest.param(0.0, 460.0, 400.0, 1.0 - 5.0 * (e(-2.0) - e(-5.0)), id="hazard-rise-at-limit"),
        pytest.param(0.0, 480.0, 400.0, 1.0 - 5.0 * (e(-1.0) - e(-5.0)) - 0.5 - 4.0, id="rise-20"),
        pytest.param(
            0.0, 480.0, 360.0, 1.0 - 5.0 * (e(-1.0) - e(-7.0)) - 0.5 - 8.0, id="rise-capped"
        ),
        pytest.param(
            0.0,
            540.0,
            420.0,
            1.0 - 5.0 * (e(1.5) - e(-4.0)) - 3.5 - 10.0 - 20.0 - 8.0,
            id="hazard-capped-30-above-stop",
        ),
        pytest.param(0.0, 420.0, 440.0, 1.0, id="below-baseline-no-hazard-credit"),
        pytest.param(
            30.0,
            505.0,
            430.0,
            -0.5 - 5.0 * (e(0.25) - e(-3.5)) - 1.75 - 10.0 - 2.5 - 3.0,
            id="every-term",
        ),
    ],
)
def test_dosing_v1_hourly_reward(ectopy, qtc, baseline, expected):
    params = dosing_v1.AntiarrhythmicDosingV1().params_for("medium")
    assert (float(params.qtc_warning_ms), float(params.qtc_stop_ms)) == (470.0, 500.0)
    assert float(params.qtc_rise_limit_ms) == 60.0
    reward = dosing_v1.hourly_reward(f32(ectopy), f32(qtc), f32(baseline), params)
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=1e-5)
    assert float(dosing_v1_hour_by_hand(ectopy, qtc, baseline)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("tier", "overrides", "qtc", "baseline", "expected"),
    [
        pytest.param("hard", {}, 480.0, 480.0, 0.0, id="hard-warning-460"),
        pytest.param("easy", {}, 480.0, 480.0, 1.0, id="easy-warning-480"),
        pytest.param("medium", {"qtc_stop_ms": 520.0}, 510.0, 510.0, -1.0, id="stop-520-below"),
        pytest.param(
            "medium",
            {"qtc_stop_ms": 520.0},
            530.0,
            430.0,
            1.0 - 5.0 * (e(0.5) - e(-4.5)) - 3.0 - 10.0 - 5.0 - 8.0,
            id="stop-520-above",
        ),
        pytest.param(
            "medium",
            {"qtc_rise_limit_ms": 30.0},
            470.0,
            430.0,
            1.0 - 5.0 * (e(-1.5) - e(-3.5)) - 2.0,
            id="rise-limit-30",
        ),
    ],
)
def test_dosing_v1_hourly_reward_reads_the_limits_from_params(
    tier, overrides, qtc, baseline, expected
):
    params = dosing_v1.AntiarrhythmicDosingV1().params_for(tier, **overrides)
    reward = dosing_v1.hourly_reward(f32(0.0), f32(qtc), f32(baseline), params)
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=1e-5)


@pytest.mark.parametrize(
    ("qtc", "baseline", "expected"),
    [
        (500.0, 500.0, 0.0),
        (440.0, 460.0, 0.0),
        (520.0, 440.0, 5.0 * (e(1.0) - e(-3.0))),
        (600.0, 440.0, 5.0 * (e(1.5) - e(-3.0))),
        (500.0, 380.0, 5.0 * (1.0 - e(-6.0))),
    ],
)
def test_dosing_v1_torsades_hazard_cost(qtc, baseline, expected):
    params = dosing_v1.AntiarrhythmicDosingV1().params_for("medium")
    cost = dosing_v1.torsades_hazard_cost(f32(qtc), f32(baseline), params)
    assert float(cost) == pytest.approx(expected, rel=RTOL, abs=ATOL)


@pytest.mark.parametrize(
    ("ordered", "dispensed"),
    [
        (0.0, 0.0),
        (39.9, 0.0),
        (40.0, 40.0),
        (80.0, 80.0),
        (130.0, 120.0),
        (200.0, 160.0),
        (240.0, 240.0),
        (319.0, 240.0),
        (320.0, 320.0),
        (1000.0, 320.0),
        (-10.0, 0.0),
        (float("nan"), 0.0),
    ],
)
def test_dosing_v1_dispensed_dose(ordered, dispensed):
    assert float(dosing_v1.dispensed_dose_mg(f32(ordered))) == dispensed


def test_dosing_v1_step_reward_is_its_hours_from_post_monitor_readings_minus_the_dose_cost():
    """Three constructed patients over one 12 h interval (easy: warning 480, stop 500).

    Drug-naive with no dose (ectopy every hour), drug-naive with 160 mg (ectopy then
    none) and a loaded patient (2.6 mg/L) given 320 mg (QTc crosses the stop rule,
    then falls through the warning zone), each with a lowered baseline QTc so the
    rise rule binds. The hourly QTc and ectopy traces come from the same interval
    simulation; the final state's last reading must be the last hour's.
    """
    env = dosing_v1.AntiarrhythmicDosingV1()
    params = env.params_for("easy")
    _, reset_state = env.reset(jax.random.PRNGKey(0), params)
    cases = [(0.0, 0.0, 410.0), (0.0, 170.0, 400.0), (2.6, 330.0, 420.0)]
    states = [
        reset_state.replace(
            drug=reset_state.drug.replace(plasma_concentration=f32(concentration)),
            baseline_qtc_ms=f32(baseline),
        )
        for concentration, _, baseline in cases
    ]
    orders = f32([[order] for _, order, _ in cases])
    dispensed = np.array([0.0, 160.0, 320.0])
    keys = jax.random.split(jax.random.PRNGKey(1), len(cases))

    @jax.jit
    def run(keys, states, orders):
        outputs = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, orders, params)
        # env.step's transition key, then step_env's key for the interval's hours.
        key_hours = jax.vmap(lambda k: jax.random.split(jax.random.split(k)[0], 2)[0])(keys)
        interval = jax.vmap(env.simulate_interval, in_axes=(0, 0, 0, None))(
            key_hours, states, f32(dispensed), params
        )
        return outputs, interval

    (_, new, rewards, _, _, info), (_, _, (qtc, ectopy)) = run(keys, batch(states), orders)
    qtc, ectopy = np.asarray(qtc, np.float64), np.asarray(ectopy, np.float64)
    baselines = np.array([b for *_, b in cases])[:, None]
    hours = dosing_v1_hour_by_hand(ectopy, qtc, baselines, warning=480.0, stop=500.0)
    expected = hours.sum(axis=1) - 0.001 * dispensed
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=1e-4)
    # The traces are the step's own readings.
    np.testing.assert_allclose(np.asarray(new.qtc_ms), qtc[:, -1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info["qtc_ms"]), qtc.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info["ectopic_rate_per_min"]), ectopy.mean(axis=1))
    np.testing.assert_array_equal(np.asarray(info["dose_mg"]), dispensed)

    # Every hourly term is exercised, and wrong quantities would give other rewards.
    assert np.any(ectopy > 0.0) and np.any(ectopy == 0.0)
    assert np.any(qtc > 500.0) and np.any((qtc > 480.0) & (qtc < 500.0))
    assert np.any(qtc - baselines > 60.0)
    shifted = np.concatenate([np.full((3, 1), float(reset_state.qtc_ms)), qtc[:, :-1]], axis=1)
    previous_hour = dosing_v1_hour_by_hand(ectopy, shifted, baselines, warning=480.0)
    assert np.abs(previous_hour.sum(1) - hours.sum(1)).max() > 1.0
    wrong_warning = dosing_v1_hour_by_hand(ectopy, qtc, baselines, warning=500.0)
    assert np.abs(wrong_warning.sum(1) - hours.sum(1)).max() > 1.0
    orders_mg = np.asarray(orders)[:, 0]
    assert np.abs(0.001 * (orders_mg - dispensed)).max() > 5e-3


# ======================================================= DefibrillationTiming-v0
#
# +100 (+50 more with at most 3 shocks) on success, else -0.1; -2 - 0.005 x E per shock;
# -50 if the episode times out in fibrillation.


def defib_v0_by_hand(in_fibrillation, shock, energy, shocks, time, max_steps):
    in_fib = np.asarray(in_fibrillation, bool)
    shock = np.asarray(shock, bool)
    return (
        np.where(in_fib, -0.1, 100.0)
        - np.where(shock, 2.0 + 0.005 * np.asarray(energy, np.float64), 0.0)
        + np.where(~in_fib & (np.asarray(shocks) <= 3), 50.0, 0.0)
        - np.where((np.asarray(time) >= max_steps) & in_fib, 50.0, 0.0)
    )


@pytest.mark.parametrize(
    ("in_fibrillation", "shock", "energy", "shocks", "time", "max_steps", "expected"),
    [
        pytest.param(True, False, 0.0, 0, 5, 100, -0.1, id="fibrillating"),
        pytest.param(True, False, 300.0, 0, 5, 100, -0.1, id="energy-without-shock-is-free"),
        pytest.param(True, True, 200.0, 1, 5, 100, -3.1, id="failed-shock-200"),
        pytest.param(True, True, 0.0, 1, 5, 100, -2.1, id="failed-shock-0J"),
        pytest.param(True, True, 360.0, 1, 5, 100, -3.9, id="failed-shock-360"),
        pytest.param(False, True, 200.0, 1, 5, 100, 147.0, id="first-shock-success"),
        pytest.param(False, True, 200.0, 3, 5, 100, 147.0, id="third-shock-success-bonus"),
        pytest.param(False, True, 200.0, 4, 5, 100, 97.0, id="fourth-shock-no-bonus"),
        pytest.param(False, True, 360.0, 10, 5, 100, 96.2, id="late-success-360"),
        pytest.param(True, False, 0.0, 0, 99, 100, -0.1, id="step-before-timeout"),
        pytest.param(True, False, 0.0, 0, 100, 100, -50.1, id="timeout"),
        pytest.param(True, True, 200.0, 2, 100, 100, -53.1, id="failed-shock-at-timeout"),
        pytest.param(False, True, 200.0, 2, 100, 100, 147.0, id="success-on-last-step"),
        pytest.param(True, False, 0.0, 0, 30, 30, -50.1, id="max-steps-is-an-argument"),
        pytest.param(True, False, 0.0, 0, 30, 100, -0.1, id="before-max-steps"),
    ],
)
def test_defib_v0_step_reward(in_fibrillation, shock, energy, shocks, time, max_steps, expected):
    reward = defib_v0.step_reward(
        jnp.array(in_fibrillation),
        jnp.array(shock),
        f32(energy),
        jnp.int32(shocks),
        jnp.int32(time),
        jnp.int32(max_steps),
    )
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=1e-5)
    args = (in_fibrillation, shock, energy, shocks, time, max_steps)
    assert float(defib_v0_by_hand(*args)) == pytest.approx(expected)


def test_defib_v0_step_rewards_the_shock_count_energy_and_time_after_the_step():
    """Shocks from constructed states with success base 1 (successes and failures), 32 keys.

    The bonus counts this step's shock (2 before -> 3: bonus; 3 -> 4: none), the energy
    is the clipped action, the timeout is the step that reaches max_steps, and a
    decision of exactly 0.5 is no shock.
    """
    env = defib_v0.DefibrillationTiming()
    params = env.params_for("medium", defibrillation_success_base=1.0)
    max_steps = int(params.max_steps_in_episode)
    _, reset_state = env.reset(jax.random.PRNGKey(0), params)
    cases = [  # (shocks before, time before, action)
        (2, 5, [1.0, 200.0]),
        (3, 5, [1.0, 200.0]),
        (0, 5, [0.9, 400.0]),  # energy clipped to 360
        (0, max_steps - 1, [0.2, 300.0]),  # no shock, times out
        (1, max_steps - 1, [1.0, 250.0]),  # last step: success or timeout
        (0, max_steps - 2, [0.5, 100.0]),  # decision 0.5: no shock, no timeout yet
    ]
    n_keys = 32
    states, actions, before = [], [], []
    for shocks, time, action in cases:
        states += [
            reset_state.replace(
                shocks_delivered=jnp.int32(shocks),
                time=jnp.int32(time),
                total_energy=f32(100.0 * shocks),
            )
        ] * n_keys
        actions += [f32(action)] * n_keys
        before += [(shocks, time, 100.0 * shocks)] * n_keys
    keys = jax.random.split(jax.random.PRNGKey(1), len(states))
    _, _, rewards, terminated, truncated, info = step_batch(
        env, params, keys, batch(states), jnp.stack(actions)
    )
    shocks_before, time_before, energy_before = (np.asarray(v) for v in zip(*before, strict=True))
    final = np.asarray(info["final_observation"], np.float64)
    shocks_after, energy_after = final[:, 4], final[:, 5]
    shock = shocks_after > shocks_before
    energy = energy_after - energy_before
    in_fib = np.asarray(info["in_fibrillation"])
    time_after = time_before + 1
    expected = defib_v0_by_hand(in_fib, shock, energy, shocks_after, time_after, max_steps)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_array_equal(np.asarray(terminated), ~in_fib)
    np.testing.assert_array_equal(np.asarray(truncated), time_after >= max_steps)
    raw = np.asarray(jnp.stack(actions))
    np.testing.assert_array_equal(shock, raw[:, 0] > 0.5)
    np.testing.assert_allclose(
        energy, np.where(shock, np.clip(raw[:, 1], 0.0, 360.0), 0.0), atol=1e-3
    )

    # Successes and failures in every shocking case; the wrong counts would pay otherwise.
    for i in (0, 1, 2, 4):
        rows = slice(i * n_keys, (i + 1) * n_keys)
        assert in_fib[rows].any() and (~in_fib[rows]).any(), cases[i]
    wrong_count = defib_v0_by_hand(in_fib, shock, energy, shocks_before, time_after, max_steps)
    assert np.abs(wrong_count - expected).max() > 10.0
    wrong_time = defib_v0_by_hand(in_fib, shock, energy, shocks_after, time_before, max_steps)
    assert np.abs(wrong_time - expected).max() > 10.0
    wrong_energy = defib_v0_by_hand(in_fib, shock, raw[:, 1], shocks_after, time_after, max_steps)
    assert np.abs(wrong_energy - expected).max() > 0.1


# ======================================================= DefibrillationTiming-v1
#
# +100 x survival on ROSC, else -0.1; -2 - 0.005 E per shock, whatever the rhythm; -50 if the
# episode ends without ROSC. Survival decays by exp(-0.1/min) without flow (8 s per shock)
# and exp(-0.035/min) in CPR.


def defib_v1_by_hand(rosc, survival, shock, energy, time, max_steps):
    rosc = np.asarray(rosc, bool)
    shock = np.asarray(shock, bool)
    return (
        np.where(rosc, 100.0 * np.asarray(survival, np.float64), -0.1)
        - np.where(shock, 2.0 + 0.005 * np.asarray(energy, np.float64), 0.0)
        - np.where((np.asarray(time) >= max_steps) & ~rosc, 50.0, 0.0)
    )


@pytest.mark.parametrize(
    ("rosc", "survival", "shock", "energy", "time", "max_steps", "expected"),
    [
        pytest.param(True, 0.5, True, 200.0, 5, 60, 47.0, id="rosc-after-shock"),
        pytest.param(True, 1.0, False, 0.0, 5, 60, 100.0, id="rosc-full-survival"),
        pytest.param(True, 0.25, False, 0.0, 5, 60, 25.0, id="rosc-survival-scales"),
        pytest.param(False, 0.5, False, 0.0, 5, 60, -0.1, id="no-rosc"),
        pytest.param(False, 0.5, True, 360.0, 5, 60, -3.9, id="shock-360-no-rosc"),
        pytest.param(False, 0.5, True, 2.0, 5, 60, -2.11, id="shock-2J"),
        pytest.param(False, 0.5, False, 100.0, 5, 60, -0.1, id="energy-without-shock-is-free"),
        pytest.param(False, 0.5, False, 0.0, 59, 60, -0.1, id="step-before-timeout"),
        pytest.param(False, 0.5, False, 0.0, 60, 60, -50.1, id="timeout"),
        pytest.param(False, 0.5, True, 100.0, 60, 60, -52.6, id="shock-at-timeout"),
        pytest.param(True, 0.5, True, 100.0, 60, 60, 47.5, id="rosc-on-last-step"),
        pytest.param(False, 0.5, False, 0.0, 48, 48, -50.1, id="max-steps-is-an-argument"),
    ],
)
def test_defib_v1_step_reward(rosc, survival, shock, energy, time, max_steps, expected):
    reward = defib_v1.step_reward(
        jnp.array(rosc),
        f32(survival),
        jnp.array(shock),
        f32(energy),
        jnp.int32(time),
        jnp.int32(max_steps),
    )
    assert float(reward) == pytest.approx(expected, rel=RTOL, abs=1e-5)
    args = (rosc, survival, shock, energy, time, max_steps)
    assert float(defib_v1_by_hand(*args)) == pytest.approx(expected)


def test_defib_v1_step_rewards_rosc_by_the_survival_after_the_step():
    """Easy tier (every draw its median, no VF recurrence): outcomes are certain.

    A patient in PEA just short of the integrated hazard of the next event reaches ROSC
    this step; the reward is 100 x the survival factor after this step's decay (8 s
    without flow per shock, CPR for the rest of the 10 s), minus the shock's cost. The
    other cases end without ROSC: a sub-minimal (1.9 J) request is no shock, 2 J is one,
    a shock in asystole still costs, and the step reaching max_steps pays the timeout.
    Every patient has had earlier shocks: the cost is this shock's energy, not the total.
    """
    env = defib_v1.DefibrillationTimingV1()
    params = env.params_for("easy")
    max_steps = int(params.max_steps_in_episode)
    _, vf_state = env.reset(jax.random.PRNGKey(0), params)
    vf_state = vf_state.replace(total_energy_j=f32(200.0), shocks_delivered=jnp.int32(1))
    pea = vf_state.replace(
        total_energy_j=f32(400.0),
        shocks_delivered=jnp.int32(2),
        rhythm=jnp.int32(defib_v1.PEA),
        myocardial_energy=f32(0.9),
        hazard_accumulated=f32(0.9999),
        hazard_threshold=f32(1.0),
        survival=f32(0.6),
        time=jnp.int32(10),
    )
    asystole = pea.replace(rhythm=jnp.int32(defib_v1.ASYSTOLE), hazard_accumulated=f32(0.0))
    cases = [  # (state, energy requested)
        (pea, 200.0),  # ROSC, shocked
        (pea, 0.0),  # ROSC, no shock
        (pea.replace(time=jnp.int32(max_steps - 1)), 150.0),  # ROSC on the last step
        (pea.replace(hazard_accumulated=f32(0.0), time=jnp.int32(max_steps - 1)), 1.9),
        (vf_state, 2.0),  # the smallest shock, VF not terminated
        (asystole, 360.0),
    ]
    states = batch([state for state, _ in cases])
    actions = f32([[energy] for _, energy in cases])
    keys = jax.random.split(jax.random.PRNGKey(1), len(cases))
    _, _, rewards, terminated, _, info = step_batch(env, params, keys, states, actions)

    requested = np.asarray(actions)[:, 0]
    shock = requested >= 2.0
    pause = np.where(shock, 8.0, 0.0)
    survival = np.asarray(states.survival, np.float64) * np.exp(
        -(0.1 * pause + 0.035 * (10.0 - pause)) / 60.0
    )
    rosc = np.array([True, True, True, False, False, False])
    np.testing.assert_array_equal(np.asarray(info["rosc"]), rosc)
    np.testing.assert_array_equal(np.asarray(terminated), rosc)
    np.testing.assert_array_equal(np.asarray(info["shocked"]), shock)
    np.testing.assert_allclose(np.asarray(info["survival"]), survival, rtol=1e-6)
    time_after = np.asarray(states.time) + 1
    expected = defib_v1_by_hand(rosc, survival, shock, requested, time_after, max_steps)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=STEP_RTOL, atol=STEP_ATOL)
    # Literal values of the ROSC cases: 60 x the step's decay, minus the shock.
    decay_shock = np.exp(-(0.8 + 0.07) / 60.0)
    decay_cpr = np.exp(-0.35 / 60.0)
    np.testing.assert_allclose(
        np.asarray(rewards)[:3],
        [60.0 * decay_shock - 3.0, 60.0 * decay_cpr, 60.0 * decay_shock - 2.75],
        rtol=STEP_RTOL,
    )
    np.testing.assert_allclose(np.asarray(rewards)[3:], [-50.1, -2.11, -3.9], rtol=STEP_RTOL)
    total = np.asarray(states.total_energy_j) + np.where(shock, requested, 0.0)
    np.testing.assert_allclose(np.asarray(info["total_energy"]), total)
    cumulative = defib_v1_by_hand(rosc, survival, shock, total, time_after, max_steps)
    assert np.abs(cumulative - expected).max() > 1.0
