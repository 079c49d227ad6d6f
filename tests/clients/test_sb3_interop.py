"""Stable-Baselines3 through the Gymnasium adapter: env checker, a short PPO run, predict."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from conftest import ENV_IDS, ignore_v0_out_of_date
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env

import cardiosim_jax  # noqa: F401  (registers the cardiosim_jax/... ids)

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
