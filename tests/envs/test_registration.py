"""``cardiosim_jax.make``: ids, difficulty tiers, overrides and their validation."""

from __future__ import annotations

import importlib
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DIFFICULTIES, ENV_IDS, parameter_ranges

import cardiosim_jax
from cardiosim_jax.envs import AntiarrhythmicDosing, DefibrillationTiming, PacingControl
from cardiosim_tools.reference import REFERENCE_ENVS

EXPECTED_CLASSES = {
    "PacingControl-v0": PacingControl,
    "AntiarrhythmicDosing-v0": AntiarrhythmicDosing,
    "DefibrillationTiming-v0": DefibrillationTiming,
}


def reference_tiers(env_id: str) -> dict:
    module, _ = REFERENCE_ENVS[env_id]
    return importlib.import_module(module).DIFFICULTY_TIERS


def leaf(params, name: str):
    """The value of ``name`` (top-level field or ``"group.field"``) in ``params``."""
    value = params
    for part in name.split("."):
        value = getattr(value, part)
    return value


# ---------------------------------------------------------------------------- ids


def test_registered_envs_are_the_three_reference_envs_and_their_v1_successors():
    assert set(cardiosim_jax.registration.v0_envs) == set(REFERENCE_ENVS)
    assert set(cardiosim_jax.registered_envs) == set(REFERENCE_ENVS) | {
        env_id.replace("-v0", "-v1") for env_id in REFERENCE_ENVS
    }
    assert len(cardiosim_jax.registered_envs) == 6


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_every_id_and_tier(env_id, difficulty):
    env, params = cardiosim_jax.make(env_id, difficulty)
    assert type(env) is EXPECTED_CLASSES[env_id]
    assert env.name == env_id
    assert isinstance(params, type(env.default_params))
    # Every parameter is a scalar array (no batch axis without array overrides).
    for value in jax.tree_util.tree_leaves(params):
        assert isinstance(value, jax.Array)
        assert value.shape == ()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_cardiosim_prefix_is_accepted(env_id):
    env_a, params_a = cardiosim_jax.make(env_id, "hard")
    env_b, params_b = cardiosim_jax.make(f"cardiosim/{env_id}", "hard")
    assert env_a == env_b
    assert jax.tree_util.tree_all(jax.tree.map(lambda a, b: bool(a == b), params_a, params_b))


def test_default_difficulty_is_medium(env_id):
    _, default = cardiosim_jax.make(env_id)
    _, medium = cardiosim_jax.make(env_id, "medium")
    env, _ = cardiosim_jax.make(env_id)
    for a, b, c in zip(
        jax.tree_util.tree_leaves(default),
        jax.tree_util.tree_leaves(medium),
        jax.tree_util.tree_leaves(env.default_params),
        strict=True,
    ):
        assert a == b == c


@pytest.mark.parametrize(
    "bad_id", ["Pacing-v0", "PacingControl-v2", "pacingcontrol-v0", "cardiosim/Foo-v0", ""]
)
def test_unknown_env_id_lists_valid_ids(bad_id):
    with pytest.raises(ValueError) as excinfo:
        cardiosim_jax.make(bad_id)
    message = str(excinfo.value)
    assert repr(bad_id) in message
    for env_id in ENV_IDS:
        assert env_id in message


@pytest.mark.parametrize("difficulty", ["extreme", "Medium", "EASY", "", "normal"])
def test_unknown_difficulty_is_rejected(env_id, difficulty):
    # The reference silently falls back to "medium"; a typo must not change the experiment.
    with pytest.raises(ValueError) as excinfo:
        cardiosim_jax.make(env_id, difficulty)
    message = str(excinfo.value)
    assert repr(difficulty) in message
    for tier in DIFFICULTIES:
        assert tier in message


# ---------------------------------------------------------------- tier values


