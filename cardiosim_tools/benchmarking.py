"""Benchmark suite: environment steps/s against the reference and the RK4 floor, PPO, memory.

Everything is measured in one process on one machine (``cardiosim-jax bench``,
or ``python benchmarks/run.py``); :func:`run_benchmarks` returns a JSON-ready
dict (schema in ``docs/benchmarks.md``) and :func:`to_markdown` renders it.

* **Environment steps/s**: ``B`` patients, uniform random actions, gymnax
  ``env.step`` with its auto-reset, in one jitted ``lax.scan`` over ``T`` steps
  of the vmapped step. ``T`` is chosen per batch so one call takes about
  ``target_seconds``; compilation is timed separately (ahead-of-time
  ``lower().compile()``), then the best of ``repeats`` calls after a warm-up
  call, each ended with ``block_until_ready``.
  From ``OPTIMISTIC_MIN_BATCH`` patients the same rollout is also timed with
  the optimistic reset (:func:`cardiosim_jax.envs.vector.make_batched_step`),
  and each row names the faster reset on this backend (:func:`reset_winner`).
* **Skipped batches**: before a batch runs, the compiled rollout's footprint
  is extrapolated from the batches measured so far (the line of
  :func:`extrapolate_max_batch`), then read exactly from the compiled (not
  yet run) executable; a batch over ``memory_budget_bytes`` is skipped, and
  so is one whose single scan step is predicted above ``max_step_seconds``
  (:func:`plan_batch`). Skips are recorded with their reason.
* **Reference**: ``cardiosim==0.1.0``, one NumPy environment stepped in a Python
  loop with random actions, reset on ``terminated or truncated`` (v0 only:
  the reference has no v1 environments).
* **Floor**: the same per-step integrator work with nothing else: the env's cell
  model (its own ``vector_field``) advanced by ``rk4_step`` as many substeps
  per env step as the env does, vmapped over the same batch inside the same
  kind of ``lax.scan``; no RNG, no env logic, no resets. Only for the envs
  whose step integrates a cell model (``FLOOR_SPECS``: the three v0 envs and
  AntiarrhythmicDosing-v1); ``NO_FLOOR`` says why the others have none.
* **PPO**: ``make_train`` of the ``tuned`` preset for a few updates, one seed and
  ``N`` vmapped seeds; env steps/s including the updates, compilation excluded.
* **Memory**: bytes of one patient's state and observation; XLA's
  ``memory_analysis()`` of the compiled rollout at two batch sizes (by default
  the largest batch and 4x it), extrapolated linearly to the largest batch
  fitting a memory budget; and the peak-RSS increase of a fresh subprocess
  running the rollout at the first of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import cardiosim_jax
from cardiosim_jax.envs.antiarrhythmic_dosing import v0 as antiarrhythmic_dosing
from cardiosim_jax.envs.antiarrhythmic_dosing import v1 as antiarrhythmic_dosing_v1
from cardiosim_jax.envs.defibrillation_timing import v0 as defibrillation_timing
from cardiosim_jax.envs.pacing_control import v0 as pacing_control
from cardiosim_jax.envs.vector import make_batched_step
from cardiosim_jax.experiments import Log, compiled_memory, log_to_stderr
from cardiosim_jax.models import aliev_panfilov, fitzhugh_nagumo
from cardiosim_jax.models import drug_effect as de
from cardiosim_jax.models.integrators import rk4_step
from cardiosim_tools import reference

#: Version of the JSON layout written by :func:`run_benchmarks` (2: v1 envs, skipped
#: batches, reset winners; reference, floor and ppo may be null).
SCHEMA_VERSION = 2
#: Every environment is benchmarked on this tier (per-step cost does not depend on the tier).
DIFFICULTY = "medium"
DEFAULT_BATCHES = (1, 256, 4096, 65536, 1_048_576)
QUICK_BATCHES = (1, 64)
GIB = 2**30
#: Default memory budget for the rollouts and the largest-batch extrapolation (bytes): the
#: 24 GiB dev machine.
DEFAULT_MEMORY_BUDGET = 24 * GIB
#: First guess of an env's steps/s at one patient (only sets the first T; the warm-up call
#: corrects it). The v1 envs step far slower than v0 (dosing-v1 integrates 1,440 RK4 steps).
INITIAL_RATE_GUESSES: dict[str, float] = {
    "PacingControl-v1": 2e4,
    "AntiarrhythmicDosing-v1": 2e3,
    "DefibrillationTiming-v1": 2e4,
}

# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What to run and how long (seconds are wall-clock targets, not limits)."""

    #: Every registered environment (v0 and v1).
    envs: tuple[str, ...] = tuple(cardiosim_jax.registered_envs)
    batches: tuple[int, ...] = DEFAULT_BATCHES
    #: Timed calls per measurement (the best is reported), after one warm-up call.
    repeats: int = 3
    #: T is chosen so one timed call takes about this long (s) ...
    target_seconds: float = 0.6
    #: ... and re-chosen (recompiling) when the warm-up call falls outside this window (s).
    min_seconds: float = 0.3
    max_seconds: float = 2.0
    #: Fixed T for every measurement instead of calibrating (the quick smoke run).
    fixed_steps: int | None = None
    #: First guess of the env's steps/s at the first batch size (only sets the first T;
    #: None: ``INITIAL_RATE_GUESSES`` for the env, else 1e5).
    initial_rate_guess: float | None = None
    #: Skip a batch whose one scan step (all patients) is predicted to take longer (s);
    #: None never skips for time. Predicted from the line through two measured batches.
    max_step_seconds: float | None = 5.0
    #: Reference timing: this many seconds in total, split into ``repeats`` blocks.
    reference_seconds: float = 1.5
    #: Measure PPO training throughput (False: ``ppo`` is null in the results).
    ppo: bool = True
    ppo_updates: int = 8
    ppo_seeds: int = 8
    ppo_repeats: int = 2
    #: Static overrides of the tuned preset (the quick run shrinks the networks' batch).
    ppo_overrides: tuple[tuple[str, Any], ...] = ()
    #: Batches whose compiled memory is extrapolated (None: per env, its largest measured
    #: batch and 4x it).
    memory_batches: tuple[int, int] | None = None
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    #: Measure the peak RSS of a fresh subprocess running the rollout at ``memory_batches[0]``.
    rss: bool = True
    quick: bool = False

    @classmethod
    def quick_run(cls, **changes: Any) -> BenchSettings:
        """Small batches, fixed short scans, one repeat, a tiny PPO: a smoke run.

        On the three v0 envs unless ``envs`` is given (the v1 envs compile 5-10x
        longer). Memory is read from the two extreme batches run, already compiled.
        """
        settings = cls(
            envs=tuple(cardiosim_jax.registration.v0_envs),
            batches=QUICK_BATCHES,
            repeats=1,
            fixed_steps=16,
            reference_seconds=0.1,
            ppo_updates=1,
            ppo_seeds=2,
            ppo_repeats=1,
            ppo_overrides=(
                ("num_envs", 4),
                ("num_steps", 16),
                ("minibatch_size", 32),
                ("update_epochs", 1),
                # Linear policy and value: the smallest PPO program to compile.
                ("hidden_sizes", ()),
            ),
            quick=True,
        )
        return dataclasses.replace(settings, **changes)

    def resolved_memory_batches(self, measured: Sequence[int] = ()) -> tuple[int, int]:
        """The two batches of the memory line, from the batches ``measured`` (run) for an env.

        ``memory_batches`` if set; in a quick run the smallest and largest batch
        run (compiled already: no extra compilation); else the largest batch run
        (or the smallest asked for, if none ran) and 4x it.
        """
        if self.memory_batches is not None:
            return self.memory_batches
        distinct = sorted(set(measured))
        if self.quick and len(distinct) >= 2:
            return distinct[0], distinct[-1]
        largest = distinct[-1] if distinct else min(self.batches)
        return largest, 4 * largest

    def rate_guess(self, env_id: str) -> float:
        """First guess of ``env_id``'s steps/s at the first batch (steps/s)."""
        if self.initial_rate_guess is not None:
            return self.initial_rate_guess
        return INITIAL_RATE_GUESSES.get(env_id, 1e5)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, software versions and JAX devices of this process."""
    cpu_model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and cpu_model is None:
                    cpu_model = value.strip()
                elif name.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    cpu_model = cpu_model or platform.processor() or platform.machine()
    memory_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    device = jax.devices()[0]

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    commit, dirty = _git_state()
    return {
        "cpu_model": cpu_model,
        # SIMD extensions XLA's CPU backend can use; they explain most CPU-to-CPU differences.
        "cpu_simd": sorted(flags & {"sse4_2", "avx", "avx2", "fma", "avx512f"}),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_total_bytes": memory_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "cardiosim_jax": cardiosim_jax.__version__,
        "cardiosim_reference": version("cardiosim"),
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "load_average_start": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # Which code was measured (None outside a git checkout).
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _git_state() -> tuple[str | None, bool | None]:
    """(short commit, uncommitted changes?) of the checkout holding this package, if any."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cardiosim_jax.__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


