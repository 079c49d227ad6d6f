"""Save and load trained PPO policies (weights, normalisation statistics and config).

A checkpoint is a directory holding ``policy.msgpack`` (``flax.serialization`` of
the policy pytree) and ``config.json``: the :class:`PPOConfig` that trained it
(environment id, tier, network shape), the SHA-256 of ``policy.msgpack`` and any
extra fields. Multi-seed runs save one directory per seed, ``seed_0``,
``seed_1``, ...

**Saving never damages what was saved before.** Both files are written in full
to temporary files beside them and flushed to disk, then renamed over the old
ones (``os.replace``, atomic on POSIX and Windows). A save that fails while
writing (disk full, a file-size limit, Ctrl-C) leaves the previous checkpoint
as it was; only a crash between the two renames (microseconds) can leave a new
policy beside an old config, and then the checksum refuses it at load.

**Loading checks everything it reads** and raises :class:`CheckpointError` (a
``ValueError`` with a one-line message naming the file, what is wrong and what
was expected): JSON that does not parse, a config without an ``env_id`` or with
unknown fields or invalid settings, weights whose SHA-256 differs from the one
saved (corrupted or modified), bytes that are not a flax msgpack, and weights
whose structure or shapes differ from the network the config describes for its
environment. Checkpoints saved before the checksum existed load with every
other check.

Why flax's msgpack and not orbax-checkpoint (which flax installs): a policy is
one small pytree (about 40 KB) written once per seed, so a single file with a
checksum over exactly its bytes is simpler to verify than orbax's multi-file
tensorstore layout, and the checkpoints committed under ``baselines/results``
stay readable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

import cardiosim_jax
from cardiosim_jax.training.config import PPOConfig
from cardiosim_jax.training.networks import ActorCritic, PPOPolicyParams, residual_of
from cardiosim_jax.training.normalization import RunningMeanStd

POLICY_FILE = "policy.msgpack"
CONFIG_FILE = "config.json"
#: Version of the ``config.json`` layout (1: no checksum).
FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as it is (the message says why, in one line)."""


def policy_template(config: PPOConfig) -> PPOPolicyParams:
    """A policy pytree with the shapes ``config`` trains (values are placeholders)."""
    env, env_params = cardiosim_jax.make(config.env_id, config.difficulty)
    space = env.action_space(env_params)
    obs_dim = env.observation_space(env_params).shape[0]
    network = ActorCritic(space.shape[0], config.hidden_sizes, config.activation)
    return PPOPolicyParams(
        network=network.init(jax.random.PRNGKey(0), jnp.zeros((obs_dim,))),
        obs_stats=RunningMeanStd.create((obs_dim,)),
        action_low=jnp.asarray(space.low),
        action_high=jnp.asarray(space.high),
        normalize_observations=config.normalize_observations,
        symlog_observations=config.symlog_observations,
        rescale_actions=config.rescale_actions,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        residual=residual_of(config),
    )


def _write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flushed to disk; return it."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _commit(directory: Path, files: dict[str, bytes | str]) -> None:
    """Write every file in full to a temporary beside it, then rename them all into place.

    Nothing is renamed until every file is written, so a failure while writing
    leaves the directory as it was.
    """
    written: dict[str, Path] = {}
    try:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            written[name] = _write_atomically(directory / name, raw)
    except BaseException:
        for temporary in written.values():
            temporary.unlink(missing_ok=True)
        raise
    for name, temporary in written.items():
        os.replace(temporary, directory / name)


def save_policy(
    directory: str | Path, policy: PPOPolicyParams, config: PPOConfig, extra: dict | None = None
) -> Path:
    """Write one (unbatched) policy and its config to ``directory`` (see the module doc)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy_bytes = serialization.to_bytes(policy)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": config.to_dict(),
        "policy_sha256": hashlib.sha256(policy_bytes).hexdigest(),
        **(extra or {}),
    }
    _commit(directory, {POLICY_FILE: policy_bytes, CONFIG_FILE: json.dumps(payload, indent=2)})
    return directory


def _read_config(directory: Path) -> tuple[PPOConfig, dict[str, Any]]:
    """The config and the whole payload of ``directory/config.json``, checked."""
    path = directory / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    data = payload.get("config") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} has no 'config' object (a checkpoint's {CONFIG_FILE} holds "
            '{"config": {...PPOConfig fields...}})'
        )
    if not isinstance(data.get("env_id"), str):
        raise CheckpointError(f"{path}: the config names no env_id")
    version = payload.get("format", 1)  # format 1 (no checksum) wrote no field
    if type(version) is not int or not 1 <= version <= FORMAT:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {version!r}; this version reads 1 to {FORMAT}"
        )
    known = {field.name for field in dataclasses.fields(PPOConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{path}: unknown config fields {unknown}; accepted: {sorted(known)}")
    try:
        config = PPOConfig.from_dict(data)
        config.validate()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    return config, payload


def _check_structure(path: Path, restored: Any, template: Any, what: str) -> None:
    """Raise unless ``restored`` (a raw state dict) has the template's leaves and shapes."""
    expected = traverse_util.flatten_dict(serialization.to_state_dict(template), sep="/")
    if not isinstance(restored, dict):
        raise CheckpointError(f"{path} does not hold {what} (got {type(restored).__name__})")
    found = traverse_util.flatten_dict(restored, sep="/")
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            raise CheckpointError(f"{path} lacks '{name}', which {what} has")
        if name not in expected:
            raise CheckpointError(f"{path} has '{name}', which {what} does not have")
        want, got = tuple(getattr(expected[name], "shape", ())), np.shape(found[name])
        if want != got:
            raise CheckpointError(f"{path}: '{name}' has shape {got}, but {what} needs {want}")


