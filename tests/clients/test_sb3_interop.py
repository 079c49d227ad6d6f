"""Stable-Baselines3 through the Gymnasium adapter: env checker, a short PPO run, predict."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import ENV_IDS, ignore_v0_out_of_date
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

import cardiosim_jax  # noqa: F401  (registers the cardiosim_jax/... ids)
from cardiosim_jax.training import checkpoint, networks, ppo

DOCS = Path(__file__).resolve().parents[2] / "docs" / "gymnasium.md"
#: PPO budget per environment: 8 rollouts of 256 steps.
TIMESTEPS = 2048


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny MLPs on a 2-core machine: extra torch threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        check_env(gymnasium.make(f"cardiosim_jax/{env_id}"))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_ppo_learns_and_predicts_an_episode(env_id):
    env = gymnasium.make(f"cardiosim_jax/{env_id}")
    limit = int(env.unwrapped.jax_params.max_steps_in_episode)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=256,
        batch_size=64,
        n_epochs=4,
        policy_kwargs={"net_arch": [32, 32]},
        device="cpu",
        seed=0,
    )
    initial = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=TIMESTEPS)
    assert model.num_timesteps >= TIMESTEPS
    changed = [
        not torch.equal(a, b) for a, b in zip(initial, model.policy.parameters(), strict=True)
    ]
    assert any(changed)  # gradient steps happened
    # SB3's Monitor saw whole episodes, whose lengths follow the JAX env's limits.
    lengths = [info["l"] for info in model.ep_info_buffer]
    assert lengths and all(1 <= n <= limit for n in lengths)
    if env_id == "PacingControl-v0":
        assert set(lengths) == {limit}  # pacing never terminates early
    assert all(np.isfinite(info["r"]) for info in model.ep_info_buffer)

    obs, _ = env.reset(seed=123)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps <= limit:
        action, _ = model.predict(obs, deterministic=True)
        assert action in env.action_space
        obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        assert obs in env.observation_space and np.isfinite(reward)
    assert terminated or truncated
    assert truncated == (steps == limit)


def test_docs_code_blocks_run(capsys):
    """docs/gymnasium.md's examples run as written (in order, one namespace)."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ignore_v0_out_of_date()
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/gymnasium.md block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "float32 (6,) <class 'float'>" in out
    assert "(1024, 6) float64 (1024,)" in out
    assert namespace["done"] and namespace["model"].num_timesteps >= 2048
    assert "SB3 policy on 100 episodes: " in out and namespace["cell"]["n_episodes"] == 100


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("normalized", [False, True])
def test_an_sb3_policy_evaluates_as_sb3_predicts(env_id, normalized):
    """``networks.from_sb3``: SB3's deterministic action and value, from our evaluation
    path, in physical action units or the adapter's Box(-1, 1) (``rescale_actions``)."""
    config = ppo.preset("paper", env_id, rescale_actions=normalized)
    env = gymnasium.make(
        f"cardiosim_jax/{env_id}", difficulty=config.difficulty, normalize_actions=normalized
    )
    model = PPO("MlpPolicy", env, device="cpu", seed=0)
    with torch.no_grad():  # away from the initialisation, where the actor's output is ~0
        for parameter in model.policy.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    policy = networks.from_sb3(model.policy.state_dict(), checkpoint.policy_template(config))
    physical = env.unwrapped.jax_env.action_space(env.unwrapped.jax_params)
    obs, _ = env.reset(seed=0)
    for _ in range(8):
        action, _ = model.predict(obs, deterministic=True)
        if normalized:  # what the adapter sends to the JAX env
            action = physical.low + (action + 1.0) / 2.0 * (physical.high - physical.low)
        ours = ppo.ppo_policy(policy, jnp.asarray(obs), jax.random.PRNGKey(0))
        np.testing.assert_allclose(ours, action, rtol=1e-5, atol=1e-4)
        _, _, value = networks.policy_network(policy).apply(policy.network, jnp.asarray(obs))
        expected = model.policy.predict_values(torch.as_tensor(obs[None])).item()
        np.testing.assert_allclose(float(value), expected, rtol=1e-5, atol=1e-5)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()


def test_from_sb3_refuses_what_does_not_fit():
    env_id = "DefibrillationTiming-v0"
    config = ppo.preset("paper", env_id)
    env = gymnasium.make(f"cardiosim_jax/{env_id}", normalize_actions=False)
    template = checkpoint.policy_template(config)
    small = PPO("MlpPolicy", env, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    with pytest.raises(ValueError, match="do not fit this policy"):
        networks.from_sb3(small.policy.state_dict(), template)
    weights = dict(PPO("MlpPolicy", env, device="cpu").policy.state_dict())
    del weights["action_net.bias"]
    with pytest.raises(ValueError, match="no 'action_net.bias': not an MlpPolicy"):
        networks.from_sb3(weights, template)
    normalizing = checkpoint.policy_template(config.replace_static(normalize_observations=True))
    with pytest.raises(ValueError, match="normalises observations"):
        networks.from_sb3(PPO("MlpPolicy", env, device="cpu").policy.state_dict(), normalizing)