# --------------------------------------------------------------------------- timing


def _block(value: Any) -> Any:
    return jax.block_until_ready(value)


def _compile(fn: Callable, args: Sequence[Any]) -> tuple[Any, float]:
    """Ahead-of-time compile ``fn`` for ``args`` (arrays or ShapeDtypeStructs); (exe, seconds)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _call_seconds(compiled: Any, args: Sequence[Any]) -> float:
    start = time.perf_counter()
    _block(compiled(*args))
    return time.perf_counter() - start


def _scan_measurement(
    build: Callable[[int], Callable],
    args: Sequence[Any],
    batch: int,
    seconds_per_step_guess: float,
    settings: BenchSettings,
    label: str,
    log: Log,
    first: tuple[int, Any, float] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Time ``build(T)(*args)``, a scan of T steps over ``batch`` patients; (result, compiled).

    T starts from ``seconds_per_step_guess`` (seconds per scan step, all
    patients) and is re-chosen, recompiling, until the warm-up call lands in
    ``[min_seconds, max_seconds]`` (three tries). ``first``: ``(T, compiled,
    compile seconds)`` already compiled for the first try.
    """
    steps = _initial_steps(seconds_per_step_guess, settings) if first is None else first[0]
    for attempt in range(3):
        if attempt == 0 and first is not None:
            _, compiled, compile_seconds = first
        else:
            compiled, compile_seconds = _compile(build(steps), args)
        warm = _call_seconds(compiled, args)
        if (
            settings.fixed_steps is not None
            or settings.min_seconds <= warm <= settings.max_seconds
            or attempt == 2
        ):
            break
        new_steps = _steps_for(steps * settings.target_seconds / warm)
        if new_steps == steps:
            break
        log(f"  {label}: T={steps} took {warm:.3f}s; retrying with T={new_steps}")
        steps = new_steps
    seconds = [_call_seconds(compiled, args) for _ in range(settings.repeats)]
    best = min(seconds)
    result = {
        "batch": batch,
        "steps": steps,
        "compile_seconds": compile_seconds,
        "warmup_seconds": warm,
        "seconds": best,
        "all_seconds": seconds,
        "steps_per_second": batch * steps / best,
    }
    log(
        f"  {label}: B={batch:,} T={steps:,} compile {compile_seconds:.2f}s, "
        f"best {best:.3f}s -> {result['steps_per_second']:,.0f} steps/s"
    )
    return result, compiled


def _initial_steps(seconds_per_step_guess: float, settings: BenchSettings) -> int:
    """First T of a measurement: ``fixed_steps``, else about ``target_seconds`` of the guess."""
    if settings.fixed_steps is not None:
        return settings.fixed_steps
    return _steps_for(settings.target_seconds / seconds_per_step_guess)


def _steps_for(estimate: float) -> int:
    """Scan length from a (float) estimate: at least 1, at most ten million."""
    if not math.isfinite(estimate):
        return 1
    return int(min(max(round(estimate), 1), 10_000_000))


def _predict_seconds_per_step(points: list[tuple[int, float]], batch: int) -> float:
    """Seconds per scan step at ``batch`` from earlier (batch, seconds per step) measurements.

    Only sets T, so it need not be accurate: a line ``a + c B`` through the last
    two points (a per-call overhead plus a per-patient cost); from one point,
    the square root of the batch ratio (between pure overhead and pure
    per-patient cost, which the first jump from B = 1 sits between).
    """
    if len(points) >= 2:
        (b1, t1), (b2, t2) = points[-2:]
        per_patient = (t2 - t1) / (b2 - b1)
        if per_patient > 0:
            return max(t1 + per_patient * (batch - b1), t2)
    b_last, t_last = points[-1]
    return t_last * math.sqrt(batch / b_last)


# --------------------------------------------------------------------------- environment rollouts


#: Smallest batch at which the optimistic reset is also timed (it reserves B/16 reset slots).
OPTIMISTIC_MIN_BATCH = 64


def env_rollout(env: Any, batch: int, steps: int, optimistic: bool = False) -> Callable:
    """``rollout(key, obs, states, params) -> (obs, states, reward_sum)``: T random-action steps.

    ``batch`` patients step with uniform random actions through gymnax
    ``env.step`` (auto-reset included), or with ``optimistic`` through
    :func:`cardiosim_jax.envs.vector.make_batched_step` (the same outputs,
    resets computed only for the few patients whose episode ended). The
    observation is carried so its computation is part of the work, as it
    would be for a policy.
    """

    def rollout(key: jax.Array, obs: jax.Array, states: Any, params: Any) -> Any:
        space = env.action_space(params)
        if optimistic:
            vstep = make_batched_step(env, batch)
        else:
            vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def body(carry: Any, step_key: jax.Array) -> Any:
            obs, states, total = carry
            action_key, env_key = jax.random.split(step_key)
            actions = jax.random.uniform(
                action_key, (batch, *space.shape), minval=space.low, maxval=space.high
            )
            obs, states, rewards, _, _, _ = vstep(
                jax.random.split(env_key, batch), states, actions, params
            )
            return (obs, states, total + jnp.sum(rewards)), None

        init = (obs, states, jnp.zeros((), jnp.float32))
        return jax.lax.scan(body, init, jax.random.split(key, steps))[0]

    return rollout