def test_pacing_tiers_match_reference():
    tiers = reference_tiers("PacingControl-v0")
    assert set(tiers) == set(DIFFICULTIES)
    for difficulty, tier in tiers.items():
        _, params = cardiosim_jax.make("PacingControl-v0", difficulty)
        assert float(params.conduction.conduction_block_prob) == pytest.approx(
            tier["conduction_block_prob"]
        )
        low, high = tier["sa_rate_range"]
        assert float(params.sa_rate_low_bpm) == low
        assert float(params.sa_rate_high_bpm) == high
        assert float(params.target_heart_rate_bpm) == tier["target_hr"]
        assert int(params.max_steps_in_episode) == 500


def test_dosing_tiers_match_reference():
    tiers = reference_tiers("AntiarrhythmicDosing-v0")
    assert set(tiers) == set(DIFFICULTIES)
    for difficulty, tier in tiers.items():
        _, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", difficulty)
        assert float(params.arrhythmia_prob) == pytest.approx(tier["arrhythmia_prob"])
        assert float(params.membrane_noise_std) == pytest.approx(tier["noise_std"])
        assert float(params.pk_variability) == pytest.approx(tier["pk_variability"])
        assert int(params.max_steps_in_episode) == 200


def test_defibrillation_tiers_match_reference():
    tiers = reference_tiers("DefibrillationTiming-v0")
    assert set(tiers) == set(DIFFICULTIES)
    for difficulty, tier in tiers.items():
        _, params = cardiosim_jax.make("DefibrillationTiming-v0", difficulty)
        assert float(params.fib_severity) == pytest.approx(tier["fib_severity"])
        assert float(params.defibrillation_success_base) == pytest.approx(
            tier["defibrillation_success_base"]
        )
        assert float(params.membrane_noise_std) == pytest.approx(tier["noise_std"])
        assert int(params.max_steps_in_episode) == 100


def test_model_defaults_match_reference_models():
    from cardiosim.models import aliev_panfilov, conduction, fitzhugh_nagumo, pharmacokinetics

    _, pacing = cardiosim_jax.make("PacingControl-v0")
    for name in ("av_delay", "his_purkinje_delay", "refractory_period"):
        assert (
            float(getattr(pacing.conduction, name)) == conduction.PARAMETER_RANGES[name]["default"]
        )
    for params in (pacing, cardiosim_jax.make("AntiarrhythmicDosing-v0")[1]):
        for name in ("a", "b", "tau"):
            assert float(getattr(params.cell, name)) == pytest.approx(
                fitzhugh_nagumo.PARAMETER_RANGES[name]["default"]
            )
    _, dosing = cardiosim_jax.make("AntiarrhythmicDosing-v0")
    for name, info in pharmacokinetics.PARAMETER_RANGES.items():
        assert float(getattr(dosing.pk, name)) == pytest.approx(info["default"])
    _, defib = cardiosim_jax.make("DefibrillationTiming-v0")
    reference_ap = aliev_panfilov.AlievPanfilovModel()
    assert float(defib.cell.k) == reference_ap.k
    assert float(defib.cell.a) == pytest.approx(reference_ap.a_param)
    assert float(defib.cell.epsilon_0) == pytest.approx(reference_ap.epsilon_0)
    assert float(defib.cell.mu_1) == pytest.approx(reference_ap.mu_1)
    assert float(defib.cell.mu_2) == pytest.approx(reference_ap.mu_2)


