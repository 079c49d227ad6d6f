"""cardiosim_jax.experiments: the evaluation-key rule shared by PPO seeds and baselines."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_baseline_script
from scipy import stats

import cardiosim_jax
from cardiosim_jax import agents, experiments
from cardiosim_jax.rollout import run_episodes
from cardiosim_jax.training import checkpoint, ppo

ENV_ID, TIER, EPISODES, SEEDS, SEED = "AntiarrhythmicDosing-v0", "easy", 4, 2, 3


@pytest.fixture(scope="module")
def setting():
    env, env_params = cardiosim_jax.make(ENV_ID, TIER)
    config = ppo.preset("tuned", ENV_ID, TIER)
    template = checkpoint.policy_template(config)
    obs_dim = env.observation_space(env_params).shape[0]
    network = ppo.ActorCritic(
        env.action_space(env_params).shape[0], config.hidden_sizes, config.activation
    )
    # Two different untrained policies, stacked as a two-seed training run would be.
    weights = [
        network.init(jax.random.PRNGKey(i), np.zeros((obs_dim,), np.float32)) for i in (5, 6)
    ]
    policies = template.replace(
        network=jax.tree_util.tree_map(lambda *x: np.stack(x), *weights),
        obs_stats=jax.tree_util.tree_map(lambda x: np.stack([x, x]), template.obs_stats),
        action_low=np.stack([template.action_low] * SEEDS),
        action_high=np.stack([template.action_high] * SEEDS),
    )
    return env, env_params, policies


def returns_on_key(env, env_params, policy, policy_params, key) -> float:
    steps = int(env_params.max_steps_in_episode)
    return float(
        np.mean(
            run_episodes(
                env, env_params, policy, policy_params, key, EPISODES, steps
            ).episode_return
        )
    )


def test_seed_i_plays_the_ith_key_of_the_split_evaluation_key(setting):
    env, env_params, policies = setting
    cell = experiments.evaluate_policies(policies, env, env_params, SEEDS, EPISODES, SEED)
    keys = jax.random.split(jax.random.PRNGKey(SEED + 1), SEEDS)
    for i in range(SEEDS):
        policy_i = jax.tree_util.tree_map(lambda x, i=i: x[i], policies)
        expected = returns_on_key(env, env_params, ppo.ppo_policy, policy_i, keys[i])
        np.testing.assert_allclose(cell["seed_means"][i], expected, rtol=1e-6)
    assert cell["seed_means"][0] != cell["seed_means"][1]


def test_baselines_replay_each_seeds_episodes(setting):
    env, env_params, _ = setting
    cell = experiments.baseline_on_ppo_episodes(env, env_params, "heuristic", SEEDS, EPISODES, SEED)
    policy, policy_params = agents.baseline_policy("heuristic", env, env_params)
    keys = jax.random.split(jax.random.PRNGKey(SEED + 1), SEEDS)
    for i in range(SEEDS):
        expected = returns_on_key(env, env_params, policy, policy_params, keys[i])
        np.testing.assert_allclose(cell["seed_means"][i], expected, rtol=1e-6)
    # Different keys are different patients: the seeds' heuristic means differ.
    assert cell["seed_means"][0] != cell["seed_means"][1]
    np.testing.assert_allclose(cell["mean"], np.mean(cell["seed_means"]), rtol=1e-6)


def test_one_seed_uses_the_same_rule(setting):
    env, env_params, _ = setting
    cell = experiments.baseline_on_ppo_episodes(env, env_params, "heuristic", 1, EPISODES, SEED)
    policy, policy_params = agents.baseline_policy("heuristic", env, env_params)
    (key,) = jax.random.split(jax.random.PRNGKey(SEED + 1), 1)
    expected = returns_on_key(env, env_params, policy, policy_params, key)
    np.testing.assert_allclose(cell["seed_means"], [expected], rtol=1e-6)


# --------------------------------------------------------------------------- Table 2 protocol


def test_paper_protocol_replays_consecutive_episodes_of_drifting_env_objects():
    """Dosing: episode i holds the k_e and V_d of a reference object's episode
    ``first + i % 20``: the defaults times that many factors in [1 - var, 1 + var]."""
    env, env_params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    var = float(env_params.pk_variability)
    default = np.asarray([env_params.pk.elimination_rate, env_params.pk.volume_of_distribution])
    for first in (0, 20):
        population = experiments.paper_protocol_params(
            env, env_params, jax.random.PRNGKey(0), 45, first_episode=first
        )
        drift = (
            np.stack([population.pk.elimination_rate, population.pk.volume_of_distribution], -1)
            / default
        )
        assert drift.shape == (45, 2)
        resets = first + np.arange(45) % 20
        assert np.all(drift >= (1 - var) ** resets[:, None] * (1 - 1e-5))
        assert np.all(drift <= (1 + var) ** resets[:, None] * (1 + 1e-5))
        # A fresh object's first episode holds the defaults; every later one has drifted.
        np.testing.assert_array_equal(drift[resets == 0], 1.0)
        assert np.all(drift[resets > 0] != 1.0)
        # One object's episodes share its earlier resets: each adds one factor to the last.
        steps = drift[1:] / drift[:-1]
        same_object = np.arange(1, 45) % 20 != 0
        assert np.all(np.abs(steps[same_object] - 1.0) <= var * (1 + 1e-5))
        # Objects drift independently; everything else stays the tier's.
        assert len({float(x) for x in drift[resets == first + 19, 0]}) == 2
        np.testing.assert_array_equal(population.arrhythmia_prob, env_params.arrhythmia_prob)


def test_paper_protocol_drift_matches_a_reused_reference_env():
    """log(k_e) after 19 resets of one reference object, against ours (two-sample KS)."""
    from cardiosim_tools.reference import reference_env

    reference = []
    rng = np.random.default_rng(0)
    for _ in range(300):
        ref = reference_env("AntiarrhythmicDosing-v0", "medium")
        for _ in range(20):
            ref.reset(seed=int(rng.integers(2**31)))
        reference.append(ref.pk_model.ke)
    env, env_params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    population = experiments.paper_protocol_params(
        env, env_params, jax.random.PRNGKey(1), 20 * 300, first_episode=0
    )
    last = jax.tree_util.tree_map(lambda x: x[19::20], population)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(2), 300), last)
    ours = np.log(np.asarray(states.elimination_rate, np.float64))
    reference = np.log(np.asarray(reference))
    assert stats.ks_2samp(ours, reference).pvalue > 0.01
    # Twenty factors of 1 + U(-0.2, 0.2): log-sd about 0.52, far from a fresh draw's 0.12.
    assert 0.4 < ours.std() < 0.65 and 0.4 < reference.std() < 0.65


def test_table2_episodes_baselines_from_fresh_objects_ppo_after_the_heuristic():
    """Dosing: the baseline cells start at a fresh object's first reset, PPO at its 21st
    (after the heuristic's 20); different objects, one seed gives the same episodes."""
    env, env_params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    var = float(env_params.pk_variability)
    baseline = experiments.table2_episodes(env, env_params, "baseline", 40, seed=3)
    ppo_cell = experiments.table2_episodes(env, env_params, "ppo", 40, seed=3)
    ke0 = float(env_params.pk.elimination_rate)
    baseline_drift = np.asarray(baseline.pk.elimination_rate) / ke0
    ppo_drift = np.asarray(ppo_cell.pk.elimination_rate) / ke0
    np.testing.assert_array_equal(baseline_drift[[0, 20]], 1.0)
    # 20 factors in [1 - var, 1 + var] before PPO's first episode: never exactly 1.
    assert np.all(ppo_drift != 1.0)
    assert np.all(ppo_drift >= (1 - var) ** 20 * (1 - 1e-5))
    chex.assert_trees_all_equal(
        ppo_cell, experiments.table2_episodes(env, env_params, "ppo", 40, seed=3)
    )
    assert not np.array_equal(
        ppo_drift,
        np.asarray(
            experiments.table2_episodes(env, env_params, "ppo", 40, seed=4).pk.elimination_rate
        )
        / ke0,
    )
    with pytest.raises(ValueError, match="'heuristic' is not one of 'baseline', 'ppo'"):
        experiments.table2_episodes(env, env_params, "heuristic", 40)
    v1, v1_params = cardiosim_jax.make("AntiarrhythmicDosing-v1", "medium")
    with pytest.raises(ValueError, match="AntiarrhythmicDosing-v1 is not in Table 2"):
        experiments.table2_episodes(v1, v1_params, "ppo", 40)


@pytest.mark.parametrize("env_id", ["PacingControl-v0", "DefibrillationTiming-v0"])
def test_paper_protocol_keeps_params_where_nothing_carries_over(env_id):
    env, env_params = cardiosim_jax.make(env_id, experiments.TABLE2_PROTOCOL[env_id])
    assert not env.reference_carries_params
    population = experiments.paper_protocol_params(
        env, env_params, jax.random.PRNGKey(0), 7, first_episode=20
    )
    assert population is env_params
    # Its params_after_resets is the identity, under vmap too.
    drifted = jax.vmap(env.params_after_resets, in_axes=(0, None, 0))(
        jax.random.split(jax.random.PRNGKey(0), 3), env_params, jnp.arange(3)
    )
    expected = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (3, *np.shape(x))), env_params)
    chex.assert_trees_all_equal(drifted, expected)