def env_rollout_args(env: Any, params: Any, batch: int, abstract: bool = False) -> tuple:
    """``(key, obs, states, params)`` for :func:`env_rollout`; shapes only when ``abstract``."""

    def make_args(key: jax.Array) -> tuple:
        obs, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, batch), params)
        return jax.random.PRNGKey(1), obs, states, params

    if abstract:
        return jax.eval_shape(make_args, jax.random.PRNGKey(0))
    return jax.jit(make_args)(jax.random.PRNGKey(0))


# --------------------------------------------------------------------------- compute floor


@dataclasses.dataclass(frozen=True)
class FloorSpec:
    """The integrator work of one env step: ``substeps`` RK4 steps of ``dt`` of a 2-state cell."""

    model: str  # module name in cardiosim_jax.models
    substeps: int
    dt: float
    #: Constant stimulus current (dimensionless); a typical value the env applies.
    stimulus: float
    #: The env's own ``lax.scan`` unroll of its substep loop (its ``SUBSTEP_UNROLL``).
    env_unroll: int | bool = 1
    #: The cell's parameters from the env's params (None: ``params.cell``).
    cell: Callable[[Any], Any] | None = None
    #: How the env's substeps map onto this kernel, where it is not one cell's loop.
    note: str = ""

    def cell_params(self, env_params: Any) -> Any:
        """The cell model's parameters the floor integrates with, from the env's params."""
        return env_params.cell if self.cell is None else self.cell(env_params)

    @property
    def module(self) -> Any:
        return {"fitzhugh_nagumo": fitzhugh_nagumo, "aliev_panfilov": aliev_panfilov}[self.model]

    def unrolls(self) -> tuple[int, ...]:
        """Loop forms timed for the floor, the fastest being reported.

        The rolled loop (1) and the env's own unroll: the floor must not lose to
        the env merely by being compiled in a slower loop form. (Full unrolling
        is not a safe default: on CPU it makes Aliev-Panfilov several times
        slower and its compile time explode, as XLA recomputes the fused RK4
        stages.)
        """
        unroll = self.substeps if self.env_unroll is True else max(1, int(self.env_unroll))
        return tuple(sorted({1, min(unroll, self.substeps)}))


#: AntiarrhythmicDosing-v1's RK4 steps of FitzHugh-Nagumo per env step (one 12 h decision):
#: every hour one monitoring window of WINDOW_SUBSTEPS focus steps and half as many myocyte
#: steps (``drug_effect.simulate_window``); 12 x (80 + 40) = 1,440.
DOSING_V1_RK4_STEPS = antiarrhythmic_dosing_v1.DOSING_INTERVAL_H * (
    de.WINDOW_SUBSTEPS + de.WINDOW_SUBSTEPS // de.FOCUS_SUBSTEPS_PER_MYOCYTE
)

#: Pacing steps its FHN cell once per 1 ms conduction substep (``fhn.step``, dt = fhn.DT);
#: dosing runs ``fhn.integrate`` over SUBSTEPS; defibrillation ``ap.integrate`` over SUBSTEPS.
#: Dosing-v1 integrates two FHN cells (ectopic focus and myocyte) hour by hour: the floor
#: runs the same number of RK4 steps on one FHN cell (the focus, at its dt and drive).
FLOOR_SPECS: dict[str, FloorSpec] = {
    "PacingControl-v0": FloorSpec(
        "fitzhugh_nagumo",
        pacing_control.SUBSTEPS,
        fitzhugh_nagumo.DT,
        0.0,
        pacing_control.SUBSTEP_UNROLL,
    ),
    "AntiarrhythmicDosing-v0": FloorSpec(
        "fitzhugh_nagumo",
        antiarrhythmic_dosing.SUBSTEPS,
        fitzhugh_nagumo.DT,
        0.3,
        antiarrhythmic_dosing.SUBSTEP_UNROLL,
    ),
    "DefibrillationTiming-v0": FloorSpec(
        "aliev_panfilov",
        defibrillation_timing.SUBSTEPS,
        aliev_panfilov.DT,
        0.075,
        defibrillation_timing.SUBSTEP_UNROLL,
    ),
    "AntiarrhythmicDosing-v1": FloorSpec(
        "fitzhugh_nagumo",
        DOSING_V1_RK4_STEPS,
        de.FOCUS_DT,
        # The focus's drive at neutral sympathetic tone (above its Hopf current: it fires).
        float(de.DrugEffectParams().focus_drive),
        de.SUBSTEP_UNROLL,
        cell=lambda params: de.focus_cell(jnp.float32(0.0), params.pd),
        note=(
            f"{antiarrhythmic_dosing_v1.DOSING_INTERVAL_H} h x ({de.WINDOW_SUBSTEPS} focus + "
            f"{de.WINDOW_SUBSTEPS // de.FOCUS_SUBSTEPS_PER_MYOCYTE} myocyte) substeps"
        ),
    ),
}

#: Why an environment has no compute floor: its step integrates no cell model.
NO_FLOOR: dict[str, str] = {
    "PacingControl-v1": "event-driven beat timing (models.pacemaker): no ODE is integrated",
    "DefibrillationTiming-v1": (
        "the Aliev-Panfilov ring runs once per process into a feature table "
        "(models.tissue.feature_library); a step only reads it"
    ),
}


def floor_step(env_id: str, unroll: int = 1) -> Callable[[Any, Any, jax.Array], Any]:
    """``step(cell_state, cell_params, stimulus) -> cell_state``: one env step of bare RK4.

    ``substeps`` calls of :func:`rk4_step` on the model's own ``vector_field``
    in a ``lax.scan`` (the loop the environments use; ``unroll`` substeps per
    iteration), without the noise, clamping, RNG or bookkeeping around it.
    """
    spec = FLOOR_SPECS[env_id]
    vector_field = spec.module.vector_field

    def step(state: Any, cell_params: Any, stimulus: jax.Array) -> Any:
        def substep(y: Any, _: None) -> tuple[Any, None]:
            return rk4_step(vector_field, jnp.zeros(()), y, spec.dt, (cell_params, stimulus)), None

        return jax.lax.scan(substep, state, None, length=spec.substeps, unroll=unroll)[0]

    return step


def floor_initial_state(env_id: str, batch: int) -> Any:
    """Deterministic spread of ``batch`` physiological cell states (no RNG in the floor)."""
    spread = jnp.linspace(0.0, 1.0, batch, dtype=jnp.float32)
    if FLOOR_SPECS[env_id].model == "fitzhugh_nagumo":
        v0, w0 = fitzhugh_nagumo.RESTING_STATE
        return fitzhugh_nagumo.FitzHughNagumoState(v=v0 + 0.5 * spread, w=w0 + 0.2 * spread)
    return aliev_panfilov.AlievPanfilovState(u=0.3 + 0.6 * spread, v=5.0 * spread)


def floor_rollout(env_id: str, steps: int, unroll: int = 1) -> Callable:
    """``rollout(cell_states, cell_params, stimulus) -> cell_states``: T env steps of the floor."""
    vstep = jax.vmap(floor_step(env_id, unroll), in_axes=(0, None, None))

    def rollout(states: Any, cell_params: Any, stimulus: jax.Array) -> Any:
        def body(states: Any, _: None) -> tuple[Any, None]:
            return vstep(states, cell_params, stimulus), None

        return jax.lax.scan(body, states, None, length=steps)[0]

    return rollout


