"""Statistical fidelity: episode returns of our environments vs cardiosim 0.1.0, run here.

Each case runs the reference package (a fresh env per episode, the v0
semantics) and our jitted rollouts with fixed seeds, then compares the two
return distributions. Seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from cardiosim.agents.heuristic import HeuristicDosingAgent, HeuristicPacingAgent
from scipy import stats

import cardiosim_jax
from cardiosim_jax import agents, experiments
from cardiosim_jax.rollout import run_episodes
from cardiosim_tools.reference import reference_env, reference_random_policy, reference_returns

#: Reference episodes per case (its NumPy env is the suite's slowest part; the full
#: study, 1,000+ episodes per cell, is baselines/reference_fidelity.py).
N_REFERENCE = 120
N_OURS = 400
#: A pacing episode below this return has hit CardioSim's over-pacing heart-rate blow-up.
BLOW_UP_RETURN = -1e4

_ref_pacing = HeuristicPacingAgent()
_ref_dosing = HeuristicDosingAgent()

REFERENCE_POLICIES = {
    "random": reference_random_policy,
    "heuristic-PacingControl-v0": lambda obs, rng, env: _ref_pacing.predict(obs),
    "heuristic-AntiarrhythmicDosing-v0": lambda obs, rng, env: _ref_dosing.predict(obs),
}


def our_returns(env_id: str, difficulty: str, policy_name: str, n: int, seed: int) -> np.ndarray:
    env, params = cardiosim_jax.make(env_id, difficulty)
    policy, policy_params = agents.baseline_policy(policy_name, env, params)
    stats_ = run_episodes(
        env,
        params,
        policy,
        policy_params,
        jax.random.PRNGKey(seed),
        n,
        int(params.max_steps_in_episode),
    )
    return np.asarray(stats_.episode_return, dtype=np.float64)


def reference_policy(env_id: str, policy_name: str):
    return REFERENCE_POLICIES["random" if policy_name == "random" else f"heuristic-{env_id}"]


CASES = [
    (env_id, difficulty, policy)
    for env_id, policies in [
        ("PacingControl-v0", ("random", "heuristic")),
        ("AntiarrhythmicDosing-v0", ("random", "heuristic")),
        ("DefibrillationTiming-v0", ("random",)),
    ]
    for difficulty in ("easy", "medium", "hard")
    for policy in policies
]


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "difficulty", "policy_name"), CASES)
def test_return_distribution_matches_reference(env_id, difficulty, policy_name):
    ours = our_returns(env_id, difficulty, policy_name, N_OURS, seed=7)
    ref = reference_returns(
        env_id, difficulty, reference_policy(env_id, policy_name), N_REFERENCE, seed=11
    )
    assert np.all(np.isfinite(ours))

    # Distribution-free, and robust to pacing's heavy tail. Heuristic dosing returns
    # sit on a lattice (steps of 0.0005); our float32 sums land ~1e-5 off its points,
    # which alone would shift the ECDF jumps, so snap both samples to the lattice.
    ks = stats.ks_2samp(np.round(ours * 2000) / 2000, np.round(ref * 2000) / 2000)
    assert ks.pvalue > 1e-3, f"KS statistic {ks.statistic:.3f} (p={ks.pvalue:.2g})"

    if env_id == "PacingControl-v0" and policy_name == "random":
        # Means are dominated by single ~-1e7 episodes: compare medians and blow-up rates.
        boot = stats.bootstrap((ours,), np.median, n_resamples=500, random_state=0)
        boot_ref = stats.bootstrap((ref,), np.median, n_resamples=500, random_state=0)
        se = np.hypot(boot.standard_error, boot_ref.standard_error)
        assert abs(np.median(ours) - np.median(ref)) < 3 * se
        p_ours, p_ref = np.mean(ours < BLOW_UP_RETURN), np.mean(ref < BLOW_UP_RETURN)
        pooled = (p_ours * N_OURS + p_ref * N_REFERENCE) / (N_OURS + N_REFERENCE)
        se_rate = np.sqrt(pooled * (1 - pooled) * (1 / N_OURS + 1 / N_REFERENCE))
        assert abs(p_ours - p_ref) < 3 * se_rate + 1e-12
    else:
        se = np.hypot(ours.std(ddof=1) / np.sqrt(N_OURS), ref.std(ddof=1) / np.sqrt(N_REFERENCE))
        assert abs(ours.mean() - ref.mean()) < 3 * se, (ours.mean(), ref.mean(), se)


#: Table 2 cells (mean over 20 episodes) the reference code can reproduce.
PAPER_CELLS = [
    ("PacingControl-v0", "medium", "heuristic", 129.0),
    ("AntiarrhythmicDosing-v0", "medium", "random", -31.0),
    ("DefibrillationTiming-v0", "easy", "random", 136.0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("env_id", "difficulty", "policy_name", "paper_mean"), PAPER_CELLS)
def test_paper_table2_cell_within_measured_spread(env_id, difficulty, policy_name, paper_mean):
    """The paper's value lies inside the central 95 % of our per-episode returns."""
    ours = our_returns(env_id, difficulty, policy_name, 1000, seed=3)
    low, high = np.percentile(ours, [2.5, 97.5])
    assert low <= paper_mean <= high, (paper_mean, low, high)


@pytest.mark.slow
def test_paper_heuristic_dosing_cell_needs_reference_pk_drift():
    """Heuristic dosing, paper 169 +- 16, is a cell v0 does not reproduce, by design.

    The reference multiplies k_e and V_d by a fresh factor at every reset of the
    same env object, so over 20 episodes patients drift to fast eliminators and
    lower returns. v0 draws each patient fresh from the defaults: its returns sit
    higher and tighter, and 169 falls below their central 95 %. The reference
    itself, reusing one env as the paper did, puts 169 inside its spread.
    """
    ours = our_returns("AntiarrhythmicDosing-v0", "medium", "heuristic", 1000, seed=3)
    assert np.percentile(ours, 2.5) > 169.0

    rng = np.random.default_rng(5)
    drifting = []
    for _ in range(10):
        env = reference_env("AntiarrhythmicDosing-v0", "medium")  # reused across 20 resets
        for _ in range(20):
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(_ref_dosing.predict(obs))
                total += reward
                done = terminated or truncated
            drifting.append(total)
    low, high = np.percentile(drifting, [2.5, 97.5])
    assert low <= 169.0 <= high, (low, high)

    # Table 2's protocol (experiments.paper_protocol_params) replays that drift in v0:
    # its returns match the reused reference env's and put 169 inside their spread.
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    population = experiments.paper_protocol_params(env, params, jax.random.PRNGKey(4), 1000)
    policy, policy_params = agents.baseline_policy("heuristic", env, params)
    replayed = np.asarray(
        run_episodes(
            env, population, policy, policy_params, jax.random.PRNGKey(3), 1000, 200
        ).episode_return,
        np.float64,
    )
    low, high = np.percentile(replayed, [2.5, 97.5])
    assert low <= 169.0 <= high, (low, high)
    # One object's episodes share its drift: the standard error comes from object means.
    ours_objects = replayed.reshape(50, 20).mean(axis=1)
    reference_objects = np.reshape(drifting, (10, 20)).mean(axis=1)
    se = np.hypot(
        ours_objects.std(ddof=1) / np.sqrt(50), reference_objects.std(ddof=1) / np.sqrt(10)
    )
    assert abs(replayed.mean() - np.mean(drifting)) < 3 * se, (replayed.mean(), np.mean(drifting))
