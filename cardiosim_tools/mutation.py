"""Mutation testing: plant realistic one-line bugs, one at a time, and check a fast test fails.

Each :class:`Mutant` replaces one snippet of one source file (``original``, which
must occur exactly once) by a wrong ``replacement`` and names the fast tests
(pytest node ids or files) that should notice. :func:`run` snapshots the
repository into a temporary directory once, runs the union of those tests on
the unmutated snapshot (the baseline must pass), then for every mutant copies
the snapshot, plants the mutant in the copy and runs its tests there with
``PYTHONPATH`` pointing at the copy. The working tree is never modified.

A mutant is **killed** when its tests fail (pytest exit code 1), **timeout**
(killed, labelled) when they run past the limit, **error** (killed, labelled)
for any other non-zero exit code (an import or collection error, a node id
that does not exist: a mutant that breaks the import is visible as such), and
**survived** when they pass. A mutant whose test files are all missing is not
run (**missing tests**); one whose ``original`` is no longer in the file is
**stale**. The score is killed (killed + timeout + error) over the mutants not
marked ``equivalent``; missing and stale mutants count as not killed.

Run ``python -m cardiosim_tools.mutation --help``; docs/mutation.md describes
the workflow, the score and the equivalent mutants.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: The repository this module lives in.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Where a full run writes ``mutation.md`` and ``mutation.json`` by default.
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results"
#: Seconds one mutant's tests may run before they count as killed by timeout.
DEFAULT_TIMEOUT_S = 600.0
#: Not copied into the snapshot (what .gitignore ignores, and the git directory).
IGNORED = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "out",
)
#: The tests' persistent XLA compilation cache (tests/conftest.py reads this variable).
XLA_CACHE_VARIABLE = "CARDIOSIM_TEST_XLA_CACHE"

#: Outcomes of a mutant run, and which of them count as killed.
KILLED, TIMEOUT, ERROR, SURVIVED = "killed", "timeout", "error", "survived"
MISSING, STALE = "missing tests", "stale"
KILLED_STATUSES = frozenset({KILLED, TIMEOUT, ERROR})


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One planted bug: ``original`` (exactly once in ``path``) becomes ``replacement``.

    ``path`` is relative to the repository root; ``tests`` are pytest node ids
    or test files, relative to the root, that must fail on the mutant and run
    in seconds (never the slow learning tests: runs use ``-m "not slow"``).
    ``equivalent`` is the reason a mutant cannot change observable behaviour;
    such mutants are run but left out of the score.
    """

    id: str
    path: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    description: str
    equivalent: str | None = None

    def apply(self, source: str) -> str:
        """``source`` with the mutant planted; ``ValueError`` unless ``original`` occurs once."""
        count = source.count(self.original)
        if count != 1:
            raise ValueError(
                f"mutant {self.id}: the original snippet occurs {count} times in {self.path} "
                "(it must occur exactly once)"
            )
        return source.replace(self.original, self.replacement)

    def test_files(self) -> tuple[str, ...]:
        """The files of ``tests`` (node ids without their ``::`` part), in order, once each."""
        return tuple(dict.fromkeys(test.split("::", 1)[0] for test in self.tests))


@dataclasses.dataclass
class Result:
    """What running one mutant gave."""

    id: str
    status: str
    seconds: float
    description: str
    path: str
    tests: tuple[str, ...]
    equivalent: str | None = None
    returncode: int | None = None
    #: Failing tests pytest named (its ``FAILED``/``ERROR`` summary lines).
    killed_by: tuple[str, ...] = ()
    #: Listed test files that do not exist (the rest ran).
    missing: tuple[str, ...] = ()
    #: Last lines of pytest's output for survivors and errors (why, at a glance).
    output_tail: str = ""

    @property
    def killed(self) -> bool:
        return self.status in KILLED_STATUSES

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tests"] = list(self.tests)
        data["killed_by"] = list(self.killed_by)
        data["missing"] = list(self.missing)
        data["killed"] = self.killed
        return data


# --------------------------------------------------------------------------- the mutants

_PPO = "cardiosim_jax/training/ppo.py"
_LOSSES = "cardiosim_jax/training/losses.py"
_NORMALIZATION = "cardiosim_jax/training/normalization.py"
_NETWORKS = "cardiosim_jax/training/networks.py"
_EVALUATION = "cardiosim_jax/evaluation.py"
_ROLLOUT = "cardiosim_jax/rollout.py"
_ADAPTER = "cardiosim_jax/gymnasium_adapter.py"
_BASE = "cardiosim_jax/envs/base.py"
_PACING_V0 = "cardiosim_jax/envs/pacing_control/v0.py"
_PACING_V1 = "cardiosim_jax/envs/pacing_control/v1.py"
_DOSING_V0 = "cardiosim_jax/envs/antiarrhythmic_dosing/v0.py"
_DOSING_V1 = "cardiosim_jax/envs/antiarrhythmic_dosing/v1.py"
_DEFIB_V0 = "cardiosim_jax/envs/defibrillation_timing/v0.py"
_DEFIB_V1 = "cardiosim_jax/envs/defibrillation_timing/v1.py"
_MODELS = "cardiosim_jax/models/"