def _restore_bytes(path: Path, data: bytes) -> Any:
    try:
        return serialization.msgpack_restore(data)
    except Exception as error:  # msgpack raises several unrelated types on bad bytes
        raise CheckpointError(
            f"{path} is not a flax msgpack file ({type(error).__name__})"
        ) from None


def load_policy(
    directory: str | Path, env_id: str | None = None
) -> tuple[PPOPolicyParams, PPOConfig]:
    """Read a policy saved by :func:`save_policy`, checked (see the module doc).

    ``env_id``, if given, must be the environment the policy was trained on.

    Raises:
        FileNotFoundError: no ``policy.msgpack`` or ``config.json`` in ``directory``.
        CheckpointError: anything else that is wrong with the checkpoint.
    """
    directory = Path(directory)
    policy_path = directory / POLICY_FILE
    if not policy_path.exists():
        raise FileNotFoundError(f"no {POLICY_FILE} in {directory}")
    config, payload = _read_config(directory)
    if env_id is not None and config.env_id != env_id.removeprefix("cardiosim/"):
        raise CheckpointError(
            f"{directory} holds a policy trained on {config.env_id}, not {env_id}"
        )
    data = policy_path.read_bytes()
    saved_digest = payload.get("policy_sha256")
    if saved_digest is None:
        if payload.get("format", 1) >= 2:
            raise CheckpointError(
                f"{directory / CONFIG_FILE} has no policy_sha256, which format "
                f"{payload['format']} always writes (edited after saving?)"
            )
        warnings.warn(
            f"{directory} was saved before checkpoints carried a checksum (format 1): its "
            "weights cannot be verified; save_policy would re-save it with one",
            stacklevel=2,
        )
    elif hashlib.sha256(data).hexdigest() != saved_digest:
        raise CheckpointError(
            f"{policy_path} does not match the SHA-256 saved in {CONFIG_FILE} "
            "(corrupted or modified after saving; retrain or restore it)"
        )
    restored = _restore_bytes(policy_path, data)
    template = policy_template(config)
    what = f"a {config.env_id} policy with hidden sizes {list(config.hidden_sizes)}"
    _check_structure(policy_path, restored, template, what)
    return serialization.from_state_dict(template, restored), config


def seed_directories(directory: str | Path) -> list[Path]:
    """The ``seed_<i>`` subdirectories of ``directory`` (i an integer), in numeric order."""
    found = [
        path
        for path in Path(directory).glob("seed_*")
        if path.is_dir() and path.name.removeprefix("seed_").isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name.removeprefix("seed_")))


def save_seeds(directory: str | Path, policies: PPOPolicyParams, config: PPOConfig) -> list[Path]:
    """Save a seed-batched policy (leading axis = seeds) as ``seed_<i>`` subdirectories.

    Checkpoints of higher-numbered seeds left in ``directory`` by an earlier,
    larger run are removed, so that :func:`load_seeds` reads this run only.
    """
    n_seeds = jax.tree_util.tree_leaves(policies)[0].shape[0]
    saved = [
        save_policy(
            Path(directory) / f"seed_{i}",
            jax.tree_util.tree_map(lambda x, i=i: x[i], policies),
            config,
        )
        for i in range(n_seeds)
    ]
    # Stale seeds go only once every seed of this run is saved.
    for stale in seed_directories(directory):
        if int(stale.name.removeprefix("seed_")) >= n_seeds:
            for name in (POLICY_FILE, CONFIG_FILE):
                (stale / name).unlink(missing_ok=True)
            if not any(stale.iterdir()):
                stale.rmdir()
    return saved