def floor_args(env_id: str, batch: int) -> tuple:
    """``(cell_states, cell_params, stimulus)`` with the env's medium-tier cell parameters.

    ``KeyError`` for an env without a floor (see ``NO_FLOOR``).
    """
    _, params = cardiosim_jax.make(env_id, DIFFICULTY)
    spec = FLOOR_SPECS[env_id]
    return (
        floor_initial_state(env_id, batch),
        spec.cell_params(params),
        jnp.float32(spec.stimulus),
    )


# --------------------------------------------------------------------------- reference


def reference_throughput(
    env_id: str, difficulty: str, seconds: float, blocks: int, seed: int = 0
) -> dict[str, Any] | None:
    """Steps/s of one cardiosim 0.1.0 env in a Python loop.

    None if the reference is not installed or has no such environment (v1).
    """
    if env_id not in reference.REFERENCE_ENVS:
        return None
    try:
        env = reference.reference_env(env_id, difficulty)
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    rates, total_steps = [], 0
    for _ in range(max(1, blocks)):
        steps, start = 0, time.perf_counter()
        while True:
            for _ in range(16):  # check the clock every 16 steps
                _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
                if terminated or truncated:
                    env.reset()
            steps += 16
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / max(1, blocks):
                break
        rates.append(steps / elapsed)
        total_steps += steps
    return {
        "package": f"cardiosim {importlib.metadata.version('cardiosim')}",
        "steps": total_steps,
        "steps_per_second": max(rates),
        "all_steps_per_second": rates,
    }


# --------------------------------------------------------------------------- memory


def tree_nbytes(tree: Any) -> int:
    """Sum of the leaves' sizes (bytes)."""
    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(tree)))


def patient_bytes(env_id: str, difficulty: str = DIFFICULTY) -> dict[str, Any]:
    """Bytes of one patient's ``EnvState`` and observation, from a real ``reset``."""
    env, params = cardiosim_jax.make(env_id, difficulty)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    leaves = {
        jax.tree_util.keystr(path).lstrip("."): int(np.asarray(leaf).nbytes)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }
    return {
        "state_bytes": tree_nbytes(state),
        "observation_bytes": tree_nbytes(obs),
        "state_leaves": leaves,
    }


