"""``summarize_returns``, ``interquartile_mean`` and ``evaluate`` (episodes and seeds)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import expected_always_shock_return

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import evaluate, interquartile_mean, summarize_returns
from cardiosim_jax.rollout import run_episodes

SUMMARY_KEYS = {"mean", "std", "iqm", "median", "ci95", "n_episodes"}


# --------------------------------------------------------------------------- summarize_returns


def test_summary_of_normal_draws_recovers_the_distribution():
    n = 10_000
    draws = np.random.default_rng(123).normal(5.0, 2.0, n)
    summary = summarize_returns(draws)
    assert set(summary) == SUMMARY_KEYS
    assert summary["n_episodes"] == n
    standard_error = 2.0 / math.sqrt(n)
    assert abs(summary["mean"] - 5.0) < 4 * standard_error
    assert abs(summary["std"] - 2.0) < 0.06  # sd of the sample sd: 2 / sqrt(2n) = 0.014
    # The IQM and median of a symmetric distribution are its centre.
    assert abs(summary["iqm"] - 5.0) < 0.1
    assert abs(summary["median"] - 5.0) < 0.1
    lo, hi = summary["ci95"]
    assert lo < 5.0 < hi
    assert lo < summary["mean"] < hi
    # Percentile bootstrap of the mean: width ~ 2 x 1.96 x sigma / sqrt(n).
    assert hi - lo == pytest.approx(2 * 1.96 * standard_error, rel=0.15)
    # Roughly centred on the sample mean.
    assert abs(0.5 * (lo + hi) - summary["mean"]) < 0.2 * (hi - lo)


def test_summary_matches_numpy_statistics_and_is_reproducible():
    returns = np.random.default_rng(7).exponential(3.0, 257)
    summary = summarize_returns(returns)
    assert summary["mean"] == pytest.approx(np.mean(returns))
    assert summary["std"] == pytest.approx(np.std(returns, ddof=1))
    assert summary["median"] == pytest.approx(np.median(returns))
    assert summary["ci95"] == summarize_returns(returns)["ci95"]
    assert summary["ci95"] != summarize_returns(returns, seed=1)["ci95"]
    # Whatever the skew, the IQM lies inside the middle half of the data.
    q1, q3 = np.quantile(returns, [0.25, 0.75])
    assert q1 <= summary["iqm"] <= q3


@pytest.mark.parametrize("seed", [0, 5])
def test_ci_is_scipys_percentile_bootstrap_of_the_mean_at_95_percent(seed):
    """The same resamples as ``scipy.stats.bootstrap`` with the documented settings, and
    not those of a 90 % interval or of the BCa method (scipy's default)."""
    from scipy import stats

    returns = np.random.default_rng(11).gamma(2.0, 5.0, 300)
    summary = summarize_returns(returns, n_resamples=1500, seed=seed)

    def scipy_ci(**settings):
        interval = stats.bootstrap(
            (returns,), np.mean, n_resamples=1500, random_state=seed, **settings
        ).confidence_interval
        return [interval.low, interval.high]

    expected = scipy_ci(confidence_level=0.95, method="percentile")
    np.testing.assert_allclose(summary["ci95"], expected, rtol=1e-12)
    for other in (
        scipy_ci(confidence_level=0.90, method="percentile"),
        scipy_ci(confidence_level=0.95, method="BCa"),
    ):
        assert not np.allclose(summary["ci95"], other, rtol=1e-6)


def test_ci_shrinks_with_more_episodes():
    rng = np.random.default_rng(0)
    small = summarize_returns(rng.normal(0.0, 1.0, 100))["ci95"]
    large = summarize_returns(rng.normal(0.0, 1.0, 10_000))["ci95"]
    # Width scales with 1 / sqrt(n): a factor of 10 here.
    ratio = (small[1] - small[0]) / (large[1] - large[0])
    assert 7.0 < ratio < 14.0


def test_iqm_of_one_to_eight_is_the_mean_of_three_to_six():
    values = np.arange(1.0, 9.0)
    expected = np.mean([3.0, 4.0, 5.0, 6.0])  # 25 % (two values) cut from each end
    assert interquartile_mean(values) == pytest.approx(expected)
    assert summarize_returns(values)["iqm"] == pytest.approx(expected)
    # Order does not matter.
    assert interquartile_mean(values[::-1]) == pytest.approx(expected)


def test_iqm_matches_a_hand_rolled_middle_half():
    values = np.random.default_rng(3).standard_cauchy(400)  # n divisible by 4
    middle = np.sort(values)[100:300]
    assert interquartile_mean(values) == pytest.approx(middle.mean())


def test_iqm_is_robust_to_one_huge_outlier():
    values = np.arange(1.0, 101.0)  # 1..100, IQM = mean of 26..75 = 50.5
    with_outlier = values.copy()
    with_outlier[-1] = 1e12
    assert interquartile_mean(values) == pytest.approx(50.5)
    assert interquartile_mean(with_outlier) == pytest.approx(50.5)
    assert summarize_returns(with_outlier)["mean"] > 1e9
    with_outlier[0] = -1e12
    assert interquartile_mean(with_outlier) == pytest.approx(50.5)


def test_constant_returns_give_a_zero_width_ci():
    summary = summarize_returns(np.full(50, -260.0))
    assert summary["mean"] == -260.0
    assert summary["std"] == 0.0
    assert summary["iqm"] == -260.0
    assert summary["ci95"] == [-260.0, -260.0]
    assert summary["n_episodes"] == 50


def test_single_episode_and_batched_input():
    one = summarize_returns(np.array([3.5]))
    assert one["mean"] == 3.5 and one["std"] == 0.0
    assert one["ci95"] == [3.5, 3.5]
    assert one["n_episodes"] == 1
    # (seeds, episodes) input counts every episode.
    grid = np.arange(12.0).reshape(3, 4)
    summary = summarize_returns(grid)
    assert summary["n_episodes"] == 12
    assert summary["mean"] == pytest.approx(5.5)
    assert summary["iqm"] == pytest.approx(np.mean(np.arange(3.0, 9.0)))


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def defibrillation_easy():
    return cardiosim_jax.make("DefibrillationTiming-v0", "easy")


def test_evaluate_heuristic_defibrillation_matches_the_exact_expectation(defibrillation_easy):
    env, params = defibrillation_easy
    policy, policy_params = agents.baseline_policy("heuristic", env, params)
    n = 400
    result = evaluate(policy, env, params, jax.random.PRNGKey(0), n, 1, policy_params)
    assert set(result) == SUMMARY_KEYS | {"n_seeds", "seed_means"}
    assert result["n_episodes"] == n
    assert result["n_seeds"] == 1
    assert result["seed_means"] == [pytest.approx(result["mean"])]
    expected = expected_always_shock_return(360.0, float(params.defibrillation_success_base))
    assert 135.0 < expected < 145.0  # the heuristic's documented "about 140 on easy"
    standard_error = result["std"] / math.sqrt(n)
    assert abs(result["mean"] - expected) < 4 * standard_error
    assert 130.0 < result["mean"] < 150.0
    lo, hi = result["ci95"]
    assert lo <= result["mean"] <= hi
    # n_seeds == 1: the CI is over episodes, ~ +-1.96 standard errors.
    assert hi - lo == pytest.approx(2 * 1.96 * standard_error, rel=0.3)
    # Same key, same result; another key, other episodes.
    again = evaluate(policy, env, params, jax.random.PRNGKey(0), n, 1, policy_params)
    assert again["mean"] == result["mean"]
    other = evaluate(policy, env, params, jax.random.PRNGKey(1), n, 1, policy_params)
    assert other["mean"] != result["mean"]


def test_evaluate_over_seeds_uses_per_seed_params_and_a_ci_over_seeds(defibrillation_easy):
    env, params = defibrillation_easy
    energies = (360.0, 0.0)
    stacked = agents.AlwaysShockParams(energy_j=jnp.array(energies))
    n = 300
    result = evaluate(agents.always_shock_policy, env, params, jax.random.PRNGKey(2), n, 2, stacked)
    assert result["n_seeds"] == 2
    assert result["n_episodes"] == 2 * n
    full_energy, no_energy = result["seed_means"]
    # A 0 J shock never succeeds: 100 x (-0.1 - 2) and -50 at the timeout, every episode.
    assert expected_always_shock_return(0.0, 0.7) == pytest.approx(-260.0)
    assert no_energy == pytest.approx(-260.0, abs=1e-3)
    base = float(params.defibrillation_success_base)
    assert abs(full_energy - expected_always_shock_return(360.0, base)) < 8.0
    assert full_energy > no_energy + 300.0
    assert result["mean"] == pytest.approx(0.5 * (full_energy + no_energy))
    # The CI is a bootstrap over the two seed means: resampling two values gives
    # a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so its 2.5 and 97.5
    # percentiles are the two seed means themselves (not a narrow CI over 600 episodes).
    lo, hi = result["ci95"]
    assert lo == pytest.approx(no_energy)
    assert hi == pytest.approx(full_energy)
    # The episode std still describes all 600 episodes (two clusters ~400 apart).
    assert result["std"] > 150.0


def test_block_means_spread_within_each_seed(defibrillation_easy):
    """``block_size``: percentiles of consecutive-block means, blocks never span seeds."""
    env, params = defibrillation_easy
    stacked = agents.AlwaysShockParams(energy_j=jnp.array((360.0, 0.0)))
    key = jax.random.PRNGKey(2)
    result = evaluate(agents.always_shock_policy, env, params, key, 50, 2, stacked, block_size=20)
    blocks = result["block_means"]
    assert blocks["size"] == 20 and blocks["n"] == 4  # 2 full blocks per seed, 10 left over
    # By hand from the same episodes (seed i plays split(key, 2)[i]).
    per_seed = []
    for i, k in enumerate(jax.random.split(key, 2)):
        stats = run_episodes(
            env,
            params,
            agents.always_shock_policy,
            agents.AlwaysShockParams(energy_j=stacked.energy_j[i]),
            k,
            50,
            int(params.max_steps_in_episode),
        )
        per_seed.append(np.asarray(stats.episode_return, np.float64)[:40].reshape(2, 20).mean(1))
    low, high = np.percentile(np.concatenate(per_seed), [2.5, 97.5])
    assert blocks["p2.5"] == pytest.approx(low) and blocks["p97.5"] == pytest.approx(high)
    # The 0 J seed's blocks are all exactly -260: the lower end; 360 J's near +140.
    assert blocks["p2.5"] == pytest.approx(-260.0, abs=1e-3)
    assert blocks["p97.5"] > 100.0
    with pytest.raises(ValueError, match="block_size 60 exceeds the 50 episodes per seed"):
        evaluate(agents.always_shock_policy, env, params, key, 50, 2, stacked, block_size=60)


def test_evaluate_over_three_seeds_orders_by_energy(defibrillation_easy):
    env, params = defibrillation_easy
    energies = jnp.array([360.0, 60.0, 0.0])
    stacked = agents.AlwaysShockParams(energy_j=energies)
    result = evaluate(
        agents.always_shock_policy, env, params, jax.random.PRNGKey(3), 200, 3, stacked
    )
    means = result["seed_means"]
    base = float(params.defibrillation_success_base)
    expected = [expected_always_shock_return(float(e), base) for e in energies]
    assert expected[0] > expected[1] > expected[2]
    assert means[0] > means[1] > means[2]
    for got, want in zip(means[:2], expected[:2], strict=True):
        assert abs(got - want) < 12.0
    lo, hi = result["ci95"]
    assert min(means) <= lo <= hi <= max(means)
    assert lo < np.mean(means) < hi


def test_evaluate_random_policy_single_seed_on_dosing():
    """One seed: the summary is that of ``run_episodes``' returns from ``split(key, 1)[0]``,
    its CI a bootstrap over episodes, its block means those of consecutive episodes."""
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    policy, policy_params = agents.baseline_policy("random", env, params)
    key = jax.random.PRNGKey(0)
    result = evaluate(policy, env, params, key, 32, 1, policy_params, block_size=8)
    stats_ = run_episodes(
        env,
        params,
        policy,
        policy_params,
        jax.random.split(key, 1)[0],
        32,
        int(params.max_steps_in_episode),
    )
    returns = np.asarray(stats_.episode_return, np.float64)
    assert np.ptp(returns) > 1.0  # random dosing: returns differ between episodes
    expected = summarize_returns(returns)
    for name in ("mean", "std", "iqm", "median", "ci95"):
        np.testing.assert_allclose(result[name], expected[name], rtol=1e-12, err_msg=name)
    assert result["n_episodes"] == 32 and result["n_seeds"] == 1
    np.testing.assert_allclose(result["seed_means"], [returns.mean()], rtol=1e-12)
    block_means = returns.reshape(4, 8).mean(1)
    np.testing.assert_allclose(
        [result["block_means"]["p2.5"], result["block_means"]["p97.5"]],
        np.percentile(block_means, [2.5, 97.5]),
        rtol=1e-12,
    )
    assert result["block_means"]["n"] == 4