def load_seeds(
    directory: str | Path, env_id: str | None = None
) -> tuple[PPOPolicyParams, PPOConfig, int]:
    """Load ``seed_<i>`` subdirectories (or a single checkpoint) stacked on a leading axis.

    Every seed must come from the same config (:class:`CheckpointError` otherwise).
    """
    directory = Path(directory)
    seed_dirs = [d for d in seed_directories(directory) if (d / POLICY_FILE).exists()]
    if not seed_dirs:
        policy, config = load_policy(directory, env_id)
        return jax.tree_util.tree_map(lambda x: x[None], policy), config, 1
    loaded = [load_policy(d, env_id) for d in seed_dirs]
    config = loaded[0][1]
    for seed_dir, (_, other) in zip(seed_dirs, loaded, strict=True):
        if other != config:
            raise CheckpointError(
                f"{seed_dir} was trained with another config than {seed_dirs[0]}; "
                "a run's seeds share one config"
            )
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[p for p, _ in loaded])
    return stacked, config, len(loaded)


# --------------------------------------------------------------------------- training runs

#: A run's latest training state, in ``<run>/training/`` while it trains.
TRAINING_DIR = "training"
STATE_FILE = "state.msgpack"
PROGRESS_FILE = "progress.json"


def save_training(
    directory: str | Path,
    state: Any,
    metrics: dict[str, Any],
    updates_done: int,
    config: PPOConfig,
    n_seeds: int,
    seed: int,
) -> Path:
    """Save a run's training state after ``updates_done`` updates (atomically, as policies).

    ``state`` is the seed-batched :class:`~cardiosim_jax.training.ppo.TrainState`
    and ``metrics`` the per-update metrics so far (leading axes seeds, updates).
    """
    directory = Path(directory) / TRAINING_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state_bytes = serialization.to_bytes(
        {"state": state, "metrics": jax.tree_util.tree_map(np.asarray, metrics)}
    )
    progress = {
        "format": FORMAT,
        "config": config.to_dict(),
        "n_seeds": n_seeds,
        "seed": seed,
        "updates_done": updates_done,
        "state_sha256": hashlib.sha256(state_bytes).hexdigest(),
    }
    _commit(directory, {STATE_FILE: state_bytes, PROGRESS_FILE: json.dumps(progress, indent=2)})
    return directory


def load_training(
    directory: str | Path, state_template: Any, config: PPOConfig, n_seeds: int, seed: int
) -> tuple[Any, dict[str, np.ndarray], int]:
    """The state, metrics and update count a run saved (:func:`save_training`), checked.

    The run must have been started with the same ``config``, ``n_seeds`` and
    ``seed``; ``state_template`` (e.g. ``jax.eval_shape`` of the trainer's
    ``init``) fixes the structure and shapes.

    Raises:
        FileNotFoundError: no saved training state in ``directory``.
        CheckpointError: a state that is corrupt or from another run.
    """
    directory = Path(directory) / TRAINING_DIR
    state_path, progress_path = directory / STATE_FILE, directory / PROGRESS_FILE
    if not (state_path.exists() and progress_path.exists()):
        raise FileNotFoundError(f"no saved training state in {directory}")
    try:
        progress = json.loads(progress_path.read_text())
        saved_config = PPOConfig.from_dict(progress["config"])
        saved_run = (progress["n_seeds"], progress["seed"])
        updates_done = int(progress["updates_done"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{progress_path} is not a training progress file ({error})"
        ) from None
    if saved_config != config:
        changed = sorted(
            field.name
            for field in dataclasses.fields(PPOConfig)
            if getattr(saved_config, field.name) != getattr(config, field.name)
        )
        raise CheckpointError(
            f"{directory} was trained with other settings ({', '.join(changed)} differ); "
            "resume with the run's own settings"
        )
    if saved_run != (n_seeds, seed):
        raise CheckpointError(
            f"{directory} holds {saved_run[0]} seed(s) from --seed {saved_run[1]}, "
            f"not {n_seeds} from --seed {seed}"
        )
    if not 0 < updates_done <= config.num_updates:
        raise CheckpointError(
            f"{progress_path}: updates_done {updates_done} outside 1..{config.num_updates}"
        )
    data = state_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != progress.get("state_sha256"):
        raise CheckpointError(
            f"{state_path} does not match the SHA-256 saved in {PROGRESS_FILE} "
            "(corrupted or modified after saving)"
        )
    restored = _restore_bytes(state_path, data)
    if not isinstance(restored, dict) or set(restored) != {"state", "metrics"}:
        raise CheckpointError(f"{state_path} does not hold a training state")
    _check_structure(state_path, restored["state"], state_template, "this run's training state")
    state = serialization.from_state_dict(state_template, restored["state"])
    return state, restored["metrics"], updates_done


def remove_training(directory: str | Path) -> None:
    """Delete a finished run's training state (its seeds' policies are saved)."""
    directory = Path(directory) / TRAINING_DIR
    for name in (STATE_FILE, PROGRESS_FILE):
        (directory / name).unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