def test_our_model_ranges_match_reference_ranges():
    """Where the reference range-checks a model parameter, our range is the same interval."""
    from cardiosim.models import aliev_panfilov, conduction, fitzhugh_nagumo, pharmacokinetics

    pacing = parameter_ranges(cardiosim_jax.make("PacingControl-v0")[0])
    dosing = parameter_ranges(cardiosim_jax.make("AntiarrhythmicDosing-v0")[0])
    pairs = [
        (pacing, "conduction", conduction.PARAMETER_RANGES, ("av_delay", "his_purkinje_delay")),
        (pacing, "conduction", conduction.PARAMETER_RANGES, ("refractory_period",)),
        (pacing, "cell", fitzhugh_nagumo.PARAMETER_RANGES, ("a", "b", "tau")),
        (dosing, "cell", fitzhugh_nagumo.PARAMETER_RANGES, ("a", "b", "tau")),
        (dosing, "pk", pharmacokinetics.PARAMETER_RANGES, tuple(pharmacokinetics.PARAMETER_RANGES)),
    ]
    for ours, group, reference, names in pairs:
        for name in names:
            assert ours[f"{group}.{name}"].low == reference[name]["min"], name
            assert ours[f"{group}.{name}"].high == reference[name]["max"], name
    defib_ranges = parameter_ranges(cardiosim_jax.make("DefibrillationTiming-v0")[0])
    for ours_name, ref_name in [
        ("k", "k"),
        ("a", "a_param"),
        ("epsilon_0", "epsilon_0"),
        ("mu_1", "mu_1"),
        ("mu_2", "mu_2"),
    ]:
        ref = aliev_panfilov.PARAMETER_RANGES[ref_name]
        assert defib_ranges[f"cell.{ours_name}"].low == ref["min"]
        assert defib_ranges[f"cell.{ours_name}"].high == ref["max"]


# ------------------------------------------------------------------ overrides


@pytest.mark.parametrize(
    ("env_id", "name", "path", "value"),
    [
        ("PacingControl-v0", "target_heart_rate_bpm", "target_heart_rate_bpm", 80.0),
        ("PacingControl-v0", "av_delay", "conduction.av_delay", 200.0),
        ("PacingControl-v0", "conduction.av_delay", "conduction.av_delay", 250.0),
        ("PacingControl-v0", "tau", "cell.tau", 20.0),
        ("PacingControl-v0", "cell.b", "cell.b", 0.9),
        ("PacingControl-v0", "conduction_block_prob", "conduction.conduction_block_prob", 0.0),
        ("PacingControl-v0", "max_steps_in_episode", "max_steps_in_episode", 50),
        ("AntiarrhythmicDosing-v0", "volume_of_distribution", "pk.volume_of_distribution", 3.0),
        ("AntiarrhythmicDosing-v0", "pk.toxic_threshold", "pk.toxic_threshold", 10.0),
        ("AntiarrhythmicDosing-v0", "arrhythmia_prob", "arrhythmia_prob", 0.9),
        ("AntiarrhythmicDosing-v0", "cell.a", "cell.a", 0.3),
        ("DefibrillationTiming-v0", "epsilon_0", "cell.epsilon_0", 0.005),
        ("DefibrillationTiming-v0", "cell.k", "cell.k", 6.0),
        ("DefibrillationTiming-v0", "fib_severity", "fib_severity", 0.9),
    ],
)
def test_override_by_field_model_field_and_group_path(env_id, name, path, value):
    _, base = cardiosim_jax.make(env_id, "medium")
    _, params = cardiosim_jax.make(env_id, "medium", **{name: value})
    assert float(leaf(params, path)) == pytest.approx(value)
    assert float(leaf(base, path)) != pytest.approx(value)
    # Nothing else changed.
    changed = [
        jax.tree_util.keystr(p)
        for (p, a), b in zip(
            jax.tree_util.tree_leaves_with_path(base),
            jax.tree_util.tree_leaves(params),
            strict=True,
        )
        if a != b
    ]
    assert changed == ["." + path]


def test_overrides_apply_on_top_of_the_tier():
    _, params = cardiosim_jax.make("PacingControl-v0", "hard", av_delay=200.0)
    assert float(params.conduction.av_delay) == 200.0
    assert float(params.conduction.conduction_block_prob) == pytest.approx(0.5)
    assert float(params.sa_rate_low_bpm) == 30.0


