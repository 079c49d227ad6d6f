"""``cardiosim-jax`` command line, run in-process end to end on tiny budgets."""

from __future__ import annotations

import contextlib
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ENV_IDS, expected_always_shock_return

from cardiosim_jax import cli, experiments
from cardiosim_jax.training import checkpoint, ppo

DOSING = "AntiarrhythmicDosing-v0"
SUMMARY_KEYS = {"mean", "std", "iqm", "ci95", "n_episodes"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Evaluation episodes used throughout; table2 below uses the same count, so the
#: compiled baseline rollouts of the evaluate tests are reused there.
EPISODES = 20


def run_cli(argv: list[str]) -> str:
    """``cli.main(argv)`` with stdout captured (stderr, the progress log, discarded)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(argv) == 0
    return out.getvalue()


def check_summary(summary: dict, n_episodes: int) -> None:
    assert summary["n_episodes"] == n_episodes
    lo, hi = summary["ci95"]
    assert len(summary["ci95"]) == 2
    assert np.isfinite([summary["mean"], summary["std"], summary["iqm"], lo, hi]).all()
    assert lo <= summary["mean"] <= hi
    assert summary["std"] >= 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``train`` two seeds of the paper preset for 2048 steps; (out dir, printed JSON)."""
    out_dir = tmp_path_factory.mktemp("train")
    argv = ["train", "--env", DOSING, "--timesteps", "2048", "--seeds", "2"]
    stdout = run_cli([*argv, "--episodes", "5", "--out", str(out_dir)])
    return out_dir, stdout


# --------------------------------------------------------------------------- train


def test_train_writes_checkpoints_metrics_and_curve(trained):
    out_dir, stdout = trained
    printed = json.loads(stdout)
    assert set(printed) == SUMMARY_KEYS | {"n_seeds"}
    assert printed["n_seeds"] == 2
    check_summary(printed, 2 * 5)

    for i in range(2):
        assert (out_dir / f"seed_{i}" / "policy.msgpack").is_file()
        assert (out_dir / f"seed_{i}" / "config.json").is_file()
    assert not (out_dir / "seed_2").exists()

    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics) == {"config", "evaluation", "training"}
    config = metrics["config"]
    assert config["env_id"] == DOSING
    assert config["total_timesteps"] == 2048
    # The default preset is the paper's: 1024 steps per update (Table 1) -> 2 updates.
    assert config == ppo.preset("paper", DOSING, total_timesteps=2048).to_dict()
    num_updates = 2048 // (config["num_envs"] * config["num_steps"])
    assert num_updates == 2
    training = metrics["training"]
    assert np.shape(training["episode_return"]) == (2, num_updates)
    np.testing.assert_array_equal(training["timesteps"], [[1024, 2048], [1024, 2048]])
    evaluation = metrics["evaluation"]
    assert evaluation["n_seeds"] == 2 and len(evaluation["seed_means"]) == 2
    for key in SUMMARY_KEYS:
        assert printed[key] == evaluation[key]
    assert evaluation["mean"] == pytest.approx(np.mean(evaluation["seed_means"]))

    png = (out_dir / "learning_curve.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_evaluate_checkpoint_reproduces_the_training_evaluation(trained):
    """Same episodes (train evaluates with seed + 1) through the saved checkpoints."""
    out_dir, _ = trained
    metrics = json.loads((out_dir / "metrics.json").read_text())["evaluation"]
    argv = ["evaluate", "--env", DOSING, "--policy", str(out_dir), "--episodes", "5"]
    printed = json.loads(run_cli([*argv, "--seed", "1", "--json"]))
    assert set(printed) == SUMMARY_KEYS
    check_summary(printed, 2 * 5)
    for key in ("mean", "std", "iqm"):
        assert printed[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-6)


def test_evaluate_single_seed_checkpoint_and_prefixed_id(trained):
    out_dir, _ = trained
    argv = ["evaluate", "--env", f"cardiosim/{DOSING}", "--policy", str(out_dir / "seed_0")]
    printed = json.loads(run_cli([*argv, "--episodes", "5", "--json"]))
    check_summary(printed, 5)
    # Human-readable output names the policy and the episode count.
    seed_dir = str(out_dir / "seed_0")
    text = run_cli(["evaluate", "--env", DOSING, "--policy", seed_dir, "--episodes", "5"])
    assert seed_dir in text and "5 episodes" in text and "95% CI" in text
    assert f"mean {printed['mean']:.2f}" in text


def test_evaluate_checkpoint_on_another_env_exits_with_a_message(trained):
    out_dir, _ = trained
    argv = ["evaluate", "--env", "PacingControl-v0", "--policy", str(out_dir), "--json"]
    with pytest.raises(SystemExit) as excinfo:
        run_cli(argv)
    message = str(excinfo.value.code)
    assert DOSING in message and "PacingControl-v0" in message


def test_evaluate_missing_checkpoint_exits_with_a_message(tmp_path):
    with pytest.raises(SystemExit) as excinfo:
        run_cli(["evaluate", "--env", DOSING, "--policy", str(tmp_path / "nope"), "--json"])
    message = str(excinfo.value.code)
    assert "nope" in message and "random" in message and "heuristic" in message


# --------------------------------------------------------------------------- evaluate baselines


def test_evaluate_random_json(capsys):
    argv = ["evaluate", "--env", DOSING, "--policy", "random", "--episodes", "50", "--json"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == SUMMARY_KEYS
    assert isinstance(printed["ci95"], list)
    check_summary(printed, 50)
    assert printed["std"] > 0.0  # random dosing returns vary
    # Reproducible for a seed, different for another.
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == printed
    assert cli.main([*argv, "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["mean"] != printed["mean"]


#: Independent expectations of the heuristics on medium difficulty (paper Table 2:
#: pacing 129 +- 6, dosing 169 +- 16, 20 episodes each).
HEURISTIC_BANDS = {"PacingControl-v0": (100.0, 160.0), "AntiarrhythmicDosing-v0": (135.0, 205.0)}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_evaluate_heuristic_on_each_env(env_id, capsys):
    argv = ["evaluate", "--env", env_id, "--policy", "heuristic", "--episodes", str(EPISODES)]
    assert cli.main([*argv, "--difficulty", "medium", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    check_summary(printed, EPISODES)
    if env_id == "DefibrillationTiming-v0":
        # Always shock at 360 J; medium tier: success base 0.5.
        expected = expected_always_shock_return(360.0, 0.5)
        standard_error = printed["std"] / math.sqrt(EPISODES)
        assert abs(printed["mean"] - expected) < 4 * standard_error
    else:
        lo, hi = HEURISTIC_BANDS[env_id]
        assert lo < printed["mean"] < hi


# --------------------------------------------------------------------------- sweep


def test_sweep_writes_json_markdown_heatmap_and_the_best_checkpoint(tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    # --lr is shorthand for --set learning_rate=...; --set takes any PPOConfig leaf.
    argv = ["sweep", "--env", DOSING, "--lr", "1e-4,1e-3", "--set", "gamma=0.9,0.99"]
    argv += ["--num-envs", "8", "--num-steps", "64", "--minibatch-size", "128"]
    argv += ["--seeds", "2", "--timesteps", "1024", "--episodes", "5", "--out", str(out_dir)]
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out

    sweep = json.loads((out_dir / "sweep.json").read_text())
    config = sweep["config"]
    assert (config["num_envs"], config["num_steps"], config["minibatch_size"]) == (8, 64, 128)
    assert config["total_timesteps"] == 1024 and config["env_id"] == DOSING
    assert sweep["grid"] == {"learning_rate": [1e-4, 1e-3], "gamma": [0.9, 0.99]}
    rows = sweep["results"]
    assert [(r["learning_rate"], r["gamma"]) for r in rows] == [
        (1e-4, 0.9),
        (1e-4, 0.99),
        (1e-3, 0.9),
        (1e-3, 0.99),
    ]
    for row in rows:
        assert row["n_seeds"] == 2 and len(row["seed_means"]) == 2
        check_summary(row, 2 * 5)
        # Two seeds: the CI over seeds spans exactly the two seed means.
        assert row["ci95"] == pytest.approx(sorted(row["seed_means"]))
    # Each grid point trained with its own hyperparameters (same seeds, other results).
    assert rows[0]["seed_means"] != rows[2]["seed_means"]
    assert rows[0]["seed_means"] != rows[1]["seed_means"]

    best = int(np.argmax([r["mean"] for r in rows]))
    assert sweep["best"]["index"] == best
    assert sweep["best"]["config"]["gamma"] == pytest.approx(rows[best]["gamma"])
    # The best setting's seeds are saved as a checkpoint that evaluate accepts, with its
    # hyperparameters, and that plays as the sweep evaluated it (same keys as train's).
    policies, saved, n_seeds = checkpoint.load_seeds(out_dir / "best", DOSING)
    assert n_seeds == 2
    assert saved.learning_rate == pytest.approx(rows[best]["learning_rate"])
    assert saved.gamma == pytest.approx(rows[best]["gamma"])
    replay = experiments.evaluate_policies(policies, *_dosing(), 2, 5, 0)
    assert replay["seed_means"] == pytest.approx(rows[best]["seed_means"], rel=1e-6)

    table = (out_dir / "sweep.md").read_text()
    assert stdout == table + "\n"  # printed as written
    assert "| learning_rate | gamma | mean | IQM |" in table
    table_rows = [line for line in table.splitlines() if line.startswith("| 0.00")]
    assert len(table_rows) == 4
    assert table_rows[0].startswith("| 0.0001 | 0.9 |")
    assert table_rows[3].startswith("| 0.001 | 0.99 |")
    assert [line.endswith("| best |") for line in table_rows] == [i == best for i in range(4)]
    png = (out_dir / "sweep_heatmap.png").read_bytes()
    assert png.startswith(PNG_MAGIC)


def _dosing():
    import cardiosim_jax

    return cardiosim_jax.make(DOSING, "medium")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_rollout_shape_options_reach_the_config(command):
    """--num-envs, --num-steps and --minibatch-size replace the preset's (large: rescaled)."""
    argv = [command, "--env", DOSING, "--preset", "large", "--out", "x", "--num-envs", "4096"]
    if command == "sweep":
        argv += ["--lr", "1e-3"]
    config = cli._config_from_args(cli.build_parser().parse_args(argv))
    assert config == ppo.preset("large", DOSING, num_envs=4096)
    assert (config.num_envs, config.minibatch_size) == (4096, 4096 * 32 // 8)
    argv += ["--num-steps", "16", "--minibatch-size", "1024"]
    config = cli._config_from_args(cli.build_parser().parse_args(argv))
    assert (config.num_envs, config.num_steps, config.minibatch_size) == (4096, 16, 1024)


# --------------------------------------------------------------------------- table2


def test_table2_quick_protocol_and_output(tmp_path, monkeypatch, capsys):
    """``table2 --quick`` end to end except PPO training (the real run takes ~65 s).

    ``train_seeds`` is replaced by one returning untrained policies of the right
    shape (training itself is covered by ``train`` above); it records the configs
    the protocol asks for. Baselines and the PPO evaluation run for real.
    """
    requested = []

    def untrained_seeds(config, n_seeds, seed, label=""):
        requested.append((config, n_seeds))
        policy = checkpoint.policy_template(config)
        stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x] * n_seeds), policy)
        steps = config.batch_size * jnp.arange(1, config.num_updates + 1)
        metrics = {
            "timesteps": jnp.tile(steps, (n_seeds, 1)),
            "episode_return": jnp.zeros((n_seeds, config.num_updates)),
        }
        return ppo.TrainOutput(policy=stacked, metrics=metrics)

    monkeypatch.setattr(experiments, "train_seeds", untrained_seeds)
    out = tmp_path / "nested" / "table2.json"
    argv = ["table2", "--quick", "--episodes", str(EPISODES), "--seeds", "2", "--out", str(out)]
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(argv) == 0
    stdout = capsys.readouterr().out

    # Paper preset, the paper's difficulty per env, a tenth of the Table 1 budget, 2 seeds.
    assert [(c.env_id, c.difficulty, c.total_timesteps, n) for c, n in requested] == [
        ("PacingControl-v0", "medium", 20_000, 2),
        ("AntiarrhythmicDosing-v0", "medium", 30_000, 2),
        ("DefibrillationTiming-v0", "easy", 50_000, 2),
    ]
    for config, _ in requested:
        assert config.replace_static(total_timesteps=10 * config.total_timesteps) == ppo.preset(
            "paper", config.env_id
        )

    results = json.loads(out.read_text())
    assert list(results) == list(experiments.TABLE2_PROTOCOL)
    ppo_cells = {"ppo", "ppo_other_mode"}
    assert set(results["PacingControl-v0"]) == {"random", "heuristic"} | ppo_cells
    assert set(results["AntiarrhythmicDosing-v0"]) == {"random", "heuristic"} | ppo_cells
    assert set(results["DefibrillationTiming-v0"]) == {"random"} | ppo_cells  # no heuristic
    for cells in results.values():
        for name, cell in cells.items():
            extra = {"actions"} if name in ppo_cells else set()
            assert set(cell) == SUMMARY_KEYS | {"n_seeds", "block_means"} | extra
            blocks = cell["block_means"]  # 20-episode means: one per seed here
            assert blocks["size"] == 20 and blocks["n"] == cell["n_seeds"]
            assert blocks["p2.5"] <= blocks["p97.5"]
            n_seeds = 2 if name in ppo_cells else 1
            assert cell["n_seeds"] == n_seeds
            check_summary(cell, n_seeds * EPISODES)
    # train_all.py's choice: PPO's mean action on pacing and dosing, sampled on defibrillation.
    assert [results[e]["ppo"]["actions"] for e in results] == ["mean", "mean", "sampled"]
    assert [results[e]["ppo_other_mode"]["actions"] for e in results] == ["sampled"] * 2 + ["mean"]
    # The heuristic beats random by orders of magnitude on pacing (paper: 129 vs -369,322).
    pacing = results["PacingControl-v0"]
    assert pacing["heuristic"]["mean"] > pacing["random"]["mean"] + 100.0
    # An untrained policy's mean action is ~0: no shock decision (> 0.5) is ever made,
    # so every episode times out: 100 x -0.1 and -50, on the easy tier as on any. Its
    # samples (std 1) cross it on ~31 % of steps, so some episodes end otherwise.
    defib = results["DefibrillationTiming-v0"]
    assert defib["ppo_other_mode"]["mean"] == pytest.approx(-60.0, abs=1e-3)
    assert defib["ppo_other_mode"]["std"] == pytest.approx(0.0, abs=1e-3)
    assert defib["ppo"]["std"] > 1.0

    # The markdown table: one row per cell, with the paper's numbers beside ours.
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "-v0" in line]
    assert len(rows) == 8
    for paper in ("129 ± 6", "169 ± 16", "-31 ± 5", "136 ± 22", "128 ± 27", "-646 ± 284"):
        assert paper in stdout
    assert "-369,322 ± 1,545,175" in stdout
    assert "quick" in stdout
    defib_rows = [row for row in rows if row.startswith("| DefibrillationTiming-v0 (easy)")]
    assert [row.split("|")[2].strip() for row in defib_rows] == ["random", "ppo"]
    assert "2x20" in stdout and "1x20" in stdout


# --------------------------------------------------------------------------- plot


def test_plot_heuristic_writes_a_png_and_prints_its_path(tmp_path):
    out = tmp_path / "figs" / "defib.png"
    argv = ["plot", "--env", "DefibrillationTiming-v0", "--policy", "heuristic"]
    stdout = run_cli([*argv, "--patients", "2", "--out", str(out)])
    assert stdout.strip() == str(out)
    png = out.read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_plot_checkpoint_writes_a_png(trained, tmp_path):
    """A (two-seed) checkpoint directory, loaded as ``evaluate`` loads it."""
    out_dir, _ = trained
    out = tmp_path / "ppo.png"
    stdout = run_cli(["plot", "--env", DOSING, "--policy", str(out_dir), "--out", str(out)])
    assert stdout.strip() == str(out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_plot_unknown_policy_exits_with_the_accepted_ones(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit) as excinfo:
        run_cli(["plot", "--env", DOSING, "--policy", "clever", "--out", str(out)])
    message = str(excinfo.value.code)
    assert "clever" in message and "random" in message and "heuristic" in message
    assert "checkpoint" in message
    assert not out.exists()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--env", "NoSuchEnv-v0", "--out", "x"],
        ["evaluate", "--env", "NoSuchEnv-v0", "--policy", "random"],
        ["sweep", "--env", "NoSuchEnv-v0", "--lr", "1e-3", "--out", "x"],
        ["evaluate", "--env", DOSING, "--policy", "random", "--difficulty", "extreme"],
        ["train", "--env", DOSING],  # --out is required
        ["plot", "--env", DOSING],  # --out is required
        ["train", "--env", DOSING, "--out", "x", "--preset", "fast"],
        [],
    ],
)
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    assert excinfo.value.code == 2
    assert "usage: cardiosim-jax" in capsys.readouterr().err


def test_unknown_env_error_lists_the_registered_ids(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--env", "NoSuchEnv-v0", "--policy", "random"])
    err = capsys.readouterr().err
    assert "invalid choice: 'NoSuchEnv-v0'" in err
    for env_id in ENV_IDS:
        assert env_id in err


def test_evaluate_defaults_to_the_checkpoint_tier(tmp_path, capsys):
    config = ppo.preset("paper", "DefibrillationTiming-v0")
    # An untrained network is enough: only the tier recorded with it matters here.
    policy = jax.tree_util.tree_map(lambda x: x[None], checkpoint.policy_template(config))
    checkpoint.save_seeds(tmp_path, policy, config)
    capsys.readouterr()
    evaluate = ["evaluate", "--env", "DefibrillationTiming-v0", "--policy", str(tmp_path)]
    cli.main([*evaluate, "--episodes", "5"])
    assert "(easy)" in capsys.readouterr().out  # the paper trains defibrillation on easy
    cli.main([*evaluate, "--episodes", "5", "--difficulty", "hard"])
    assert "(hard)" in capsys.readouterr().out
