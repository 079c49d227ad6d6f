"""User mistakes at the library boundary: a one-line ``ValueError`` naming the value (issue 14).

Each case names the bad value and what is accepted, and is raised before any
computation: at construction (``make``, ``patients``, the Gymnasium adapter)
or at trace time (keys and action shapes are static under ``jit``). Bad keys
and actions are traced with ``jax.eval_shape``, so nothing here compiles an
environment except the typed-key equivalence test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ALL_IDS, V1_IDS

import cardiosim_jax
from cardiosim_jax import patients
from cardiosim_jax.envs.base import transition

KEY = jax.random.PRNGKey(0)


@functools.cache
def env_and_state(env_id: str, normalize_actions: bool = False):
    """``(env, params, abstract state)``: one environment per id, its reset only traced."""
    env, params = cardiosim_jax.make(env_id, normalize_actions=normalize_actions)
    _, state = jax.eval_shape(env.reset, KEY, params)
    return env, params, state


def one_line(error: pytest.ExceptionInfo) -> str:
    """The message, which must be one line.

    ``pytest.raises(match=...)`` also sees the note JAX adds to an error raised
    under its transformations, so patterns matched through ``jit`` end without ``$``.
    """
    message = str(error.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- keys

NOT_KEYS = {
    "int32 words": (jnp.array([0, 42]), r"dtype int32 and shape \(2,\)"),
    "three uint32 words": (jnp.zeros(3, jnp.uint32), r"dtype uint32 and shape \(3,\)"),
    "five uint32 words": (jnp.zeros(5, jnp.uint32), r"dtype uint32 and shape \(5,\)"),
    "float words": (jnp.array([0.0, 1.0]), r"dtype float32 and shape \(2,\)"),
    "a batch of raw keys": (jax.random.split(KEY, 4), r"dtype uint32 and shape \(4, 2\)"),
    "a batch of typed keys": (
        jax.random.split(jax.random.key(0), 3),
        r"dtype key<fry> and shape \(3,\)",
    ),
    "a Python int": (0, r"dtype int32 and shape \(\)"),
}
ACCEPTED_KEYS = (
    r"is not a single JAX PRNG key: jax\.random\.key\(seed\) \(a typed key of shape \(\)\) "
    r"or jax\.random\.PRNGKey\(seed\) \(uint32 of shape \(2,\)\); vmap over a batch of keys"
)


@pytest.mark.parametrize("env_id", ALL_IDS)
@pytest.mark.parametrize("what", sorted(NOT_KEYS))
def test_reset_step_and_transition_refuse_what_is_not_one_key(env_id, what):
    env, params, state = env_and_state(env_id)
    bad, shown = NOT_KEYS[what]
    action = jnp.zeros(env.action_shape)
    with pytest.raises(ValueError, match=rf"^{env_id}\.reset: key of {shown} {ACCEPTED_KEYS}") as e:
        env.reset(bad, params)
    one_line(e)
    with pytest.raises(ValueError, match=rf"^{env_id}\.step: key of {shown} {ACCEPTED_KEYS}"):
        jax.eval_shape(env.step, bad, state, action, params)
    with pytest.raises(ValueError, match=rf"^{env_id} transition: key of {shown}"):
        jax.eval_shape(functools.partial(transition, env), bad, state, action, params)


def test_a_bad_key_is_refused_at_trace_time_inside_the_callers_jit_and_vmap():
    env, params, _ = env_and_state("AntiarrhythmicDosing-v0")
    bad = jnp.array([0, 42])
    with pytest.raises(ValueError, match=r"key of dtype int32 and shape \(2,\)"):
        jax.jit(env.reset)(bad, params)
    # vmap over int32 rows: each element is an int32 (2,) array, refused as well.
    with pytest.raises(ValueError, match=r"key of dtype int32 and shape \(2,\)"):
        jax.vmap(env.reset, in_axes=(0, None))(jnp.zeros((4, 2), jnp.int32), params)
    # The normalised-action wrapper resets through the env, so it checks too.
    wrapped, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", normalize_actions=True)
    with pytest.raises(ValueError, match=r"AntiarrhythmicDosing-v0\.reset: key of dtype int32"):
        wrapped.reset(bad, params)


def test_a_non_array_key_is_named():
    env, params, state = env_and_state("PacingControl-v0")
    with pytest.raises(ValueError, match=r"transition: key \[0, 42\] is not a single JAX PRNG"):
        transition(env, [0, 42], state, jnp.zeros(2), params)


def test_typed_keys_give_the_raw_keys_episodes_bit_for_bit_also_under_vmap():
    # Dosing-v0 draws its initial state at reset and arrhythmia onsets at every step
    # (the cheapest environment to compile; every env draws through the same prng module).
    env, params = cardiosim_jax.make("AntiarrhythmicDosing-v0", "hard")
    action = jnp.array([100.0])
    typed = jax.random.split(jax.random.key(7), 4)
    raw = jax.vmap(jax.random.key_data)(typed)

    def episode(key):
        obs, state = env.reset(key, params)
        return obs, env.step(jax.random.fold_in(key, 1), state, action, params)

    from_typed = jax.vmap(episode)(typed)
    from_raw = jax.vmap(episode)(raw)
    for a, b in zip(jax.tree.leaves(from_typed), jax.tree.leaves(from_raw), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The keys matter (so equal outputs are not trivially equal).
    assert not np.array_equal(np.asarray(from_raw[0][0]), np.asarray(from_raw[0][1]))
    # One unbatched typed key, as the README's quickstart would pass it.
    obs_typed, _ = env.reset(typed[0], params)
    np.testing.assert_array_equal(np.asarray(obs_typed), np.asarray(from_raw[0][0]))


# --------------------------------------------------------------------------- action shapes


def wrong_action_shapes(n: int) -> list[tuple[int, ...]]:
    """Longer than the action, a batch of one or four, a column; () on a 2-D space."""
    shapes = [(n + 1,), (n + 3,), (1, n), (4, n), (n, 1)]
    return shapes + ([()] if n > 1 else [])


@pytest.mark.parametrize("env_id", ALL_IDS)
@pytest.mark.parametrize("normalize_actions", [False, True])
def test_wrong_action_shapes_are_refused_by_step_and_transition(env_id, normalize_actions):
    env, params, state = env_and_state(env_id, normalize_actions)
    n = int(np.prod(env.action_shape))
    accepted = rf"\[\({n},\)" + (r", \(\)\]" if n == 1 else r"\]")
    for shape in wrong_action_shapes(n):
        action = jnp.zeros(shape)
        expected = (
            rf"^action of shape {re_shape(shape)} does not fit {env_id}'s action space; "
            rf"accepted shapes: {accepted} \(vmap over a batch of actions\)"
        )
        with pytest.raises(ValueError, match=expected) as e:
            jax.eval_shape(env.step, KEY, state, action, params)
        one_line(e)
        # The no-reset step behind rollouts, the batched step, the adapter and the oracles:
        # a longer action used to be truncated silently and a batch to fail deep inside.
        with pytest.raises(ValueError, match=expected):
            jax.eval_shape(functools.partial(transition, env), KEY, state, action, params)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_the_action_shape_and_a_scalar_on_a_1d_space_are_accepted(env_id):
    env, params, state = env_and_state(env_id)
    accepted = [env.action_shape] + ([()] if env.action_shape == (1,) else [])
    for shape in accepted:
        out = jax.eval_shape(env.step, KEY, state, jnp.zeros(shape), params)
        assert out[2].shape == ()
        out = jax.eval_shape(
            functools.partial(transition, env), KEY, state, jnp.zeros(shape), params
        )
        assert out[2].shape == ()


def re_shape(shape: tuple[int, ...]) -> str:
    return str(shape).replace("(", r"\(").replace(")", r"\)")


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2**32 + 100, "4294967396"),  # wrapped to 100 before
        (np.int64(2**40), "1099511627776"),  # wrapped to 0
        (2**70, "1180591620717411303424"),  # beyond int64: a NumPy object array
        (1e10, r"1e\+10"),  # shown as -2.14748e+09 before
        (-1e12, r"-1e\+12"),
    ],
)
def test_integer_overrides_are_checked_before_the_cast(value, shown):
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=value)
    assert e.match(
        rf"^parameter 'max_steps_in_episode' = {shown} is outside its literature range "
        r"\[1, 100000\] steps \(episode length\)$"
    )


def test_integer_overrides_in_range_are_unchanged():
    for value in (200, np.int64(200), 200.0, np.float32(200.0)):
        _, params = cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=value)
        assert params.max_steps_in_episode.dtype == jnp.int32
        assert int(params.max_steps_in_episode) == 200
    _, params = cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=np.array([5, 200]))
    assert params.max_steps_in_episode.tolist() == [5, 200]
    # Out of range in a population: the value as given, exact (not 2.14748e+09).
    for value in (2**31 - 1, 2**31):
        with pytest.raises(ValueError, match=rf"= {value} \(in a population\) is outside its"):
            cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=np.array([5, value]))
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make("PacingControl-v0", max_steps_in_episode=2.5)
    assert e.match(
        r"^parameter 'max_steps_in_episode' = 2\.5 must be a whole number in its literature "
        r"range \[1, 100000\] steps \(episode length\)$"
    )


def test_float_overrides_beyond_float32_show_the_value_given():
    with pytest.raises(ValueError, match=r"^parameter 'target_heart_rate_bpm' = 1e\+39 is outside"):
        cardiosim_jax.make("PacingControl-v0", target_heart_rate_bpm=1e39)
    # A model parameter is named by its group, as range validation names it.
    with pytest.raises(
        ValueError, match=r"^parameter 'conduction\.av_delay' = -1e\+300 is outside"
    ):
        cardiosim_jax.make("PacingControl-v0", av_delay=-1e300)


@pytest.mark.parametrize("value", ["fast", None, 1 + 2j, [70.0, "x"], [70.0, None]])
def test_overrides_that_are_not_real_numbers_are_refused(value):
    with pytest.raises(ValueError, match=r"^parameter 'target_heart_rate_bpm' = .* must be a real"):
        cardiosim_jax.make("PacingControl-v0", target_heart_rate_bpm=value)


def test_a_population_is_one_leading_axis_of_one_length():
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make("PacingControl-v0", target_heart_rate_bpm=jnp.full((2, 3), 70.0))
    assert e.match(
        r"^override 'target_heart_rate_bpm' has shape \(2, 3\); accepted: a scalar, or one value "
        r"per patient of shape \(n,\) \(a population is one leading axis\)$"
    )
    with pytest.raises(ValueError, match=r"override 'av_delay' has shape \(1, 1\)"):
        cardiosim_jax.make("PacingControl-v0", av_delay=[[150.0]])
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make("PacingControl-v0", target_heart_rate_bpm=[60.0, 80.0], av_delay=[1.5e2])
    assert e.match(
        r"^population overrides must share one length n \(one value per patient\); got lengths "
        r"\{'target_heart_rate_bpm': 2, 'av_delay': 1\}$"
    )
    # One axis of one length is a population, as before.
    _, params = cardiosim_jax.make(
        "PacingControl-v0", target_heart_rate_bpm=[60.0, 80.0], av_delay=np.array([150.0, 200.0])
    )
    assert params.target_heart_rate_bpm.shape == (2,) and params.max_steps_in_episode.shape == (2,)


@pytest.mark.parametrize("env_id", [None, 5, ["PacingControl-v0"], "", "pacingcontrol-v0"])
def test_make_with_an_unknown_id_lists_the_registered_ids(env_id):
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make(env_id)
    registered = re_list(cardiosim_jax.registered_envs)
    assert e.match(rf"^unknown environment id {re_repr(env_id)}; registered: {registered}$")


@pytest.mark.parametrize("difficulty", [None, ["hard"], "Hard", 2])
def test_make_with_an_unknown_difficulty_lists_the_tiers(difficulty):
    with pytest.raises(ValueError) as e:
        cardiosim_jax.make("PacingControl-v0", difficulty)
    assert e.match(
        rf"^unknown difficulty {re_repr(difficulty)} for PacingControl-v0; "
        r"accepted: \['easy', 'medium', 'hard'\]$"
    )


def re_repr(value) -> str:
    return re_list(value) if isinstance(value, list) else re_escape(repr(value))


def re_list(values) -> str:
    return re_escape(repr(list(values)))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# --------------------------------------------------------------------------- patients


@pytest.mark.parametrize("n", [2.5, 2.0, True, "3", None, 0, -1, np.float64(3.0)])
def test_sample_needs_a_positive_int(n):
    with pytest.raises(ValueError) as e:
        patients.sample(KEY, V1_IDS[0], n)
    assert e.match(rf"^n must be a positive number of patients \(an int >= 1\), got {re_repr(n)}$")


def test_sample_takes_numpy_and_jax_integers():
    for n in (np.int64(2), jnp.asarray(2)):
        params = patients.sample(KEY, "AntiarrhythmicDosing-v1", n, "easy")
        assert params.max_steps_in_episode.shape == (2,)


def test_an_unknown_patient_names_the_cohort_and_its_patients():
    cohort = patients.cohort("DefibrillationTiming-v1", "easy")
    with pytest.raises(ValueError) as e:
        cohort.patient("unknown")
    assert e.match(
        r"^unknown patient 'unknown' in the DefibrillationTiming-v1 easy cohort; "
        r"names: patient-001 \.\.\. patient-100$"
    )
    with pytest.raises(ValueError, match=r"unknown patient 'patient-101'"):
        cohort.patient("patient-101")
    one = cohort.patient("patient-100")
    assert np.ndim(one.max_steps_in_episode) == 0


# --------------------------------------------------------------------------- Gymnasium


def conflicting_env_id_message(given: str) -> str:
    return (
        rf"^env_id='{given}' conflicts with the Gymnasium id 'cardiosim_jax/PacingControl-v0' "
        rf"\(environment 'PacingControl-v0'\); omit env_id, or make "
        rf"'cardiosim_jax/{given}' instead$"
    )


def test_the_gymnasium_env_id_keyword_cannot_replace_the_registered_id():
    gymnasium = pytest.importorskip("gymnasium")
    gym_id = "cardiosim_jax/PacingControl-v0"
    # Gymnasium merges make's keywords over the registered kwargs ({"env_id": ...}): this
    # built a dosing env whose spec.id said pacing.
    with pytest.raises(ValueError, match=conflicting_env_id_message("AntiarrhythmicDosing-v0")):
        gymnasium.make(gym_id, env_id="AntiarrhythmicDosing-v0")
    for mode in ("vector_entry_point", "sync"):
        with pytest.raises(ValueError, match=conflicting_env_id_message("PacingControl-v1")):
            gymnasium.make_vec(
                gym_id, num_envs=2, vectorization_mode=mode, env_id="PacingControl-v1"
            )
    # The registered id itself, or no env_id, builds the environment the id names.
    for kwargs in ({}, {"env_id": "PacingControl-v0"}, {"env_id": gym_id}):
        env = gymnasium.make(gym_id, **kwargs)
        assert env.spec.id == gym_id and env.unwrapped.jax_env.env_id == "PacingControl-v0"
        env.close()
    vec = gymnasium.make_vec(gym_id, num_envs=2, vectorization_mode="vector_entry_point")
    assert vec.spec.id == gym_id and vec.unwrapped.jax_env.env_id == "PacingControl-v0"
    vec.close()
