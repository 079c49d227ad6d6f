"""The template environment (examples/vasopressor): one package, no edit elsewhere, end to end.

Importing the package registers ``VasopressorTitration-v0``; these tests then use it only
through the entry points a user has: ``make``, ``gymnax.make``, ``gymnasium.make``, the
conformance checks, the baseline policies, the PPO preset and trainer, and the plotter.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import cardiosim_jax  # noqa: E402
from cardiosim_jax import agents, registration, testing  # noqa: E402
from cardiosim_jax.evaluation import evaluate  # noqa: E402
from cardiosim_jax.training import ppo  # noqa: E402

ENV_ID = "VasopressorTitration-v0"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module", autouse=True)
def template():
    """Import (so register) the template package; unregister afterwards, so other tests in
    this worker see only the shipped environments."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = importlib.import_module("vasopressor")
        if ENV_ID not in cardiosim_jax.registered_envs:  # unregistered by an earlier run
            importlib.reload(module)
        yield module
    finally:
        if ENV_ID in cardiosim_jax.registered_envs:
            registration.unregister(ENV_ID)
        sys.path.remove(str(EXAMPLES))


def test_registered_everywhere_by_one_call():
    import gymnasium
    import gymnax

    assert ENV_ID in cardiosim_jax.registered_envs
    env, params = cardiosim_jax.make(ENV_ID, "hard")
    assert env.env_id == ENV_ID
    assert float(params.baseline_map_mmhg) == 50.0
    assert type(gymnax.make(ENV_ID)[0]) is type(env)
    assert f"cardiosim_jax/{ENV_ID}" in gymnasium.registry
    # Registering the same class again (a reload) replaces its spec; another class may
    # not take the id.
    registration.register(registration.spec(ENV_ID))

    class Impostor(type(env)):
        pass

    with pytest.raises(ValueError, match="already registered by vasopressor.env"):
        registration.register(registration.EnvSpec(Impostor))
    assert registration.spec(ENV_ID).env_class is type(env)


def test_passes_the_conformance_checks():
    testing.check_registered(ENV_ID)


def test_gymnasium_adapter_runs_an_episode():
    import gymnasium

    env = gymnasium.make(f"cardiosim_jax/{ENV_ID}", difficulty="medium")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(np.array([0.3], np.float32))
        assert np.isfinite(reward) and env.observation_space.contains(obs)
        done, steps = terminated or truncated, steps + 1
    assert steps == 60


def test_heuristic_beats_random_and_no_drug():
    env, params = cardiosim_jax.make(ENV_ID, "medium")
    key = jax.random.PRNGKey(0)
    means = {}
    for name in ("random", "heuristic"):
        policy, policy_params = agents.baseline_policy(name, env, params)
        means[name] = evaluate(policy, env, params, key, 64, 1, policy_params)["mean"]
    none = evaluate(lambda p, o, k: np.zeros((1,), np.float32), env, params, key, 64, 1)["mean"]
    assert means["heuristic"] > means["random"] + 10
    assert means["heuristic"] > none + 10


def test_ppo_preset_comes_from_the_package_and_trains():
    config = ppo.preset("tuned", ENV_ID, total_timesteps=2 * 64 * 128)
    assert config.gamma == 0.95 and config.init_log_std == -1.0  # the package's settings
    out = jax.jit(ppo.make_train(config))(jax.random.PRNGKey(0))
    returns = np.asarray(out.metrics["episode_return"])
    assert returns.shape == (config.num_updates,)
    assert np.all(np.isfinite(returns))


def test_plotter_draws_a_rollout():
    from cardiosim_jax import plotting

    fig = plotting.plot_rollout(ENV_ID, "medium", "heuristic", n_patients=2)
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert "MAP (mmHg)" in ylabels
    map_lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 60]
    assert len(map_lines) == 2  # one line per patient, a full hour each
    assert ENV_ID in registration.plottable_envs()
