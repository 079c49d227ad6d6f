"""Conduction timing model: step-by-step agreement with cardiosim 0.1.0, AV block, RR ring, HRV."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cardiosim.envs.pacing_control import PacingControlEnv
from cardiosim.models import CardiacConductionModel
from cardiosim.models import conduction as reference_conduction
from conftest import check_validate_contract

from cardiosim_jax.models import conduction as cd

N_STEPS = 6000  # ms
#: Rates whose SA interval is an exact integer or at least 1e-2 ms away from one, so float32
#: and float64 agree on which 1 ms step reaches it. 250 and 20 bpm exercise the clamp.
RATES = (35.0, 47.3, 60.0, 72.0, 88.8, 110.0, 150.0, 200.0, 250.0, 20.0)


def reference_model(rate: float, block_prob: float = 0.0) -> CardiacConductionModel:
    model = CardiacConductionModel(sa_rate=rate, conduction_block_prob=block_prob)
    model.reset(np.random.default_rng(0))
    return model


def run_reference(model: CardiacConductionModel, pacing: np.ndarray, new_rates: np.ndarray):
    """Step the reference; ``new_rates[t]`` (NaN: keep) is set before step ``t``."""
    keys = ("sa", "av", "vent", "hr", "since", "hrv", "rate", "count")
    out: dict[str, list] = {key: [] for key in keys}
    rings = []
    for pulse, rate in zip(pacing, new_rates, strict=True):
        if not np.isnan(rate):
            model.set_sa_rate(float(rate))
        result = model.step(1.0 if pulse else 0.0)
        out["sa"].append(result["sa_fired"])
        out["av"].append(result["av_fired"])
        out["vent"].append(result["ventricular_fired"])
        out["hr"].append(result["heart_rate"])
        out["since"].append(result["time_since_last_beat"])
        out["hrv"].append(model.get_heart_rate_variability())
        out["rate"].append(model.sa_rate)
        out["count"].append(len(model.rr_intervals))
        last = model.rr_intervals[-cd.RR_BUFFER :]
        rings.append(np.concatenate([np.zeros(cd.RR_BUFFER - len(last)), last]))
    result = {key: np.asarray(value) for key, value in out.items()}
    result["ring"] = np.stack(rings)
    return result


@jax.jit
def run_ours(state, params, pacing, new_rates, block_draws):
    def body(s, inputs):
        pulse, rate, draw = inputs
        s = cd.set_sa_rate(s, jnp.where(jnp.isnan(rate), s.sa_rate_bpm, rate))
        s, events = cd.step(s, params, pulse, draw)
        return s, (s, events, cd.heart_rate_variability(s))

    return jax.lax.scan(body, state, (pacing, new_rates, block_draws))


def initial_like_reference(rate: float) -> cd.ConductionState:
    """The reference sets the last SA firing to minus the SA interval at construction."""
    return cd.initial_state(rate, -60000.0 / rate)


def pacing_pattern(rng: np.random.Generator, n: int, p_on: float) -> np.ndarray:
    """PacingControl paces on every 1 ms substep of a 10 ms env step, or on none."""
    return (rng.random(n // 10) < p_on).repeat(10)


def rate_schedule(rng: np.random.Generator, n: int, n_changes: int) -> np.ndarray:
    rates = np.full(n, np.nan)
    at = rng.choice(np.arange(10, n, 10), size=n_changes, replace=False)
    rates[at] = rng.choice(RATES, size=n_changes)
    return rates


def assert_matches(ours, expected):
    states, events, hrv = ours
    np.testing.assert_array_equal(events.sa_fired, expected["sa"])
    np.testing.assert_array_equal(events.av_fired, expected["av"])
    np.testing.assert_array_equal(events.ventricular_fired, expected["vent"])
    np.testing.assert_array_equal(events.time_since_last_beat_ms, expected["since"])
    np.testing.assert_allclose(events.heart_rate_bpm, expected["hr"], rtol=1e-5)
    np.testing.assert_allclose(states.heart_rate_bpm, expected["hr"], rtol=1e-5)
    np.testing.assert_allclose(states.sa_rate_bpm, expected["rate"], rtol=1e-6)
    np.testing.assert_array_equal(states.rr_count, expected["count"])
    np.testing.assert_allclose(states.rr_intervals_ms, expected["ring"], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(hrv, expected["hrv"], rtol=1e-4, atol=1e-3)


CASES = [
    # (initial rate, P(pacing on per 10 ms), number of set_sa_rate calls)
    (45.0, 0.0, 0),
    (60.0, 0.0, 0),
    (72.0, 0.0, 0),
    (130.0, 0.0, 0),  # SA interval shorter than AV refractoriness: some beats are dropped
    (200.0, 0.0, 0),
    (60.0, 1.0, 0),  # over-pacing: RR intervals of a few ms, heart rates in the thousands
    (47.3, 0.3, 20),
    (72.0, 0.7, 40),
    (35.0, 0.1, 80),
    (150.0, 0.5, 60),
]


@pytest.mark.parametrize(("rate", "p_on", "n_changes"), CASES)
def test_matches_reference_step_by_step(rate, p_on, n_changes):
    rng = np.random.default_rng(int(rate * 10 + 1000 * p_on + n_changes))
    pacing = pacing_pattern(rng, N_STEPS, p_on)
    new_rates = rate_schedule(rng, N_STEPS, n_changes)
    expected = run_reference(reference_model(rate), pacing, new_rates)

    draws = 1.0 - jax.random.uniform(jax.random.PRNGKey(0), (N_STEPS,))  # (0, 1]: never blocks
    ours = run_ours(
        initial_like_reference(rate),
        cd.ConductionParams(),
        jnp.asarray(pacing),
        jnp.asarray(new_rates, jnp.float32),
        draws,
    )
    assert_matches(ours[1], expected)
    assert expected["vent"].sum() >= 5 and expected["count"][-1] >= 3


@pytest.mark.parametrize(
    "params",
    [
        cd.ConductionParams(av_delay=120.0, his_purkinje_delay=30.0, refractory_period=200.0),
        cd.ConductionParams(av_delay=300.0, his_purkinje_delay=80.0, refractory_period=400.0),
    ],
    ids=["short", "long"],
)
def test_matches_reference_with_other_delays(params):
    rng = np.random.default_rng(9)
    pacing = pacing_pattern(rng, N_STEPS, 0.4)
    new_rates = rate_schedule(rng, N_STEPS, 30)
    reference = CardiacConductionModel(
        sa_rate=88.8,
        av_delay=float(params.av_delay),
        his_purkinje_delay=float(params.his_purkinje_delay),
        refractory_period=float(params.refractory_period),
    )
    reference.reset()
    expected = run_reference(reference, pacing, new_rates)
    ours = run_ours(
        initial_like_reference(88.8),
        params,
        jnp.asarray(pacing),
        jnp.asarray(new_rates, jnp.float32),
        jnp.ones(N_STEPS),
    )
    assert_matches(ours[1], expected)


#: Hand-placed node timings (ms before the first step at t = 1) that put each strict/non-strict
#: comparison of the reference exactly on its boundary: (rate, last SA, last AV, last ventricular).
BOUNDARY_CASES = {
    "sa-interval-reached": (60.0, -999.0, -1000.0, -1000.0),
    "sa-interval-not-reached": (60.0, -998.0, -1000.0, -1000.0),
    "av-refractory-ends-exactly": (60.0, -999.0, -299.0, -1000.0),
    "av-refractory-over": (60.0, -999.0, -300.0, -1000.0),
    "ventricle-refractory-ends-exactly": (60.0, 0.0, -1000.0, -299.0),
    "ventricle-refractory-over": (60.0, 0.0, -1000.0, -300.0),
    "first-rr-at-exactly-two-intervals": (60.0, 0.0, -1000.0, -1000.0),
    "first-rr-after-two-intervals": (60.0, -1.0, -1000.0, -1000.0),
}


@pytest.mark.parametrize("case", list(BOUNDARY_CASES))
def test_matches_reference_on_comparison_boundaries(case):
    rate, last_sa, last_av, last_vent = BOUNDARY_CASES[case]
    n = 3000
    pacing = np.zeros(n, bool)
    pacing[0] = case.startswith("ventricle")  # a pacing pulse at t = 1 only
    pacing[1500:1520] = True
    reference = reference_model(rate)
    reference.last_sa_fire, reference.last_av_fire = last_sa, last_av
    reference.last_ventricular = last_vent
    expected = run_reference(reference, pacing, np.full(n, np.nan))
    state = cd.initial_state(rate, last_sa).replace(
        last_av_fire_ms=jnp.float32(last_av), last_ventricular_ms=jnp.float32(last_vent)
    )
    ours = run_ours(
        state, cd.ConductionParams(), jnp.asarray(pacing), jnp.full(n, jnp.nan), jnp.ones(n)
    )
    assert_matches(ours[1], expected)


def test_block_draw_equal_to_probability_blocks_like_reference():
    class FixedDraw:
        def random(self):
            return 0.5

    reference = reference_model(60.0, block_prob=0.5)
    reference._rng = FixedDraw()
    result = reference.step(0.0)
    _, events = cd.step(
        cd.initial_state(60.0), cd.ConductionParams(conduction_block_prob=0.5), False, 0.5
    )
    assert result["sa_fired"] and bool(events.sa_fired)
    assert not result["av_fired"] and not bool(events.av_fired)
    _, events = cd.step(
        cd.initial_state(60.0), cd.ConductionParams(conduction_block_prob=0.5), False, 0.5001
    )
    assert bool(events.av_fired)


def test_default_last_sa_fire_is_a_fresh_pacing_env():
    """The default places the last SA beat where a fresh reference PacingControl env does."""
    env = PacingControlEnv(difficulty="medium")
    env.reset(seed=3)
    state = cd.initial_state(env.conduction.sa_rate)
    assert float(state.last_sa_fire_ms) == env.conduction.last_sa_fire == -1000.0
    np.testing.assert_allclose(state.sa_rate_bpm, env.conduction.sa_rate, rtol=1e-6)


def test_block_probability_one_never_conducts():
    rng = np.random.default_rng(4)
    pacing = pacing_pattern(rng, N_STEPS, 0.5)
    new_rates = rate_schedule(rng, N_STEPS, 20)
    expected = run_reference(reference_model(72.0, block_prob=1.0), pacing, new_rates)
    draws = jax.random.uniform(jax.random.PRNGKey(1), (N_STEPS,))
    ours = run_ours(
        initial_like_reference(72.0),
        cd.ConductionParams(conduction_block_prob=1.0),
        jnp.asarray(pacing),
        jnp.asarray(new_rates, jnp.float32),
        draws,
    )
    assert_matches(ours[1], expected)
    states, events, _ = ours[1]
    assert not np.any(events.ventricular_fired) and not np.any(events.av_fired)
    assert np.sum(events.sa_fired) > 50  # SA (and pacing) beats keep coming; none conducts
    assert int(states.rr_count[-1]) == 0
    np.testing.assert_allclose(events.heart_rate_bpm, states.sa_rate_bpm)
    np.testing.assert_array_equal(events.time_since_last_beat_ms, np.arange(1, N_STEPS + 1) + 1000)


def test_block_decision_is_draw_above_probability():
    """An SA beat outside AV refractoriness conducts iff the draw exceeds the probability."""
    prob = 0.4
    draws = jax.random.uniform(jax.random.PRNGKey(2), (N_STEPS,))
    _, (_, events, _) = run_ours(
        cd.initial_state(40.0),  # 1500 ms SA interval: the AV node is never refractory
        cd.ConductionParams(conduction_block_prob=prob),
        jnp.zeros(N_STEPS, bool),
        jnp.full(N_STEPS, jnp.nan),
        draws,
    )
    sa = np.asarray(events.sa_fired)
    assert sa.sum() == 4
    np.testing.assert_array_equal(events.av_fired, sa & (np.asarray(draws) > prob))


@partial(jax.jit, static_argnums=1)
@partial(jax.vmap, in_axes=(0, None, None))
def count_sa_and_conducted(key, n_steps, prob):
    """SA beats and conducted beats of one chain at 40 bpm with i.i.d. U(0, 1) block draws."""
    params = cd.ConductionParams(conduction_block_prob=prob)

    def body(s, draw):
        s, events = cd.step(s, params, False, draw)
        return s, (events.sa_fired, events.av_fired)

    draws = jax.random.uniform(key, (n_steps,))
    _, (sa, av) = jax.lax.scan(body, cd.initial_state(40.0), draws)
    return sa.sum(), av.sum()


@pytest.mark.parametrize("prob", [0.1, 0.3, 0.5])
def test_block_fraction_matches_probability(prob):
    n_chains, n_steps = 512, 12_000
    keys = jax.random.split(jax.random.PRNGKey(int(prob * 100)), n_chains)
    sa, av = count_sa_and_conducted(keys, n_steps, prob)
    n_beats = int(sa.sum())
    assert n_beats == n_chains * 8  # t = 1, 1501, ..., 10501
    blocked = 1.0 - int(av.sum()) / n_beats
    sd = np.sqrt(prob * (1 - prob) / n_beats)
    assert abs(blocked - prob) < 4 * sd, (blocked, prob)


def test_rr_interval_of_three_seconds_or_more_is_replaced_by_sa_interval():
    reference = reference_model(30.0)
    reference.last_sa_fire = -3500.0
    reference.rr_intervals = [900.0]
    result = reference.step(0.0)
    assert result["ventricular_fired"] and reference.rr_intervals == [900.0, 2000.0]

    state = cd.initial_state(30.0, -3500.0)
    state = state.replace(
        rr_intervals_ms=state.rr_intervals_ms.at[-1].set(900.0), rr_count=jnp.int32(1)
    )
    state, events = cd.step(state, cd.ConductionParams(), False, 1.0)
    assert bool(events.ventricular_fired)
    np.testing.assert_array_equal(state.rr_intervals_ms[-2:], [900.0, 2000.0])
    np.testing.assert_allclose(events.heart_rate_bpm, result["heart_rate"], rtol=1e-6)


def test_rr_ring_keeps_the_newest_ten_and_statistics_use_the_right_windows():
    rr = np.array([700.0, 810.0, 655.0, 1200.0, 903.0, 480.0, 777.0, 1010.0, 600.0, 950.0, 820.0])
    rr += np.arange(len(rr))  # all distinct
    state = cd.initial_state(60.0)
    reference = reference_model(60.0)
    for count in range(len(rr) + 1):
        ring = np.zeros(cd.RR_BUFFER, np.float32)
        last = rr[:count][-cd.RR_BUFFER :]
        ring[cd.RR_BUFFER - len(last) :] = last
        state = state.replace(rr_intervals_ms=jnp.asarray(ring), rr_count=jnp.int32(count))
        reference.rr_intervals = list(rr[:count])
        reference.heart_rate_history = []
        expected_hr = (
            60000.0 / np.mean(rr[:count][-cd.HEART_RATE_WINDOW :]) if count else reference.sa_rate
        )
        np.testing.assert_allclose(cd.heart_rate_from_rr(state), expected_hr, rtol=1e-6)
        np.testing.assert_allclose(
            cd.heart_rate_variability(state), reference.get_heart_rate_variability(), rtol=1e-5
        )


def test_initial_state_and_set_sa_rate_clamp_like_reference():
    for rate in (10.0, 30.0, 72.0, 200.0, 260.0):
        reference = reference_model(72.0)
        reference.set_sa_rate(rate)
        state = cd.initial_state(rate)
        np.testing.assert_allclose(state.sa_rate_bpm, reference.sa_rate, rtol=1e-6)
        np.testing.assert_allclose(state.heart_rate_bpm, reference.get_heart_rate(), rtol=1e-6)
        np.testing.assert_allclose(
            cd.set_sa_rate(cd.initial_state(72.0), rate).sa_rate_bpm, reference.sa_rate, rtol=1e-6
        )
        np.testing.assert_allclose(
            cd.sa_interval_ms(state.sa_rate_bpm), reference.sa_interval, rtol=1e-6
        )
    assert float(cd.heart_rate_variability(cd.initial_state(60.0))) == 0.0


def test_step_vmaps_over_patients():
    rates = jnp.asarray([40.0, 60.0, 72.0, 110.0])
    params = cd.ConductionParams(
        av_delay=jnp.asarray([120.0, 160.0, 200.0, 300.0]),
        his_purkinje_delay=jnp.asarray([30.0, 50.0, 60.0, 80.0]),
        refractory_period=jnp.asarray([200.0, 300.0, 350.0, 400.0]),
        conduction_block_prob=jnp.zeros(4),
    )
    pacing = jnp.asarray(pacing_pattern(np.random.default_rng(0), 3000, 0.2))

    def run(rate, one_params):
        def body(s, pulse):
            s, events = cd.step(s, one_params, pulse, 1.0)
            return s, events.ventricular_fired

        return jax.lax.scan(body, initial_like_reference(rate), pacing)

    finals, fired = jax.jit(jax.vmap(run))(rates, params)
    for i in range(4):
        reference = CardiacConductionModel(
            sa_rate=float(rates[i]),
            av_delay=float(params.av_delay[i]),
            his_purkinje_delay=float(params.his_purkinje_delay[i]),
            refractory_period=float(params.refractory_period[i]),
        )
        reference.reset()
        expected = [reference.step(1.0 if p else 0.0)["ventricular_fired"] for p in pacing]
        np.testing.assert_array_equal(fired[i], expected)
        np.testing.assert_allclose(finals.heart_rate_bpm[i], reference.get_heart_rate(), rtol=1e-5)


def test_parameter_ranges_match_reference():
    for name, bounds in cd.PARAMETER_RANGES.items():
        if name == "conduction_block_prob":  # a probability; the reference does not check it
            assert (bounds.low, bounds.high) == (0.0, 1.0)
            continue
        info = reference_conduction.PARAMETER_RANGES[name]
        assert (bounds.low, bounds.high, bounds.source) == (
            info["min"],
            info["max"],
            info["source"],
        )
        assert float(getattr(cd.ConductionParams(), name)) == info["default"]
    info = reference_conduction.PARAMETER_RANGES["sa_rate"]
    assert (cd.SA_RATE_RANGE.low, cd.SA_RATE_RANGE.high) == (info["min"], info["max"])


def test_validate():
    check_validate_contract(cd.validate, cd.ConductionParams(), cd.PARAMETER_RANGES)


# ------------------------------------------------- split step (advance/push_rr)


def test_advance_push_rr_refresh_equals_step_bit_for_bit():
    """The pacing env's substep loop: advance per substep, ring and rate applied after."""
    params = cd.ConductionParams(conduction_block_prob=0.3)
    rng = np.random.default_rng(5)
    n = 30000
    pacing = jnp.asarray(rng.random(n) < 0.01)
    draws = jnp.asarray(rng.random(n), jnp.float32)
    state0 = cd.initial_state(72.0)

    @jax.jit
    def by_step(state):
        def body(s, inputs):
            s, _ = cd.step(s, params, *inputs)
            return s, s

        return jax.lax.scan(body, state, (pacing, draws))[1]

    @jax.jit
    def by_advance(state):
        interval = cd.sa_interval_ms(state.sa_rate_bpm)

        def body(s, inputs):
            s, events = cd.advance(s, params, *inputs, interval_ms=interval)
            s = cd.refresh_heart_rate(cd.push_rr(s, events.record, events.rr_ms))
            return s, s

        return jax.lax.scan(body, state, (pacing, draws))[1]

    expected, got = by_step(state0), by_advance(state0)
    assert int(expected.rr_count[-1]) > 20  # the ring wrapped around
    for a, b in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("n_records", [1, 10, 15])
