"""Checkpoints cannot be lost or silently wrong: atomic saves, checksums, structure checks."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiosim_jax.training import checkpoint, ppo

ENV_ID = "AntiarrhythmicDosing-v0"


@pytest.fixture(scope="module")
def config():
    return ppo.preset("tuned", ENV_ID, hidden_sizes=(16,))


@pytest.fixture(scope="module")
def policy(config):
    template = checkpoint.policy_template(config)
    # Distinct values, so that a load that read the wrong bytes would show.
    leaves, treedef = jax.tree_util.tree_flatten(template)
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(x)) for k, x in zip(keys, leaves, strict=True)]
    )


@pytest.fixture
def saved(tmp_path, policy, config):
    checkpoint.save_policy(tmp_path, policy, config, extra={"note": "first"})
    return tmp_path


def edit_config(directory, change) -> None:
    path = directory / checkpoint.CONFIG_FILE
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def assert_loads_as(directory, policy) -> None:
    loaded, _ = checkpoint.load_policy(directory)
    for a, b in zip(
        jax.tree_util.tree_leaves(policy), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_save_stores_the_checksum_env_and_tier(saved, config):
    payload = json.loads((saved / checkpoint.CONFIG_FILE).read_text())
    assert payload["format"] == checkpoint.FORMAT and len(payload["policy_sha256"]) == 64
    assert payload["config"]["env_id"] == ENV_ID
    assert payload["config"]["difficulty"] == config.difficulty
    assert payload["note"] == "first"


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_save_leaves_the_previous_checkpoint_whole(
    saved, policy, config, monkeypatch, fail_at
):
    # The disk fills while writing the weights (1) or the config (2).
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", failing_fsync)
    other = jax.tree_util.tree_map(lambda x: x + 1.0, policy)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_policy(saved, other, config, extra={"note": "second"})
    monkeypatch.undo()
    assert_loads_as(saved, policy)
    assert json.loads((saved / checkpoint.CONFIG_FILE).read_text())["note"] == "first"
    assert sorted(p.name for p in saved.iterdir()) == [
        checkpoint.CONFIG_FILE,
        checkpoint.POLICY_FILE,
    ]


def test_flipped_truncated_or_replaced_weights_are_refused(saved):
    original = (saved / checkpoint.POLICY_FILE).read_bytes()
    flipped = bytearray(original)
    for i in range(len(flipped) // 2, len(flipped) // 2 + 8):
        flipped[i] ^= 0xFF
    for damaged in (bytes(flipped), original[: len(original) // 2], b"", os.urandom(512)):
        (saved / checkpoint.POLICY_FILE).write_bytes(damaged)
        with pytest.raises(checkpoint.CheckpointError, match="does not match the SHA-256"):
            checkpoint.load_policy(saved)


def test_a_format_2_config_without_its_checksum_is_refused(saved, policy):
    edit_config(saved, lambda payload: payload.pop("policy_sha256"))
    with pytest.raises(checkpoint.CheckpointError, match="has no policy_sha256, which format 2"):
        checkpoint.load_policy(saved)


def test_a_format_1_checkpoint_loads_with_a_warning_and_its_structure_checked(saved, policy):
    """Saved before checksums existed (no ``format``, no ``policy_sha256``): loads, says its
    weights cannot be verified, and the structure checks still catch bad bytes."""

    def make_format_1(payload):
        payload.pop("policy_sha256")
        payload.pop("format")

    edit_config(saved, make_format_1)
    with pytest.warns(UserWarning, match=r"before checkpoints carried a checksum \(format 1\)"):
        assert_loads_as(saved, policy)
    original = (saved / checkpoint.POLICY_FILE).read_bytes()
    for damaged in (original[: len(original) // 2], b"", b"\xc1" * 64):
        (saved / checkpoint.POLICY_FILE).write_bytes(damaged)
        with (
            pytest.warns(UserWarning),
            pytest.raises(checkpoint.CheckpointError, match="not a flax msgpack file"),
        ):
            checkpoint.load_policy(saved)


@pytest.mark.parametrize("version", [0, 3, "2", 2.0, True, None])
def test_an_unknown_format_is_refused(saved, version):
    edit_config(saved, lambda payload: payload.update(format=version))
    with pytest.raises(
        checkpoint.CheckpointError, match="unknown checkpoint format .*reads 1 to 2$"
    ):
        checkpoint.load_policy(saved)


def test_a_config_relabelled_to_another_env_is_refused(saved):
    # The dosing network (1 action) under a pacing config (2 actions): the shapes differ.
    edit_config(saved, lambda payload: payload["config"].update(env_id="PacingControl-v0"))
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"'action_high' has shape \(1,\), but a PacingControl-v0 policy with hidden "
        r"sizes \[16\] needs \(2,\)$",
    ):
        checkpoint.load_policy(saved)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not valid JSON"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "has no 'config' object"),
        ('{"config": {"difficulty": "medium"}}', "names no env_id"),
        ('{"config": {"env_id": "Nope-v0"}}', "unknown environment id 'Nope-v0'"),
        (
            '{"config": {"env_id": "AntiarrhythmicDosing-v0", "lr": 1}}',
            r"unknown config fields \['lr'\]",
        ),
        (
            '{"config": {"env_id": "AntiarrhythmicDosing-v0", "num_steps": 10, '
            '"minibatch_size": 64}}',
            "must be a multiple of minibatch_size",
        ),
    ],
)
def test_a_bad_config_file_gives_one_line(saved, text, message):
    (saved / checkpoint.CONFIG_FILE).write_text(text)
    with pytest.raises(checkpoint.CheckpointError, match=message) as excinfo:
        checkpoint.load_policy(saved)
    assert "\n" not in str(excinfo.value)


def test_missing_files_and_the_wrong_env_are_named(saved, tmp_path_factory):
    with pytest.raises(
        checkpoint.CheckpointError, match=f"trained on {ENV_ID}, not PacingControl-v0"
    ):
        checkpoint.load_policy(saved, "PacingControl-v0")
    checkpoint.load_policy(saved, f"cardiosim/{ENV_ID}")  # the prefixed id is the same env
    (saved / checkpoint.CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=checkpoint.CONFIG_FILE):
        checkpoint.load_policy(saved)


def test_seeds_of_different_configs_are_not_stacked(tmp_path, policy, config):
    checkpoint.save_policy(tmp_path / "seed_0", policy, config)
    checkpoint.save_policy(tmp_path / "seed_1", policy, config.replace(gamma=0.5))
    with pytest.raises(checkpoint.CheckpointError, match="another config than"):
        checkpoint.load_seeds(tmp_path)


def test_the_committed_guides_carry_checksums_and_load():
    from pathlib import Path

    guides = sorted((Path(__file__).parents[2] / "baselines/results/v1_policies").glob("*/*"))
    assert len(guides) == 9
    for guide in guides:
        payload = json.loads((guide / checkpoint.CONFIG_FILE).read_text())
        assert len(payload["policy_sha256"]) == 64, guide
        checkpoint.load_policy(guide, payload["config"]["env_id"])
