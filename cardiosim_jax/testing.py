"""Conformance checks that every environment, ours or a user's, must pass.

Each check takes a gymnax-style environment (``reset(key, params)``,
``step(key, state, action, params)``, ``action_space(params)``,
``observation_space(params)``) and its parameters, and raises
``AssertionError`` naming the property that broke::

    from cardiosim_jax import testing

    testing.check_environment(env, {"easy": easy_params, "hard": hard_params}, population)
    testing.check_registered("PacingControl-v1")  # any registered id

What they pin (the properties batched training and evaluation rely on):

* the same key gives a bit-identical trajectory, another key another one;
* jitted steps equal eager ones; ``vmap`` over keys equals one rollout per key;
* ``vmap`` over a population of patients (parameters with a leading axis)
  and over stacked difficulty tiers equals one call per patient or tier;
* one compiled ``step`` serves every tier and patient (no retracing on values);
* NaN and infinite actions never poison the state, and observations stay
  inside the observation space and rewards finite under random and extreme
  actions;
* every observation comes from gymnax 1.0's ``observe`` hook.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

#: Steps of the rollouts the checks compare.
ROLLOUT_STEPS = 32
#: Tolerances between batched and single (or jitted and eager) execution: float32
#: reductions may round differently (e.g. a beat clock of ~2000 ms to 1e-4).
RTOL, ATOL = 1e-4, 1e-4


@functools.partial(jax.jit, static_argnums=0)
def rollout(env: Any, params: Any, key: jax.Array, actions: jax.Array) -> tuple[Any, Any]:
    """Reset with ``split(key)[0]``, then ``env.step`` over ``actions`` (leading axis = steps).

    Returns ``(reset_obs, (obs, reward, terminated, truncated, info, state))`` with the
    per-step outputs stacked (``state`` is the state after each step). Auto-reset
    applies as in ``env.step``. Compiled once per env class and shapes.
    """
    reset_key, loop_key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)

    def body(state, inputs):
        step_key, action = inputs
        obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return state, (obs, reward, terminated, truncated, info, state)

    _, out = jax.lax.scan(body, state, (jax.random.split(loop_key, actions.shape[0]), actions))
    return obs, out


def random_actions(env: Any, params: Any, key: jax.Array, n: int) -> jax.Array:
    """``n`` actions drawn uniformly from the action space, shape ``(n, *action_shape)``."""
    space = env.action_space(params)
    return jax.random.uniform(key, (n, *space.shape), minval=space.low, maxval=space.high)


def _index(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _rewards(trajectory: tuple[Any, Any]) -> np.ndarray:
    return np.asarray(trajectory[1][1])


def check_determinism(env: Any, params: Any, stochastic: bool = True) -> None:
    """The same key replays an episode bit for bit; with ``stochastic``, another key differs."""
    actions = random_actions(env, params, jax.random.PRNGKey(1), ROLLOUT_STEPS)
    first = rollout(env, params, jax.random.PRNGKey(42), actions)
    chex.assert_trees_all_equal(first, rollout(env, params, jax.random.PRNGKey(42), actions))
    if stochastic:
        other = rollout(env, params, jax.random.PRNGKey(43), actions)
        assert not np.array_equal(_rewards(first), _rewards(other)) or not np.array_equal(
            np.asarray(first[1][0]), np.asarray(other[1][0])
        ), "another key gave the same trajectory on stochastic parameters"


def check_jit_matches_eager(
    env: Any, params: Any, n_steps: int = 4, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """``n_steps`` eager steps (``jax.disable_jit``) equal the jitted rollout's first steps."""
    actions = random_actions(env, params, jax.random.PRNGKey(2), ROLLOUT_STEPS)
    key = jax.random.PRNGKey(9)
    reset_obs, (obs, reward, terminated, truncated, _, state) = rollout(env, params, key, actions)
    reset_key, loop_key = jax.random.split(key)
    step_keys = jax.random.split(loop_key, ROLLOUT_STEPS)  # as rollout splits them
    with jax.disable_jit():
        eager_obs, eager_state = env.reset(reset_key, params)
        chex.assert_trees_all_close(eager_obs, reset_obs, rtol=rtol, atol=atol)
        for t in range(n_steps):
            eager_obs, eager_state, eager_reward, eager_term, eager_trunc, _ = env.step(
                step_keys[t], eager_state, actions[t], params
            )
            chex.assert_trees_all_close(
                (eager_obs, eager_reward, eager_state),
                (obs[t], reward[t], _index(state, t)),
                rtol=rtol,
                atol=atol,
            )
            chex.assert_trees_all_equal((eager_term, eager_trunc), (terminated[t], truncated[t]))