def test_push_rrs_equals_sequential_push_rr_bit_for_bit(n_records):
    """The pacing env's one-pass ring update: any pattern of records, overflow included."""
    rng = np.random.default_rng(n_records)
    batch = 512
    # Every record count from none to all, and a partly filled ring.
    records = jnp.asarray(rng.random((batch, n_records)) < rng.random((batch, 1)))
    records = records.at[0].set(False).at[1].set(True)
    rrs = jnp.asarray(rng.uniform(1.0, 3000.0, (batch, n_records)), jnp.float32)
    rings = jnp.asarray(rng.uniform(1.0, 3000.0, (batch, cd.RR_BUFFER)), jnp.float32)
    states = jax.vmap(lambda ring: cd.initial_state(60.0).replace(rr_intervals_ms=ring))(rings)

    def sequential(state, recorded, rr):
        for i in range(n_records):
            state = cd.push_rr(state, recorded[i], rr[i])
        return state

    expected = jax.jit(jax.vmap(sequential))(states, records, rrs)
    got = jax.jit(jax.vmap(cd.push_rrs))(states, records, rrs)
    np.testing.assert_array_equal(np.asarray(got.rr_intervals_ms), expected.rr_intervals_ms)
    counts = np.asarray(records).sum(axis=1)
    assert {0, n_records} <= set(counts.tolist())  # nothing recorded, and everything
    assert not np.array_equal(np.asarray(got.rr_intervals_ms), np.asarray(rings))
