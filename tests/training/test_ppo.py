"""PPO train loop: sweeps, statistics, initial action, smoothness, environments passed in, learning.

Unit tests of the split modules: tests/test_training_{config,networks,normalization,losses}.py.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax import agents
from cardiosim_jax.evaluation import evaluate
from cardiosim_jax.training import ppo


def test_bad_configs_raise():
    with pytest.raises(ValueError, match=r"^unknown environment id 'Pacing-v9'; registered:"):
        ppo.make_train(ppo.PPOConfig(env_id="Pacing-v9"))
    with pytest.raises(ValueError, match="smoothness_coef must be finite and >= 0"):
        ppo.make_train(ppo.PPOConfig(smoothness_coef=-1.0))
    config = ppo.preset("paper", "AntiarrhythmicDosing-v0", total_timesteps=1024)
    train = ppo.make_train(config)
    with pytest.raises(ValueError, match="static fields"):
        train(jax.random.PRNGKey(0), config.replace_static(num_steps=512))


def _tiny(env_id: str = "AntiarrhythmicDosing-v0", **overrides) -> ppo.PPOConfig:
    settings = dict(num_envs=8, num_steps=32, minibatch_size=64, total_timesteps=512)
    settings.update(overrides)
    return ppo.preset("tuned", env_id, **settings)


def test_sweep_leaves_vmap_in_one_call_and_zero_lr_keeps_the_initial_network():
    config = _tiny()
    train = ppo.make_train(config)
    configs = ppo.stack_configs(
        [config.replace(learning_rate=0.0), config.replace(learning_rate=1e-3)]
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    out = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))(keys, configs)
    assert out.metrics["episode_return"].shape == (2, 2, config.num_updates)
    init_key = jax.random.split(keys[0], 3)[1]  # the key train() initialises the network with
    obs_dim = 6
    net = ppo.ActorCritic(1, config.hidden_sizes, config.activation)
    init = net.init(init_key, jnp.zeros((obs_dim,)))
    frozen = jax.tree_util.tree_map(lambda x: x[0, 0], out.policy.network)
    trained = jax.tree_util.tree_map(lambda x: x[1, 0], out.policy.network)
    kernel = ("params", "actor_mean", "kernel")
    # Equal up to float32 rounding (batched and single matrix products round differently).
    np.testing.assert_allclose(
        frozen["params"]["Dense_0"]["kernel"], init["params"]["Dense_0"]["kernel"], atol=1e-5
    )
    np.testing.assert_allclose(_get(frozen, kernel), _get(init, kernel), atol=1e-6)
    # Each member trains with its own learning rate: the 1e-3 one is that run on its own
    # (up to rounding, ~3e-6 here), and it moved every weight matrix by far more than that.
    single = jax.jit(train)(keys[0], config.replace(learning_rate=1e-3))
    chex.assert_trees_all_close(trained, single.policy.network, atol=1e-4)
    for path in (kernel, ("params", "Dense_0", "kernel"), ("params", "Dense_4", "kernel")):
        assert np.abs(_get(trained, path) - _get(init, path)).max() > 1e-3, path


def _get(tree, path):
    for name in path:
        tree = tree[name]
    return np.asarray(tree)


def test_initial_action_sets_the_untrained_mean_action():
    config = _tiny("PacingControl-v0", init_action=(5.0, 0.0), total_timesteps=256)
    out = jax.jit(ppo.make_train(config.replace(learning_rate=0.0)))(jax.random.PRNGKey(0))
    obs = jnp.zeros((3, 6))
    # Output kernel is orthogonal(0.01): the mean action is the bias, up to ~1% of the range.
    action = ppo.ppo_policy(out.policy, obs, None)
    np.testing.assert_allclose(action[:, 0], 5.0, atol=0.5)
    np.testing.assert_allclose(action[:, 1], 0.0, atol=0.05)


@pytest.mark.slow
def test_tuned_ppo_learns_dosing_far_above_random():
    # One seed (1M steps, ~25 s on 2 cores); baselines/tuned.py trains 8 per environment.
    config = ppo.preset("tuned", "AntiarrhythmicDosing-v0")
    out = jax.jit(jax.vmap(ppo.make_train(config)))(jax.random.split(jax.random.PRNGKey(0), 1))
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "medium")
    policy_params = jax.tree_util.tree_map(lambda x: x[0], out.policy)
    trained = evaluate(ppo.ppo_policy, env, params, jax.random.PRNGKey(1), 200, 1, policy_params)
    policy, policy_params = agents.baseline_policy("random", env, params)
    random = evaluate(policy, env, params, jax.random.PRNGKey(1), 200, 1, policy_params)
    # Random dosing scores about -44; the heuristic about 180.
    assert min(trained["seed_means"]) > random["mean"] + 150, (trained, random["mean"])
    curve = np.asarray(out.metrics["episode_return"])
    assert np.all(np.nanmean(curve[:, -5:], axis=1) > np.nanmean(curve[:, :3], axis=1) + 100)


def test_smoothness_is_compiled_in_only_with_a_nonzero_coefficient():
    # Off: the rollout buffer holds no next observations (and the loss is unchanged).
    # On: a sweep over the coefficient runs in one compiled call.
    config = _tiny(total_timesteps=256, smoothness_coef=0.5)
    train = ppo.make_train(config)
    configs = ppo.stack_configs([config, config.replace(smoothness_coef=5.0)])
    out = jax.jit(jax.vmap(train, in_axes=(None, 0)))(jax.random.PRNGKey(0), configs)
    first, second = (jax.tree_util.tree_map(lambda x, i=i: x[i], out.policy) for i in (0, 1))
    kernel = ("params", "actor_mean", "kernel")
    assert not np.allclose(_get(first.network, kernel), _get(second.network, kernel))


# Every public name the module had before it was split by concern (issue 13), and where it
# lives now: ``ppo.X`` and ``from cardiosim_jax.training.ppo import X`` keep working.
_MOVED = {
    "config": ["ACTIVATIONS", "LARGE_NUM_ENVS", "PRESETS", "PPOConfig", "preset", "stack_configs"],
    "networks": [
        "ActorCritic",
        "PPOPolicyParams",
        "from_env_action",
        "gaussian_entropy",
        "gaussian_log_prob",
        "orthogonal",
        "ppo_policy",
        "ppo_stochastic_policy",
        "to_env_action",
    ],
    "normalization": ["RunningMeanStd", "preprocess", "symlog"],
    "losses": ["Transition", "compute_gae", "ppo_loss", "rollout_advantages"],
}
_STAYED = [
    "ConsoleProgress",
    "EpisodeTracker",
    "ProgressFn",
    "TrainOutput",
    "env_mesh",
    "make_train",
]


def test_ppo_module_re_exports_the_split_modules():
    import importlib

    for module_name, names in _MOVED.items():
        module = importlib.import_module(f"cardiosim_jax.training.{module_name}")
        for name in names:
            assert getattr(ppo, name) is getattr(module, name), name
            assert name in ppo.__all__
    for name in _STAYED:
        assert name in ppo.__all__ and hasattr(ppo, name)
    assert all(hasattr(ppo, name) for name in ppo.__all__)


def _leaves_equal(a, b) -> bool:
    flat_a, tree_a = jax.tree_util.tree_flatten(a)
    flat_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.array_equal(x, y, equal_nan=True) for x, y in zip(flat_a, flat_b, strict=True)
    )


_KEY = jax.random.PRNGKey(4)


@pytest.fixture(scope="module")
def trained_by_id():
    """A tiny dosing run by env id: the reference for envs and params passed in."""
    config = _tiny(total_timesteps=256)
    return config, jax.jit(ppo.make_train(config))(_KEY)


def test_an_env_passed_in_trains_bit_for_bit_as_by_id(trained_by_id):
    config, by_id = trained_by_id
    env, params = cardiosim_jax.make(config.env_id, config.difficulty)
    passed = jax.jit(ppo.make_train(config, env=env, env_params=params))(_KEY)
    assert _leaves_equal(by_id, passed)


def test_a_population_gives_each_environment_its_patient(trained_by_id):
    config, by_id = trained_by_id
    env, shared = cardiosim_jax.make(config.env_id, config.difficulty)
    same = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (config.num_envs,)), shared)
    cohort = jax.jit(ppo.make_train(config, env=env, env_params=same, population=True))(_KEY)
    # Identical patients: the same training, up to float rounding of batched parameters.
    for x, y in zip(*map(jax.tree_util.tree_leaves, (by_id, cohort)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="leading axis of num_envs"):
        ppo.make_train(config, env=env, env_params=shared, population=True)


def test_tier_overrides_passed_as_env_params_train_on_those_params(trained_by_id):
    config, default = trained_by_id
    env, params = cardiosim_jax.make(config.env_id, config.difficulty, membrane_noise_std=0.0)
    tier = cardiosim_jax.make(env.env_id, config.difficulty)[1]
    assert params.membrane_noise_std != tier.membrane_noise_std
    quiet = jax.jit(ppo.make_train(config, env=env, env_params=params))(_KEY)
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(quiet.policy))
    assert np.all(np.isfinite(quiet.metrics["value_loss"]))
    # Same key, same initial network and actions: only the membrane noise differs.
    assert not _leaves_equal(default.policy.obs_stats, quiet.policy.obs_stats)


def test_a_third_party_gymnax_env_trains_end_to_end():
    gymnax = pytest.importorskip("gymnax")
    env, params = gymnax.make("Pendulum-v1")  # 5-tuple step, float bounds, 200-step episodes
    config = ppo.PPOConfig(
        env_id="Pendulum-v1",  # a label only: not a registered id
        num_envs=4,
        num_steps=128,
        minibatch_size=128,
        total_timesteps=4 * 128 * 2,
        update_epochs=2,
        normalize_observations=True,
        rescale_actions=True,
    )
    out = jax.jit(ppo.make_train(config, env=env, env_params=params))(jax.random.PRNGKey(0))
    metrics = {name: np.asarray(value) for name, value in out.metrics.items()}
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl"):
        assert np.all(np.isfinite(metrics[name])), name
    # Each environment finished its first 200-step episode in the second rollout.
    assert metrics["episodes"].tolist() == [0, 4]
    assert np.isfinite(metrics["episode_return"][-1]) and metrics["episode_return"][-1] < 0
    np.testing.assert_array_equal(out.policy.action_low, [-2.0])
    action = ppo.ppo_policy(out.policy, jnp.zeros(3), None)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