# --------------------------------------------------------------------------- sweeps

#: A tiny trainer: 2 updates of 4 envs x 8 steps.
SWEEP_BASE = dict(num_envs=4, num_steps=8, minibatch_size=16, update_epochs=1, total_timesteps=64)
SWEEP_GRID = {"learning_rate": [1e-3, 3e-3, 1e-2]}


@pytest.fixture(scope="module")
def sweeps():
    base = ppo.preset("tuned", ENV_ID, TIER, hidden_sizes=(8,), **SWEEP_BASE)
    logged: list[str] = []
    args = (base, SWEEP_GRID, SEEDS, EPISODES, SEED)
    # Chunks of 2: the third setting runs in a padded chunk of the same program.
    padded = experiments.run_sweep(*args, log=logged.append, chunk_size=2)
    # A 1-byte budget: the whole grid does not fit, one setting per call.
    budgeted = experiments.run_sweep(*args, log=logged.append, memory_budget_bytes=1)
    return base, padded, budgeted, logged


def test_a_chunked_sweep_matches_each_setting_trained_on_its_own(sweeps):
    base, padded, budgeted, logged = sweeps
    assert (padded.chunk_size, budgeted.chunk_size) == (2, 1)
    assert sum("chunk" in line for line in logged) == 2 + 3
    assert any("exceeds the budget of 0 MiB; 1 settings per call" in line for line in logged)
    chex.assert_tree_shape_prefix(padded.policy, (3, SEEDS))
    # The padded copy is dropped; chunking changes no setting's training.
    chex.assert_trees_all_close(padded.policy, budgeted.policy, rtol=1e-5, atol=1e-6)
    for i, lr in enumerate(SWEEP_GRID["learning_rate"]):
        assert padded.rows[i]["learning_rate"] == lr
        assert padded.rows[i]["seed_means"] == pytest.approx(
            budgeted.rows[i]["seed_means"], rel=1e-5
        )
    # The last setting's seeds, trained on their own from the same keys.
    alone = experiments.train_seeds(
        base.replace(learning_rate=1e-2), SEEDS, SEED, log=lambda _: None, progress=False
    )
    last = jax.tree_util.tree_map(lambda x: x[2], padded.policy)
    chex.assert_trees_all_close(last.network, alone.policy.network, rtol=1e-4, atol=1e-5)
    assert not np.allclose(
        jax.tree_util.tree_leaves(padded.policy.network)[0][0],
        jax.tree_util.tree_leaves(padded.policy.network)[0][2],
    )
    # The best setting: its config is the base with that setting's values, its policy
    # that setting's seeds.
    best = padded.best_index
    assert best == experiments.best_setting(padded.rows) and padded.names == ("learning_rate",)
    assert padded.best_config(base) == base.replace(learning_rate=SWEEP_GRID["learning_rate"][best])
    chex.assert_trees_all_equal(
        padded.best_policy(), jax.tree_util.tree_map(lambda x: x[best], padded.policy)
    )


