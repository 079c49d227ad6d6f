"""Periodic training checkpoints: an interrupted run, resumed, equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cardiosim_jax import cli, experiments
from cardiosim_jax.training import checkpoint, ppo

ENV_ID = "AntiarrhythmicDosing-v0"
SEEDS = 2


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def config():
    # 5 updates of 8 envs x 32 steps.
    return ppo.preset(
        "tuned", ENV_ID, num_envs=8, num_steps=32, minibatch_size=64, total_timesteps=5 * 256
    )


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    return experiments.train_seeds(
        config, SEEDS, 0, log=quiet, progress=False, run_dir=run_dir, interval=2
    )


def leaves(out: ppo.TrainOutput) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves((out.policy, out.metrics))]


def assert_identical(a: ppo.TrainOutput, b: ppo.TrainOutput) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def interrupt_after(saves: int, monkeypatch) -> None:
    """Ctrl-C arrives right after the ``saves``-th training checkpoint."""
    real = checkpoint.save_training
    count = {"n": 0}

    def save_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        count["n"] += 1
        if count["n"] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_training", save_then_interrupt)


def test_an_interrupted_run_resumes_to_the_same_result(
    config, uninterrupted, tmp_path, monkeypatch
):
    interrupt_after(1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        experiments.train_seeds(
            config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, interval=2
        )
    monkeypatch.undo()
    resumed = experiments.train_seeds(
        config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, interval=2, resume=True
    )
    assert np.asarray(resumed.metrics["timesteps"]).shape == (SEEDS, config.num_updates)
    assert_identical(uninterrupted, resumed)


def test_the_interval_does_not_change_the_result(config, uninterrupted, tmp_path):
    every_update = experiments.train_seeds(
        config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, interval=1
    )
    assert_identical(uninterrupted, every_update)
    # Against one compiled call: the same run to float32 rounding.
    whole = experiments.train_seeds(config, SEEDS, 0, log=quiet, progress=False)
    for x, y in zip(leaves(whole), leaves(every_update), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_resuming_another_run_is_refused(config, tmp_path, monkeypatch):
    interrupt_after(1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        experiments.train_seeds(
            config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, interval=2
        )
    monkeypatch.undo()
    other = config.replace(gamma=0.5)
    with pytest.raises(checkpoint.CheckpointError, match=r"other settings \(gamma differ\)"):
        experiments.train_seeds(
            other, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, resume=True
        )
    with pytest.raises(checkpoint.CheckpointError, match="holds 2 seed.* not 3 from --seed 0"):
        experiments.train_seeds(
            config, 3, 0, log=quiet, progress=False, run_dir=tmp_path, resume=True
        )
    state = tmp_path / checkpoint.TRAINING_DIR / checkpoint.STATE_FILE
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.raises(checkpoint.CheckpointError, match="does not match the SHA-256"):
        experiments.train_seeds(
            config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, resume=True
        )


class DropsAnInterrupt:
    """Sends SIGINT from ``__del__``: its KeyboardInterrupt is raised there, where Python
    drops it (what happened to a real Ctrl-C landing in JAX's garbage-collection callback)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the handler runs at one of these bytecode boundaries
            pass


def test_a_dropped_ctrl_c_still_stops_the_run_after_the_chunk_under_way(
    config, tmp_path, monkeypatch
):
    real = checkpoint.save_training
    saves, dropped = [], []

    def save_then_signal(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(args[3])  # updates done
        if len(saves) == 1:
            DropsAnInterrupt()  # garbage at once: __del__ runs here

    monkeypatch.setattr(checkpoint, "save_training", save_then_signal)
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_type))
    with pytest.raises(KeyboardInterrupt):
        experiments.train_seeds(
            config, SEEDS, 0, log=quiet, progress=False, run_dir=tmp_path, interval=2
        )
    assert dropped == [KeyboardInterrupt]  # Python did drop it ...
    assert saves == [2]  # ... and the run stopped after the chunk it arrived in
    # The handler is restored: a later SIGINT raises as usual.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stops_the_cli_within_one_interval_and_resume_finishes(tmp_path, capsys):
    """A real SIGINT to a real ``cardiosim-jax train``: exit 130 with one line, no
    traceback, the last checkpoint kept; ``--resume`` then completes the run and cleans up."""
    updates = 40
    argv = ["train", "--env", ENV_ID, "--preset", "tuned", "--timesteps", str(updates * 64 * 128)]
    argv += ["--episodes", "2", "--checkpoint-every", "1", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="no interrupted run"):
        cli.main([*argv, "--resume"])

    progress = tmp_path / checkpoint.TRAINING_DIR / checkpoint.PROGRESS_FILE
    process = subprocess.Popen(
        [sys.executable, "-m", "cardiosim_jax.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not progress.exists():  # the first interval is saved: training is under way
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
        at_signal = json.loads(progress.read_text())["updates_done"]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "cardiosim-jax train: interrupted"
    saved = json.loads(progress.read_text())["updates_done"]
    # Stopped within the interval under way when the signal came (one update each), and
    # kept every checkpoint saved before it.
    assert at_signal <= saved <= at_signal + 1 < updates
    assert f"holds updates 1-{saved} of {updates}" in err
    assert not (tmp_path / "seed_0").exists()

    assert cli.main([*argv, "--resume"]) == 0
    assert f"resuming {tmp_path} after update {saved} of {updates}" in capsys.readouterr().err
    assert not (tmp_path / checkpoint.TRAINING_DIR).exists()
    assert (tmp_path / "seed_0" / checkpoint.POLICY_FILE).exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["training"]["timesteps"][0]) == updates
