"""Experiments behind the CLI and ``baselines/``: train seeds, evaluate, Table 2, sweeps.

Each function returns data (JSON-ready dicts, :class:`~cardiosim_jax.training.ppo.TrainOutput`);
writing files and printing is left to the caller (``cardiosim_jax.cli``, the
``baselines/`` scripts). One evaluation-key rule serves them all: PPO seed
``i`` of a run started from ``seed`` plays the ``i``-th key of
``split(PRNGKey(seed + 1), n_seeds)`` (:func:`evaluate_trained`), and
:func:`baseline_on_ppo_episodes` replays exactly those episodes, so baselines
and trained policies are compared on the same patients and random events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import evaluate
from cardiosim_jax.training import checkpoint, ppo

#: Paper protocol for Table 2: defibrillation on easy, the others on medium.
TABLE2_PROTOCOL = {
    "PacingControl-v0": "medium",
    "AntiarrhythmicDosing-v0": "medium",
    "DefibrillationTiming-v0": "easy",
}
#: Paper Table 2, mean and std over 20 episodes.
TABLE2_PAPER = {
    "PacingControl-v0": {"random": (-369322, 1545175), "heuristic": (129, 6), "ppo": (-646, 284)},
    "AntiarrhythmicDosing-v0": {"random": (-31, 5), "heuristic": (169, 16), "ppo": (129, 32)},
    "DefibrillationTiming-v0": {"random": (136, 22), "heuristic": None, "ppo": (128, 27)},
}

#: Episodes per Table 2 cell in the paper: consecutive episodes of one env object.
PAPER_EPISODES = 20
#: PPO's actions in the paper's evaluation (the reference repository's ``train_all.py``):
#: sampled for defibrillation ("stochastic eval for envs where deterministic collapse is
#: a risk"), the policy's mean for the others.
TABLE2_PPO_SAMPLED = {
    "PacingControl-v0": False,
    "AntiarrhythmicDosing-v0": False,
    "DefibrillationTiming-v0": True,
}

Log = Callable[[str], None]


def log_to_stderr(message: str) -> None:
    """Progress goes to stderr, so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


class StderrProgress:
    """Redirect a progress reporter's prints to stderr (stdout stays machine-readable)."""

    def __init__(self, inner: ppo.ConsoleProgress) -> None:
        self.inner = inner

    def __call__(self, *args: Any) -> None:
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            self.inner(*args)
        finally:
            sys.stdout = stdout