def extrapolate_max_batch(
    batches: Sequence[int], total_bytes: Sequence[int], budget_bytes: int
) -> dict[str, Any]:
    """Largest batch whose compiled footprint fits ``budget_bytes``, linear in the batch.

    ``bytes(B) = fixed + per_patient * B`` through the two measurements;
    ``max_batch = floor((budget - fixed) / per_patient)``.
    """
    (b1, b2), (m1, m2) = batches, total_bytes
    per_patient = (m2 - m1) / (b2 - b1)
    fixed = m1 - per_patient * b1
    max_batch = int((budget_bytes - fixed) // per_patient) if per_patient > 0 else None
    return {
        "batches": [int(b1), int(b2)],
        "total_bytes": [int(m1), int(m2)],
        "bytes_per_patient": per_patient,
        "fixed_bytes": fixed,
        "budget_bytes": int(budget_bytes),
        "max_batch": max_batch,
        "formula": "max_batch = floor((budget_bytes - fixed_bytes) / bytes_per_patient), "
        "bytes_per_patient = (M(B2) - M(B1)) / (B2 - B1), fixed_bytes = M(B1) - "
        "bytes_per_patient * B1, M = argument + output + temp - alias bytes of "
        "the compiled rollout",
    }


def _maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _peak_rss_bytes() -> int:
    """This process's own peak RSS (bytes): ``VmHWM`` on Linux, else ``ru_maxrss``.

    ``ru_maxrss`` of a child is floored at its parent's RSS: on ``exec`` Linux
    folds the old (parent's, under ``vfork``) address space's peak into it, so
    a child of a 1 GB benchmark process reports at least 1 GB. ``VmHWM`` is
    the peak of the child's own address space, and ``clear_refs`` can reset it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss_bytes()


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_probe(env_id: str, difficulty: str, batch: int, steps: int) -> dict[str, Any]:
    """Peak-RSS increase of compiling and running one ``batch``-patient rollout (bytes).

    Meant to run in a fresh process (:func:`measure_rss` does). The peak RSS is
    reset to the current RSS (Linux ``/proc/self/clear_refs``) after importing
    JAX and building the env (the baseline), and again after compiling and
    allocating the initial states, because compilation's own peak (LLVM)
    usually exceeds the rollout's: ``execution_delta_bytes`` is the run's own
    increase, ``process_delta_bytes`` the whole increase over the baseline.
    Where the reset is unsupported (``peak_reset`` False) both are lower bounds.
    ``ru_maxrss_bytes`` is ``getrusage``'s figure at the end, for reference
    only (see :func:`_peak_rss_bytes`).
    """
    env, params = cardiosim_jax.make(env_id, difficulty)
    # Importing leaves a transient peak above the steady RSS: start from the current RSS.
    reset = _reset_peak_rss()
    baseline = _peak_rss_bytes()
    args = env_rollout_args(env, params, batch)
    compiled, _ = _compile(env_rollout(env, batch, steps), args)
    after_compile = _peak_rss_bytes()
    reset = _reset_peak_rss() and reset
    before_run = _peak_rss_bytes()
    _block(compiled(*args))
    after_run = _peak_rss_bytes()
    return {
        "batch": batch,
        "steps": steps,
        "baseline_bytes": baseline,
        "after_compile_bytes": after_compile,
        "before_run_bytes": before_run,
        "after_run_bytes": after_run,
        "peak_reset": reset,
        "process_delta_bytes": max(after_compile, after_run) - baseline,
        "execution_delta_bytes": after_run - before_run,
        "ru_maxrss_bytes": _maxrss_bytes(),
    }


def measure_rss(
    env_id: str, difficulty: str, batch: int, steps: int, timeout: float = 600.0
) -> dict[str, Any]:
    """:func:`rss_probe` in a fresh Python subprocess, so the memory is attributable to it."""
    code = (
        "import json, sys; from cardiosim_tools import benchmarking as b; "
        "print(json.dumps(b.rss_probe(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
        "int(sys.argv[4]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, env_id, difficulty, str(batch), str(steps)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_batch(
    batch: int,
    memory_points: Sequence[tuple[int, int]],
    time_points: Sequence[tuple[int, float]],
    budget_bytes: int,
    max_step_seconds: float | None,
) -> dict[str, Any] | None:
    """Why ``batch`` patients should not be run, as a JSON-ready dict; None to run it.

    ``memory_points``: ``(batch, total bytes)`` of the rollouts compiled so far;
    with two or more, the line through the two largest
    (:func:`extrapolate_max_batch`) predicts the footprint at ``batch``
    (bytes), skipped above ``budget_bytes``. ``time_points``: ``(batch,
    seconds per scan step)`` measured so far; with two or more, the line
    through the two largest predicts one step at ``batch`` (s), skipped above
    ``max_step_seconds`` (a call of even one step would outlast the timing
    window). With fewer points nothing is predicted (the caller still checks the
    compiled footprint exactly).
    """
    if len(memory_points) >= 2:
        (b1, m1), (b2, m2) = sorted(memory_points)[-2:]
        line = extrapolate_max_batch((b1, b2), (m1, m2), budget_bytes)
        estimate = line["fixed_bytes"] + line["bytes_per_patient"] * batch
        if estimate > budget_bytes:
            return {
                "batch": batch,
                "reason": "memory",
                "estimated_bytes": int(estimate),
                "budget_bytes": int(budget_bytes),
                "method": f"extrapolated from B = {b1:,} and {b2:,}",
                "message": (
                    f"extrapolated XLA footprint {estimate / GIB:,.2f} GiB > budget "
                    f"{budget_bytes / GIB:g} GiB (line through B = {b1:,} and {b2:,})"
                ),
            }
    if max_step_seconds is not None and len(time_points) >= 2:
        (b1, t1), (b2, t2) = sorted(time_points)[-2:]
        estimate = t2 + max((t2 - t1) / (b2 - b1), 0.0) * (batch - b2)
        if estimate > max_step_seconds:
            return {
                "batch": batch,
                "reason": "time",
                "estimated_step_seconds": estimate,
                "max_step_seconds": max_step_seconds,
                "method": f"extrapolated from B = {b1:,} and {b2:,}",
                "message": (
                    f"one scan step predicted to take {estimate:,.1f} s > {max_step_seconds:g} s "
                    f"(line through B = {b1:,} and {b2:,})"
                ),
            }
    return None


def _compiled_over_budget(
    batch: int, memory: dict[str, int] | None, budget_bytes: int
) -> dict | None:
    """The skip record of a compiled rollout whose exact footprint exceeds the budget
    (None where it fits, or where the backend does not report its footprint)."""
    if memory is None or memory["total_bytes"] <= budget_bytes:
        return None
    return {
        "batch": batch,
        "reason": "memory",
        "estimated_bytes": memory["total_bytes"],
        "budget_bytes": int(budget_bytes),
        "method": "compiled (memory_analysis of this batch's executable, not run)",
        "message": (
            f"XLA footprint of the compiled rollout {memory['total_bytes'] / GIB:,.2f} GiB > "
            f"budget {budget_bytes / GIB:g} GiB"
        ),
    }


# --------------------------------------------------------------------------- reset strategy


def reset_winner(auto_steps_per_second: float, optimistic_steps_per_second: float) -> str:
    """The faster reset: ``"optimistic"`` (``make_batched_step``) or ``"auto"`` (gymnax).

    Both are rates (steps/s) of the same rollout; a tie goes to ``"auto"``, the
    default (it needs nothing extra, and stays right under an outer ``vmap``).
    """
    return "optimistic" if optimistic_steps_per_second > auto_steps_per_second else "auto"


def reset_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Which reset won at each batch where both were timed, the tally and the choice.

    ``choice`` is the reset that won more batches (a tie: ``"auto"``), or None
    where the optimistic reset was never timed.
    """
    winners = {str(row["batch"]): row["reset_winner"] for row in rows if row.get("reset_winner")}
    optimistic = sum(w == "optimistic" for w in winners.values())
    auto = len(winners) - optimistic
    return {
        "winner_by_batch": winners,
        "optimistic_wins": optimistic,
        "auto_wins": auto,
        "choice": None if not winners else "optimistic" if optimistic > auto else "auto",
    }


# --------------------------------------------------------------------------- PPO


def ppo_throughput(
    env_id: str,
    updates: int,
    seeds: int,
    repeats: int,
    overrides: Sequence[tuple[str, Any]] = (),
    difficulty: str = DIFFICULTY,
    log: Log = log_to_stderr,
) -> dict[str, Any]:
    """Env steps/s of ``make_train`` (tuned preset, ``updates`` updates), 1 seed and ``seeds``.

    Steps/s count environment steps (``seeds x updates x num_envs x num_steps``)
    over the whole call, minibatch updates included; compilation is excluded
    (ahead-of-time compile, then the best of ``repeats`` calls).
    """
    from cardiosim_jax.training import ppo

    config = ppo.preset("tuned", env_id, difficulty, **dict(overrides))
    config = config.replace_static(total_timesteps=config.batch_size * updates)
    train = ppo.make_train(config)
    result: dict[str, Any] = {
        "preset": "tuned",
        "difficulty": config.difficulty,
        "updates": config.num_updates,
        "num_envs": config.num_envs,
        "num_steps": config.num_steps,
        "update_epochs": config.update_epochs,
        "minibatch_size": config.minibatch_size,
        "timesteps_per_seed": config.num_updates * config.batch_size,
    }
    key = jax.random.PRNGKey(0)
    for name, n, fn, args in (
        ("single", 1, train, (key,)),
        ("vmapped", seeds, jax.vmap(train), (jax.random.split(key, seeds),)),
    ):
        compiled, compile_seconds = _compile(fn, args)
        seconds = [_call_seconds(compiled, args) for _ in range(max(1, repeats))]
        best = min(seconds)
        steps = n * result["timesteps_per_seed"]
        result[name] = {
            "seeds": n,
            "compile_seconds": compile_seconds,
            "seconds": best,
            "all_seconds": seconds,
            "steps_per_second": steps / best,
            "memory": compiled_memory(compiled),
        }
        log(
            f"  PPO {name} ({n} seed(s)): compile {compile_seconds:.1f}s, best {best:.2f}s "
            f"-> {steps / best:,.0f} env steps/s"
        )
    return result


# --------------------------------------------------------------------------- driver


def benchmark_env(env_id: str, settings: BenchSettings, log: Log = log_to_stderr) -> dict[str, Any]:
    """Every measurement for one environment (see the module docstring)."""
    env, params = cardiosim_jax.make(env_id, DIFFICULTY)
    spec = FLOOR_SPECS.get(env_id)
    out: dict[str, Any] = {
        "difficulty": DIFFICULTY,
        # Episode length (steps): a timed call of fewer steps, from fresh resets, ends no
        # episode (unless one terminates early), so the optimistic reset computes none.
        "episode_steps": int(params.max_steps_in_episode),
        "floor": None,
        "floor_note": NO_FLOOR.get(env_id, "no floor kernel for this environment"),
    }
    if spec is not None:
        out["floor"] = {
            "model": spec.model,
            "substeps": spec.substeps,
            "dt": spec.dt,
            "stimulus": spec.stimulus,
            "unrolls": list(spec.unrolls()),
            "state_floats": len(jax.tree_util.tree_leaves(floor_initial_state(env_id, 1))),
            "note": spec.note,
        }
        out["floor_note"] = None
    log(f"[{env_id}] reference (cardiosim 0.1.0, one env, Python loop)")
    reference = reference_throughput(
        env_id, DIFFICULTY, settings.reference_seconds, settings.repeats
    )
    out["reference"] = reference
    if reference is not None:
        log(f"  reference: {reference['steps_per_second']:,.0f} steps/s")
    else:
        log("  no reference environment")

    rows, skipped, compiled_by_batch = [], [], {}
    env_points: list[tuple[int, float]] = []
    floor_points: dict[int, list[tuple[int, float]]] = {}
    for batch in sorted(set(settings.batches)):
        log(f"[{env_id}] {batch:,} patients")
        memory_points = [(b, m["total_bytes"]) for b, (_, m) in compiled_by_batch.items()]
        skip = plan_batch(
            batch,
            memory_points,
            env_points,
            settings.memory_budget_bytes,
            settings.max_step_seconds,
        )
        guess = (
            _predict_seconds_per_step(env_points, batch)
            if env_points
            else batch / settings.rate_guess(env_id)
        )
        if skip is None:
            # Compile against shapes only and read the exact footprint before allocating.
            steps = _initial_steps(guess, settings)
            compiled, compile_seconds = _compile(
                env_rollout(env, batch, steps),
                env_rollout_args(env, params, batch, abstract=True),
            )
            skip = _compiled_over_budget(
                batch, compiled_memory(compiled), settings.memory_budget_bytes
            )
        if skip is not None:
            log(f"  skipped: {skip['message']}")
            skipped.append(skip)
            continue
        args = env_rollout_args(env, params, batch)
        ours, compiled = _scan_measurement(
            lambda t, b=batch: env_rollout(env, b, t),
            args,
            batch,
            guess,
            settings,
            "env",
            log,
            first=(steps, compiled, compile_seconds),
        )
        compiled_by_batch[batch] = (ours["steps"], compiled_memory(compiled))
        optimistic = None
        if batch >= OPTIMISTIC_MIN_BATCH:
            optimistic, _ = _scan_measurement(
                lambda t, b=batch: env_rollout(env, b, t, optimistic=True),
                args,
                batch,
                ours["seconds"] / ours["steps"],
                settings,
                "env, optimistic reset",
                log,
            )
        del args
        floor = None
        if spec is not None:
            floors = []
            for unroll in spec.unrolls():
                points = floor_points.setdefault(unroll, [])
                # The v0 floor is one to two orders of magnitude faster than the env.
                guess = (
                    _predict_seconds_per_step(points, batch)
                    if points
                    else 0.03 * ours["seconds"] / ours["steps"]
                )
                measured, _ = _scan_measurement(
                    lambda t, u=unroll: floor_rollout(env_id, t, u),
                    floor_args(env_id, batch),
                    batch,
                    guess,
                    settings,
                    f"floor (unroll {unroll})",
                    log,
                )
                points.append((batch, measured["seconds"] / measured["steps"]))
                floors.append({"unroll": unroll, **measured})
            floor = dict(max(floors, key=lambda f: f["steps_per_second"]))
            floor["variants"] = [
                {"unroll": f["unroll"], "steps_per_second": f["steps_per_second"]} for f in floors
            ]
        env_points.append((batch, ours["seconds"] / ours["steps"]))
        winner = (
            None
            if optimistic is None
            else reset_winner(ours["steps_per_second"], optimistic["steps_per_second"])
        )
        if winner is not None:
            log(
                f"  faster reset: {winner} (optimistic / auto = "
                f"{optimistic['steps_per_second'] / ours['steps_per_second']:.2f})"
            )
        rows.append(
            {
                **ours,
                "floor": floor,
                "fraction_of_floor": (
                    ours["steps_per_second"] / floor["steps_per_second"] if floor else None
                ),
                "optimistic_reset": optimistic,
                "reset_winner": winner,
                "optimistic_over_auto": (
                    optimistic["steps_per_second"] / ours["steps_per_second"]
                    if optimistic
                    else None
                ),
                "speedup_vs_reference": (
                    ours["steps_per_second"] / reference["steps_per_second"] if reference else None
                ),
            }
        )
    out["throughput"] = rows
    out["skipped"] = skipped
    out["reset"] = reset_summary(rows)

    log(f"[{env_id}] memory")
    out["memory"] = _memory(env_id, env, params, compiled_by_batch, settings, log)

    out["ppo"] = None
    if settings.ppo:
        log(f"[{env_id}] PPO (tuned preset)")
        out["ppo"] = ppo_throughput(
            env_id,
            settings.ppo_updates,
            settings.ppo_seeds,
            settings.ppo_repeats,
            settings.ppo_overrides,
            log=log,
        )
    return out


def _memory(
    env_id: str,
    env: Any,
    params: Any,
    compiled_by_batch: dict[int, tuple[int, dict[str, int]]],
    settings: BenchSettings,
    log: Log,
) -> dict[str, Any]:
    memory: dict[str, Any] = dict(patient_bytes(env_id))
    b1, b2 = settings.resolved_memory_batches(tuple(compiled_by_batch))
    # Every batch was skipped: compile (never run) with the quick run's short scan.
    steps = compiled_by_batch[max(compiled_by_batch)][0] if compiled_by_batch else 16
    totals = {}
    for batch in (b1, b2):
        if batch not in compiled_by_batch:
            # Compile only: memory_analysis needs no execution (and no allocation).
            compiled, _ = _compile(
                env_rollout(env, batch, steps), env_rollout_args(env, params, batch, abstract=True)
            )
            compiled_by_batch[batch] = (steps, compiled_memory(compiled))
        totals[batch] = compiled_by_batch[batch][1]
    memory["rollout"] = {"batch": b1, "steps": compiled_by_batch[b1][0], **totals[b1]}
    memory["rollout_at_second_batch"] = {"batch": b2, **totals[b2]}
    memory["extrapolation"] = extrapolate_max_batch(
        (b1, b2),
        (totals[b1]["total_bytes"], totals[b2]["total_bytes"]),
        settings.memory_budget_bytes,
    )
    max_batch = memory["extrapolation"]["max_batch"]
    log(
        f"  state {memory['state_bytes']} B/patient; compiled rollout at {b1:,}: "
        f"{totals[b1]['total_bytes'] / 2**20:,.1f} MiB; "
        f"max batch in {settings.memory_budget_bytes / GIB:g} GiB: "
        f"{'-' if max_batch is None else format(max_batch, ',')}"
    )
    memory["rss"] = None
    # The subprocess allocates and runs the rollout: only for a batch that fits the budget.
    if settings.rss and totals[b1]["total_bytes"] <= settings.memory_budget_bytes:
        rss = memory["rss"] = measure_rss(env_id, DIFFICULTY, b1, compiled_by_batch[b1][0])
        log(
            f"  fresh-process RSS at {b1:,}: +{_mib(rss['execution_delta_bytes'])} MiB "
            f"running, +{_mib(rss['process_delta_bytes'])} MiB in all"
        )
    return memory


def run_benchmarks(
    settings: BenchSettings | None = None, log: Log = log_to_stderr
) -> dict[str, Any]:
    """Run the suite; returns the JSON-ready results (schema: ``docs/benchmarks.md``)."""
    settings = settings or BenchSettings()
    registered = tuple(cardiosim_jax.registered_envs)
    unknown = sorted(set(settings.envs) - set(registered))
    if unknown:
        raise ValueError(
            f"no benchmark for environment(s) {unknown}; accepted: {', '.join(registered)}"
        )
    if not settings.envs:
        raise ValueError("no environment to benchmark")
    if not settings.batches or min(settings.batches) < 1:
        raise ValueError(f"batches must be positive, got {settings.batches}")
    if settings.memory_budget_bytes <= 0:
        raise ValueError(f"memory budget must be positive, got {settings.memory_budget_bytes}")
    if settings.memory_batches is not None:
        b1, b2 = settings.memory_batches
        if b1 == b2 or min(b1, b2) < 1:
            raise ValueError(f"memory_batches must be two different positive sizes, got {(b1, b2)}")
    start = time.perf_counter()
    machine = machine_info()
    log(f"benchmarking {', '.join(settings.envs)} on {machine['cpu_model']}")
    envs = {env_id: benchmark_env(env_id, settings, log) for env_id in settings.envs}
    machine["load_average_end"] = list(os.getloadavg())
    return {
        "schema_version": SCHEMA_VERSION,
        "quick": settings.quick,
        "machine": machine,
        "settings": {
            "difficulty": DIFFICULTY,
            "batches": sorted(set(settings.batches)),
            "repeats": settings.repeats,
            "target_seconds": settings.target_seconds,
            "fixed_steps": settings.fixed_steps,
            "reference_seconds": settings.reference_seconds,
            "ppo": settings.ppo,
            "ppo_updates": settings.ppo_updates,
            "ppo_seeds": settings.ppo_seeds,
            "memory_batches": (
                None if settings.memory_batches is None else list(settings.memory_batches)
            ),
            "memory_budget_bytes": settings.memory_budget_bytes,
            "max_step_seconds": settings.max_step_seconds,
        },
        "envs": envs,
        "reset": backend_reset_choice(envs, machine["backend"]),
        "wall_seconds": time.perf_counter() - start,
    }


def backend_reset_choice(envs: dict[str, Any], backend: str) -> dict[str, Any]:
    """The faster reset on ``backend``: tallies over every (env, batch) timed both ways."""
    optimistic = sum(r["reset"]["optimistic_wins"] for r in envs.values())
    auto = sum(r["reset"]["auto_wins"] for r in envs.values())
    return {
        "backend": backend,
        "optimistic_wins": optimistic,
        "auto_wins": auto,
        "choice": None if optimistic + auto == 0 else "optimistic" if optimistic > auto else "auto",
        "by_env": {env_id: r["reset"]["choice"] for env_id, r in envs.items()},
    }


# --------------------------------------------------------------------------- markdown


def _commit_note(machine: dict[str, Any]) -> str:
    commit = machine.get("git_commit")
    if not commit:
        return ""
    return f" (commit {commit}{', uncommitted changes' if machine.get('git_dirty') else ''})"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:,.1f}x" if x >= 1 else f"{x:.3f}"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**20:,.1f}"


