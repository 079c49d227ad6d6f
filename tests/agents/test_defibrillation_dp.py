"""Dynamic programming on DefibrillationTiming-v0: an exact optimum that rollouts confirm."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax.agents import (
    AlwaysShockParams,
    always_shock_policy,
    random_policy,
    random_policy_params,
)
from cardiosim_jax.envs.defibrillation_timing import dp
from cardiosim_jax.envs.defibrillation_timing import v0 as v0
from cardiosim_jax.rollout import run_episodes


def expected_return_two_steps(base: float, first: float | None, second: float | None) -> float:
    """Expected return of an open-loop two-step plan (``None`` = no shock), written out by hand."""

    def p(energy: float, shocks_before: int) -> float:
        return base * (1 - np.exp(-energy / v0.ENERGY_SCALE_J)) * v0.FATIGUE ** (shocks_before + 1)

    def cost(energy: float | None) -> float:
        return 0.0 if energy is None else v0.SHOCK_PENALTY + v0.ENERGY_PENALTY_PER_J * energy

    bonus = v0.SUCCESS_REWARD + v0.QUICK_SUCCESS_BONUS  # at most 2 shocks here
    p1 = 0.0 if first is None else p(first, 0)
    n1 = 0 if first is None else 1
    step1 = -cost(first) + p1 * bonus + (1 - p1) * -v0.FIBRILLATION_PENALTY
    p2 = 0.0 if second is None else p(second, n1)
    step2 = -cost(second) + p2 * bonus + (1 - p2) * (-v0.FIBRILLATION_PENALTY - v0.TIMEOUT_PENALTY)
    return step1 + (1 - p1) * step2


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_two_step_value_is_the_best_open_loop_plan(difficulty):
    # With two steps the only information is "still fibrillating", so the best
    # closed-loop policy is the best open-loop plan; enumerate it on the same 4 J grid.
    _, params = cardiosim_jax.make("DefibrillationTiming-v0", difficulty, max_steps_in_episode=2)
    solution = dp.solve(params, energy_step_j=4.0)
    options = [None, *np.arange(0.0, v0.MAX_ENERGY_J + 1.0, 4.0)]
    base = float(params.defibrillation_success_base)
    best = max(
        expected_return_two_steps(base, a, b) for a, b in itertools.product(options, options)
    )
    assert float(solution.value[0, 0]) == pytest.approx(best, abs=1e-3)


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_rollouts_of_the_dp_policy_match_its_value_and_beat_the_baselines(difficulty):
    env, params = cardiosim_jax.make("DefibrillationTiming-v0", difficulty)
    solution = dp.solve(params)
    steps = int(params.max_steps_in_episode)
    key = jax.random.PRNGKey(7)
    returns = {}
    for name, policy, policy_params in [
        ("dp", dp.dp_policy, solution),
        ("always_360", always_shock_policy, AlwaysShockParams()),
        ("random", random_policy, random_policy_params(env, params)),
    ]:
        stats = run_episodes(env, params, policy, policy_params, key, 3000, steps)
        returns[name] = np.asarray(stats.episode_return, np.float64)
    dp_returns = returns["dp"]
    se = dp_returns.std() / np.sqrt(dp_returns.size)
    assert dp_returns.mean() == pytest.approx(float(solution.value[0, 0]), abs=4 * se)
    # The optimum is no worse than any policy (same episodes: common random numbers).
    for name in ("always_360", "random"):
        diff = dp_returns - returns[name]
        assert diff.mean() > -3 * diff.std() / np.sqrt(diff.size), name
    assert dp_returns.mean() > returns["random"].mean()


def test_policy_reads_step_and_shock_count_from_the_observation():
    env, params = cardiosim_jax.make("DefibrillationTiming-v0", "medium")
    solution = dp.solve(params)
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    action = np.asarray(dp.dp_policy(solution, obs))
    assert action.shape == (2,)
    assert action[0] == float(solution.shock[0, 0])
    assert action[1] == pytest.approx(float(solution.energy_j[0, 0]))
    # Batched observations give batched actions.
    batch = np.asarray(dp.dp_policy(solution, np.stack([obs, obs])))
    assert batch.shape == (2, 2)
