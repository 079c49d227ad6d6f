"""Sharding the patient batch over devices: same results as one device, really split.

The multi-device checks run in one subprocess with four forced CPU devices
(``--xla_force_host_platform_device_count`` must be set before JAX starts, and
this process's JAX already has one device). The subprocess prints its findings
as JSON; the assertions are made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from conftest import once_per_session

import cardiosim_jax
from cardiosim_jax import agents, cli, sharding
from cardiosim_jax.rollout import run_episodes
from cardiosim_jax.training import ppo

N_DEVICES = 4
#: Environments whose sharded rollouts are compared (each costs two compilations).
ROLLOUT_ENVS = ("PacingControl-v0", "DefibrillationTiming-v0")

#: Runs with N_DEVICES CPU devices; prints one JSON object on its last stdout line.
SCRIPT = r"""
import json

import jax
import numpy as np

import cardiosim_jax
from cardiosim_jax import agents, cli
from cardiosim_jax.rollout import EpisodeStats, record_episodes, run_episodes
from cardiosim_jax.training import ppo


def max_diffs(a, b):
    # Largest absolute and relative differences over the leaves of two pytrees.
    abs_, rel = 0.0, 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape, (x.shape, y.shape)
        same_nan = np.isnan(x) & np.isnan(y)
        d = np.where(same_nan, 0.0, np.abs(x - y))
        abs_ = max(abs_, float(np.max(d, initial=0.0)))
        rel = max(rel, float(np.max(d / np.maximum(np.abs(y), 1e-3), initial=0.0)))
    return abs_, rel


def split_info(array):
    shards = array.addressable_shards
    return {
        "devices": len({s.device for s in shards}),
        "shard_shape": list(shards[0].data.shape),
        "spec": list(array.sharding.spec),
    }


out = {"device_count": jax.device_count()}
key = jax.random.PRNGKey(0)

# Rollouts: 8 episodes (two per device), 64 steps at most, of ROLLOUT_ENVS (the
# sharding is generic; dosing's population below is a second environment).
out["rollouts"] = {}
for env_id in ROLLOUT_ENVS:
    env, params = cardiosim_jax.make(env_id, "medium")
    policy, policy_params = agents.baseline_policy("random", env, params)
    args = (env, params, policy, policy_params, key, 8, 64)
    plain = run_episodes(*args)
    sharded = run_episodes(*args, shard=True)
    out["rollouts"][env_id] = {
        "diff": max_diffs(plain, sharded),
        "lengths_equal": bool(np.array_equal(plain.length, sharded.length)),
        **split_info(sharded.episode_return),
    }

# A population of 8 dosing patients, recorded step by step: the env params are split
# with the episodes (compared with unsharded run_episodes, which has the same keys).
env, params = cardiosim_jax.make(
    "AntiarrhythmicDosing-v0", elimination_rate=np.linspace(0.05, 0.4, 8).astype(np.float32)
)
policy, policy_params = agents.baseline_policy("heuristic", env, params)
args = (env, params, policy, policy_params, key, 8, 64)
plain, recorded = run_episodes(*args), record_episodes(*args, shard=True)
sharded = EpisodeStats(episode_return=recorded.episode_return, length=recorded.length)
out["population"] = {
    "diff": max_diffs(plain, sharded),
    **split_info(recorded.reward),
    "state_split": split_info(jax.tree_util.tree_leaves(recorded.state)[0]),
}

errors = {}
env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
try:
    run_episodes(env, params, policy, policy_params, key, 6, 64, shard=True)
except ValueError as error:
    errors["run_episodes"] = str(error)

# PPO: 8 environments (two per device), 2 updates, vmapped over 2 seeds, unsharded
# and sharded from the same keys.
config = ppo.preset(
    "tuned",
    "AntiarrhythmicDosing-v0",
    num_envs=8,
    num_steps=16,
    minibatch_size=32,
    update_epochs=2,
    total_timesteps=8 * 16 * 2,
    hidden_sizes=(8,),
)
keys = jax.random.split(key, 2)
results = {}
for shard in (False, True):
    train = jax.jit(jax.vmap(ppo.make_train(config.replace_static(shard_envs=shard))))
    compiled = train.lower(keys).compile()
    hlo = compiled.as_text()
    results[shard] = jax.block_until_ready(compiled(keys))
    out[f"ppo_all_reduces_shard_{shard}"] = hlo.count("all-reduce(")