def test_sweep_settings_refuse_what_cannot_vary_in_one_call():
    base = ppo.preset("tuned", ENV_ID, TIER)
    settings, stacked = experiments.sweep_settings(
        base, {"gamma": [0.9, 0.99], "clip_eps": [0.1, 0.2, 0.3]}
    )
    assert settings[:2] == [{"gamma": 0.9, "clip_eps": 0.1}, {"gamma": 0.9, "clip_eps": 0.2}]
    assert len(settings) == 6
    np.testing.assert_allclose(stacked.clip_eps, [0.1, 0.2, 0.3] * 2)
    np.testing.assert_allclose(stacked.learning_rate, [base.learning_rate] * 6)
    with pytest.raises(ValueError, match=r"^cannot sweep 'num_envs': it is static"):
        experiments.sweep_settings(base, {"num_envs": [8, 16]})
    with pytest.raises(ValueError, match=r"^cannot sweep 'lr': it is not a PPOConfig field"):
        experiments.sweep_settings(base, {"lr": [1e-3]})
    with pytest.raises(ValueError, match=r"^no values given for gamma$"):
        experiments.sweep_settings(base, {"gamma": []})
    with pytest.raises(ValueError, match=r"^gae_lambda must be in \[0, 1\], got 2 \(entry 1"):
        experiments.sweep_settings(base, {"gae_lambda": [0.9, 2.0]})
    assert set(experiments.SWEEPABLE) == {
        "learning_rate",
        "ent_coef",
        "clip_eps",
        "gamma",
        "gae_lambda",
        "vf_coef",
        "max_grad_norm",
        "init_log_std",
        "reward_scale",
        "reward_clip",
        "smoothness_coef",
    }