# Test files (and node ids) the mutants name.
_REWARDS = "tests/envs/test_rewards.py"
_LOSS_TESTS = "tests/training/test_training_losses.py"
_WIRING = "tests/training/test_trainer_wiring.py"
_EVAL_TESTS = "tests/training/test_evaluation.py"
_NORM_TESTS = "tests/training/test_training_normalization.py"
_NET_TESTS = "tests/training/test_training_networks.py"
_ADAPTER_TESTS = "tests/clients/test_gymnasium_adapter.py"
_ROLLOUT_TESTS = "tests/envs/test_rollout.py"


def _nodes(file: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{file}::{name}" for name in names)


#: Each environment's reward tests: its reward-value tests, then the env file's own reward tests.
_DEFIB_V1_REWARDS = _nodes(
    _REWARDS,
    "test_defib_v1_step_reward",
    "test_defib_v1_step_rewards_rosc_by_the_survival_after_the_step",
) + _nodes(
    "tests/envs/test_defibrillation_timing_v1.py",
    "test_reward_rosc_is_success_times_survival_minus_the_shock",
    "test_reward_step_without_rosc_and_shock_cost",
    "test_reward_timeout_without_rosc",
)
_DOSING_V1_REWARDS = _nodes(
    _REWARDS,
    "test_dosing_v1_hourly_reward",
    "test_dosing_v1_hourly_reward_reads_the_limits_from_params",
    "test_dosing_v1_torsades_hazard_cost",
    "test_dosing_v1_step_reward_is_its_hours_from_post_monitor_readings_minus_the_dose_cost",
) + _nodes(
    "tests/envs/test_antiarrhythmic_dosing_v1.py",
    "test_hourly_reward_terms_match_hand_computed_values",
    "test_step_reward_is_the_sum_of_its_hours_minus_the_dose_cost",
)
_PACING_V1_REWARDS = _nodes(
    _REWARDS,
    "test_pacing_v1_step_reward",
    "test_pacing_v1_step_costs_the_step_s_counts_rate_and_programming",
) + _nodes(
    "tests/envs/test_pacing_control_v1.py",
    "test_reward_terms_match_hand_computed_values",
    "test_step_reports_the_same_costs_as_step_reward",
)
_DEFIB_V0_REWARDS = _nodes(
    _REWARDS,
    "test_defib_v0_step_reward",
    "test_defib_v0_step_rewards_the_shock_count_energy_and_time_after_the_step",
) + _nodes(
    "tests/envs/test_defibrillation_timing.py",
    "test_shock_success_probability_and_reward",
    "test_first_shot_success_reward_and_termination",
    "test_episode_is_100_steps_by_truncation_with_timeout_penalty",
)
_DOSING_V0_REWARDS = _nodes(
    _REWARDS,
    "test_dosing_v0_step_reward",
    "test_dosing_v0_step_reward_uses_the_window_it_is_given",
    "test_dosing_v0_step_rewards_the_concentration_and_rhythm_after_the_step",
) + _nodes("tests/envs/test_antiarrhythmic_dosing.py", "test_reward_in_each_concentration_band")
_PACING_V0_REWARDS = _nodes(
    _REWARDS,
    "test_pacing_v0_step_reward",
    "test_pacing_v0_step_rewards_the_heart_rate_after_the_step",
) + _nodes("tests/envs/test_pacing_control.py", "test_reward_components")


def _m(
    id: str,
    path: str,
    original: str,
    replacement: str,
    tests: Sequence[str],
    description: str,
    equivalent: str | None = None,
) -> Mutant:
    return Mutant(id, path, original, replacement, tuple(tests), description, equivalent)


#: The mutants, by area. ``tests`` name the fast tests expected to kill each one.
MUTANTS: tuple[Mutant, ...] = (
    # ----------------------------------------------------------------- rewards, v1
    _m(
        "defib-v1-rosc-reward-without-survival",
        _DEFIB_V1,
        "SUCCESS_REWARD * survival",
        "SUCCESS_REWARD",
        _DEFIB_V1_REWARDS,
        "DefibrillationTiming-v1: ROSC pays 100 without the survival factor",
    ),
    _m(
        "defib-v1-energy-cost-per-shock-not-per-joule",
        _DEFIB_V1,
        "SHOCK_PENALTY + ENERGY_PENALTY_PER_J * energy",
        "SHOCK_PENALTY + ENERGY_PENALTY_PER_J",
        _DEFIB_V1_REWARDS,
        "DefibrillationTiming-v1: the energy cost ignores the shock's energy",
    ),
    _m(
        "defib-v1-timeout-one-step-late",
        _DEFIB_V1,
        "timed_out = (time >= max_steps) & ~rosc",
        "timed_out = (time > max_steps) & ~rosc",
        _DEFIB_V1_REWARDS,
        "DefibrillationTiming-v1: timeout penalty compared with > (never charged)",
    ),
    _m(
        "dosing-v1-qtc-excess-from-stop-limit",
        _DOSING_V1,
        "qtc_ms - params.qtc_warning_ms",
        "qtc_ms - params.qtc_stop_ms",
        _DOSING_V1_REWARDS,
        "AntiarrhythmicDosing-v1: QTc excess measured from the stop limit, not the warning",
    ),
    _m(
        "dosing-v1-sinus-reward-needs-negative-ectopy",
        _DOSING_V1,
        "jnp.where(ectopic_rate_per_min <= 0.0, SINUS_RHYTHM_REWARD, 0.0)",
        "jnp.where(ectopic_rate_per_min < 0.0, SINUS_RHYTHM_REWARD, 0.0)",
        _DOSING_V1_REWARDS,
        "AntiarrhythmicDosing-v1: sinus-rhythm reward tested with < 0 (never paid)",
    ),
    _m(
        "dosing-v1-torsades-charges-own-hazard",
        _DOSING_V1,
        "jnp.maximum(hazard(qtc_ms) - hazard(baseline_qtc_ms), 0.0)",
        "hazard(qtc_ms)",
        _DOSING_V1_REWARDS,
        "AntiarrhythmicDosing-v1: torsades cost includes the drug-free hazard",
    ),
    _m(
        "dosing-v1-step-reward-mean-of-hours",
        _DOSING_V1,
        "jnp.sum(hourly_rewards) - DOSE_COST_PER_MG * dose",
        "jnp.mean(hourly_rewards) - DOSE_COST_PER_MG * dose",
        _DOSING_V1_REWARDS,
        "AntiarrhythmicDosing-v1: step reward averages the 12 hours instead of summing",
    ),
    _m(
        "pacing-v1-bradycardia-vs-tachycardia-rate",
        _PACING_V1,
        "1.0 - heart_rate_bpm / symptomatic_rate_bpm",
        "1.0 - heart_rate_bpm / TACHYCARDIA_RATE_BPM",
        _PACING_V1_REWARDS,
        "PacingControl-v1: bradycardia deficit relative to 100 bpm, not the symptomatic rate",
    ),
    _m(
        "pacing-v1-pause-cost-in-ms",
        _PACING_V1,
        "PAUSE_WEIGHT * counts.pause_ms / 1000.0",
        "PAUSE_WEIGHT * counts.pause_ms / 100.0",
        _PACING_V1_REWARDS,
        "PacingControl-v1: pause cost off by a factor 10 (unit slip)",
    ),
    _m(
        "pacing-v1-pacing-burden-per-pace",
        _PACING_V1,
        "PACING_BURDEN_WEIGHT * counts.captures",
        "PACING_BURDEN_WEIGHT * counts.paces",
        _PACING_V1_REWARDS,
        "PacingControl-v1: pacing burden charged per pulse, lost captures included",
    ),
    # ----------------------------------------------------------------- rewards, v0
    _m(
        "defib-v0-fibrillation-penalty-sign",
        _DEFIB_V0,
        "jnp.where(in_fibrillation, -FIBRILLATION_PENALTY, SUCCESS_REWARD)",
        "jnp.where(in_fibrillation, FIBRILLATION_PENALTY, SUCCESS_REWARD)",
        _DEFIB_V0_REWARDS,
        "DefibrillationTiming-v0: time in fibrillation rewarded instead of penalised",
    ),
    _m(
        "defib-v0-quick-bonus-threshold",
        _DEFIB_V0,
        "(shocks_delivered <= QUICK_SUCCESS_MAX_SHOCKS)",
        "(shocks_delivered < QUICK_SUCCESS_MAX_SHOCKS)",
        _DEFIB_V0_REWARDS,
        "DefibrillationTiming-v0: quick-success bonus with < 3 shocks instead of <= 3",
    ),
    _m(
        "dosing-v0-dose-penalty-constant",
        _DOSING_V0,
        "DOSE_PENALTY_PER_MG = 0.01 / 100.0",
        "DOSE_PENALTY_PER_MG = 0.01 / 10.0",
        _DOSING_V0_REWARDS,
        "AntiarrhythmicDosing-v0: dose penalty 10x too large",
    ),
    _m(
        "dosing-v0-arrhythmia-penalty-inverted",
        _DOSING_V0,
        "jnp.where(arrhythmic, ARRHYTHMIA_PENALTY, 0.0)",
        "jnp.where(arrhythmic, 0.0, ARRHYTHMIA_PENALTY)",
        _DOSING_V0_REWARDS,
        "AntiarrhythmicDosing-v0: arrhythmia penalty charged in sinus rhythm",
    ),
    _m(
        "pacing-v0-linear-rate-error",
        _PACING_V0,
        "-((hr_error / HR_ERROR_SCALE_BPM) ** 2)",
        "-(hr_error / HR_ERROR_SCALE_BPM)",
        _PACING_V0_REWARDS,
        "PacingControl-v0: rate error penalised linearly instead of squared",
    ),
    _m(
        "pacing-v0-stability-or",
        _PACING_V0,
        "(hrv_ms < STABLE_HRV_MS) & (hr_error < STABLE_HR_ERROR_BPM)",
        "(hrv_ms < STABLE_HRV_MS) | (hr_error < STABLE_HR_ERROR_BPM)",
        _PACING_V0_REWARDS,
        "PacingControl-v0: stability bonus when either criterion holds",
    ),
    # ----------------------------------------------------------------- models
    _m(
        "fhn-cubic-without-third",
        _MODELS + "fitzhugh_nagumo.py",
        "v=v - v**3 / 3.0 - w + stimulus_current",
        "v=v - v**3 - w + stimulus_current",
        ["tests/models/test_fitzhugh_nagumo.py"],
        "FitzHugh-Nagumo: cubic term without its 1/3",
    ),
    _m(
        "fhn-tau-multiplies",
        _MODELS + "fitzhugh_nagumo.py",
        "w=(v + params.a - params.b * w) / params.tau",
        "w=(v + params.a - params.b * w) * params.tau",
        ["tests/models/test_fitzhugh_nagumo.py"],
        "FitzHugh-Nagumo: recovery multiplied by tau (epsilon/tau confusion)",
    ),
    _m(
        "aliev-panfilov-stimulus-sign",
        _MODELS + "aliev_panfilov.py",
        "- u * v + stimulus_current",
        "- u * v - stimulus_current",
        ["tests/models/test_aliev_panfilov.py"],
        "Aliev-Panfilov: stimulus current enters with the wrong sign",
    ),
    _m(
        "rk4-weights",
        _MODELS + "integrators.py",
        "(a + 2.0 * b + 2.0 * c + d)",
        "(a + 2.0 * b + c + 2.0 * d)",
        ["tests/models/test_integrators.py"],
        "RK4: weights 1-2-1-2 instead of 1-2-2-1",
    ),
    _m(
        "rk4-k4-time-half-step",
        _MODELS + "integrators.py",
        "vector_field(t + dt, _axpy(dt, k3, y), args)",
        "vector_field(t + half, _axpy(dt, k3, y), args)",
        ["tests/models/test_integrators.py"],
        "RK4: last stage evaluated at t + dt/2 (wrong for time-dependent fields)",
    ),
    _m(
        "pk-absorption-without-body-weight",
        _MODELS + "pharmacokinetics.py",
        "absorbed / total_volume_l",
        "absorbed / params.volume_of_distribution",
        ["tests/models/test_pharmacokinetics.py"],
        "Pharmacokinetics: concentration from V_d in L/kg without the body weight",
    ),
    _m(
        "pk-elimination-without-dt",
        _MODELS + "pharmacokinetics.py",
        "params.elimination_rate * state.plasma_concentration * dt_hours",
        "params.elimination_rate * state.plasma_concentration",
        ["tests/models/test_pharmacokinetics.py"],
        "Pharmacokinetics: elimination per step forgets the step length",
    ),
    _m(
        "pk-hill-coefficient",
        _MODELS + "pharmacokinetics.py",
        "HILL_COEFFICIENT = 2.0",
        "HILL_COEFFICIENT = 1.0",
        ["tests/models/test_pharmacokinetics.py"],
        "Pharmacokinetics: efficacy Hill coefficient 1 instead of 2",
    ),
    _m(
        "drug-effect-repolarisation-from-beta-curve",
        _MODELS + "drug_effect.py",
        "params.max_repolarisation_slowing * ikr_block(concentration, params)",
        "params.max_repolarisation_slowing * beta_blockade(concentration, params)",
        ["tests/models/test_drug_effect.py"],
        "Drug effect: QT prolongation driven by the beta-blockade curve, not IKr block",
    ),
    _m(
        "drug-effect-ectopic-rate-per-second",
        _MODELS + "drug_effect.py",
        "ectopic_beats * 60_000.0 / focus_window_ms(params)",
        "ectopic_beats * 1000.0 / focus_window_ms(params)",
        [
            "tests/models/test_drug_effect.py",
            "tests/envs/test_antiarrhythmic_dosing_v1.py"
            "::test_enough_drug_suppresses_ectopy_and_none_leaves_it",
        ],
        "Drug effect: ectopic rate per second reported as per minute",
    ),
    _m(
        "conduction-block-inverted",
        _MODELS + "conduction.py",
        "(block_draw > params.conduction_block_prob)",
        "(block_draw < params.conduction_block_prob)",
        ["tests/models/test_conduction.py"],
        "Conduction: a beat conducts with the block probability instead of 1 minus it",
    ),
    _m(
        "conduction-rr-window-oldest",
        _MODELS + "conduction.py",
        "mask = jnp.arange(RR_BUFFER) >= RR_BUFFER - n",
        "mask = jnp.arange(RR_BUFFER) < n",
        ["tests/models/test_conduction.py"],
        "Conduction: heart rate from the oldest RR intervals of the ring, not the newest",
    ),
    # ----------------------------------------------------------------- GAE and loss
    _m(
        "gae-without-gamma-in-delta",
        _LOSSES,
        "rewards + gamma * next_values * (1.0 - terminated) - values",
        "rewards + next_values * (1.0 - terminated) - values",
        [_LOSS_TESTS],
        "GAE: TD error bootstraps without the discount",
    ),
    _m(
        "gae-lambda-without-gamma",
        _LOSSES,
        "delta + gamma * gae_lambda * (1.0 - ended) * carry",
        "delta + gae_lambda * (1.0 - ended) * carry",
        [_LOSS_TESTS],
        "GAE: the recursion discounts by lambda only, not gamma * lambda",
    ),
    _m(
        "loss-no-advantage-normalisation",
        _LOSSES,
        "adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)",
        "adv = advantages",
        [_LOSS_TESTS],
        "PPO loss: advantages not normalised per minibatch",
    ),
    _m(
        "loss-value-on-advantages",
        _LOSSES,
        "jnp.mean((value - targets) ** 2)",
        "jnp.mean((value - advantages) ** 2)",
        [_LOSS_TESTS],
        "PPO loss: value regressed on the advantages instead of the returns",
    ),
    _m(
        "loss-clip-maximum",
        _LOSSES,
        "jnp.minimum(ratio * adv,",
        "jnp.maximum(ratio * adv,",
        [_LOSS_TESTS],
        "PPO loss: optimistic (maximum) instead of pessimistic clipped surrogate",
    ),
    _m(
        "loss-clip-range-hard-coded",
        _LOSSES,
        "jnp.clip(ratio, 1 - hp.clip_eps, 1 + hp.clip_eps)",
        "jnp.clip(ratio, 0.8, 1.2)",
        [_LOSS_TESTS],
        "PPO loss: clip range hard-coded to 0.2, hp.clip_eps ignored",
    ),
    _m(
        "loss-entropy-sign",
        _LOSSES,
        "- hp.ent_coef * entropy",
        "+ hp.ent_coef * entropy",
        [_LOSS_TESTS],
        "PPO loss: entropy bonus with the wrong sign (entropy penalised)",
    ),
    _m(
        "loss-vf-coef-ignored",
        _LOSSES,
        "hp.vf_coef * value_loss",
        "value_loss",
        [_LOSS_TESTS],
        "PPO loss: value loss not weighted by vf_coef",
    ),
    _m(
        "gaussian-log-prob-std-not-inverted",
        _NETWORKS,
        "z = (x - mean) * jnp.exp(-log_std)",
        "z = (x - mean) * jnp.exp(log_std)",
        [_LOSS_TESTS, _NET_TESTS],
        "Gaussian policy: log-density standardises by multiplying with the std",
    ),
    _m(
        "normalize-by-variance",
        _NORMALIZATION,
        "(obs - self.mean) / jnp.sqrt(self.var + 1e-8)",
        "(obs - self.mean) / (self.var + 1e-8)",
        [_NORM_TESTS],
        "Observation normalisation divides by the variance instead of the std",
    ),
    # ----------------------------------------------------------------- trainer wiring
    _m(
        "trainer-bootstrap-from-reset-observation",
        _PPO,
        'truncated, info["final_observation"]',
        "truncated, obs",
        [_WIRING],
        "Trainer: truncation bootstraps from the post-reset observation, not final_observation",
    ),
    _m(
        "trainer-gae-lambda-cut-only-at-termination",
        _LOSSES,
        "traj.terminated, traj.done, gamma, gae_lambda",
        "traj.terminated, traj.terminated, gamma, gae_lambda",
        [_LOSS_TESTS, _WIRING],
        "Trainer: compute_gae given terminated where done belongs (lambda runs across truncation)",
    ),
    _m(
        "trainer-done-ignores-truncation",
        _PPO,
        "done = terminated | truncated",
        "done = terminated",
        [_WIRING],
        "Trainer: a truncated step does not end the episode (returns and GAE run on)",
    ),
    _m(
        "trainer-reward-scale-ignored",
        _PPO,
        "train_reward = reward * hp.reward_scale",
        "train_reward = reward",
        [_WIRING],
        "Trainer: the training reward is not scaled by reward_scale",
    ),
    _m(
        "trainer-statistics-from-normalised-obs",
        _PPO,
        "obs_stats = setup.update_statistics(obs_stats, raw_obs)",
        "obs_stats = setup.update_statistics(obs_stats, traj.obs)",
        [_WIRING],
        "Trainer: observation statistics updated with already-normalised observations",
    ),
    _m(
        "episode-tracker-drops-final-reward",
        _PPO,
        "last=jnp.where(done, running, self.last)",
        "last=jnp.where(done, self.running, self.last)",
        [_WIRING],
        "EpisodeTracker: a finished episode's return misses its final reward",
    ),
    _m(
        "episode-tracker-never-resets",
        _PPO,
        "running=jnp.where(done, 0.0, running)",
        "running=running",
        [_WIRING],
        "EpisodeTracker: the running return is not reset when an episode ends",
    ),
    # ----------------------------------------------------------------- evaluation
    _m(
        "evaluation-ci-90",
        _EVALUATION,
        "confidence_level=0.95",
        "confidence_level=0.90",
        [_EVAL_TESTS],
        "Evaluation: the bootstrap 'ci95' is a 90 % interval",
    ),
    _m(
        "evaluation-iqm-trims-10-percent",
        _EVALUATION,
        "np.asarray(values, dtype=np.float64), 0.25",
        "np.asarray(values, dtype=np.float64), 0.1",
        [_EVAL_TESTS],
        "Evaluation: the IQM trims 10 % from each end instead of 25 %",
    ),
    _m(
        "evaluation-std-population",
        _EVALUATION,
        "returns.std(ddof=1)",
        "returns.std()",
        [_EVAL_TESTS],
        "Evaluation: population instead of sample standard deviation",
    ),
    _m(
        "evaluation-seed-means-over-episodes",
        _EVALUATION,
        "seed_means = returns.mean(axis=1)",
        "seed_means = returns.mean(axis=0)",
        [_EVAL_TESTS],
        "Evaluation: per-seed means averaged over the seed axis (per-episode means)",
    ),
    # ----------------------------------------------------------------- rollout helper
    _m(
        "run-episodes-reward-after-done",
        _ROLLOUT,
        "total = total + jnp.where(alive, reward, 0.0)",
        "total = total + reward",
        _nodes(_ROLLOUT_TESTS, "test_returns_equal_a_manual_python_loop_defibrillation"),
        "run_episodes: rewards after the episode's end are added to its return",
    ),
    _m(
        "run-episodes-alive-ignores-truncation",
        _ROLLOUT,
        "length = length + alive.astype(jnp.int32)\n"
        "            alive = alive & ~(terminated | truncated)",
        "length = length + alive.astype(jnp.int32)\n            alive = alive & ~terminated",
        _nodes(
            _ROLLOUT_TESTS,
            "test_pacing_episodes_last_500_steps",
            "test_returns_equal_a_manual_python_loop_defibrillation",
            "test_time_limit_truncation_ends_the_episode_inside_a_longer_scan",
        ),
        "run_episodes: a truncated episode keeps counting into the next one",
    ),
    _m(
        "record-episode-reward-unmasked",
        _ROLLOUT,
        "reward=jnp.where(alive, reward, 0.0),",
        "reward=reward,",
        _nodes(
            _ROLLOUT_TESTS,
            "test_record_episodes_match_run_episodes_and_stop_at_the_episode_end"
            "[DefibrillationTiming-v0]",
        ),
        "record_episode: padding steps after the end keep their rewards",
    ),
    # ----------------------------------------------------------------- Gymnasium adapter
    _m(
        "adapter-clips-instead-of-rescaling",
        _ADAPTER,
        "return rescale_action(action, space.low, space.high)",
        "return jnp.clip(action, space.low, space.high)",
        _nodes(_ADAPTER_TESTS, "test_normalized_actions_map_onto_the_physical_bounds"),
        "Gymnasium adapter: a normalised action is clipped to the bounds, not rescaled",
    ),
    _m(
        "rescale-action-from-unit-interval",
        _BASE,
        "low + (action + 1.0) * 0.5 * (high - low)",
        "low + action * (high - low)",
        _nodes(_ADAPTER_TESTS, "test_normalized_actions_map_onto_the_physical_bounds"),
        "rescale_action maps [0, 1] instead of [-1, 1] onto the bounds",
    ),
    _m(
        "adapter-terminated-truncated-swapped",
        _ADAPTER,
        "terminated, truncated = bool(bools[0]), bool(bools[1])",
        "terminated, truncated = bool(bools[1]), bool(bools[0])",
        _nodes(_ADAPTER_TESTS, "test_time_limit_comes_from_the_jax_env_not_a_wrapper"),
        "Gymnasium adapter (single env): terminated and truncated swapped",
    ),
    _m(
        "vector-adapter-truncations-from-terminations",
        _ADAPTER,
        "truncations = bools[:, 1].copy()",
        "truncations = bools[:, 0].copy()",
        _nodes(_ADAPTER_TESTS, "test_vector_next_step_semantics"),
        "Gymnasium adapter (vector env): truncations report the terminations",
    ),
)


def mutant_ids() -> tuple[str, ...]:
    return tuple(m.id for m in MUTANTS)


def select(ids: Iterable[str] | None, mutants: Sequence[Mutant] = MUTANTS) -> tuple[Mutant, ...]:
    """The mutants with these ids, in list order (all for ``None``); ``KeyError`` on unknown."""
    if ids is None:
        return tuple(mutants)
    wanted = list(dict.fromkeys(ids))
    known = {m.id for m in mutants}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise KeyError(", ".join(unknown))
    return tuple(m for m in mutants if m.id in wanted)


# --------------------------------------------------------------------------- running


def snapshot(source: Path, destination: Path) -> Path:
    """Copy the repository ``source`` (less ``IGNORED``) to ``destination``."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return destination


def _environment(root: Path, cache_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if cache_dir is not None:
        env[XLA_CACHE_VARIABLE] = str(cache_dir)
    # A test that shells out to the CLI or a script must not see the caller's xdist worker.
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def check_imports_resolve(root: Path, packages: Sequence[str], cache_dir: Path | None) -> None:
    """Raise ``RuntimeError`` unless each of ``packages`` resolves to its copy under ``root``.

    Runs the interpreter with the environment and working directory the test
    runs get (an editable install of the working tree must not win).
    """
    code = (
        "import importlib.util, sys\n"
        "for name in sys.argv[1:]:\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    print(spec.origin if spec else '')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *packages],
        cwd=root,
        env=_environment(root, cache_dir),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name, origin in zip(packages, out, strict=False):
        resolved = Path(origin).resolve() if origin else None
        if resolved is None or not resolved.is_relative_to(root.resolve()):
            raise RuntimeError(
                f"in the mutant copy {root}, `import {name}` resolves to {origin or 'nothing'}, "
                "not to the copy: mutants would not be tested"
            )


def pytest_command(tests: Sequence[str]) -> list[str]:
    """The pytest invocation of a run: one process, stop at the first failure, no slow tests."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-m",
        "not slow",
        "-rfE",
        *tests,
    ]


