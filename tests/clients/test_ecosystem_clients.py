"""The entry points of the RL libraries users arrive with work unchanged on every registered id.

Each test is the client's own call, with only the env id changed: Stable-Baselines3's
``make_vec_env`` with its defaults, ``gymnax.make`` (which rejax's ``PPO.create(env=id)``
and gymnax's ``RolloutWrapper(env_name=id)`` go through), gymnax's Gym and vector-Gym
wrappers, scalar actions on 1-D action spaces (rejax squeezes them), and actions in
[-1, 1] for PureJaxRL-style policies. Compilation dominates the cost, so every id is
checked where no compile is needed and the steps run on the cheap v0 environments.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ALL_IDS, ignore_v0_out_of_date
from gymnax.environments.spaces import gymnax_space_to_gym_space
from gymnax.experimental import RolloutWrapper
from gymnax.wrappers import LegacyStepAPIWrapper, LogWrapper
from gymnax.wrappers.gym import GymnaxToGymWrapper, GymnaxToVectorGymWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

import cardiosim_jax
from cardiosim_jax.envs.base import CardioSimEnvironment
from cardiosim_jax.gymnasium_adapter import CardioSimGymnasiumEnv, UnsupportedRenderModeError
from cardiosim_jax.wrappers import NormalizedActions

#: Ids whose action space has shape (1,): where scalar actions and float bounds matter.
ONE_D_IDS = tuple(i for i in ALL_IDS if cardiosim_jax.make(i)[0].action_shape == (1,))
#: The cheapest to compile of those, for the checks that must really step.
STEPPED_ID = "AntiarrhythmicDosing-v0"
CLIENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def step_outputs_equal(a, b) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_one_d_ids_are_the_dosing_envs_and_defibrillation_v1():
    assert set(ONE_D_IDS) == {
        "AntiarrhythmicDosing-v0",
        "AntiarrhythmicDosing-v1",
        "DefibrillationTiming-v1",
    }


# --------------------------------------------------------------------------- Stable-Baselines3


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sb3_make_vec_env_with_its_defaults(env_id):
    # make_vec_env asks for render_mode="rgb_array" and retries without it on TypeError;
    # Gymnasium's own notice that the mode is not offered is the only warning allowed.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        warnings.filterwarnings("ignore", message=".*render_mode='rgb_array' that is not in")
        vec_env = make_vec_env(f"cardiosim_jax/{env_id}", n_envs=4)
    assert isinstance(vec_env, DummyVecEnv) and vec_env.num_envs == 4
    assert vec_env.get_attr("render_mode") == [None] * 4
    action_shape = cardiosim_jax.make(env_id)[0].action_shape
    assert vec_env.action_space == gymnasium.spaces.Box(-1.0, 1.0, action_shape)
    if env_id == STEPPED_ID:
        vec_env.seed(0)
        obs = vec_env.reset()
        obs, rewards, dones, infos = vec_env.step(np.zeros((4, 1), np.float32))
        assert obs.shape == (4, *vec_env.observation_space.shape) and rewards.shape == (4,)
        assert np.isfinite(rewards).all() and not dones.any()


def test_unsupported_render_mode_is_a_type_error_and_a_value_error():
    with pytest.raises(TypeError, match="rgb_array"):
        CardioSimGymnasiumEnv(STEPPED_ID, render_mode="rgb_array")
    with pytest.raises(ValueError, match="accepted: None"):
        CardioSimGymnasiumEnv(STEPPED_ID, render_mode="human")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's notice that the mode is not offered
        with pytest.raises(UnsupportedRenderModeError):
            gymnasium.make(f"cardiosim_jax/{STEPPED_ID}", render_mode="rgb_array")
        with pytest.raises(TypeError):
            gymnasium.make_vec(
                f"cardiosim_jax/{STEPPED_ID}",
                num_envs=2,
                vectorization_mode="vector_entry_point",
                render_mode="rgb_array",
            )


# --------------------------------------------------------------------------- gymnax registry


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnax_make_finds_every_id(env_id):
    # rejax's PPO.create(env=id) calls gymnax.make(id, **env_params) for an id without "/".
    assert env_id in gymnax.registered_envs
    env, params = gymnax.make(env_id)
    assert isinstance(env, CardioSimEnvironment) and env.name == env_id
    step_outputs_equal(params, cardiosim_jax.make(env_id)[1])
    wrapped, _ = gymnax.make(env_id, normalize_actions=True)
    assert isinstance(wrapped, NormalizedActions) and wrapped.unwrapped == env
    rollout = RolloutWrapper(env_name=env_id)
    assert rollout.env == env and rollout.num_env_steps == int(params.max_steps_in_episode)


def test_gymnax_make_rejects_other_keyword_arguments_naming_them():
    with pytest.raises(ValueError, match=r"\['difficulty'\].*params_for"):
        gymnax.make(STEPPED_ID, difficulty="hard")
    with pytest.raises(ValueError, match="normalize_actions must be True or False, got 'yes'"):
        gymnax.make(STEPPED_ID, normalize_actions="yes")


def test_gymnax_registration_is_idempotent():
    before = list(gymnax.registered_envs)
    assert set(cardiosim_jax.registered_envs) <= set(before)
    for env_id in cardiosim_jax.registered_envs:  # a re-import registers every spec again
        cardiosim_jax.register(cardiosim_jax.registration.spec(env_id))
    assert gymnax.registered_envs == before


def test_gymnax_rollout_wrapper_runs_by_name():
    def policy(policy_params, obs, key):
        return policy_params  # a constant dose, mg

    rollout = RolloutWrapper(policy, env_name=STEPPED_ID, num_env_steps=3)
    obs, action, reward, next_obs, done, cum_return = rollout.single_rollout(
        jax.random.PRNGKey(0), jnp.array([50.0])
    )
    assert obs.shape == (3, 6) and action.shape == (3, 1)
    assert np.isfinite(np.asarray(cum_return))


# --------------------------------------------------------------------------- gymnax's Gym wrappers


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_spaces_convert_through_gymnax_to_gym(env_id):
    # The conversion GymnaxToGymWrapper/GymnaxToVectorGymWrapper apply to every space.
    for normalize in (False, True):
        env, params = cardiosim_jax.make(env_id, normalize_actions=normalize)
        for space in (env.action_space(params), env.observation_space(params)):
            converted = gymnax_space_to_gym_space(space)
            assert isinstance(converted, gymnasium.spaces.Box) and converted.shape == space.shape
            np.testing.assert_array_equal(converted.low, np.broadcast_to(space.low, space.shape))
            np.testing.assert_array_equal(converted.high, np.broadcast_to(space.high, space.shape))


def test_gymnax_gym_wrappers_step_a_one_d_env():
    env, params = cardiosim_jax.make(STEPPED_ID)
    single = GymnaxToGymWrapper(env, params, seed=0)
    single.reset(seed=0)
    obs, reward, terminated, truncated, _ = single.step(single.action_space.sample())
    assert np.asarray(obs).shape == (6,) and np.isfinite(float(reward))

    vector = GymnaxToVectorGymWrapper(env, num_envs=3, params=params, seed=0)
    vector.reset(seed=0)
    obs, reward, terminated, truncated, _ = vector.step(vector.action_space.sample())
    assert obs.shape == (3, 6) and np.isfinite(np.asarray(reward)).all()


# --------------------------------------------------------------------------- scalar actions


@pytest.mark.parametrize("env_id", ONE_D_IDS)
def test_scalar_action_is_accepted_on_every_one_d_env(env_id):
    # Traced only (no compile): the step accepts () and gives what (1,) gives, shape for shape.
    env, params = cardiosim_jax.make(env_id)
    key = jax.random.PRNGKey(0)
    _, state = jax.eval_shape(env.reset, key, params)
    scalar = jax.eval_shape(env.step, key, state, jnp.float32(1.0), params)
    vector = jax.eval_shape(env.step, key, state, jnp.ones((1,), jnp.float32), params)
    assert jax.tree_util.tree_structure(scalar) == jax.tree_util.tree_structure(vector)
    assert jax.tree_util.tree_leaves(scalar) == jax.tree_util.tree_leaves(vector)


def test_scalar_actions_give_exactly_the_one_d_result():
    # rejax squeezes a (1,) action to () before vmapping env.step over the batch.
    env, params = cardiosim_jax.make(STEPPED_ID)
    key = jax.random.PRNGKey(1)
    _, state = env.reset(key, params)
    for dose in (jnp.nan, 0.0, 30.0, 120.0):
        scalar = jnp.float32(dose)
        step_outputs_equal(
            env.step(key, state, scalar, params), env.step(key, state, scalar[None], params)
        )


def test_a_list_action_still_works():
    env, params = cardiosim_jax.make(STEPPED_ID)
    key = jax.random.PRNGKey(0)
    _, state = jax.eval_shape(env.reset, key, params)
    out = jax.eval_shape(env.step, key, state, [jnp.float32(30.0)], params)
    assert out[0].shape == (6,)


@pytest.mark.parametrize(
    ("env_id", "action", "shape"),
    [("PacingControl-v0", 1.0, r"\(\)"), (STEPPED_ID, [1.0, 2.0], r"\(2,\)")],
)
def test_other_action_shapes_raise_naming_the_shape(env_id, action, shape):
    env, params = cardiosim_jax.make(env_id)
    key = jax.random.PRNGKey(0)
    _, state = jax.eval_shape(env.reset, key, params)
    with pytest.raises(ValueError, match=rf"action of shape {shape} .* accepted shapes"):
        jax.eval_shape(env.step, key, state, jnp.asarray(action, jnp.float32), params)


# --------------------------------------------------------------------------- normalised actions


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_normalize_actions_maps_minus_one_and_one_onto_the_bounds(env_id):
    env, params = cardiosim_jax.make(env_id, normalize_actions=True)
    physical, _ = cardiosim_jax.make(env_id)
    assert type(physical) is not NormalizedActions  # the default is unchanged
    space, bounds = env.action_space(params), physical.action_space(params)
    assert space.shape == bounds.shape
    np.testing.assert_array_equal(np.broadcast_to(space.low, space.shape), -1.0)
    np.testing.assert_array_equal(np.broadcast_to(space.high, space.shape), 1.0)
    ones = jnp.ones(space.shape)
    np.testing.assert_array_equal(env.to_physical(-ones, params), bounds.low)
    np.testing.assert_array_equal(env.to_physical(ones, params), bounds.high)
    # The wrapper is the env in every other respect.
    assert env.name == env_id and env.env_id == env_id and env.num_actions == physical.num_actions
    assert env.observation_space(params).shape == physical.observation_space(params).shape
    assert env == cardiosim_jax.make(env_id, normalize_actions=True)[0] and hash(env) == hash(
        cardiosim_jax.make(env_id, normalize_actions=True)[0]
    )


def test_normalized_step_is_the_env_step_on_the_mapped_action():
    # PureJaxRL's ClipAction(-1, 1) and rejax's zero-centred Gaussian act around 0:
    # mid-range dose here, not none. The wrapper's code is the same for every env.
    env, params = cardiosim_jax.make(STEPPED_ID, "hard", normalize_actions=True)
    physical = env.unwrapped
    key = jax.random.PRNGKey(2)
    _, state = physical.reset(key, params)
    action = jnp.clip(jax.random.normal(key, (physical.num_actions,)), -1.0, 1.0)
    mapped = env.to_physical(action, params)
    step_outputs_equal(
        env.step(key, state, action, params), physical.step(key, state, mapped, params)
    )
    low = np.asarray(physical.action_space(params).low)
    high = np.asarray(physical.action_space(params).high)
    np.testing.assert_allclose(env.to_physical(jnp.zeros_like(low), params), (low + high) / 2)


def test_normalize_actions_must_be_a_bool():
    with pytest.raises(ValueError, match="normalize_actions must be True or False, got 'False'"):
        cardiosim_jax.make(STEPPED_ID, normalize_actions="False")
    with pytest.raises(ValueError, match="wraps a CardioSim environment"):
        NormalizedActions(gymnax.make("Pendulum-v1")[0])


# --------------------------------------------------------------------------- other gymnax wrappers


def test_legacy_step_api_and_log_wrappers_trace_on_the_normalized_env():
    # Traced only: gymnax's 5-tuple compatibility wrapper and PureJaxRL's LogWrapper.
    env, params = cardiosim_jax.make(STEPPED_ID, normalize_actions=True)
    key = jax.random.PRNGKey(0)
    legacy = LegacyStepAPIWrapper(env)
    _, state = jax.eval_shape(legacy.reset, key, params)
    out = jax.eval_shape(legacy.step, key, state, jnp.float32(0.0), params)
    assert len(out) == 5 and out[3].dtype == jnp.bool_
    logged = LogWrapper(env)
    _, state = jax.eval_shape(logged.reset, key, params)
    out = jax.eval_shape(logged.step, key, state, jnp.zeros((1,)), params)
    assert out[0].shape == (6,) and "returned_episode_returns" in out[5]


def test_clients_doc_code_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", CLIENTS_DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 3
    namespaces = []
    for i, block in enumerate(blocks):
        namespaces.append({})
        exec(compile(block, f"docs/clients.md block {i}", "exec"), namespaces[-1])
    normalized, observed = namespaces[1], namespaces[2]
    assert isinstance(normalized["env"], NormalizedActions)
    assert np.isfinite(float(normalized["reward"]))
    # The observe override hides the drug level that a 160 mg dose raised.
    assert float(observed["obs"][9]) == 0.0
    assert float(observed["state"].drug.plasma_concentration) > 0.0