def test_best_setting_is_the_highest_mean_and_the_table_marks_it():
    base = ppo.preset("tuned", ENV_ID, TIER)
    rows = [
        {"gamma": g, "mean": m, "iqm": m, "ci95": [m - 1, m + 1]}
        for g, m in [(0.9, 1.0), (0.95, 3.0), (0.99, 3.0)]
    ]
    assert experiments.best_setting(rows) == 1  # the first of a tie
    table = experiments.sweep_markdown(rows, base, "tuned", 2, 5)
    lines = [line for line in table.splitlines() if line.startswith("| 0.")]
    assert [line.endswith("| best |") for line in lines] == [False, True, False]
    assert "| gamma | mean | IQM | 95% CI (over seeds) | |" in table


def test_large_preset_validation_calls_only_a_clear_shortfall_a_miss():
    large = load_baseline_script("large")
    tuned = {"mean": 10.0, "ci95": [9.0, 11.0], "seed_means": [9.0, 10.0, 11.0, 10.0]}
    within = {"mean": 9.5, "ci95": [9.0, 10.0], "seed_means": [9.0, 9.5, 10.0, 9.5]}
    below = {"mean": 5.0, "ci95": [4.5, 5.5], "seed_means": [4.5, 5.0, 5.5, 5.0]}
    # Under tuned's CI but not significantly (p > 0.05): reached.
    slight = {"mean": 8.9, "ci95": [7.0, 11.0], "seed_means": [7.0, 8.0, 11.0, 9.6]}
    assert large.verdict(tuned, within)["reaches"]
    assert large.verdict(tuned, slight)["reaches"]
    verdict = large.verdict(tuned, below)
    assert not verdict["reaches"] and verdict["welch_p"] < 0.05
    assert verdict["difference"] == -5.0 and verdict["relative_difference"] == -0.5