def test_overrides_keep_the_default_dtype():
    """An int given for a float parameter must not make an int32 leaf (nor a new jit trace)."""
    for env_id, overrides in [
        ("PacingControl-v0", {"target_heart_rate_bpm": 80, "av_delay": 200, "sa_rate_low_bpm": 41}),
        ("AntiarrhythmicDosing-v0", {"toxic_threshold": 9, "arrhythmia_prob": 1}),
        ("DefibrillationTiming-v0", {"k": 8, "fib_severity": 0, "max_steps_in_episode": 50}),
    ]:
        _, base = cardiosim_jax.make(env_id)
        _, params = cardiosim_jax.make(env_id, **overrides)
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(base),
            jax.tree_util.tree_leaves(params),
            strict=True,
        ):
            assert a.dtype == b.dtype, (env_id, jax.tree_util.keystr(path))


def test_non_integer_episode_length_is_rejected():
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=100.5)
    # An integral float is fine and becomes an integer step count.
    _, params = cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=100.0)
    assert params.max_steps_in_episode.dtype == jnp.int32
    assert int(params.max_steps_in_episode) == 100
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        cardiosim_jax.make("DefibrillationTiming-v0", max_steps_in_episode=jnp.array([50.0, 60.5]))
    _, params = cardiosim_jax.make("DefibrillationTiming-v0", max_steps_in_episode=[50.0, 60.0])
    np.testing.assert_array_equal(np.asarray(params.max_steps_in_episode), [50, 60])
    assert params.max_steps_in_episode.dtype == jnp.int32


@pytest.mark.parametrize(
    ("env_id", "name"),
    [
        ("PacingControl-v0", "foo"),
        ("PacingControl-v0", "target_hr"),  # the reference's constructor argument
        ("PacingControl-v0", "arrhythmia_prob"),  # another env's parameter
        ("PacingControl-v0", "cell.av_delay"),  # wrong group
        ("AntiarrhythmicDosing-v0", "noise_std"),  # the reference's tier key
        ("AntiarrhythmicDosing-v0", "av_delay"),
        ("DefibrillationTiming-v0", "a_param"),
        ("DefibrillationTiming-v0", "tau"),
    ],
)
def test_unknown_override_is_rejected(env_id, name):
    with pytest.raises(ValueError) as excinfo:
        cardiosim_jax.make(env_id, **{name: 1.0})
    message = str(excinfo.value)
    assert repr(name) in message or f"'{name}'" in message
    assert "max_steps_in_episode" in message  # lists the accepted names


PACING, DOSING, DEFIB = ENV_IDS


@pytest.mark.parametrize(
    ("env_id", "name", "value", "qualified", "bounds"),
    [
        (PACING, "av_delay", 500.0, "conduction.av_delay", (120, 300)),
        (PACING, "av_delay", 100.0, "conduction.av_delay", (120, 300)),
        (PACING, "tau", 100.0, "cell.tau", (5, 25)),
        (PACING, "conduction_block_prob", -0.1, "conduction.conduction_block_prob", (0, 1)),
        (PACING, "target_heart_rate_bpm", 300.0, "target_heart_rate_bpm", (40, 120)),
        (PACING, "max_steps_in_episode", 0, "max_steps_in_episode", (1, 100000)),
        (DOSING, "arrhythmia_prob", 1.5, "arrhythmia_prob", (0, 1)),
        (DOSING, "volume_of_distribution", 0.1, "pk.volume_of_distribution", (0.5, 10)),
        (DOSING, "membrane_noise_std", 1.0, "membrane_noise_std", (0, 0.05)),
        (DOSING, "toxic_threshold", 20.0, "pk.toxic_threshold", (5, 15)),
        (DEFIB, "k", 20.0, "cell.k", (4, 12)),
        (DEFIB, "defibrillation_success_base", 2.0, "defibrillation_success_base", (0, 1)),
    ],
)
def test_out_of_range_override_names_parameter_value_and_range(
    env_id, name, value, qualified, bounds
):
    with pytest.raises(ValueError) as excinfo:
        cardiosim_jax.make(env_id, **{name: value})
    message = str(excinfo.value)
    assert qualified in message
    assert f"{value:g}" in message
    assert f"[{bounds[0]:g}, {bounds[1]:g}]" in message


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_override_is_rejected(env_id, bad):
    env, _ = cardiosim_jax.make(env_id)
    for name in parameter_ranges(env):
        with pytest.raises(ValueError, match=re.escape(name)):
            cardiosim_jax.make(env_id, **{name: bad})


