"""The Gymnasium adapter: API conformance, seeding, equivalence with the JAX env, vector env."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium
import jax
import numpy as np
import pytest
from conftest import ALL_IDS, DIFFICULTIES, ENV_IDS, V1_IDS, ignore_v0_out_of_date
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

import cardiosim_jax
from cardiosim_jax.gymnasium_adapter import (
    CardioSimGymnasiumEnv,
    CardioSimVectorEnv,
    episode_key_from_rng,
    register_gymnasium_envs,
)

GYM_IDS = {env_id: f"cardiosim_jax/{env_id}" for env_id in ALL_IDS}
#: One sub-env count for every vector test: each new batch size is a new compilation.
N = 4
PACKAGE = Path(cardiosim_jax.__file__).resolve().parent


def run_episode(env, actions, seed: int):
    """Reset with ``seed`` and step ``actions`` until the episode ends (or they run out)."""
    obs, _ = env.reset(seed=seed)
    trace = {"obs": [obs], "reward": [], "terminated": [], "truncated": [], "info": []}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        for name, value in zip(trace, (obs, reward, terminated, truncated, info), strict=True):
            trace[name].append(value)
        if terminated or truncated:
            break
    return trace


def uniform_actions(space, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)


# --------------------------------------------------------------------------- API conformance


#: Every tier of v0; one tier of v1 (its tiers differ in values only, not in spaces' shapes).
CHECK_ENV_CASES = [(e, d) for e in ENV_IDS for d in DIFFICULTIES] + [(e, "hard") for e in V1_IDS]


@pytest.mark.parametrize("env_id, difficulty", CHECK_ENV_CASES)
def test_check_env_passes_without_warnings(env_id, difficulty):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        env = gymnasium.make(GYM_IDS[env_id], difficulty=difficulty)
        check_env(env.unwrapped)
    jax_env, params = cardiosim_jax.make(env_id, difficulty)
    honest = jax_env.observation_space(params)
    space = env.observation_space
    assert isinstance(space, gymnasium.spaces.Box) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, np.asarray(honest.low, np.float32))
    np.testing.assert_array_equal(space.high, np.asarray(honest.high, np.float32))
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, jax_env.action_shape, np.float32)
    for ours, theirs in zip(
        jax.tree_util.tree_leaves(env.unwrapped.jax_params),
        jax.tree_util.tree_leaves(params),
        strict=True,
    ):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_full_episode_through_make_default_wrappers(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        env = gymnasium.make(GYM_IDS[env_id])
        wrappers = []
        layer = env
        while isinstance(layer, gymnasium.Wrapper):
            wrappers.append(type(layer))
            layer = layer.env
        assert gymnasium.wrappers.PassiveEnvChecker in wrappers
        assert gymnasium.wrappers.OrderEnforcing in wrappers
        assert gymnasium.wrappers.TimeLimit not in wrappers
        assert isinstance(layer, CardioSimGymnasiumEnv)
        env.action_space.seed(0)
        obs, info = env.reset(seed=0)
        assert obs.dtype == np.float32 and obs in env.observation_space and info == {}
        limit = int(env.unwrapped.jax_params.max_steps_in_episode)
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated) and steps <= limit:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            steps += 1
            assert obs in env.observation_space
            assert type(reward) is float and np.isfinite(reward)
            assert type(terminated) is bool and type(truncated) is bool
    # The JAX env's own time limit truncates exactly at max_steps_in_episode.
    assert terminated or truncated
    assert truncated == (steps == limit)


def test_time_limit_comes_from_the_jax_env_not_a_wrapper():
    """A longer episode override is honoured: the spec adds no TimeLimit of its own."""
    assert gymnasium.spec(GYM_IDS["PacingControl-v0"]).max_episode_steps is None
    env = gymnasium.make(GYM_IDS["PacingControl-v0"], max_steps_in_episode=37)
    trace = run_episode(env, np.zeros((600, 2), np.float32), seed=1)
    assert len(trace["reward"]) == 37
    assert trace["truncated"][-1] and not any(trace["truncated"][:-1])
    assert not any(trace["terminated"])


def test_kwargs_pass_through_make():
    env = gymnasium.make(GYM_IDS["PacingControl-v0"], difficulty="hard", target_heart_rate_bpm=80)
    params = env.unwrapped.jax_params
    hard = cardiosim_jax.envs.PacingControl.tiers["hard"]
    assert float(params.target_heart_rate_bpm) == 80.0
    assert float(params.conduction.conduction_block_prob) == pytest.approx(
        hard["conduction_block_prob"]
    )
    obs, _ = env.reset(seed=0)
    # Observation 4 is heart rate - target: the override reaches the dynamics.
    assert obs[4] == pytest.approx(obs[2] - 80.0, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"env_id": "Asystole-v9"}, "Asystole-v9"),
        ({"env_id": "PacingControl-v0", "difficulty": "extreme"}, "extreme"),
        ({"env_id": "PacingControl-v0", "heart_rate_goal": 80}, "heart_rate_goal"),
        ({"env_id": "PacingControl-v0", "target_heart_rate_bpm": 500.0}, "target_heart_rate_bpm"),
        ({"env_id": "PacingControl-v0", "render_mode": "human"}, "human"),
        (
            {"env_id": "PacingControl-v0", "target_heart_rate_bpm": np.array([60.0, 80.0])},
            "CardioSimVectorEnv",
        ),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, named):
    with pytest.raises(ValueError, match=named):
        CardioSimGymnasiumEnv(**kwargs)


def test_bad_arguments_through_gymnasium_make_raise_value_error():
    with pytest.raises(ValueError, match="extreme"):
        gymnasium.make(GYM_IDS["DefibrillationTiming-v0"], difficulty="extreme")
    with pytest.raises(ValueError, match="fib_severity"):
        gymnasium.make(GYM_IDS["DefibrillationTiming-v0"], fib_severity=2.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": 2.5}, "num_envs"),
        ({"num_envs": N, "autoreset_mode": "Sometimes"}, "Sometimes"),
        ({"num_envs": N, "target_heart_rate_bpm": np.array([60.0, 80.0])}, r"\(4,\)"),
        ({"num_envs": N, "difficulty": "extreme"}, "extreme"),
    ],
)
def test_vector_bad_arguments_raise_value_error(kwargs, named):
    with pytest.raises(ValueError, match=named):
        CardioSimVectorEnv("PacingControl-v0", **kwargs)


def test_bad_actions_and_options_raise_value_error():
    env = CardioSimGymnasiumEnv("AntiarrhythmicDosing-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        env.step(0.5)
    with pytest.raises(ValueError, match="numeric"):
        env.step(["a lot"])
    obs, *_ = env.step([0.5])  # a list of the right shape is fine
    assert obs.shape == (6,)
    with pytest.raises(ValueError, match="bogus"):
        env.reset(options={"bogus": 1})


def test_jax_attributes_are_exposed_read_only():
    env = CardioSimGymnasiumEnv("DefibrillationTiming-v0")
    assert env.state is None
    assert isinstance(env.jax_env, cardiosim_jax.envs.DefibrillationTiming)
    env.reset(seed=3)
    assert int(env.state.time) == 0
    for _ in range(3):
        env.step(np.array([-1.0, -1.0], np.float32))  # never shock: the episode goes on
    assert int(env.state.time) == 3 and int(env.state.shocks_delivered) == 0
    for name in ("state", "jax_env", "jax_params"):
        with pytest.raises(AttributeError):
            setattr(env, name, None)


def test_step_before_reset_and_after_the_end_raises():
    env = CardioSimGymnasiumEnv("PacingControl-v0", max_steps_in_episode=2)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))
    *_, truncated, _ = env.step(np.zeros(2, np.float32))
    assert truncated
    with pytest.raises(ResetNeeded, match="ended"):
        env.step(np.zeros(2, np.float32))
    env.reset()
    env.step(np.zeros(2, np.float32))


# --------------------------------------------------------------------------- actions


def test_normalized_actions_map_onto_the_physical_bounds():
    pacing = CardioSimGymnasiumEnv("PacingControl-v0")
    pacing.reset(seed=0)
    assert pacing.step(np.array([0.0, 1.0], np.float32))[4]["pulse_amplitude"] == 1.0
    assert pacing.step(np.array([0.0, -1.0], np.float32))[4]["pulse_amplitude"] == 0.0
    assert pacing.step(np.array([0.0, 0.0], np.float32))[4]["pulse_amplitude"] == 0.5

    defib = CardioSimGymnasiumEnv("DefibrillationTiming-v0", defibrillation_success_base=0.0)
    defib.reset(seed=0)
    info = defib.step(np.array([1.0, 1.0], np.float32))[4]  # shock at full energy (360 J)
    assert info["shocks_delivered"] == 1 and info["total_energy"] == 360.0
    info = defib.step(np.array([0.0, -1.0], np.float32))[4]  # 0 -> decision 0.5: no shock
    assert info["shocks_delivered"] == 1 and info["total_energy"] == 360.0

    physical = CardioSimGymnasiumEnv("DefibrillationTiming-v0", normalize_actions=False)
    jax_env, params = cardiosim_jax.make("DefibrillationTiming-v0")
    bounds = jax_env.action_space(params)
    np.testing.assert_array_equal(physical.action_space.low, np.asarray(bounds.low))
    np.testing.assert_array_equal(physical.action_space.high, np.asarray(bounds.high))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_nan_and_inf_actions_never_reach_the_state(env_id):
    normalized = CardioSimGymnasiumEnv(env_id)
    physical = CardioSimGymnasiumEnv(env_id, normalize_actions=False)
    shape = normalized.action_space.shape
    # NaN counts as 0 in physical units (the JAX env's sanitation) ...
    nan_trace = run_episode(normalized, np.full((20, *shape), np.nan, np.float32), seed=5)
    zero_trace = run_episode(physical, np.zeros((20, *shape), np.float32), seed=5)
    assert data_equivalence(nan_trace, zero_trace, exact=True)
    # ... and +-inf acts like a huge finite action (the env clips/clamps it).
    signs = np.where(np.arange(20)[:, None] % 3 == 0, -1.0, 1.0) * np.ones(shape)
    inf_trace = run_episode(normalized, (signs * np.inf).astype(np.float32), seed=6)
    big_trace = run_episode(physical, (signs * 1e9).astype(np.float32), seed=6)
    assert data_equivalence(inf_trace, big_trace, exact=True)
    assert np.all(np.isfinite(inf_trace["obs"])) and np.all(np.isfinite(inf_trace["reward"]))
    # A mixed run: every state leaf stays finite.
    rng = np.random.default_rng(0)
    normalized.reset(seed=7)
    for _ in range(30):
        action = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.3], np.float32), size=shape)
        *_, terminated, truncated, _ = normalized.step(action)
        if terminated or truncated:
            normalized.reset()
    for leaf in jax.tree_util.tree_leaves(normalized.state):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


# --------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_episode_and_none_continues_the_stream(env_id):
    env = CardioSimGymnasiumEnv(env_id)
    actions = uniform_actions(env.action_space, 30, seed=0)
    first = run_episode(env, actions, seed=11)
    again = run_episode(CardioSimGymnasiumEnv(env_id), actions, seed=11)
    assert data_equivalence(first, again, exact=True)

    obs_a, _ = env.reset(seed=123)
    obs_b, _ = env.reset()
    obs_c, _ = env.reset(seed=123)
    obs_d, _ = env.reset()
    assert not np.array_equal(obs_a, obs_b)  # seed=None moved on to a new episode
    np.testing.assert_array_equal(obs_a, obs_c)  # reseeding reproduces ...
    np.testing.assert_array_equal(obs_b, obs_d)  # ... and so does the continued stream
    assert not np.array_equal(run_episode(env, actions, 12)["obs"][1], first["obs"][1])


def test_unseeded_envs_are_seeded_from_entropy():
    first = [CardioSimGymnasiumEnv("PacingControl-v0").reset()[0] for _ in range(2)]
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_episode_replays_the_jax_env_with_the_derived_keys(env_id):
    """Reset key split(K)[0], step t = gymnax env.step with fold_in(split(K)[1], t)."""
    seed = 21
    adapter = CardioSimGymnasiumEnv(env_id, normalize_actions=False)
    jax_env, params = adapter.jax_env, adapter.jax_params
    limit = int(params.max_steps_in_episode)
    actions = uniform_actions(adapter.action_space, limit, seed=1)
    if env_id != "PacingControl-v0":
        actions[:, 0] = adapter.action_space.high[0]  # dose/shock at full scale: ends early
    trace = run_episode(adapter, actions, seed)

    key = episode_key_from_rng(seeding.np_random(seed)[0])
    reset_key, loop_key = jax.random.split(key)
    obs, state = jax_env.reset(reset_key, params)
    np.testing.assert_array_equal(trace["obs"][0], obs)
    for t, action in enumerate(actions[: len(trace["reward"])]):
        step_key = jax.random.fold_in(loop_key, t)
        _, state, reward, terminated, truncated, info = jax_env.step(
            step_key, state, action, params
        )
        np.testing.assert_allclose(trace["obs"][t + 1], info["final_observation"], rtol=1e-6)
        assert trace["reward"][t] == pytest.approx(float(reward), rel=1e-6, abs=1e-6)
        assert trace["terminated"][t] == bool(terminated)
        assert trace["truncated"][t] == bool(truncated)
        for name, value in trace["info"][t].items():
            assert value == pytest.approx(np.asarray(info[name]).item(), rel=1e-6, abs=1e-6)
    length = len(trace["reward"])
    ended = np.logical_or(trace["terminated"], trace["truncated"])
    assert ended[-1] and not ended[:-1].any()
    if env_id == "PacingControl-v0":  # never terminates; truncated at 500
        assert length == limit == 500 and trace["truncated"][-1]
    elif env_id in ENV_IDS:  # full dose is toxic, full-energy shocks succeed: both end early
        assert length < limit and trace["terminated"][-1] and not trace["truncated"][-1]
    elif trace["truncated"][-1]:
        assert length == limit


# --------------------------------------------------------------------------- vector env


def sync_reference(env_id: str, mode: AutoresetMode, **overrides) -> SyncVectorEnv:
    return SyncVectorEnv(
        [lambda: CardioSimGymnasiumEnv(env_id, **overrides)] * N, autoreset_mode=mode
    )


#: Short episodes so that every autoreset path runs within a few steps.
SHORT = {
    "PacingControl-v0": {"max_steps_in_episode": 6},
    "AntiarrhythmicDosing-v0": {"max_steps_in_episode": 9},
    "DefibrillationTiming-v0": {"max_steps_in_episode": 8},
}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_matches_sync_vector_env(env_id, mode):
    """Same obs/rewards/flags/infos (incl. final_obs/final_info) as SyncVectorEnv of single envs."""
    ours = CardioSimVectorEnv(env_id, N, autoreset_mode=mode, **SHORT[env_id])
    reference = sync_reference(env_id, mode, **SHORT[env_id])
    assert ours.metadata["autoreset_mode"] == reference.metadata["autoreset_mode"] == mode
    assert data_equivalence(ours.reset(seed=5), reference.reset(seed=5), exact=True)
    rng = np.random.default_rng(1)
    ends = 0
    for step in range(24):
        actions = rng.uniform(-1.0, 1.0, ours.action_space.shape).astype(np.float32)
        if env_id != "PacingControl-v0":
            actions[::2, 0] = 1.0  # full dose / shock in half the sub-envs: early terminations
        got, expected = ours.step(actions), reference.step(actions)
        # vmapped and single compilations may differ in the last float32 bits
        assert data_equivalence(got, expected), (step, got, expected)
        for i in (2, 3):  # flags must match exactly
            np.testing.assert_array_equal(got[i], expected[i])
        ends += int(np.sum(got[2] | got[3]))
        if step == 11:  # partial reset, mixing explicit seeds and continued streams
            mask = np.array([True, False, True, False])
            seeds = [99, None, None, 7]
            assert data_equivalence(
                ours.reset(seed=seeds, options={"reset_mask": mask.copy()}),
                reference.reset(seed=seeds, options={"reset_mask": mask.copy()}),
            )
    assert ends >= N  # the autoreset paths were exercised


def test_vector_shapes_dtypes_and_spaces():
    envs = CardioSimVectorEnv("AntiarrhythmicDosing-v0", N, difficulty="hard")
    single = CardioSimGymnasiumEnv("AntiarrhythmicDosing-v0", difficulty="hard")
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, N)
    assert envs.action_space == batch_space(single.action_space, N)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (N, 6) and obs.dtype == np.float32 and info == {}
    assert obs in envs.observation_space
    obs, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())
    assert obs.shape == (N, 6) and obs.dtype == np.float32
    assert rewards.shape == (N,) and rewards.dtype == np.float64
    assert terminations.dtype == truncations.dtype == np.bool_
    assert terminations.shape == truncations.shape == (N,)
    assert infos["concentration"].dtype == np.float64 and infos["_concentration"].all()
    assert infos["is_toxic"].dtype == np.bool_
    assert jax.tree_util.tree_leaves(envs.state)[0].shape[0] == N


def test_vector_next_step_semantics():
    """The step after an episode ends resets: action ignored, reward 0, flags False, no info."""
    envs = CardioSimVectorEnv("PacingControl-v0", N, max_steps_in_episode=3)
    first, _ = envs.reset(seed=40)
    actions = np.zeros((N, 2), np.float32)
    for _ in range(2):
        _, _, terminations, truncations, infos = envs.step(actions)
        assert not truncations.any() and infos["_heart_rate"].all()
    last, rewards, terminations, truncations, infos = envs.step(actions)
    assert truncations.all() and not terminations.any() and infos["_heart_rate"].all()
    assert np.all(rewards != 0.0)
    nxt, rewards, terminations, truncations, infos = envs.step(np.full((N, 2), np.nan, np.float32))
    np.testing.assert_array_equal(rewards, np.zeros(N))
    assert not terminations.any() and not truncations.any() and infos == {}
    assert int(np.asarray(envs.state.time).max()) == 0
    for i in range(N):  # the new episode of sub-env i = second episode of a single env seeded 40+i
        single = CardioSimGymnasiumEnv("PacingControl-v0", max_steps_in_episode=3)
        np.testing.assert_array_equal(single.reset(seed=40 + i)[0], first[i])
        for _ in range(3):
            single.step(actions[i])
        np.testing.assert_allclose(single.reset()[0], nxt[i], rtol=1e-6)
    assert not np.allclose(nxt, last)


def test_vector_same_step_semantics():
    envs = CardioSimVectorEnv(
        "PacingControl-v0", N, autoreset_mode=AutoresetMode.SAME_STEP, max_steps_in_episode=3
    )
    twin = CardioSimVectorEnv("PacingControl-v0", N, max_steps_in_episode=3)  # NEXT_STEP
    envs.reset(seed=8)
    twin.reset(seed=8)
    actions = np.zeros((N, 2), np.float32)
    for _ in range(2):
        envs.step(actions)
        twin.step(actions)
    obs, rewards, terminations, truncations, infos = envs.step(actions)
    final, final_rewards, _, _, final_infos = twin.step(actions)
    assert truncations.all()
    np.testing.assert_array_equal(rewards, final_rewards)  # the last step's reward
    assert infos["_final_obs"].all() and infos["_final_info"].all()
    np.testing.assert_array_equal(np.stack(infos["final_obs"]), final)
    assert data_equivalence(infos["final_info"], final_infos)
    assert "heart_rate" not in infos  # every sub-env reset: no top-level step info
    new_episode, *_ = twin.step(actions)  # NEXT_STEP shows the new episode one step later
    np.testing.assert_array_equal(obs, new_episode)
    assert int(np.asarray(envs.state.time).max()) == 0


def test_vector_disabled_autoreset_requires_masked_reset():
    envs = CardioSimVectorEnv(
        "PacingControl-v0", N, autoreset_mode="Disabled", max_steps_in_episode=1
    )
    envs.reset(seed=0)
    *_, truncations, _ = envs.step(np.zeros((N, 2), np.float32))
    assert truncations.all()
    with pytest.raises(ResetNeeded, match="reset_mask"):
        envs.step(np.zeros((N, 2), np.float32))
    envs.reset(options={"reset_mask": np.ones(N, np.bool_)})
    envs.step(np.zeros((N, 2), np.float32))


def test_vector_reset_mask_and_seed_validation():
    envs = CardioSimVectorEnv("DefibrillationTiming-v0", N)
    with pytest.raises(ValueError, match="first reset"):
        envs.reset(options={"reset_mask": np.array([True, False, False, False])})
    before, _ = envs.reset(seed=3)
    obs, _ = envs.reset(options={"reset_mask": np.array([False, True, False, False])})
    np.testing.assert_array_equal(obs[[0, 2, 3]], before[[0, 2, 3]])
    assert not np.array_equal(obs[1], before[1])
    for bad in (np.array([1, 0, 0, 0]), np.zeros(N, np.bool_), np.ones(N + 1, np.bool_)):
        with pytest.raises(ValueError, match="reset_mask"):
            envs.reset(options={"reset_mask": bad})
    with pytest.raises(ValueError, match="num_envs=4"):
        envs.reset(seed=[1, 2])
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        envs.step(np.zeros((N + 1, 2), np.float32))
    # An int seed reproduces the whole batch.
    again = CardioSimVectorEnv("DefibrillationTiming-v0", N)
    np.testing.assert_array_equal(again.reset(seed=3)[0], before)
    assert len(set(map(tuple, before))) == N  # sub-envs differ (seeds 3, 4, 5, 6)


def test_vector_population_overrides():
    targets = np.array([60.0, 70.0, 80.0, 90.0], np.float32)
    envs = CardioSimVectorEnv("PacingControl-v0", N, target_heart_rate_bpm=targets)
    obs, _ = envs.reset(seed=0)
    np.testing.assert_allclose(obs[:, 2] - obs[:, 4], targets, atol=1e-3)
    assert obs in envs.observation_space
    np.testing.assert_array_equal(envs.observation_space.low[:, 4], -targets)
    assert envs.single_observation_space.low[4] == -targets.max()
    obs, *_ = envs.step(np.zeros((N, 2), np.float32))
    np.testing.assert_allclose(obs[:, 2] - obs[:, 4], targets, atol=1e-3)


def test_make_vec_uses_the_vector_entry_point():
    envs = gymnasium.make_vec(
        GYM_IDS["PacingControl-v0"],
        num_envs=N,
        vectorization_mode="vector_entry_point",
        difficulty="hard",
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    assert isinstance(envs, CardioSimVectorEnv) and envs.num_envs == N
    assert envs.spec.id == GYM_IDS["PacingControl-v0"]
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    hard = cardiosim_jax.envs.PacingControl.tiers["hard"]["sa_rate_high_bpm"]
    assert float(envs.jax_params.sa_rate_high_bpm) == hard
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (N, 6)
    default = gymnasium.make_vec(GYM_IDS["PacingControl-v0"], num_envs=N)
    assert isinstance(default, CardioSimVectorEnv)
    sync = gymnasium.make_vec(GYM_IDS["PacingControl-v0"], num_envs=2, vectorization_mode="sync")
    assert isinstance(sync, SyncVectorEnv)


# --------------------------------------------------------------------------- registration


def test_registered_ids_and_idempotent_registration():
    for env_id, gym_id in GYM_IDS.items():
        spec = gymnasium.spec(gym_id)
        assert spec.entry_point == "cardiosim_jax.gymnasium_adapter:CardioSimGymnasiumEnv"
        assert spec.vector_entry_point == "cardiosim_jax.gymnasium_adapter:CardioSimVectorEnv"
        assert spec.kwargs == {"env_id": env_id} and spec.max_episode_steps is None
    before = {gym_id: gymnasium.registry[gym_id] for gym_id in GYM_IDS.values()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        assert register_gymnasium_envs() == tuple(GYM_IDS.values())
        importlib.reload(cardiosim_jax)
        register_gymnasium_envs()
    assert {gym_id: gymnasium.registry[gym_id] for gym_id in GYM_IDS.values()} == before


def test_v0_ids_are_flagged_out_of_date_and_v1_ids_are_not():
    with pytest.warns(DeprecationWarning, match="PacingControl-v0 is out of date"):
        gymnasium.make("cardiosim_jax/PacingControl-v0").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium.make("cardiosim_jax/PacingControl-v1").close()


def test_import_registers_lazily_and_skips_without_gymnasium():
    """In a fresh interpreter: no gymnasium -> no ids; the adapter module is never imported."""
    script = textwrap.dedent(
        """
        import importlib.util, sys
        real_find_spec = importlib.util.find_spec
        def find_spec(name, *args, **kwargs):
            return None if name == "gymnasium" else real_find_spec(name, *args, **kwargs)
        importlib.util.find_spec = find_spec
        import cardiosim_jax
        import gymnasium
        ours = [i for i in gymnasium.registry if i.startswith("cardiosim_jax/")]
        assert ours == [], ours
        assert cardiosim_jax.registration.register_gymnasium_envs() == ()
        importlib.util.find_spec = real_find_spec
        ids = cardiosim_jax.registration.register_gymnasium_envs()
        assert set(ids) <= set(gymnasium.registry) and len(ids) == 6, ids
        assert "cardiosim_jax.gymnasium_adapter" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def gymnasium_imports(tree: ast.AST) -> list[ast.stmt]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(n.split(".")[0] == "gymnasium" or "gymnasium_adapter" in n for n in names):
            found.append(node)
    return found


def test_only_the_adapter_and_the_registration_hook_import_gymnasium():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "gymnasium_adapter.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        found = gymnasium_imports(tree)
        if relative == "registration.py":
            # The registration hooks import Gymnasium inside their bodies, once found.
            hooks = [
                node
                for node in tree.body
                if isinstance(node, ast.FunctionDef)
                and node.name in ("_register_gymnasium", "unregister")
            ]
            assert len(hooks) == 2
            allowed = {id(node) for hook in hooks for node in gymnasium_imports(hook)}
            found = [node for node in found if id(node) not in allowed]
        offenders += [f"{relative}:{node.lineno}" for node in found]
    assert offenders == []
    # The scan does see imports (a guard against a scan that can never fail).
    assert gymnasium_imports(ast.parse("import gymnasium.spaces\nfrom gymnasium import Env"))