policy = results[True].policy
policy_leaf = jax.tree_util.tree_leaves(policy)[0]
out["ppo"] = {
    "params_diff": max_diffs(results[False].policy, results[True].policy),
    "metrics_diff": {
        k: max_diffs(results[False].metrics[k], results[True].metrics[k])
        for k in results[False].metrics
    },
    "params_replicated": bool(policy_leaf.sharding.is_fully_replicated),
    "params_devices": len(policy_leaf.sharding.device_set),
    "finite": all(bool(np.isfinite(x).all()) for x in jax.tree_util.tree_leaves(policy)),
}
try:
    ppo.make_train(config.replace_static(shard_envs=True, num_envs=6, minibatch_size=16))
except ValueError as error:
    errors["make_train"] = str(error)

# Evaluation split over the devices: two PPO seeds (vmapped) and the CLI's --shard.
from cardiosim_jax.evaluation import evaluate

env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
evaluations = {
    shard: evaluate(ppo.ppo_policy, env, params, key, 8, 2, policy, shard=shard)
    for shard in (False, True)
}
out["evaluate"] = {
    "diff": max_diffs(evaluations[False]["seed_means"], evaluations[True]["seed_means"]),
    "n_episodes": evaluations[True]["n_episodes"],
}
import contextlib
import io

printed = {}
for flags in ([], ["--shard"]):
    buffer = io.StringIO()
    argv = ["evaluate", "--env", "AntiarrhythmicDosing-v0", "--policy", "heuristic"]
    with contextlib.redirect_stdout(buffer):
        cli.main(argv + ["--episodes", "8", "--json"] + flags)
    printed[bool(flags)] = json.loads(buffer.getvalue())
out["cli_evaluate"] = {"plain": printed[False], "sharded": printed[True]}
try:
    cli.main(["evaluate", "--env", "AntiarrhythmicDosing-v0", "--policy", "heuristic",
              "--episodes", "6", "--shard"])
except SystemExit as error:
    errors["cli_evaluate"] = str(error)
# The CLI refuses before training: the paper preset has one environment.
try:
    cli.main(["train", "--env", "AntiarrhythmicDosing-v0", "--shard", "--out", "unused"])
except SystemExit as error:
    errors["cli"] = str(error)
out["errors"] = errors
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def multi_device(tmp_path_factory) -> dict:
    return once_per_session(tmp_path_factory, "sharding_multi_device", _run_multi_device)


def _run_multi_device() -> dict:
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
        f"--xla_force_host_platform_device_count={N_DEVICES}".strip(),
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"ROLLOUT_ENVS = {ROLLOUT_ENVS!r}\n{SCRIPT}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_subprocess_sees_four_devices(multi_device):
    assert multi_device["device_count"] == N_DEVICES