def check_vmap_matches_loop(
    env: Any, params: Any, n: int = 3, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """``vmap`` over keys and actions (whole rollouts, auto-reset included) equals a loop."""
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    actions = jnp.stack([random_actions(env, params, k, ROLLOUT_STEPS) for k in keys])
    batched = jax.vmap(rollout, in_axes=(None, None, 0, 0))(env, params, keys, actions)
    for i in range(n):
        single = rollout(env, params, keys[i], actions[i])
        chex.assert_trees_all_close(_index(batched, i), single, rtol=rtol, atol=atol)


def check_population_vmap(
    env: Any, population: Any, n: int, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """``vmap`` over ``n`` patients (``population``'s leaves have a leading axis of ``n``)
    equals one rollout per patient, and the patients' trajectories differ.

    Every patient plays the same key and actions, so only the patient differs.
    """
    key = jax.random.PRNGKey(11)
    actions = random_actions(env, _index(population, 0), jax.random.PRNGKey(12), ROLLOUT_STEPS)
    batched = jax.vmap(rollout, in_axes=(None, 0, None, None))(env, population, key, actions)
    for i in range(n):
        single = rollout(env, _index(population, i), key, actions)
        chex.assert_trees_all_close(_index(batched, i), single, rtol=rtol, atol=atol)
    observations = np.asarray(batched[1][0])
    assert not all(np.array_equal(observations[0], observations[i]) for i in range(1, n)), (
        "every patient of the population gave the same trajectory"
    )


def check_tiers_vmap(
    env: Any, tiers: Sequence[Any], rtol: float = RTOL, atol: float = ATOL
) -> None:
    """Stacked tier parameters ``vmap`` through ``reset`` like each tier alone (batched
    parameters through ``step``: :func:`check_population_vmap`)."""
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *tiers)
    keys = jax.random.split(jax.random.PRNGKey(0), len(tiers))
    obs, states = jax.vmap(env.reset)(keys, stacked)
    for i, params in enumerate(tiers):
        chex.assert_trees_all_close(
            env.reset(keys[i], params), (obs[i], _index(states, i)), rtol=rtol, atol=atol
        )


def check_one_compilation(env: Any, param_sets: Sequence[Any]) -> None:
    """One jitted ``step`` serves every parameter set (same structure and dtypes) without
    retracing, and uses their values (the outputs are not all the same)."""

    # Counted here rather than with chex.assert_max_traces, whose counter is keyed on the
    # definition site and so would add up over calls of this check for several envs.
    traces = []

    @jax.jit
    def step(key, state, action, params):
        traces.append(1)  # runs only while tracing
        return env.step(key, state, action, params)

    _, state = env.reset(jax.random.PRNGKey(0), param_sets[0])
    action = random_actions(env, param_sets[0], jax.random.PRNGKey(1), 1)[0]
    outputs = [step(jax.random.PRNGKey(1), state, action, params) for params in param_sets]
    assert len(traces) == 1, f"step was traced {len(traces)} times for {len(param_sets)} sets"
    distinct = {np.asarray(out[0]).tobytes() + np.asarray(out[2]).tobytes() for out in outputs}
    assert len(distinct) > 1, "every parameter set gave the same step: values were not used"


def _assert_finite(tree: Any, what: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact):
            assert np.all(np.isfinite(leaf)), f"{what}{jax.tree_util.keystr(path)} is not finite"


def check_non_finite_actions(env: Any, params: Any) -> None:
    """NaN, +inf or -inf in every action entry for the first half of an episode leave
    the observation, reward and every float leaf of the state finite, then and in the
    valid steps that follow."""
    shape = env.action_space(params).shape
    valid = random_actions(env, params, jax.random.PRNGKey(3), ROLLOUT_STEPS)
    for bad in (np.nan, np.inf, -np.inf):
        actions = valid.at[: ROLLOUT_STEPS // 2].set(jnp.full(shape, bad, valid.dtype))
        reset_obs, (obs, reward, _, _, _, state) = rollout(
            env, params, jax.random.PRNGKey(4), actions
        )
        _assert_finite((reset_obs, obs, reward), f"with {bad} actions, output ")
        _assert_finite(state, f"with {bad} actions, state")


def check_observations_in_space(env: Any, params: Any, n_keys: int = 4) -> None:
    """Observations stay inside ``observation_space`` (1e-4 slack) and rewards are finite
    under random actions, the corners of the action box and far out-of-range actions."""
    space = env.action_space(params)
    low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
    corners = [np.where(np.arange(low.size).reshape(low.shape) % 2 == k, low, high) for k in (0, 1)]
    extremes = np.stack([low, high, *corners, low - 1e9, high + 1e9]).astype(np.float32)
    actions = jnp.concatenate(
        [
            random_actions(env, params, jax.random.PRNGKey(4), ROLLOUT_STEPS - 2 * len(extremes)),
            jnp.tile(extremes, (2,) + (1,) * len(space.shape)),
        ]
    )
    obs_space = env.observation_space(params)
    obs_low, obs_high = np.asarray(obs_space.low) - 1e-4, np.asarray(obs_space.high) + 1e-4
    for key in jax.random.split(jax.random.PRNGKey(5), n_keys):
        reset_obs, (obs, reward, *_) = rollout(env, params, key, actions)
        all_obs = np.concatenate([np.asarray(reset_obs)[None], np.asarray(obs)])
        _assert_finite((all_obs, reward), "observation or reward ")
        outside = ~((all_obs >= obs_low) & (all_obs <= obs_high))
        assert not outside.any(), (
            f"observation entries {sorted(set(np.nonzero(outside)[-1].tolist()))} left "
            "the observation space"
        )


def check_observe_hook(env: Any, params: Any) -> None:
    """Every observation (reset, step, auto-reset and ``info["final_observation"]``)
    comes from gymnax 1.0's keyed hook ``observe(key, state, action, params)``, so a
    variant that overrides that one method changes them all."""
    marker = 7.25

    class Observed(type(env)):
        def observe(self, key: Any, state: Any, action: Any, params: Any) -> Any:
            obs = super().observe(key, state, action, params)
            return jax.tree_util.tree_map(lambda leaf: jnp.full_like(leaf, marker), obs)

    observed = copy.copy(env)
    observed.__class__ = Observed
    if hasattr(params, "max_steps_in_episode"):  # episodes end, and auto-reset, in the rollout
        params = params.replace(max_steps_in_episode=jnp.asarray(5, jnp.int32))
    actions = random_actions(env, params, jax.random.PRNGKey(6), ROLLOUT_STEPS)
    reset_obs, (obs, *_, info, _) = rollout(observed, params, jax.random.PRNGKey(7), actions)
    final = info.get("final_observation", obs) if isinstance(info, Mapping) else obs
    for what, tree in (("reset", reset_obs), ("step", obs), ("final", final)):
        for leaf in jax.tree_util.tree_leaves(tree):
            assert np.all(np.asarray(leaf) == marker), (
                f"a {what} observation bypassed observe(key, state, action, params)"
            )


def check_environment(
    env: Any,
    tiers: Mapping[str, Any],
    population: Any | None = None,
    *,
    stochastic_tier: str | None = None,
    eager_steps: int = 4,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """Run every check on ``env``.

    Args:
        env: the environment.
        tiers: name -> parameters of each difficulty tier (one is enough).
        population: optional parameters with a leading patient axis (at least 2).
        stochastic_tier: a tier on which another key must give another episode
            (default: the last tier).
        eager_steps: steps compared between eager and jitted execution (eager
            execution of a long step is slow).
        rtol, atol: tolerances between batched and single or jitted and eager
            execution (stiff or chaotic models amplify float32 rounding).
    """
    names = list(tiers)
    stochastic_tier = names[-1] if stochastic_tier is None else stochastic_tier
    for name, params in tiers.items():
        check_determinism(env, params, stochastic=name == stochastic_tier)
        check_observations_in_space(env, params)
    last = tiers[names[-1]]
    check_jit_matches_eager(env, last, eager_steps, rtol, atol)
    check_vmap_matches_loop(env, last, rtol=rtol, atol=atol)
    check_non_finite_actions(env, last)
    check_observe_hook(env, last)
    param_sets = list(tiers.values())
    if len(tiers) > 1:
        check_tiers_vmap(env, param_sets, rtol, atol)
    if population is not None:
        n = jax.tree_util.tree_leaves(population)[0].shape[0]
        check_population_vmap(env, population, n, rtol, atol)
        param_sets += [_index(population, i) for i in range(n)]
    if len(param_sets) > 1:
        check_one_compilation(env, param_sets)


def registered_tiers(env_id: str) -> dict[str, Any]:
    """Tier name -> parameters of every difficulty tier of a registered id."""
    import cardiosim_jax

    env, _ = cardiosim_jax.make(env_id)
    return {name: cardiosim_jax.make(env_id, name)[1] for name in env.tiers}


def check_registered(env_id: str, population_size: int = 3, **options: Any) -> None:
    """:func:`check_environment` on a registered id: its tiers and, where it has a patient
    model (:mod:`cardiosim_jax.patients`), a sampled hard-tier population."""
    import cardiosim_jax
    from cardiosim_jax import patients

    env, _ = cardiosim_jax.make(env_id)
    tiers = registered_tiers(env_id)
    population = None
    if env.patient_variation:
        population = patients.sample(jax.random.PRNGKey(0), env_id, population_size, "hard")
    check_environment(env, tiers, population, **options)


#: Every check by name (the suite runs each on every registered id).
CHECKS: dict[str, Callable[..., None]] = {
    "determinism": check_determinism,
    "jit_matches_eager": check_jit_matches_eager,
    "vmap_matches_loop": check_vmap_matches_loop,
    "population_vmap": check_population_vmap,
    "tiers_vmap": check_tiers_vmap,
    "one_compilation": check_one_compilation,
    "non_finite_actions": check_non_finite_actions,
    "observations_in_space": check_observations_in_space,
    "observe_hook": check_observe_hook,
}
