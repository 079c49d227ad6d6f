"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest


def _share_compiled_programs() -> None:
    """Persistent XLA cache for this run only, shared by the xdist workers.

    Compilation dominates the suite's time, and the workers (and tests that build
    equal programs through different ``jit`` wrappers) would compile the same
    programs again. The first process to import this file (the xdist controller,
    or the only process) makes the directory, hands it to the workers through the
    environment and removes it at exit. Must run before anything compiles.
    """
    import atexit
    import shutil
    import tempfile

    variable = "CARDIOSIM_TEST_XLA_CACHE"
    path = os.environ.get(variable)
    if path is None:
        path = tempfile.mkdtemp(prefix="cardiosim-jax-xla-cache-")
        os.environ[variable] = path
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache small programs too: a few hundred ms each, and there are many.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


_share_compiled_programs()
# Not CARDIOSIM_JAX_FUSED_PRNG=0, though the suite is compilation-bound and the rolled
# Threefry compiles 30-50 % faster: in two full runs a worker crashed inside JAX's
# persistent-cache write of a rolled PacingControl-v1 program (never with the fused form).

import cardiosim_jax  # noqa: E402  (after the cache is set: importing it compiles)
from cardiosim_jax import testing  # noqa: E402

#: The reference-faithful v0 environments (most fidelity and regression tests).
ENV_IDS = tuple(cardiosim_jax.registration.v0_envs)
#: The v1 environments and all of them (the generic property tests run on every id).
V1_IDS = tuple(cardiosim_jax.registration.v1_envs)
ALL_IDS = tuple(cardiosim_jax.registered_envs)
DIFFICULTIES = ("easy", "medium", "hard")


def ignore_v0_out_of_date() -> None:
    """Gymnasium flags a v0 id as out of date once v1 is registered (tested on its own)."""
    warnings.filterwarnings("ignore", message=r".*-v0 is out of date", category=DeprecationWarning)


@pytest.fixture(params=ENV_IDS)
def env_id(request) -> str:
    return request.param


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


random_actions = testing.random_actions


def parameter_ranges(env) -> dict:
    """Every range-checked parameter of ``env`` -> its ``ParameterRange``.

    Top-level fields by name, model fields as ``"group.field"`` (e.g. ``"cell.tau"``).
    """
    return env.literature_ranges()


@pytest.fixture
def x64():
    """Run the test with 64-bit JAX types; the previous setting is restored afterwards."""
    if hasattr(jax, "enable_x64"):
        context = jax.enable_x64(True)
    else:  # older JAX
        from jax.experimental import enable_x64

        context = enable_x64()
    with context:
        yield


def check_validate_contract(validate, params, ranges) -> None:
    """Exercise a model's ``validate`` against its ``PARAMETER_RANGES``.

    For every parameter: the defaults and both (inclusive) bounds pass; a value
    above the range, below it, or NaN raises a ``ValueError`` whose message
    names the parameter, the value, the range and the source; a batch passes
    when every entry is in range and fails, counting the bad entries, when one
    is not.
    """
    validate(params)
    for name, bounds in ranges.items():
        for ok in (bounds.low, bounds.high, 0.5 * (bounds.low + bounds.high)):
            validate(params.replace(**{name: np.float32(ok)}))
        span = bounds.high - bounds.low
        for bad in (bounds.high + 0.5 * span, bounds.low - 0.5 * span):
            with pytest.raises(ValueError) as excinfo:
                validate(params.replace(**{name: bad}))
            message = str(excinfo.value)
            assert f"'{name}'" in message
            assert f"{bad:g}" in message
            assert f"[{bounds.low:g}, {bounds.high:g}]" in message
            assert bounds.unit in message
            assert bounds.source in message
        with pytest.raises(ValueError, match=rf"'{name}' = nan"):
            validate(params.replace(**{name: float("nan")}))
        with pytest.raises(ValueError, match=rf"'pfx.{name}'"):
            validate(params.replace(**{name: bounds.high + span}), prefix="pfx.")

        batch = np.linspace(bounds.low, bounds.high, 7).astype(np.float32)
        validate(params.replace(**{name: batch}))
        batch_2d = np.tile(batch, (3, 1))
        validate(params.replace(**{name: batch_2d}))
        bad_batch = batch_2d.copy()
        bad_batch[1, 4] = bounds.high + span
        with pytest.raises(ValueError, match=r"1 of 21 entries") as excinfo:
            validate(params.replace(**{name: bad_batch}))
        assert f"{np.float32(bounds.high + span):g}" in str(excinfo.value)
        nan_batch = batch.copy()
        nan_batch[2] = np.nan
        with pytest.raises(ValueError, match=rf"'{name}'"):
            validate(params.replace(**{name: nan_batch}))


#: Reset, then ``env.step`` over a leading axis of actions (see ``cardiosim_jax.testing``).
env_rollout = testing.rollout


def expected_always_shock_return(energy_j: float, success_base: float, steps: int = 100) -> float:
    """Exact expected return of shocking at ``energy_j`` on every step (DefibrillationTiming).

    From the environment's documented dynamics: a shock succeeds with probability
    ``base x (1 - exp(-E / 150)) x 0.95^shocks`` (shocks counted including this one);
    reward -0.1 per step in fibrillation, -2 - 0.005 E per shock, +100 on success
    (+50 more with at most 3 shocks), -50 on timing out in fibrillation.
    """
    per_failed_step = -0.1 - 2.0 - 0.005 * energy_j
    success_step = 100.0 - 2.0 - 0.005 * energy_j
    still_fibrillating, expected = 1.0, 0.0
    for shock in range(1, steps + 1):
        p = success_base * (1.0 - math.exp(-energy_j / 150.0)) * 0.95**shock
        reward = (shock - 1) * per_failed_step + success_step + (50.0 if shock <= 3 else 0.0)
        expected += still_fibrillating * p * reward
        still_fibrillating *= 1.0 - p
    return expected + still_fibrillating * (steps * per_failed_step - 50.0)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl  # POSIX only; once_per_session falls back to computing elsewhere

    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, compute: Callable[[], Any]
) -> Any:
    """``compute()`` (JSON-serialisable) run once per test session, shared by xdist workers.

    A module-scoped fixture is otherwise built again on every worker that runs
    one of its tests (pytest-xdist's ``loadgroup`` grouping does not take
    effect with pytest 9 here). The workers share ``getbasetemp().parent``; the
    first to get the lock computes and writes the JSON, the others read it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None or os.name != "posix":
        return compute()
    root = tmp_path_factory.getbasetemp().parent
    cached = root / f"{name}.json"
    with _exclusive(root / f"{name}.lock"):
        if cached.exists():
            return json.loads(cached.read_text())
        value = compute()
        cached.write_text(json.dumps(value))
        return value


def load_baseline_script(name: str) -> Any:
    """``baselines/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "baselines" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"baselines_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