@pytest.mark.parametrize("env_id", ROLLOUT_ENVS)
def test_sharded_rollouts_match_and_are_split(multi_device, env_id):
    rollout = multi_device["rollouts"][env_id]
    max_abs, max_rel = rollout["diff"]
    assert max_rel <= 1e-5, rollout
    assert rollout["lengths_equal"]
    assert rollout["devices"] == N_DEVICES
    assert rollout["shard_shape"] == [8 // N_DEVICES]
    assert rollout["spec"] == [sharding.AXIS]


def test_sharded_recording_of_a_population_matches(multi_device):
    population = multi_device["population"]
    assert population["diff"][1] <= 1e-5, population
    # (episodes, steps) arrays and the recorded states are split by episode.
    assert population["devices"] == N_DEVICES
    assert population["shard_shape"] == [8 // N_DEVICES, 64]
    assert population["state_split"]["devices"] == N_DEVICES
    assert population["state_split"]["shard_shape"][0] == 8 // N_DEVICES


def test_sharded_ppo_matches_unsharded(multi_device):
    result = multi_device["ppo"]
    assert result["finite"]
    # Sharded reductions sum in another order: float32 rounding, nothing more.
    params_abs, params_rel = result["params_diff"]
    assert params_rel <= 1e-3 and params_abs <= 1e-4, result
    for name, (metric_abs, metric_rel) in result["metrics_diff"].items():
        assert metric_rel <= 1e-3 or metric_abs <= 1e-5, (name, metric_abs, metric_rel)
    # Weights stay whole on every device.
    assert result["params_replicated"]
    assert result["params_devices"] == N_DEVICES


def test_sharded_ppo_all_reduces_across_devices(multi_device):
    # The compiler inserted the cross-device gradient (and statistics) reductions.
    assert multi_device["ppo_all_reduces_shard_True"] > 0
    assert multi_device["ppo_all_reduces_shard_False"] == 0


def test_sharded_evaluation_matches_unsharded(multi_device):
    result = multi_device["evaluate"]
    assert result["n_episodes"] == 2 * 8
    assert result["diff"][1] <= 1e-5, result
    cli_result = multi_device["cli_evaluate"]
    assert cli_result["sharded"]["n_episodes"] == 8
    for name in ("mean", "std", "iqm"):
        assert cli_result["sharded"][name] == pytest.approx(cli_result["plain"][name], rel=1e-5)


def test_indivisible_batches_raise(multi_device):
    errors = multi_device["errors"]
    assert "n_episodes (6)" in errors["run_episodes"]
    assert "(4)" in errors["run_episodes"]
    assert "num_envs (6)" in errors["make_train"]
    assert "(4)" in errors["make_train"]
    assert errors["cli"].startswith("--shard: num_envs (1)")
    assert errors["cli_evaluate"] == (
        "--shard: --episodes (6) must be divisible by the number of devices (4) to shard it "
        "over the 'patients' mesh axis"
    )


# --------------------------------------------------------------- one device, in process


def test_patient_mesh_spans_all_devices():
    mesh = sharding.patient_mesh()
    assert mesh.axis_names == (sharding.AXIS,)
    assert mesh.devices.size == jax.device_count()


def test_shard_batch_places_batched_leaves_and_replicates_scalars():
    mesh = sharding.patient_mesh()
    tree = {"batch": np.arange(4.0), "scalar": np.float32(1.0)}
    placed = sharding.shard_batch(tree, mesh)
    assert placed["batch"].sharding.spec == sharding.batch_spec()
    assert placed["scalar"].sharding.is_fully_replicated
    np.testing.assert_array_equal(placed["batch"], tree["batch"])


def test_check_divisible_names_both_numbers():
    mesh = sharding.patient_mesh()
    sharding.check_divisible(4 * mesh.devices.size, mesh)
    fake = SimpleNamespace(devices=np.empty(3))  # only the device count is read
    with pytest.raises(ValueError, match=r"num_envs \(4\) .* devices \(3\)"):
        sharding.check_divisible(4, fake, "num_envs")


def test_shard_on_one_device_is_a_no_op():
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    policy, policy_params = agents.baseline_policy("random", env, params)
    args = (env, params, policy, policy_params, jax.random.PRNGKey(3), 4, 32)
    plain, sharded = run_episodes(*args), run_episodes(*args, shard=True)
    np.testing.assert_array_equal(plain.episode_return, sharded.episode_return)
    np.testing.assert_array_equal(plain.length, sharded.length)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--env", "AntiarrhythmicDosing-v0", "--out", "x"],
        ["evaluate", "--env", "AntiarrhythmicDosing-v0", "--policy", "heuristic"],
    ],
)
def test_cli_train_and_evaluate_have_a_shard_flag(argv):
    parser = cli.build_parser()
    assert parser.parse_args(argv).shard is False
    assert parser.parse_args(argv + ["--shard"]).shard is True


def test_shard_envs_config_round_trip_and_old_configs_load():
    config = ppo.preset("tuned", "AntiarrhythmicDosing-v0").replace_static(shard_envs=True)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["shard_envs"] is True
    assert ppo.PPOConfig.from_dict(data) == config
    # A config.json written before the field existed loads as unsharded.
    del data["shard_envs"]
    assert ppo.PPOConfig.from_dict(data).shard_envs is False
    # On one device every batch divides: building the sharded trainer works.
    assert callable(ppo.make_train(config))