def run_pytest(
    root: Path, tests: Sequence[str], timeout: float, cache_dir: Path | None
) -> tuple[int | None, str, float]:
    """Run ``tests`` in ``root``: ``(returncode or None on timeout, output, seconds)``."""
    start = time.perf_counter()
    process = subprocess.Popen(
        pytest_command(tests),
        cwd=root,
        env=_environment(root, cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        returncode = None
    return returncode, output or "", time.perf_counter() - start


#: pytest's ``-rfE`` summary lines: ``FAILED <node id> - <message>`` (ids may hold spaces).
_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_mutant(
    mutant: Mutant, pristine: Path, work: Path, timeout: float, cache_dir: Path | None
) -> Result:
    """Copy ``pristine`` to ``work``, plant ``mutant`` there, run its tests, classify."""

    def result(status: str, **fields: Any) -> Result:
        return Result(
            mutant.id,
            status,
            fields.pop("seconds", 0.0),
            mutant.description,
            mutant.path,
            mutant.tests,
            mutant.equivalent,
            **fields,
        )

    missing = tuple(f for f in mutant.test_files() if not (pristine / f).exists())
    tests = [t for t in mutant.tests if t.split("::", 1)[0] not in missing]
    if not tests:
        return result(MISSING, missing=missing)
    target = pristine / mutant.path
    try:
        mutated = mutant.apply(target.read_text())
    except (OSError, ValueError) as error:
        return result(STALE, output_tail=str(error), missing=missing)
    snapshot(pristine, work)
    try:
        (work / mutant.path).write_text(mutated)
        returncode, output, seconds = run_pytest(work, tests, timeout, cache_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if returncode is None:
        status = TIMEOUT
    elif returncode == 0:
        status = SURVIVED
    elif returncode == 1:
        status = KILLED
    else:
        status = ERROR
    return result(
        status,
        seconds=seconds,
        returncode=returncode,
        killed_by=tuple(_FAILED.findall(output)),
        missing=missing,
        output_tail="" if status == KILLED else _tail(output),
    )


class BaselineFailed(RuntimeError):
    """The unmutated tests do not pass: no mutant result would mean anything."""


def run(
    mutants: Sequence[Mutant] = MUTANTS,
    *,
    repo: Path = REPO_ROOT,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT_S,
    baseline: bool = True,
    packages: Sequence[str] = ("cardiosim_jax", "cardiosim_tools"),
    cache_dir: Path | None = None,
    report: Callable[[Result], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[Result], dict[str, Any]]:
    """Run ``mutants`` against a snapshot of ``repo``; results in list order and run facts.

    The baseline (the union of the mutants' existing tests on the unmutated
    snapshot) runs first and must pass (:class:`BaselineFailed` otherwise).
    ``report`` is called with each result as it finishes. ``packages`` must
    import from the copies (checked once). ``cache_dir`` is the tests' XLA
    cache (default: a fresh one for this run, shared by every mutant).
    """
    start = time.perf_counter()
    facts: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jobs": jobs,
        "timeout_s": timeout,
        "python": sys.version.split()[0],
    }
    with tempfile.TemporaryDirectory(prefix="cardiosim-mutation-") as tmp:
        tmp_path = Path(tmp)
        pristine = snapshot(repo, tmp_path / "pristine")
        if cache_dir is None:
            existing = os.environ.get(XLA_CACHE_VARIABLE)
            cache_dir = Path(existing) if existing else tmp_path / "xla-cache"
        cache_dir.mkdir(parents=True, exist_ok=True)

        tests = list(
            dict.fromkeys(
                t for m in mutants for t in m.tests if (pristine / t.split("::", 1)[0]).exists()
            )
        )
        if baseline and tests:
            base = tmp_path / "baseline"
            snapshot(pristine, base)
            check_imports_resolve(base, packages, cache_dir)
            log(f"baseline: {len(tests)} test targets on the unmutated copy ...")
            returncode, output, seconds = run_pytest(
                base, tests, max(3 * timeout, timeout), cache_dir
            )
            shutil.rmtree(base, ignore_errors=True)
            facts["baseline_seconds"] = round(seconds, 1)
            if returncode != 0:
                raise BaselineFailed(
                    f"the unmutated tests fail (exit code {returncode}); fix them before "
                    f"mutation testing:\n{_tail(output, 30)}"
                )
            log(f"baseline passed in {seconds:.0f} s")
        else:
            check = tmp_path / "check"
            snapshot(pristine, check)
            check_imports_resolve(check, packages, cache_dir)
            shutil.rmtree(check, ignore_errors=True)

        lock = threading.Lock()

        def one(index: int, mutant: Mutant) -> Result:
            outcome = run_mutant(
                mutant, pristine, tmp_path / f"mutant-{index:03d}", timeout, cache_dir
            )
            if report is not None:
                with lock:
                    report(outcome)
            return outcome

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, range(len(mutants)), mutants))
    facts["seconds"] = round(time.perf_counter() - start, 1)
    return results, facts


# --------------------------------------------------------------------------- reporting


def score(results: Sequence[Result]) -> dict[str, Any]:
    """Killed over non-equivalent mutants (missing and stale ones count as not killed)."""
    counted = [r for r in results if r.equivalent is None]
    killed = sum(r.killed for r in counted)
    by_status: dict[str, int] = {}
    for r in counted:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return {
        "killed": killed,
        "non_equivalent": len(counted),
        "equivalent": len(results) - len(counted),
        "score": killed / len(counted) if counted else None,
        "by_status": by_status,
    }


def score_line(summary: dict[str, Any]) -> str:
    if summary["score"] is None:
        return "score: no non-equivalent mutants"
    parts = ", ".join(f"{n} {status}" for status, n in sorted(summary["by_status"].items()))
    return (
        f"score: {summary['killed']} / {summary['non_equivalent']} non-equivalent mutants killed "
        f"({100 * summary['score']:.1f} %; {parts}; {summary['equivalent']} equivalent excluded)"
    )


def _status_label(result: Result) -> str:
    label = result.status
    if result.equivalent is not None:
        label += " (equivalent)"
    if result.missing and result.status != MISSING:
        label += " (some tests missing)"
    return label


def format_table(results: Sequence[Result]) -> str:
    """Plain-text table: id, status, seconds, description."""
    width = max([len(r.id) for r in results] + [2])
    status_width = max([len(_status_label(r)) for r in results] + [6])
    lines = [f"{'id':<{width}}  {'status':<{status_width}}  {'s':>6}  description"]
    for r in results:
        lines.append(
            f"{r.id:<{width}}  {_status_label(r):<{status_width}}  {r.seconds:6.1f}  "
            f"{r.description}"
        )
    return "\n".join(lines)


def to_json(results: Sequence[Result], facts: dict[str, Any]) -> dict[str, Any]:
    return {"run": facts, "summary": score(results), "mutants": [r.to_json() for r in results]}


def to_markdown(results: Sequence[Result], facts: dict[str, Any]) -> str:
    summary = score(results)
    lines = [
        "# Mutation testing results",
        "",
        "Written by `python -m cardiosim_tools.mutation` (see docs/mutation.md).",
        f"Run started {facts.get('started', '?')}, {facts.get('seconds', '?')} s in all "
        f"(baseline {facts.get('baseline_seconds', 'skipped')} s), "
        f"{facts.get('jobs', 1)} job(s), timeout {facts.get('timeout_s', '?')} s per mutant.",
    ]
    if facts.get("only"):
        lines.append(f"Partial run: `--only {' '.join(facts['only'])}`.")
    lines += [
        "",
        f"**{score_line(summary)}**",
        "",
        "| id | status | s | killed by / note | description |",
        "|---|---|---:|---|---|",
    ]
    for r in results:
        if r.killed_by:
            note = ", ".join(f"`{t}`" for t in r.killed_by)
        elif r.status == MISSING:
            note = "missing: " + ", ".join(f"`{t}`" for t in r.missing)
        elif r.status == TIMEOUT:
            note = "timed out"
        elif r.status == ERROR:
            note = f"exit code {r.returncode}"
        elif r.status == STALE:
            note = "original snippet not found once"
        else:
            note = ""
        if r.missing and r.status != MISSING:
            note = (note + "; " if note else "") + "not run: " + ", ".join(r.missing)
        lines.append(
            f"| `{r.id}` | {_status_label(r)} | {r.seconds:.1f} | {note} | {r.description} |"
        )
    equivalent = [r for r in results if r.equivalent is not None]
    if equivalent:
        lines += ["", "Equivalent mutants (not scored):", ""]
        lines += [f"- `{r.id}`: {r.equivalent}" for r in equivalent]
    return "\n".join(lines) + "\n"


def write_results(results: Sequence[Result], facts: dict[str, Any], output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output / "mutation.json", output / "mutation.md"
    json_path.write_text(json.dumps(to_json(results, facts), indent=2) + "\n")
    md_path.write_text(to_markdown(results, facts))
    return [md_path, json_path]


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cardiosim_tools.mutation",
        description=(
            "Plant each listed mutant in a temporary copy of the repository, run its fast "
            "tests, and report the mutation score (docs/mutation.md)."
        ),
    )
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=(
            "seconds per mutant before it counts as killed by timeout "
            f"(default {DEFAULT_TIMEOUT_S:g})"
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=(
            "directory for mutation.md and mutation.json (default: benchmarks/results for a "
            "full run; a run with --only writes nothing unless --output is given)"
        ),
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip running the unmutated tests first (only when you know they pass)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    try:
        mutants = select(args.only)
    except KeyError as error:
        parser.error(f"unknown mutant id(s) {error.args[0]}; accepted: {', '.join(mutant_ids())}")
    if args.list:
        for m in mutants:
            flag = " [equivalent]" if m.equivalent else ""
            print(f"{m.id}{flag}\n    {m.path}: {m.description}\n    tests: {' '.join(m.tests)}")
        return 0

    def report(result: Result) -> None:
        print(f"{_status_label(result):<14} {result.seconds:6.1f} s  {result.id}", flush=True)

    try:
        results, facts = run(
            mutants,
            jobs=args.jobs,
            timeout=args.timeout,
            baseline=not args.no_baseline,
            report=report,
            log=lambda line: print(line, flush=True),
        )
    except BaselineFailed as error:
        print(f"mutation: {error}", file=sys.stderr)
        return 1
    if args.only:
        facts["only"] = list(args.only)
    print()
    print(format_table(results))
    print()
    print(score_line(score(results)))
    output = args.output if args.output is not None else (None if args.only else DEFAULT_OUTPUT)
    if output is not None:
        for path in write_results(results, facts, output):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
