"""Save and load trained PPO policies (weights, normalisation statistics and config).

A checkpoint is a directory holding ``policy.msgpack`` (``flax.serialization``
of the policy pytree) and ``config.json`` (the :class:`PPOConfig` that trained
it, which fixes the network shape). Multi-seed runs save one directory per
seed, ``seed_0``, ``seed_1``, ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import serialization

import cardiosim_jax
from cardiosim_jax.training.config import PPOConfig
from cardiosim_jax.training.networks import ActorCritic, PPOPolicyParams, residual_of
from cardiosim_jax.training.normalization import RunningMeanStd

POLICY_FILE = "policy.msgpack"
CONFIG_FILE = "config.json"


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


def save_policy(
    directory: str | Path, policy: PPOPolicyParams, config: PPOConfig, extra: dict | None = None
) -> Path:
    """Write one (unbatched) policy and its config to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / POLICY_FILE).write_bytes(serialization.to_bytes(policy))
    payload: dict[str, Any] = {"config": config.to_dict(), **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2))
    return directory


def load_policy(directory: str | Path) -> tuple[PPOPolicyParams, PPOConfig]:
    """Read a policy saved by :func:`save_policy`."""
    directory = Path(directory)
    if not (directory / POLICY_FILE).exists():
        raise FileNotFoundError(f"no {POLICY_FILE} in {directory}")
    config = PPOConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text())["config"])
    policy = serialization.from_bytes(
        policy_template(config), (directory / POLICY_FILE).read_bytes()
    )
    return policy, config


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
    for stale in seed_directories(directory):
        if int(stale.name.removeprefix("seed_")) >= n_seeds:
            for name in (POLICY_FILE, CONFIG_FILE):
                (stale / name).unlink(missing_ok=True)
            if not any(stale.iterdir()):
                stale.rmdir()
    return [
        save_policy(
            Path(directory) / f"seed_{i}",
            jax.tree_util.tree_map(lambda x, i=i: x[i], policies),
            config,
        )
        for i in range(n_seeds)
    ]


def load_seeds(directory: str | Path) -> tuple[PPOPolicyParams, PPOConfig, int]:
    """Load ``seed_<i>`` subdirectories (or a single checkpoint) stacked on a leading axis."""
    directory = Path(directory)
    seed_dirs = [d for d in seed_directories(directory) if (d / POLICY_FILE).exists()]
    if not seed_dirs:
        policy, config = load_policy(directory)
        return jax.tree_util.tree_map(lambda x: x[None], policy), config, 1
    loaded = [load_policy(d) for d in seed_dirs]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[p for p, _ in loaded])
    return stacked, loaded[0][1], len(loaded)