def test_every_range_endpoint_is_accepted_and_just_outside_rejected(env_id):
    env, _ = cardiosim_jax.make(env_id)
    for name, bounds in parameter_ranges(env).items():
        for inside in (bounds.low, bounds.high):
            if env_id == "PacingControl-v0" and name in ("sa_rate_low_bpm", "sa_rate_high_bpm"):
                cardiosim_jax.make(env_id, sa_rate_low_bpm=inside, sa_rate_high_bpm=inside)
            elif name in ("pk.therapeutic_min", "pk.therapeutic_max") and inside == 3.0:
                continue  # min == max == 3 is an empty window, rejected on its own
            else:
                cardiosim_jax.make(env_id, **{name: inside})
        span = bounds.high - bounds.low
        for outside in (bounds.low - 0.01 * span - 1e-3, bounds.high + 0.01 * span + 1e-3):
            with pytest.raises(ValueError, match=re.escape(name)):
                cardiosim_jax.make(env_id, **{name: outside})


def test_sa_rate_low_above_high_is_rejected():
    with pytest.raises(ValueError, match="sa_rate_low_bpm"):
        cardiosim_jax.make("PacingControl-v0", sa_rate_low_bpm=60.0, sa_rate_high_bpm=50.0)
    # Tier "hard" has high = 45: a low of 50 alone is inconsistent with it.
    with pytest.raises(ValueError, match="sa_rate_high_bpm"):
        cardiosim_jax.make("PacingControl-v0", "hard", sa_rate_low_bpm=50.0)
    # Equal bounds (a fixed SA rate) are fine.
    _, params = cardiosim_jax.make("PacingControl-v0", sa_rate_low_bpm=50.0, sa_rate_high_bpm=50.0)
    assert float(params.sa_rate_low_bpm) == float(params.sa_rate_high_bpm) == 50.0


def test_empty_therapeutic_window_is_rejected():
    with pytest.raises(ValueError, match="therapeutic_min"):
        cardiosim_jax.make("AntiarrhythmicDosing-v0", therapeutic_min=3.0, therapeutic_max=3.0)


def test_validation_happens_outside_jit_at_construction():
    """make() raises eagerly: the error comes from make itself, not from a later traced call."""
    calls = []

    def build():
        calls.append(1)
        return cardiosim_jax.make("PacingControl-v0", av_delay=1000.0)

    with pytest.raises(ValueError):
        build()
    assert calls == [1]


# ------------------------------------------------------------------ populations


def test_array_override_describes_a_population():
    delays = jnp.array([150.0, 200.0, 250.0])
    _, params = cardiosim_jax.make("PacingControl-v0", av_delay=delays)
    # Every leaf broadcast to the population's shape, so vmap(in_axes=0) works.
    for value in jax.tree_util.tree_leaves(params):
        assert value.shape == (3,)
    np.testing.assert_array_equal(np.asarray(params.conduction.av_delay), np.asarray(delays))
    np.testing.assert_array_equal(np.asarray(params.target_heart_rate_bpm), [72.0] * 3)


def test_population_with_one_bad_member_is_rejected():
    with pytest.raises(ValueError) as excinfo:
        cardiosim_jax.make("PacingControl-v0", av_delay=jnp.array([150.0, 500.0, 250.0]))
    message = str(excinfo.value)
    assert "conduction.av_delay" in message
    assert "500" in message


def test_population_with_inconsistent_member_is_rejected():
    with pytest.raises(ValueError, match="sa_rate_low_bpm"):
        cardiosim_jax.make(
            "PacingControl-v0",
            sa_rate_low_bpm=jnp.array([40.0, 60.0]),
            sa_rate_high_bpm=jnp.array([50.0, 50.0]),
        )