def _cells(r: dict[str, Any], batches: Sequence[int], cell: Callable[[dict[str, Any]], str]) -> str:
    """One table row's cells over ``batches``: ``cell(row)``, "skipped" or "-" (not run)."""
    by_batch = {row["batch"]: row for row in r["throughput"]}
    skipped = {s["batch"]: s for s in r.get("skipped", [])}
    out = []
    for b in batches:
        if b in by_batch:
            out.append(cell(by_batch[b]))
        elif b in skipped:
            out.append(f"skipped ({skipped[b]['reason']})")
        else:
            out.append("-")
    return " | ".join(out)


def _winner_cell(row: dict[str, Any], episode_steps: int | None) -> str:
    """``winner (optimistic / auto)``, starred where the optimistic call was shorter than
    an episode (see :func:`to_markdown`); "-" where only auto-reset was timed."""
    if not row.get("reset_winner"):
        return "-"
    short = episode_steps is not None and row["optimistic_reset"]["steps"] < episode_steps
    mark = "\\*" if short else ""
    return f"{row['reset_winner']} ({row['optimistic_over_auto']:.2f}){mark}"


def to_markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (what ``cardiosim-jax bench`` prints and writes)."""
    m, s, envs = results["machine"], results["settings"], results["envs"]
    batches = s["batches"]
    memory_gib = m["memory_total_bytes"] / GIB if m.get("memory_total_bytes") else float("nan")
    load = ", ".join(f"{x:.2f}" for x in m["load_average_start"])
    header = " | ".join(f"B = {b:,}" for b in batches)
    # Level-3 headings and no title: the file pastes verbatim under a section of
    # docs/benchmarks.md.
    lines = [
        f"**cardiosim-jax {m['cardiosim_jax']}{_commit_note(m)} benchmarks on {m['backend']}"
        f"{' (quick smoke run)' if results['quick'] else ''}.** "
        f"Machine: {m['cpu_model']} ({', '.join(m['cpu_simd']) or 'no AVX'}), "
        f"{m['cpu_cores']} cores ({m['cpu_cores_usable']} usable), {memory_gib:.1f} GiB RAM; "
        f"jax {m['jax']}, jaxlib {m['jaxlib']}, backend {m['backend']} "
        f"(device kind {m['device_kind']}, {m['device_count']} device(s)); "
        f"Python {m['python']}; {m['date']}; load average (1, 5, 15 min) at start {load}, "
        f"at end {', '.join(f'{x:.2f}' for x in m['load_average_end'])}.",
        "",
        f"All environments on the {s['difficulty']} tier, uniform random actions, gymnax "
        "`env.step` with auto-reset. Ours: one jitted `lax.scan` over T steps of the vmapped "
        f"step, best of {s['repeats']} timed calls after a warm-up call, compilation "
        "excluded (timed separately). Reference: one cardiosim 0.1.0 env in a Python loop "
        '(v0 only; "-" for v1). Floor: the env\'s cell model alone, the same RK4 substeps '
        'per env step, same batch and scan, no RNG or env logic ("-": the env integrates '
        f"no cell model). Total run {results['wall_seconds']:.0f} s.",
        "",
        "### Environment steps/s",
        "",
        f"| env | reference (1 env) | {header} |",
        "|---|---:|" + "---:|" * len(batches),
    ]
    for env_id, r in envs.items():
        ref = r["reference"]["steps_per_second"] if r["reference"] else None
        lines.append(
            f"| {env_id} | {_rate(ref)} | "
            + _cells(r, batches, lambda row: _rate(row["steps_per_second"]))
            + " |"
        )
        lines.append(
            f"| {env_id}, optimistic reset | - | "
            + _cells(
                r,
                batches,
                lambda row: (
                    _rate(row["optimistic_reset"]["steps_per_second"])
                    if row["optimistic_reset"]
                    else "-"
                ),
            )
            + " |"
        )
        lines.append(
            f"| {env_id}, faster reset (optimistic / auto) | - | "
            + _cells(r, batches, lambda row, r=r: _winner_cell(row, r.get("episode_steps")))
            + " |"
        )
    skipped = [(env_id, sk) for env_id, r in envs.items() for sk in r.get("skipped", [])]
    if skipped:
        lines += ["", "Skipped batches:"]
        lines += [f"- {env_id}, B = {sk['batch']:,}: {sk['message']}." for env_id, sk in skipped]
    choice = results.get("reset")
    if choice and choice["choice"] is None:
        lines += [
            "",
            "### Reset strategy",
            "",
            f"The optimistic reset was not timed (it is from B = {OPTIMISTIC_MIN_BATCH}).",
        ]
    elif choice:
        lines += [
            "",
            "### Reset strategy",
            "",
            f"gymnax auto-reset against the optimistic reset (`make_batched_step`, from B = "
            f"{OPTIMISTIC_MIN_BATCH}) on {choice['backend']}: the optimistic reset was faster at "
            f"{choice['optimistic_wins']} and auto-reset at {choice['auto_wins']} of the "
            f"(env, batch) pairs timed both ways; faster on this backend: "
            f"**{choice['choice'] or '-'}**. Per env (more batches won): "
            + "; ".join(f"{e} {c or '-'}" for e, c in choice["by_env"].items())
            + ". Every timed call starts from freshly reset patients, whose episodes all "
            "run in step; \\* marks an optimistic call of fewer steps T than the episode "
            "length, in which no episode ended (except by early termination), so the "
            "optimistic reset computed no reset at all while auto-reset computed one per "
            "patient per step.",
        ]
    notes = {}
    lines += [
        "",
        "### Compute floor (bare RK4 of the cell model), steps/s",
        "",
        f"| env | floor kernel | {header} |",
        "|---|---|" + "---:|" * len(batches),
    ]
    for env_id, r in envs.items():
        f = r["floor"]
        if f is None:
            mark = notes.setdefault(r.get("floor_note") or "no floor kernel", len(notes) + 1)
            lines.append(
                f"| {env_id} | - (note {mark}) | " + " | ".join("-" for _ in batches) + " |"
            )
            continue
        kernel = (
            f"{f['substeps']:,} x RK4 {f['model']} ({f['state_floats']} floats, dt {f['dt']:g}; "
            f"unroll {' or '.join(map(str, f['unrolls']))}"
            + (f"; {f['note']}" if f.get("note") else "")
            + ")"
        )
        lines.append(
            f"| {env_id} | {kernel} | "
            + _cells(
                r,
                batches,
                lambda row: _rate(row["floor"]["steps_per_second"]) if row["floor"] else "-",
            )
            + " |"
        )
    if notes:
        lines += [""] + [f"Note {i}: no floor: {text}." for text, i in notes.items()]
    lines += [
        "",
        "### Ratios",
        "",
        f"| env | ratio | {header} |",
        "|---|---|" + "---:|" * len(batches),
    ]
    for env_id, r in envs.items():
        lines.append(
            f"| {env_id} | ours / reference | "
            + _cells(r, batches, lambda row: _ratio(row["speedup_vs_reference"]))
            + " |"
        )
        lines.append(
            f"| {env_id} | ours / floor | "
            + _cells(
                r,
                batches,
                lambda row: (
                    "-" if row["fraction_of_floor"] is None else f"{row['fraction_of_floor']:.3f}"
                ),
            )
            + " |"
        )
    lines += [
        "",
        "### Timing details",
        "",
        "| env | B | T | ours: compile (s) | ours: best call (s) | floor: T | floor: unroll | "
        "floor: compile (s) | floor: best call (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for env_id, r in envs.items():
        for row in r["throughput"]:
            fl = row["floor"]
            floor_cells = (
                "- | - | - | -"
                if fl is None
                else f"{fl['steps']:,} | {fl['unroll']} | {fl['compile_seconds']:.2f} | "
                f"{fl['seconds']:.3f}"
            )
            lines.append(
                f"| {env_id} | {row['batch']:,} | {row['steps']:,} | "
                f"{row['compile_seconds']:.2f} | {row['seconds']:.3f} | {floor_cells} |"
            )
    with_ppo = {env_id: r["ppo"] for env_id, r in envs.items() if r.get("ppo")}
    if with_ppo:
        any_ppo = next(iter(with_ppo.values()))
        lines += [
            "",
            "### PPO training throughput (tuned preset)",
            "",
            f"{any_ppo['updates']} updates of {any_ppo['num_envs']} envs x "
            f"{any_ppo['num_steps']} steps ({any_ppo['update_epochs']} epochs, minibatch "
            f"{any_ppo['minibatch_size']}) per seed; env steps/s over the whole `train` call "
            "(rollouts, GAE and minibatch updates), compilation excluded, best of "
            f"{len(any_ppo['single']['all_seconds'])} call(s).",
            "",
            "| env | 1 seed: steps/s | "
            f"{any_ppo['vmapped']['seeds']} seeds vmapped: steps/s (aggregate) | "
            "aggregate / 1 seed | compile 1 / N seeds (s) | XLA memory 1 / N seeds (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for env_id, p in with_ppo.items():
            one, many = p["single"], p["vmapped"]
            lines.append(
                f"| {env_id} | {_rate(one['steps_per_second'])} | "
                f"{_rate(many['steps_per_second'])} | "
                f"{many['steps_per_second'] / one['steps_per_second']:.2f}x | "
                f"{one['compile_seconds']:.1f} / {many['compile_seconds']:.1f} | "
                f"{_mib(one['memory']['total_bytes'])} / {_mib(many['memory']['total_bytes'])} |"
            )
    budget_gib = s["memory_budget_bytes"] / GIB
    lines += [
        "",
        "### Memory",
        "",
        "XLA `memory_analysis()` of the compiled rollout (argument + output + temp - alias "
        "bytes) at two batches B1 < B2 (by default the largest batch run and 4x it, the "
        f"second compiled, not run); largest batch in {budget_gib:g} GiB = floor((budget - "
        "fixed) / per-patient), the line through the two. RSS: peak-RSS increase of a fresh "
        "process running the B1 rollout once (running alone; and in all, compilation "
        "included).",
        "",
        "| env | state B/patient | obs B/patient | B1 / B2 | XLA at B1: args / out / temp "
        "(MiB) | XLA total at B1 / B2 (MiB) | XLA B/patient | "
        f"max batch in {budget_gib:g} GiB | RSS running / in all (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for env_id, r in envs.items():
        mem = r["memory"]
        roll, ext, rss = mem["rollout"], mem["extrapolation"], mem["rss"]
        rss_cell = (
            "-"
            if rss is None
            else f"{_mib(rss['execution_delta_bytes'])} / {_mib(rss['process_delta_bytes'])}"
        )
        max_batch = "-" if ext["max_batch"] is None else f"{ext['max_batch']:,}"
        lines.append(
            f"| {env_id} | {mem['state_bytes']} | {mem['observation_bytes']} | "
            f"{ext['batches'][0]:,} / {ext['batches'][1]:,} | "
            f"{_mib(roll['argument_bytes'])} / {_mib(roll['output_bytes'])} / "
            f"{_mib(roll['temp_bytes'])} | {_mib(ext['total_bytes'][0])} / "
            f"{_mib(ext['total_bytes'][1])} | {ext['bytes_per_patient']:,.0f} | {max_batch} | "
            f"{rss_cell} |"
        )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], json_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Write the JSON and its markdown beside it (same stem, ``.md``); returns both paths."""
    from pathlib import Path

    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    md_path = path.with_suffix(".md")
    md_path.write_text(to_markdown(results))
    return str(path), str(md_path)
