"""PPO configuration: validation, serialisation and the paper, tuned and large presets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import cardiosim_jax
from cardiosim_jax.training import config as ppo_config
from cardiosim_jax.training.config import PPOConfig, preset


def test_paper_preset_is_table_1():
    table1 = {
        "PacingControl-v0": (3e-4, 2048, 0.01, 200_000, "medium"),
        "AntiarrhythmicDosing-v0": (5e-4, 1024, 0.02, 300_000, "medium"),
        "DefibrillationTiming-v0": (3e-4, 256, 0.10, 500_000, "easy"),
    }
    for env_id, (lr, steps, ent, total, difficulty) in table1.items():
        config = preset("paper", env_id)
        assert (config.learning_rate, config.num_steps, config.ent_coef) == (lr, steps, ent)
        assert (config.total_timesteps, config.difficulty) == (total, difficulty)
        assert (config.minibatch_size, config.update_epochs, config.num_envs) == (64, 10, 1)
        assert (config.gamma, config.gae_lambda, config.clip_eps) == (0.99, 0.95, 0.2)
        assert (config.vf_coef, config.max_grad_norm, config.hidden_sizes) == (0.5, 0.5, (64, 64))
        assert not config.normalize_observations and config.activation == "tanh"


def test_bad_presets_raise():
    with pytest.raises(ValueError, match="unknown preset"):
        preset("best", "PacingControl-v0")
    with pytest.raises(ValueError, match="unknown environment id"):
        preset("paper", "Pacing-v9")
    with pytest.raises(ValueError, match="multiple of"):
        preset("paper", "PacingControl-v0", minibatch_size=100)
    with pytest.raises(ValueError, match="paper preset exists only for the v0"):
        preset("paper", "PacingControl-v1")


def test_every_registered_env_has_a_tuned_preset():
    for env_id in cardiosim_jax.registered_envs:
        config = preset("tuned", env_id)
        assert config.env_id == env_id and config.normalize_observations


SHAPE = ("num_envs", "num_steps", "minibatch_size", "total_timesteps")


@pytest.mark.parametrize("env_id", list(cardiosim_jax.registered_envs))
@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_large_preset_is_tuned_scaled_to_a_large_batch(env_id, difficulty):
    tuned, large = preset("tuned", env_id, difficulty), preset("large", env_id, difficulty)
    own = cardiosim_jax.registration.spec(env_id).ppo_large
    # Everything but the rollout shape and the env's own large settings is tuned's (tier
    # settings and residuals included).
    assert large.replace_static(**{k: getattr(tuned, k) for k in SHAPE}) == tuned.replace(**own)
    for name, value in own.items():
        assert getattr(large, name) == value != getattr(tuned, name), name
    assert (large.num_envs, large.num_steps) == (ppo_config.LARGE_NUM_ENVS, 32)
    assert large.num_updates == tuned.num_updates
    assert large.total_timesteps == tuned.num_updates * large.batch_size
    assert large.num_minibatches == tuned.num_minibatches == 8
    assert large.batch_size > tuned.batch_size


def test_large_preset_rescales_with_num_envs_unless_told_otherwise():
    env_id = "AntiarrhythmicDosing-v0"
    updates = preset("tuned", env_id).num_updates
    gpu = preset("large", env_id, num_envs=4096)
    assert (gpu.batch_size, gpu.minibatch_size) == (4096 * 32, 4096 * 32 // 8)
    assert gpu.num_updates == updates
    short = preset("large", env_id, num_envs=4096, num_steps=8, total_timesteps=10**6)
    assert (short.minibatch_size, short.total_timesteps) == (4096, 10**6)
    assert preset("large", env_id, minibatch_size=256).minibatch_size == 256
    # A batch not divisible by 8: the largest divisor below batch / 8 (33 -> 3 x 11).
    odd = preset("large", env_id, num_envs=11, num_steps=3)
    assert (odd.minibatch_size, odd.num_minibatches, odd.num_updates) == (3, 11, updates)
    with pytest.raises(ValueError, match=r"^num_envs must be an int >= 1, got 0$"):
        preset("large", env_id, num_envs=0)
    with pytest.raises(ValueError, match=r"^num_steps must be an int >= 1, got 2.5$"):
        preset("large", env_id, num_steps=2.5)


def test_large_preset_applies_the_registered_large_settings_under_the_overrides(monkeypatch):
    env_id = "AntiarrhythmicDosing-v0"
    spec = cardiosim_jax.registration.spec(env_id)
    monkeypatch.setitem(
        cardiosim_jax.registration._REGISTRY,
        env_id,
        dataclasses.replace(spec, ppo_large={"learning_rate": 2e-4, "num_steps": 16}),
    )
    large = preset("large", env_id, "hard")
    assert (large.learning_rate, large.num_steps) == (2e-4, 16)
    # A registered shape is scaled like an override: minibatch and budget follow it.
    assert large.minibatch_size == ppo_config.LARGE_NUM_ENVS * 16 // 8
    assert large.num_updates == preset("tuned", env_id, "hard").num_updates
    assert preset("large", env_id, learning_rate=1e-3).learning_rate == 1e-3
    assert preset("tuned", env_id).learning_rate == ppo_config._TUNED_COMMON["learning_rate"]
    # PacingControl-v0 registers its own large learning rate (baselines/large.py).
    assert preset("large", "PacingControl-v0").learning_rate == 5e-4


def test_tuned_preset_falls_back_to_the_common_settings(monkeypatch):
    # A registered environment without its own entry (as a newly added one would be).
    spec = cardiosim_jax.registration.spec("DefibrillationTiming-v1")
    monkeypatch.setitem(
        cardiosim_jax.registration._REGISTRY,
        "DefibrillationTiming-v1",
        dataclasses.replace(spec, ppo_tuned={}),
    )
    config = preset("tuned", "DefibrillationTiming-v1", total_timesteps=4096)
    assert config.env_id == "DefibrillationTiming-v1" and config.difficulty == "medium"
    for name, value in ppo_config._TUNED_COMMON.items():
        assert getattr(config, name) == value, name
    assert config.total_timesteps == 4096 and config.gamma == PPOConfig.gamma
    # An unregistered id still fails with the one-line error, whatever the preset.
    for name in ppo_config.PRESETS:
        with pytest.raises(ValueError, match=r"^unknown environment id 'Nope-v0'; registered: \["):
            preset(name, "Nope-v0")


def test_tuned_preset_applies_the_tier_settings_of_the_registration(monkeypatch):
    env_id = "DefibrillationTiming-v0"
    spec = cardiosim_jax.registration.spec(env_id)
    tier_settings = {"hard": {"gamma": 0.5, "ent_coef": 0.01}}
    monkeypatch.setitem(
        cardiosim_jax.registration._REGISTRY,
        env_id,
        dataclasses.replace(spec, ppo_tuned_tiers=tier_settings),
    )
    hard = preset("tuned", env_id, "hard")
    medium = preset("tuned", env_id, "medium")
    assert (hard.gamma, hard.ent_coef) == (0.5, 0.01)
    assert medium.gamma == spec.ppo_tuned["gamma"] and medium.ent_coef == 0.0
    # Explicit overrides still win over the tier's settings.
    assert preset("tuned", env_id, "hard", gamma=0.9).gamma == 0.9
    # The paper preset is the paper's on every tier.
    paper_hard = preset("paper", env_id, "hard")
    assert paper_hard.gamma == PPOConfig.gamma and paper_hard.ent_coef == spec.ppo_paper.get(
        "ent_coef", PPOConfig.ent_coef
    )


def test_pacing_v1_hard_trains_a_residual_on_the_clinical_rule():
    hard = preset("tuned", "PacingControl-v1", "hard")
    assert hard.residual_scale == (5.0, 0.5) and hard.init_action is None
    assert preset("tuned", "PacingControl-v1", "medium").residual_scale is None


def test_validate_can_skip_the_registry_for_a_given_env():
    config = PPOConfig(env_id="Pendulum-v1", num_envs=4, num_steps=16, minibatch_size=32)
    with pytest.raises(ValueError, match="unknown environment id 'Pendulum-v1'"):
        config.validate()
    config.validate(registered_env=False)
    # The other checks still run.
    with pytest.raises(ValueError, match="multiple of"):
        config.replace_static(minibatch_size=48).validate(registered_env=False)


def test_config_dict_round_trip():
    config = preset("tuned", "PacingControl-v0", init_action=(1.0, 0.5))
    data = config.to_dict()
    assert data["hidden_sizes"] == [64, 64] and data["init_action"] == [1.0, 0.5]
    assert PPOConfig.from_dict(data) == config
    residual = preset("tuned", "PacingControl-v1", "hard")
    assert residual.to_dict()["residual_scale"] == [5.0, 0.5]
    assert PPOConfig.from_dict(residual.to_dict()) == residual


@pytest.mark.parametrize("coef", [-0.1, float("nan"), float("inf")])
def test_smoothness_coefficient_must_be_finite_and_non_negative(coef):
    with pytest.raises(ValueError, match=r"smoothness_coef must be finite and >= 0, got"):
        PPOConfig(smoothness_coef=coef).validate()


# Issue 14: every leaf finite and in range, every static field sane, checked before training.
BAD_SETTINGS = [
    ({"learning_rate": float("nan")}, r"learning_rate must be finite and >= 0, got nan"),
    ({"learning_rate": float("inf")}, r"learning_rate must be finite and >= 0, got inf"),
    ({"learning_rate": -1e-3}, r"learning_rate must be finite and >= 0, got -0\.001"),
    ({"learning_rate": "3e-4"}, r"learning_rate must be a real number, got '3e-4'"),
    ({"ent_coef": float("nan")}, r"ent_coef must be finite and >= 0, got nan"),
    ({"ent_coef": -0.01}, r"ent_coef must be finite and >= 0, got -0\.01"),
    ({"clip_eps": -1.0}, r"clip_eps must be finite and > 0, got -1"),
    ({"clip_eps": 0.0}, r"clip_eps must be finite and > 0, got 0"),
    ({"gamma": 2.0}, r"gamma must be in \[0, 1\], got 2"),
    ({"gamma": float("nan")}, r"gamma must be in \[0, 1\], got nan"),
    ({"gae_lambda": -0.5}, r"gae_lambda must be in \[0, 1\], got -0\.5"),
    ({"vf_coef": -0.5}, r"vf_coef must be finite and >= 0, got -0\.5"),
    ({"max_grad_norm": 0.0}, r"max_grad_norm must be > 0 \(inf: no clipping\), got 0"),
    ({"max_grad_norm": float("nan")}, r"max_grad_norm must be > 0 \(inf: no clipping\), got nan"),
    ({"init_log_std": float("-inf")}, r"init_log_std must be finite, got -inf"),
    ({"reward_scale": 0.0}, r"reward_scale must be finite and > 0, got 0"),
    ({"reward_scale": float("inf")}, r"reward_scale must be finite and > 0, got inf"),
    ({"reward_clip": 0.0}, r"reward_clip must be > 0 \(inf: no clipping\), got 0"),
    ({"reward_clip": float("nan")}, r"reward_clip must be > 0 \(inf: no clipping\), got nan"),
    ({"difficulty": "extreme"}, r"unknown difficulty 'extreme' for PacingControl-v0; accepted: "),
    ({"num_envs": 1.0}, r"num_envs must be an int >= 1, got 1\.0"),
    ({"num_steps": True}, r"num_steps must be an int >= 1, got True"),
    ({"minibatch_size": 0}, r"minibatch_size must be an int >= 1, got 0"),
    ({"total_timesteps": -5}, r"total_timesteps must be an int >= 1, got -5"),
    ({"update_epochs": 2.5}, r"update_epochs must be an int >= 1, got 2\.5"),
    ({"anneal_lr": "False"}, r"anneal_lr must be True or False, got 'False'"),
    ({"hidden_sizes": (64, 0)}, r"hidden_sizes must be a tuple \(or list\) of ints >= 1"),
    ({"hidden_sizes": (64.0,)}, r"hidden_sizes must be .* got \(64\.0,\)"),
    ({"hidden_sizes": "64"}, r"hidden_sizes must be .* got '64'"),
    ({"activation": "gelu"}, r"activation 'gelu' not in \['relu', 'tanh'\]"),
    ({"init_action": (60.0,)}, r"init_action \(60\.0,\) has 1 entries; PacingControl-v0's action"),
    ({"init_action": (60.0, float("nan"))}, r"init_action must be a tuple of finite numbers"),
    ({"residual_scale": (5.0,)}, r"residual_scale \(5\.0,\) has 1 entries; PacingControl-v0's"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_SETTINGS)
def test_validate_names_the_bad_value_and_what_is_accepted(overrides, message):
    settings = {"init_action": None, **overrides} if "residual_scale" in overrides else overrides
    with pytest.raises(ValueError, match=rf"^{message}") as e:
        preset("paper", "PacingControl-v0", **settings)
    assert "\n" not in str(e.value)


def test_the_edges_of_every_range_are_accepted():
    config = preset(
        "paper",
        "PacingControl-v0",
        learning_rate=0.0,  # a frozen network, as the PPO tests use
        ent_coef=0.0,
        gamma=1.0,
        gae_lambda=0.0,
        vf_coef=0.0,
        max_grad_norm=float("inf"),
        reward_clip=float("inf"),
        hidden_sizes=[32, 32],
        init_action=(60, 1),
    )
    assert config.gamma == 1.0 and config.hidden_sizes == [32, 32]
    preset("paper", "PacingControl-v0", gamma=0.0, gae_lambda=1.0, num_envs=np.int64(1))


def test_stacked_configs_are_checked_entry_by_entry():
    base = preset("paper", "AntiarrhythmicDosing-v0")
    # `sweep --lr nan` trained NaN weights and printed a normal-looking table.
    with pytest.raises(
        ValueError, match=r"^learning_rate must be finite and >= 0, got nan \(entry 1"
    ):
        ppo_config.stack_configs([base, base.replace(learning_rate=float("nan"))])
    stacked = ppo_config.stack_configs([base, base.replace(gamma=0.5)])
    stacked.validate()
    with pytest.raises(ValueError, match=r"^gamma must be in \[0, 1\], got 2 \(entry 2 of 3\)$"):
        stacked.replace(gamma=np.array([0.5, 0.9, 2.0])).validate()


def test_validate_without_the_registry_still_checks_leaves_and_static_fields():
    config = PPOConfig(env_id="Pendulum-v1", difficulty="any label", init_action=(0.0, 0.0, 0.0))
    config.validate(registered_env=False)
    with pytest.raises(ValueError, match=r"^clip_eps must be finite and > 0, got nan$"):
        config.replace(clip_eps=float("nan")).validate(registered_env=False)
    with pytest.raises(ValueError, match=r"^num_envs must be an int >= 1, got 0$"):
        config.replace_static(num_envs=0).validate(registered_env=False)
