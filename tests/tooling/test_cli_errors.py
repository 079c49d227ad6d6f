"""Every user mistake on the command line: one line naming the bad value, a non-zero exit,
no traceback, and no work done first."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cardiosim_jax import cli
from cardiosim_jax.training import checkpoint, ppo

DOSING = "AntiarrhythmicDosing-v0"


def fails(argv: list[str], capsys) -> str:
    """Run ``cli.main(argv)``; it must exit non-zero. Returns its one-line message."""
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    code = excinfo.value.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if isinstance(code, str):  # SystemExit(message): Python prints it and exits with 1
        message = code
    else:
        assert code not in (0, None)
        message = err.strip().splitlines()[-1]
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "notes.txt"
    path.write_text("not a directory")
    return path


@pytest.fixture(scope="module")
def corrupted_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corrupted")
    config = ppo.preset("paper", DOSING)
    checkpoint.save_policy(directory, checkpoint.policy_template(config), config)
    data = bytearray((directory / checkpoint.POLICY_FILE).read_bytes())
    data[100:108] = bytes(8)
    (directory / checkpoint.POLICY_FILE).write_bytes(bytes(data))
    return directory


TRAIN = ["train", "--env", DOSING, "--out"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--env", DOSING, "--seeds", "0", "--out", "x"], r"--seeds: .*>= 1, got 0$"),
        (["train", "--env", DOSING, "--seeds", "-1", "--out", "x"], r"--seeds: .*>= 1, got -1$"),
        (["train", "--env", DOSING, "--seeds", "two", "--out", "x"], r"got 'two'$"),
        (["train", "--env", DOSING, "--timesteps", "0", "--out", "x"], r"--timesteps: .*got 0$"),
        (["train", "--env", DOSING, "--timesteps", "-5", "--out", "x"], r"got -5$"),
        (["train", "--env", DOSING, "--episodes", "0", "--out", "x"], r"--episodes: .*got 0$"),
        (["evaluate", "--env", DOSING, "--policy", "random", "--episodes", "0"], r"got 0$"),
        (["sweep", "--env", DOSING, "--lr", "", "--out", "x"], r"--lr: .*numbers, got ''$"),
        (["sweep", "--env", DOSING, "--lr", "nan", "--out", "x"], r"finite numbers > 0, got nan"),
        (["sweep", "--env", DOSING, "--lr", "1e-3,-1", "--out", "x"], r"> 0, got -1.0$"),
        (["sweep", "--env", DOSING, "--lr", "1e-3", "--ent-coef", "-0.1", "--out", "x"], r">= 0"),
        (["sweep", "--env", DOSING, "--lr", "1e-3", "--seeds", "0", "--out", "x"], r"got 0$"),
        (["sweep", "--env", DOSING, "--set", "gamma", "--out", "x"], r"V1,V2,..., got .gamma.$"),
        (
            ["sweep", "--env", DOSING, "--set", "lr=1e-3", "--out", "x"],
            r"--set: unknown hyperparameter 'lr'; accepted: learning_rate, ent_coef, ",
        ),
        (
            ["sweep", "--env", DOSING, "--set", "num_envs=8,16", "--out", "x"],
            r"unknown hyperparameter 'num_envs'",
        ),
        (["sweep", "--env", DOSING, "--set", "gamma=", "--out", "x"], r"gamma: expected .*''$"),
        (["sweep", "--env", DOSING, "--set", "gamma=0.9,x", "--out", "x"], r"got '0.9,x'$"),
        (["sweep", "--env", DOSING, "--lr", "1e-3", "--chunk-size", "0", "--out", "x"], r"got 0$"),
        (
            ["sweep", "--env", DOSING, "--lr", "1e-3", "--memory-budget-gib", "-1", "--out", "x"],
            r"--memory-budget-gib: expected a finite number > 0, got -1$",
        ),
        (["train", "--env", DOSING, "--num-envs", "0", "--out", "x"], r"--num-envs: .*got 0$"),
        (["train", "--env", DOSING, "--num-steps", "x", "--out", "x"], r"got 'x'$"),
        (["plot", "--env", DOSING, "--patients", "0", "--out", "x.png"], r"--patients: .*got 0$"),
        (["table2", "--seeds", "0"], r"--seeds: .*got 0$"),
        (["table2", "--episodes", "0"], r"--episodes: .*got 0$"),
        (["bench", "--repeats", "0"], r"--repeats: .*got 0$"),
        (["bench", "--batches", ""], r"--batches: .*got ''$"),
        (["bench", "--batches", "0,64"], r"--batches: .*got 0$"),
        (["bench", "--ppo-seeds", "0"], r"--ppo-seeds: .*got 0$"),
    ],
)
def test_counts_and_numbers_are_checked_by_the_parser(argv, message, capsys):
    assert re.search(message, fails(argv, capsys))


def test_a_budget_below_one_rollout_is_refused_before_training(tmp_path, capsys):
    message = fails([*TRAIN, str(tmp_path / "run"), "--timesteps", "1"], capsys)
    batch = ppo.preset("paper", DOSING).batch_size  # 1 env x 1,024 steps
    assert message == (
        f"--timesteps 1 is less than one rollout of the paper preset (num_envs x num_steps "
        f"= {batch}); accepted: >= {batch}"
    )
    assert not (tmp_path / "run").exists()


def test_output_paths_are_checked_before_any_work(tmp_path, a_file, capsys):
    assert fails([*TRAIN, str(a_file)], capsys) == (
        f"--out {a_file} is a file; accepted: a new or empty directory"
    )
    assert fails([*TRAIN, str(a_file / "run")], capsys) == (
        f"--out {a_file / 'run'} is not writable (Not a directory)"
    )
    earlier = tmp_path / "earlier"
    (earlier / "seed_0").mkdir(parents=True)
    assert "pass --overwrite to replace them" in fails([*TRAIN, str(earlier)], capsys)
    assert "already holds files" in fails(
        ["sweep", "--env", DOSING, "--lr", "1e-3", "--out", str(earlier)], capsys
    )
    plot = ["plot", "--env", DOSING, "--out"]
    assert fails([*plot, str(tmp_path / "x.xyz")], capsys).startswith(
        f"--out {tmp_path / 'x.xyz'}: unknown image format '.xyz'; accepted suffixes: "
    )
    assert fails([*plot, str(tmp_path)], capsys) == (
        f"--out {tmp_path} is a directory; accepted: a file path"
    )
    assert fails(["table2", "--out", str(tmp_path)], capsys) == (
        f"--out {tmp_path} is a directory; accepted: a file path"
    )
    assert not (tmp_path / "x.xyz").exists()


def test_bad_checkpoints_and_refused_settings_exit_with_one_line(
    tmp_path, corrupted_checkpoint, capsys
):
    message = fails(["evaluate", "--env", DOSING, "--policy", str(corrupted_checkpoint)], capsys)
    assert message.startswith(f"--policy {corrupted_checkpoint}: ")
    assert message.endswith("(corrupted or modified after saving; retrain or restore it)")
    (tmp_path / checkpoint.POLICY_FILE).write_bytes(b"")
    (tmp_path / checkpoint.CONFIG_FILE).write_text("{garbage")
    assert "is not valid JSON" in fails(
        ["evaluate", "--env", DOSING, "--policy", str(tmp_path)], capsys
    )
    # A ValueError from the library (the paper preset exists only for v0): exit 2.
    message = fails(
        ["train", "--env", "PacingControl-v1", "--preset", "paper", "--out", "x"], capsys
    )
    assert message.startswith("cardiosim-jax train: error: the paper preset exists only for")


@pytest.mark.parametrize(
    ("argv", "status", "last_line"),
    [
        (["train", "--env", DOSING, "--seeds", "0", "--out", "x"], 2, r"--seeds: expected"),
        (["train", "--env", "PacingControl-v1", "--preset", "paper", "--out", "x"], 2, "paper"),
        (["evaluate", "--env", DOSING, "--policy", "CORRUPTED"], 1, "SHA-256"),
    ],
)
def test_as_a_process_the_cli_exits_non_zero_without_a_traceback(
    argv, status, last_line, corrupted_checkpoint
):
    argv = [str(corrupted_checkpoint) if a == "CORRUPTED" else a for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "cardiosim_jax.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == status
    assert "Traceback" not in result.stderr
    assert last_line in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "sweep: nothing to sweep; give --set LEAF=V1,V2 (or --lr, --ent-coef)"),
        (
            ["--set", "gamma=0.9,1.5"],
            "cardiosim-jax sweep: error: gamma must be in [0, 1], got 1.5 (entry 1 of 2)",
        ),
        (
            ["--lr", "1e-3", "--set", "learning_rate=1e-4"],
            "learning_rate is given twice (--set learning_rate=... and its shorthand?)",
        ),
        (
            ["--lr", "1e-3", "--num-envs", "3", "--minibatch-size", "1000"],
            "cardiosim-jax sweep: error: num_envs x num_steps (384) must be a multiple of "
            "minibatch_size (1000)",
        ),
    ],
)
def test_a_sweep_grid_is_checked_before_out_is_touched(tmp_path, extra, message, capsys):
    out = tmp_path / "sweep"
    assert fails(["sweep", "--env", DOSING, "--out", str(out), *extra], capsys) == message
    assert not out.exists()
