"""``checkpoint``: PPO policies and configs survive a save / load round trip bit for bit."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax.training import checkpoint, ppo

ENV_ID = "AntiarrhythmicDosing-v0"
#: Compiled once per policy structure: the original (jax arrays) and the loaded policy
#: (NumPy arrays) run the same executable.
deterministic = jax.jit(ppo.ppo_policy)
stochastic = jax.jit(ppo.ppo_stochastic_policy)


def tiny_tuned_config() -> ppo.PPOConfig:
    """The tuned preset shrunk to one small update, every static option switched on."""
    num_envs, num_steps = 16, 32
    return ppo.preset(
        "tuned",
        ENV_ID,
        total_timesteps=num_envs * num_steps,  # one update
        num_envs=num_envs,
        num_steps=num_steps,
        minibatch_size=128,
        update_epochs=2,
        normalize_observations=True,
        symlog_observations=True,
        rescale_actions=True,
        hidden_sizes=(32, 16),
        init_action=(20.0,),
    )


def tiny_paper_config() -> ppo.PPOConfig:
    """The paper preset (one environment, SB3-like) at one 256-step update, relu network."""
    return ppo.preset(
        "paper",
        ENV_ID,
        total_timesteps=256,
        num_steps=256,
        update_epochs=2,
        hidden_sizes=(16,),
        activation="relu",
    )


@pytest.fixture(scope="module")
def tuned_run():
    """Two seeds of the tuned config, trained in one ``jit(vmap(train))`` call."""
    config = tiny_tuned_config()
    assert config.num_updates == 1
    out = jax.jit(jax.vmap(ppo.make_train(config)))(jax.random.split(jax.random.PRNGKey(0), 2))
    return config, jax.block_until_ready(out)


@pytest.fixture(scope="module")
def paper_run():
    """One seed of the paper config, unbatched."""
    config = tiny_paper_config()
    assert config.num_updates == 1
    out = jax.jit(ppo.make_train(config))(jax.random.PRNGKey(1))
    return config, jax.block_until_ready(out)


@pytest.fixture(scope="module")
def observations():
    """Dosing observations: real resets and positive random vectors, shape (64, obs_dim)."""
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    resets, _ = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(5), 16), params
    )
    spread = jnp.abs(3.0 * jax.random.normal(jax.random.PRNGKey(6), (48, resets.shape[-1])))
    return jnp.concatenate([resets, spread])


def seed(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def assert_trees_identical(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def assert_same_actions(original, loaded, obs) -> None:
    """Deterministic and (same-key) stochastic actions agree bit for bit."""
    np.testing.assert_array_equal(
        np.asarray(deterministic(original, obs, None)),
        np.asarray(deterministic(loaded, obs, None)),
    )
    key = jax.random.PRNGKey(42)
    sampled = np.asarray(stochastic(original, obs, key))
    np.testing.assert_array_equal(sampled, np.asarray(stochastic(loaded, obs, key)))
    # The stochastic check is not vacuous: another key samples other actions.
    other = np.asarray(stochastic(loaded, obs, jax.random.PRNGKey(43)))
    assert not np.array_equal(sampled, other)


# --------------------------------------------------------------------------- tuned, two seeds


def test_save_seeds_writes_one_directory_per_seed(tuned_run, tmp_path):
    config, out = tuned_run
    paths = checkpoint.save_seeds(tmp_path, out.policy, config)
    assert paths == [tmp_path / "seed_0", tmp_path / "seed_1"]
    for path in paths:
        assert (path / checkpoint.POLICY_FILE).stat().st_size > 0
        payload = json.loads((path / checkpoint.CONFIG_FILE).read_text())
        assert payload["config"]["env_id"] == ENV_ID
        assert payload["config"]["hidden_sizes"] == [32, 16]


def test_seed_round_trip_is_bit_identical(tuned_run, observations, tmp_path):
    config, out = tuned_run
    checkpoint.save_seeds(tmp_path, out.policy, config)
    loaded, loaded_config, n_seeds = checkpoint.load_seeds(tmp_path)
    assert n_seeds == 2
    assert loaded_config == config
    assert_trees_identical(out.policy, loaded)
    for i in range(2):
        assert_same_actions(seed(out.policy, i), seed(loaded, i), observations)
    # The two seeds are different policies, so the order of the stack matters.
    assert not np.array_equal(
        np.asarray(deterministic(seed(loaded, 0), observations, None)),
        np.asarray(deterministic(seed(loaded, 1), observations, None)),
    )


def test_single_policy_round_trip_keeps_static_fields(tuned_run, observations, tmp_path):
    config, out = tuned_run
    policy = seed(out.policy, 1)
    checkpoint.save_policy(tmp_path / "ckpt", policy, config)
    loaded, loaded_config = checkpoint.load_policy(tmp_path / "ckpt")
    assert loaded_config == config
    for name in ("normalize_observations", "symlog_observations", "rescale_actions"):
        assert getattr(loaded_config, name) is True
        assert getattr(loaded, name) is True
    assert loaded_config.hidden_sizes == (32, 16) == loaded.hidden_sizes
    assert loaded_config.init_action == (20.0,)
    assert loaded_config.activation == "tanh" == loaded.activation
    assert loaded_config.num_envs == 16 and loaded_config.num_steps == 32
    assert loaded_config.learning_rate == config.learning_rate
    assert_trees_identical(policy, loaded)
    assert_same_actions(policy, loaded, observations)


def test_observation_statistics_survive_and_matter(tuned_run, observations, tmp_path):
    config, out = tuned_run
    policy = seed(out.policy, 0)
    checkpoint.save_policy(tmp_path, policy, config)
    loaded, _ = checkpoint.load_policy(tmp_path)
    stats = loaded.obs_stats
    # Trained statistics, not the placeholder (mean 0, var 1, count 1e-4) of the template.
    assert float(stats.count) > config.batch_size
    assert np.any(np.abs(np.asarray(stats.mean)) > 1e-3)
    assert not np.allclose(np.asarray(stats.var), 1.0)
    np.testing.assert_array_equal(np.asarray(stats.mean), np.asarray(policy.obs_stats.mean))
    np.testing.assert_array_equal(np.asarray(stats.var), np.asarray(policy.obs_stats.var))
    # The statistics change the actions, so losing them would be visible.
    reset_stats = loaded.replace(obs_stats=ppo.RunningMeanStd.create(stats.mean.shape))
    assert not np.array_equal(
        np.asarray(deterministic(loaded, observations, None)),
        np.asarray(deterministic(reset_stats, observations, None)),
    )


# --------------------------------------------------------------------------- paper, one seed


def test_paper_round_trip(paper_run, observations, tmp_path):
    config, out = paper_run
    checkpoint.save_policy(tmp_path, out.policy, config, extra={"note": "paper preset"})
    payload = json.loads((tmp_path / checkpoint.CONFIG_FILE).read_text())
    assert payload["note"] == "paper preset"
    loaded, loaded_config = checkpoint.load_policy(tmp_path)
    assert loaded_config == config
    assert loaded_config.activation == "relu" == loaded.activation
    assert loaded_config.hidden_sizes == (16,) == loaded.hidden_sizes
    assert loaded_config.init_action is None
    assert loaded_config.normalize_observations is False
    assert loaded_config.rescale_actions is False
    assert loaded_config.ent_coef == config.ent_coef
    assert loaded_config.reward_clip == config.reward_clip
    assert_trees_identical(out.policy, loaded)
    assert_same_actions(out.policy, loaded, observations)
    # A single checkpoint also loads through load_seeds, with a leading axis of one.
    stacked, seeds_config, n_seeds = checkpoint.load_seeds(tmp_path)
    assert n_seeds == 1 and seeds_config == config
    assert_trees_identical(jax.tree_util.tree_map(lambda x: x[None], out.policy), stacked)


def test_config_dict_round_trip_without_training():
    config = tiny_tuned_config().replace(ent_coef=0.03, gamma=0.97)
    restored = ppo.PPOConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.hidden_sizes, tuple)
    assert isinstance(restored.init_action, tuple)


# --------------------------------------------------------------------------- many seeds, errors


def test_load_seeds_orders_seed_directories_numerically(paper_run, tmp_path):
    config, out = paper_run
    n = 12  # seed_10 and seed_11 sort before seed_2 as strings
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x] * n), out.policy)
    offsets = jnp.arange(n, dtype=stacked.obs_stats.mean.dtype)[:, None]
    stacked = stacked.replace(
        obs_stats=stacked.obs_stats.replace(mean=stacked.obs_stats.mean + offsets)
    )
    checkpoint.save_seeds(tmp_path, stacked, config)
    loaded, _, n_seeds = checkpoint.load_seeds(tmp_path)
    assert n_seeds == n
    np.testing.assert_array_equal(
        np.asarray(loaded.obs_stats.mean)[:, 0],
        np.asarray(out.policy.obs_stats.mean)[0] + np.arange(n),
    )
    assert_trees_identical(stacked, loaded)


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=checkpoint.POLICY_FILE):
        checkpoint.load_policy(tmp_path)
    with pytest.raises(FileNotFoundError):
        checkpoint.load_seeds(tmp_path)
    with pytest.raises(FileNotFoundError):
        checkpoint.load_policy(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError):
        checkpoint.load_seeds(tmp_path / "does-not-exist")


def test_saving_fewer_seeds_over_an_old_run_does_not_mix_in_stale_seeds(paper_run, tmp_path):
    """Re-using an output directory: a 2-seed save over a 3-seed one loads 2 seeds."""
    config, out = paper_run
    three = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 3), out.policy)
    checkpoint.save_seeds(tmp_path, three, config)
    two = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 2), out.policy)
    two = two.replace(obs_stats=two.obs_stats.replace(mean=two.obs_stats.mean + 1.0))
    checkpoint.save_seeds(tmp_path, two, config)
    loaded, _, n_seeds = checkpoint.load_seeds(tmp_path)
    assert n_seeds == 2
    assert_trees_identical(two, loaded)


def test_load_seeds_ignores_unrelated_entries(paper_run, tmp_path):
    config, out = paper_run
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 2), out.policy)
    checkpoint.save_seeds(tmp_path, stacked, config)
    (tmp_path / "seed_notes.txt").write_text("which seeds were good")
    (tmp_path / "seed_best").mkdir()
    loaded, _, n_seeds = checkpoint.load_seeds(tmp_path)
    assert n_seeds == 2
    assert_trees_identical(stacked, loaded)