def train_seeds(
    config: ppo.PPOConfig,
    n_seeds: int,
    seed: int,
    label: str = "",
    log: Log = log_to_stderr,
    *,
    run_dir: str | Path | None = None,
    interval: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ppo.TrainOutput:
    """Train ``n_seeds`` seeds of ``config`` from ``split(PRNGKey(seed))``, vmapped.

    Without ``run_dir``: one compiled call. With ``run_dir``: in chunks of
    ``interval`` updates (default: a tenth of the run), saving the training
    state after each (:func:`~cardiosim_jax.training.checkpoint.save_training`),
    so Ctrl-C or a crash loses at most one chunk; ``resume`` continues the run
    saved there. Checkpointed runs agree bit for bit whatever their interval and
    interruptions; they differ from the one-call run by float32 rounding, as
    their initialisation is compiled on its own. ``progress`` prints a line per
    reporting interval from inside the compiled loop; JAX never caches programs
    with such a host callback on disk, so runs that do not need it turn it off.
    """
    reporter = StderrProgress(ppo.ConsoleProgress(config.num_updates, label=label))
    reporter = reporter if progress else None
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    log(
        f"{label}training {n_seeds} seed(s) x {config.num_updates} updates x "
        f"{config.batch_size} steps on {config.env_id} ({config.difficulty}); compiling..."
    )
    start = time.perf_counter()
    if run_dir is None:
        train = jax.jit(jax.vmap(ppo.make_train(config, reporter)))
        out = jax.block_until_ready(train(keys))
    else:
        out = _train_in_chunks(config, keys, seed, reporter, run_dir, interval, resume, label, log)
    log(f"{label}trained in {time.perf_counter() - start:.1f}s (compilation included)")
    return out


@contextlib.contextmanager
def _sigint_noted() -> Iterator[Callable[[], bool]]:
    """Yield ``interrupted()``: whether SIGINT arrived since entering.

    The previous handler still runs (by default it raises ``KeyboardInterrupt``),
    but Python drops an exception raised while it runs a garbage-collection or
    ``__del__`` callback (it prints "Exception ignored in ..."), so a Ctrl-C
    landing there would be lost; the chunk loop checks this note as well.
    Outside the main thread (where handlers cannot be set) nothing is noted.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    noted = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if previous == signal.SIG_IGN:
            return
        noted.set()
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL, or a handler not set from Python
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield noted.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _train_in_chunks(
    config: ppo.PPOConfig,
    keys: jax.Array,
    seed: int,
    progress: Any,
    run_dir: str | Path,
    interval: int | None,
    resume: bool,
    label: str,
    log: Log,
) -> ppo.TrainOutput:
    trainer = ppo.make_trainer(config, progress)
    init = jax.jit(jax.vmap(trainer.init))
    run = jax.jit(jax.vmap(trainer.run, in_axes=(0, None, None)), static_argnums=2)
    n_seeds, total = keys.shape[0], config.num_updates
    interval = max(1, total // 10) if interval is None else interval
    if interval < 1:
        raise ValueError(f"interval must be >= 1 update, got {interval}")
    chunks: list[dict[str, np.ndarray]] = []
    if resume:
        template = jax.eval_shape(init, keys)
        state, metrics, done = checkpoint.load_training(run_dir, template, config, n_seeds, seed)
        chunks.append(metrics)
        log(f"{label}resuming {run_dir} after update {done} of {total}")
    else:
        state, done = init(keys), 0
    saved = done  # what the run directory holds, whenever Ctrl-C lands
    try:
        with _sigint_noted() as interrupted:
            while done < total:
                count = min(interval, total - done)
                state, metrics = run(state, done, count)
                chunks.append(jax.device_get(metrics))
                done += count
                checkpoint.save_training(
                    run_dir, state, _concatenate(chunks), done, config, n_seeds, seed
                )
                saved = done
                if interrupted():  # a Ctrl-C whose KeyboardInterrupt Python dropped
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if saved == 0:
            log(f"{label}interrupted before the first checkpoint: nothing saved")
        else:
            log(
                f"{label}interrupted: {run_dir} holds updates 1-{saved} of {total}; "
                "run the same command with --resume to continue"
            )
        raise
    metrics = {k: jax.numpy.asarray(v) for k, v in _concatenate(chunks).items()}
    return ppo.TrainOutput(policy=jax.vmap(trainer.policy)(state), metrics=metrics)


def _concatenate(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-update metrics of consecutive chunks, joined on the update axis (axis 1)."""
    return {k: np.concatenate([np.asarray(c[k]) for c in chunks], axis=1) for k in chunks[0]}


def evaluate_baselines(
    env: Any,
    env_params: Any,
    n_episodes: int,
    seed: int = 0,
    names: tuple[str, ...] = ("random", "heuristic"),
    block_size: int | None = None,
) -> dict[str, dict]:
    """``name -> evaluate(...)`` cell of each baseline policy, ``n_episodes`` from key ``seed``
    (``block_size``: as :func:`~cardiosim_jax.evaluation.evaluate`'s)."""
    cells = {}
    for name in names:
        policy, policy_params = agents.baseline_policy(name, env, env_params)
        cells[name] = evaluate(
            policy,
            env,
            env_params,
            jax.random.PRNGKey(seed),
            n_episodes,
            1,
            policy_params,
            block_size=block_size,
        )
    return cells


def evaluation_key(seed: int) -> jax.Array:
    """The key trained seeds are evaluated from: one after the training key."""
    return jax.random.PRNGKey(seed + 1)


def evaluate_policies(
    policies: Any,
    env: Any,
    env_params: Any,
    n_seeds: int,
    episodes: int,
    seed: int = 0,
    policy: Callable[..., jax.Array] = ppo.ppo_policy,
    block_size: int | None = None,
) -> dict:
    """Evaluate ``n_seeds`` stacked policies (default: PPO, deterministic), ``episodes`` each
    (``block_size``: as :func:`~cardiosim_jax.evaluation.evaluate`'s).

    Seed ``i`` plays the ``i``-th key of ``split(evaluation_key(seed), n_seeds)``
    (one key, unsplit, when ``n_seeds`` is 1). ``policies`` has a leading axis
    of ``n_seeds``; ``policy(policy_params, obs, key)`` acts with one of them.
    """
    return evaluate(
        policy,
        env,
        env_params,
        evaluation_key(seed),
        episodes,
        n_seeds,
        policies if n_seeds > 1 else jax.tree_util.tree_map(lambda x: x[0], policies),
        block_size=block_size,
    )


def evaluate_trained(
    out: ppo.TrainOutput, config: ppo.PPOConfig, n_seeds: int, episodes: int, seed: int = 0
) -> dict:
    """:func:`evaluate_policies` of a training run on its own environment and tier."""
    env, env_params = cardiosim_jax.make(config.env_id, config.difficulty)
    return evaluate_policies(out.policy, env, env_params, n_seeds, episodes, seed)


def train_and_evaluate(
    config: ppo.PPOConfig, n_seeds: int, episodes: int, seed: int = 0, label: str = ""
) -> tuple[ppo.TrainOutput, dict]:
    """Train ``n_seeds`` seeds (:func:`train_seeds`) and evaluate each (:func:`evaluate_trained`).

    The returned cell (:func:`cardiosim_jax.evaluation.evaluate`'s) also holds
    ``train_seconds`` (compilation included) and ``timesteps`` per seed.
    """
    start = time.perf_counter()
    out = train_seeds(config, n_seeds, seed, label=label)
    seconds = time.perf_counter() - start
    cell = evaluate_trained(out, config, n_seeds, episodes, seed)
    return out, {**cell, "train_seconds": seconds, "timesteps": config.total_timesteps}


def baseline_on_ppo_episodes(
    env: Any, env_params: Any, name: str, n_seeds: int, episodes: int, seed: int = 0
) -> dict:
    """A baseline's per-seed means on the episodes each PPO seed was evaluated on.

    :func:`evaluate_policies` with the baseline in place of PPO: the same keys give
    the same patients and random events (common random numbers), so
    PPO-minus-baseline differences are paired.
    """
    policy, policy_params = agents.baseline_policy(name, env, env_params)
    tiled = jax.tree_util.tree_map(
        lambda x: np.broadcast_to(x, (n_seeds, *np.shape(x))), policy_params
    )
    cell = evaluate_policies(tiled, env, env_params, n_seeds, episodes, seed, policy)
    return {"seed_means": cell["seed_means"], "mean": cell["mean"]}


# --------------------------------------------------------------------------- sweeps


#: Hyperparameters a sweep can vary: the leaves of :class:`~cardiosim_jax.training.ppo.PPOConfig`.
SWEEPABLE = tuple(
    f.name for f in dataclasses.fields(ppo.PPOConfig) if f.metadata.get("pytree_node", True)
)


class Sweep(NamedTuple):
    """A trained sweep: one row per setting, and every policy.

    ``rows[i]`` holds setting ``i``'s leaf values (``names``, the swept
    leaves) and the :func:`evaluate_policies` cell over its seeds; ``policy``
    has leading axes (settings, seeds); ``chunk_size`` settings were trained
    per compiled call.
    """

    rows: list[dict]
    policy: ppo.PPOPolicyParams
    chunk_size: int
    seconds: float
    names: tuple[str, ...]

    @property
    def best_index(self) -> int:
        """The best setting's row (:func:`best_setting`)."""
        return best_setting(self.rows)

    def best_config(self, base: ppo.PPOConfig) -> ppo.PPOConfig:
        """``base`` with the best setting's leaf values."""
        best = self.rows[self.best_index]
        return base.replace(**{name: best[name] for name in self.names})

    def best_policy(self) -> ppo.PPOPolicyParams:
        """The best setting's policy, one per seed (leading axis: seeds)."""
        return jax.tree_util.tree_map(lambda x: x[self.best_index], self.policy)


def sweep_settings(
    base: ppo.PPOConfig, grid: Mapping[str, Sequence[float]]
) -> tuple[list[dict[str, float]], ppo.PPOConfig]:
    """The grid's settings (first leaf major) and their configs stacked (for ``vmap``).

    Raises a one-line ``ValueError`` for a name that is not a leaf (static
    fields change shapes: they cannot vary inside one compiled call), an empty
    list, or a value out of its range (:func:`ppo.stack_configs`), before anything
    compiles.
    """
    if not grid:
        raise ValueError("a sweep needs at least one hyperparameter with values")
    for name, values in grid.items():
        if name not in SWEEPABLE:
            static = name in {f.name for f in dataclasses.fields(ppo.PPOConfig)}
            why = " is static (it sets shapes)" if static else " is not a PPOConfig field"
            raise ValueError(f"cannot sweep {name!r}: it{why}; accepted: {', '.join(SWEEPABLE)}")
        if len(values) == 0:
            raise ValueError(f"no values given for {name}")
    names = list(grid)
    settings = [
        dict(zip(names, map(float, values), strict=True))
        for values in itertools.product(*grid.values())
    ]
    stacked = ppo.stack_configs([base.replace(**setting) for setting in settings])
    return settings, stacked


def default_memory_budget() -> int:
    """Bytes a sweep may use: 80 % of the first device's memory limit (GPU, TPU),
    else half of this machine's physical memory (CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(0.8 * stats["bytes_limit"])
    return int(0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """XLA's buffer assignment of a compiled executable (bytes), or None where the
    backend does not report it.

    ``total_bytes`` = arguments + outputs + temporaries - aliased (donated)
    bytes: the device memory the call holds at once, since XLA allocates every
    temporary of the call up front.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None
    if stats is None:
        return None
    out = {
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
        "generated_code_bytes": int(stats.generated_code_size_in_bytes),
    }
    out["total_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    )
    return out


def run_sweep(
    base: ppo.PPOConfig,
    grid: Mapping[str, Sequence[float]],
    n_seeds: int,
    episodes: int,
    seed: int = 0,
    log: Log = log_to_stderr,
    *,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
) -> Sweep:
    """Train every setting of ``grid`` x ``n_seeds`` seeds, vmapped, and evaluate each.

    ``grid`` maps leaves of :class:`~cardiosim_jax.training.ppo.PPOConfig`
    (:data:`SWEEPABLE`) to values; the settings are their product, first leaf
    major. Every setting trains from the same seed keys
    (``split(PRNGKey(seed), n_seeds)``, as :func:`train_seeds`) and is evaluated
    on the same episodes (:func:`evaluate_policies`), so settings differ only by
    their hyperparameters. The settings x seeds run as one compiled call when
    its memory (XLA's analysis of the compiled program) fits
    ``memory_budget_bytes`` (default :func:`default_memory_budget`), else in
    equal chunks of ``chunk_size`` settings (derived from that analysis unless
    given; a short last chunk is padded, so one program serves every chunk).
    """
    settings, stacked = sweep_settings(base, grid)
    n = len(settings)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    train = ppo.make_train(
        base, StderrProgress(ppo.ConsoleProgress(base.num_updates, label="sweep "))
    )
    run = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)

    def chunk(lo: int, size: int) -> ppo.PPOConfig:
        # Padded with the last setting, so every chunk has the compiled shape.
        index = np.minimum(np.arange(lo, lo + size), n - 1)
        return jax.tree_util.tree_map(lambda x: x[index], stacked)

    log(f"sweep: {n} settings x {n_seeds} seeds of {base.env_id}; compiling...")
    start = time.perf_counter()
    size = min(n, chunk_size or n)
    compiled = run.lower(keys, chunk(0, size)).compile()
    if chunk_size is None:
        budget = default_memory_budget() if memory_budget_bytes is None else memory_budget_bytes
        needed = (compiled_memory(compiled) or {}).get("total_bytes")
        if needed is not None and needed > budget:
            size = max(1, int(n * budget // needed))
            log(
                f"sweep: {needed / 2**20:,.0f} MiB for all {n} settings exceeds the budget "
                f"of {budget / 2**20:,.0f} MiB; {size} settings per call"
            )
            compiled = run.lower(keys, chunk(0, size)).compile()
    outputs = []
    for k, lo in enumerate(range(0, n, size)):
        if size < n:
            log(f"sweep: chunk {k + 1} of {-(-n // size)} (settings {lo + 1}-{min(n, lo + size)})")
        outputs.append(jax.device_get(compiled(keys, chunk(lo, size)).policy))
    policy = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *outputs)
    seconds = time.perf_counter() - start
    log(f"sweep trained in {seconds:.1f}s (compilation included)")

    env, env_params = cardiosim_jax.make(base.env_id, base.difficulty)
    rows = []
    for i, setting in enumerate(settings):
        policies = jax.tree_util.tree_map(lambda x, i=i: x[i], policy)
        result = evaluate_policies(policies, env, env_params, n_seeds, episodes, seed)
        rows.append({**setting, **result})
    return Sweep(rows=rows, policy=policy, chunk_size=size, seconds=seconds, names=tuple(grid))


def best_setting(rows: Sequence[dict]) -> int:
    """Index of the row with the highest mean evaluation return (the first on a tie)."""
    return int(np.argmax([row["mean"] for row in rows]))


def sweep_markdown(
    rows: list[dict],
    base: ppo.PPOConfig,
    preset: str,
    n_seeds: int,
    episodes: int,
    names: Sequence[str] | None = None,
) -> str:
    """The sweep's results table (``episodes`` evaluation episodes per seed).

    ``names``: the swept leaves, one column each (default: every
    :data:`SWEEPABLE` key the rows hold). The best row (:func:`best_setting`)
    is marked.
    """
    names = [k for k in SWEEPABLE if k in rows[0]] if names is None else list(names)
    best = best_setting(rows)
    lines = [
        f"Sweep on {base.env_id} ({base.difficulty}), preset {preset} "
        f"({base.num_envs} envs x {base.num_steps} steps, {base.total_timesteps:,} steps "
        f"per seed), {n_seeds} seeds, {episodes} evaluation episodes per seed. "
        "CI: 95% bootstrap over seeds of the per-seed mean.",
        "",
        "| " + " | ".join(names) + " | mean | IQM | 95% CI (over seeds) | |",
        "|" + "---:|" * (len(names) + 3) + "---|",
    ]
    for i, row in enumerate(rows):
        values = " | ".join(f"{row[name]:g}" for name in names)
        lines.append(
            f"| {values} | {row['mean']:.1f} | {row['iqm']:.1f} | "
            f"[{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}] | {'best' if i == best else ''} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Table 2


def paper_protocol_params(
    env: Any, env_params: Any, key: jax.Array, n_episodes: int, first_episode: int = 0
) -> Any:
    """A population of ``n_episodes`` parameter sets that replays the paper's evaluation.

    ``train_all.py`` played each Table 2 cell as 20 consecutive episodes of one
    reference env object, whose parameters carry over between resets
    (:meth:`~cardiosim_jax.envs.base.CardioSimEnvironment.params_after_resets`:
    dosing's PK drift). Episode ``i`` here gets the parameters such an object
    holds at its episode ``first_episode + i % 20``; consecutive blocks of 20
    episodes are independent objects, ``ceil(n_episodes / 20)`` of them, each
    with its own key from ``split(key, ...)``. Within a block, episodes share
    their object's earlier resets, as consecutive episodes of one reference
    object do, so the spread of 20-episode means is the reference's too.
    Pass the result as the env params of
    :func:`cardiosim_jax.evaluation.evaluate` (one patient per episode). An env
    whose reference carries nothing over gets ``env_params`` back unchanged.
    """
    if not env.reference_carries_params:
        return env_params
    episode = np.arange(n_episodes)
    resets = first_episode + episode % PAPER_EPISODES
    object_keys = jax.random.split(key, -(-n_episodes // PAPER_EPISODES))
    keys = object_keys[episode // PAPER_EPISODES]
    return _params_after_resets(env, keys, env_params, resets)


@functools.partial(jax.jit, static_argnums=0)
def _params_after_resets(env: Any, keys: jax.Array, env_params: Any, resets: Any) -> Any:
    return jax.vmap(env.params_after_resets, in_axes=(0, None, 0))(keys, env_params, resets)


def _mean_or_sampled(params: tuple[Any, jax.Array], obs: jax.Array, key: jax.Array) -> jax.Array:
    """A PPO policy's sampled action where the flag is set, its mean action elsewhere."""
    policy, sampled = params
    return jax.numpy.where(
        sampled,
        ppo.ppo_stochastic_policy(policy, obs, key),
        ppo.ppo_policy(policy, obs, key),
    )


def _protocol_key(seed: int) -> jax.Array:
    """Draws the earlier resets of the protocol's env objects (apart from the episode keys)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 20)


def table2_episodes(env: Any, env_params: Any, cell: str, n_episodes: int, seed: int = 0) -> Any:
    """The parameter sets Table 2's ``cell`` (``"baseline"`` or ``"ppo"``) plays with ``seed``.

    Baselines play reset counts 0-19 of their env objects, PPO the 20 after
    the heuristic's where the env has a heuristic row (its first 20
    otherwise), each from its own key (:func:`paper_protocol_params`). Public
    so that other studies (``baselines/sb3_parity.py``) evaluate on exactly
    the episodes :func:`run_table2` uses.
    """
    if cell == "baseline":
        return paper_protocol_params(env, env_params, _protocol_key(seed), n_episodes)
    if cell != "ppo":
        raise ValueError(f"cell {cell!r} is not one of 'baseline', 'ppo'")
    if env.env_id not in TABLE2_PAPER:
        raise ValueError(f"{env.env_id} is not in Table 2; accepted: {', '.join(TABLE2_PAPER)}")
    after_heuristic = TABLE2_PAPER[env.env_id]["heuristic"] is not None
    return paper_protocol_params(
        env,
        env_params,
        jax.random.fold_in(_protocol_key(seed), 1),
        n_episodes,
        first_episode=PAPER_EPISODES if after_heuristic else 0,
    )


def run_table2(
    quick: bool,
    seeds: int | None = None,
    episodes: int | None = None,
    seed: int = 0,
    preset: str = "paper",
) -> tuple[dict, str]:
    """Random, heuristic and PPO on the three environments with the paper's protocol.

    Cell by cell as the reference repository's ``train_all.py`` played them
    (:func:`paper_protocol_params`): random and the heuristic play the first 20
    episodes of an env object, PPO the 20 after the heuristic's (one evaluation
    env served both), with its actions sampled or the mean as
    :data:`TABLE2_PPO_SAMPLED` says. ``ppo_other_mode`` is PPO with the other
    choice on the same episodes. Random and the heuristic share episode keys.
    """
    n_seeds = seeds or (2 if quick else 8)
    n_episodes = episodes or (200 if quick else 1000)
    results: dict[str, dict] = {}
    for env_id, difficulty in TABLE2_PROTOCOL.items():
        env, env_params = cardiosim_jax.make(env_id, difficulty)
        results[env_id] = {}
        names = ("random", "heuristic") if TABLE2_PAPER[env_id]["heuristic"] else ("random",)
        baseline_episodes = table2_episodes(env, env_params, "baseline", n_episodes, seed)
        block = PAPER_EPISODES if n_episodes >= PAPER_EPISODES else None
        for name, cell in evaluate_baselines(
            env, baseline_episodes, n_episodes, seed, names, block
        ).items():
            results[env_id][name] = {**cell, "n_seeds": 1}

        config = ppo.preset(preset, env_id)
        if quick:  # a tenth of the budget: a smoke run of the full protocol
            config = config.replace_static(
                total_timesteps=max(config.batch_size, config.total_timesteps // 10)
            )
        start = time.perf_counter()
        out = train_seeds(config, n_seeds, seed, label=f"[{env_id}] ")
        train_seconds = time.perf_counter() - start
        ppo_episodes = table2_episodes(env, env_params, "ppo", n_episodes, seed)
        sampled = TABLE2_PPO_SAMPLED[env_id]
        for key, use_sampled in (("ppo", sampled), ("ppo_other_mode", not sampled)):
            flags = np.full((n_seeds,), use_sampled)  # one compiled evaluation serves both
            cell = evaluate_policies(
                (out.policy, flags),
                env,
                ppo_episodes,
                n_seeds,
                n_episodes,
                seed,
                _mean_or_sampled,
                block,
            )
            results[env_id][key] = {**cell, "actions": "sampled" if use_sampled else "mean"}
        results[env_id]["ppo"].update(
            train_seconds=train_seconds,
            timesteps=config.total_timesteps,
            learning_curve={
                "timesteps": np.asarray(out.metrics["timesteps"])[0].tolist(),
                "episode_return": np.asarray(out.metrics["episode_return"]).tolist(),
            },
        )
    return results, table2_markdown(results, quick, preset)


def table2_markdown(results: dict, quick: bool, preset: str) -> str:
    """Table 2 as markdown: the paper's cells beside ours (protocol, and PPO's other mode)."""

    def paper(env_id: str, name: str) -> str:
        cell = TABLE2_PAPER[env_id][name]
        return "–" if cell is None else f"{cell[0]:,} ± {cell[1]:,}"

    def ours(cell: dict | None) -> str:
        if cell is None:
            return "–"
        lo, hi = cell["ci95"]
        actions = f"{cell['actions']} actions: " if "actions" in cell else ""
        return (
            f"{actions}{cell['mean']:,.1f} ± {cell['std']:,.1f} (IQM {cell['iqm']:,.1f}; "
            f"95% CI {lo:,.1f} to {hi:,.1f}; "
            f"{cell['n_seeds']}x{cell['n_episodes'] // cell['n_seeds']})"
        )

    def blocks(env_id: str, name: str, cell: dict) -> str:
        spread = cell.get("block_means")
        if spread is None:
            return "–"
        paper_cell = TABLE2_PAPER[env_id][name]
        inside = (
            ""
            if paper_cell is None
            else (
                " (paper inside)"
                if spread["p2.5"] <= paper_cell[0] <= spread["p97.5"]
                else " (paper outside)"
            )
        )
        return f"{spread['p2.5']:,.1f} to {spread['p97.5']:,.1f}{inside}"

    lines = [
        f"Table 2{' (quick: PPO at 1/10 budget)' if quick else ''}, PPO preset '{preset}', "
        "the paper's protocol: each cell plays the episodes train_all.py played (20 "
        "consecutive episodes of one env object, PPO after the heuristic's; dosing's PK "
        "drifts over them) and PPO acts as it did there (mean action; sampled for "
        "defibrillation). Ours: mean ± std over episodes (IQM; 95% bootstrap CI of the mean, "
        "over seeds for PPO; seeds x episodes per seed). The paper's cells are the mean of "
        "20 episodes of one policy: the yardstick for them is where such a mean falls, the "
        "central 95 % of our 20-episode block means (within each seed).",
        "",
        "| Environment | Policy | Paper (20 episodes) | cardiosim-jax, paper protocol "
        "| 95 % of 20-episode means | PPO's other action mode, same episodes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for env_id, cells in results.items():
        for name in ("random", "heuristic", "ppo"):
            if name in cells:
                other = cells.get("ppo_other_mode") if name == "ppo" else None
                lines.append(
                    f"| {env_id} ({TABLE2_PROTOCOL[env_id]}) | {name} | {paper(env_id, name)} | "
                    f"{ours(cells[name])} | {blocks(env_id, name, cells[name])} | "
                    f"{ours(other)} |"
                )
    return "\n".join(lines) + "\n"
