"""Gymnasium adapter: the JAX environments as ``gymnasium.Env`` and ``gymnasium.vector.VectorEnv``.

* :class:`CardioSimGymnasiumEnv` steps one patient per compiled call, NumPy in/out.
* :class:`CardioSimVectorEnv` steps ``num_envs`` patients per compiled (vmapped) call.
* :func:`register_gymnasium_envs` registers ``cardiosim_jax/<EnvId>`` so that
  ``gymnasium.make`` and ``gymnasium.make_vec`` build them (importing
  :mod:`cardiosim_jax` already does this when Gymnasium is installed).

Seeding. Every (sub-)environment owns a NumPy ``Generator`` (``np_random``),
seeded as Gymnasium prescribes. Each reset takes one 64-bit draw from it (see
:func:`episode_key_from_rng`) and turns it into the episode's JAX key ``K``:
``split(K)[0]`` resets the JAX env and step ``t`` (t = 0, 1, ...) calls the
transition with ``fold_in(split(K)[1], t)`` used exactly as gymnax's
``env.step`` uses its key. Nothing else is random, so an episode is a pure
function of the seed and the actions.

Actions. By default (``normalize_actions=True``) the action space is
``Box(-1, 1)``: an action ``a`` is mapped affinely onto the JAX env's action
bounds, ``low + (a + 1) / 2 * (high - low)`` (``-1`` -> ``low``, ``1`` -> ``high``),
without clipping (the JAX env applies its own clipping). Both Gymnasium's and
Stable-Baselines3's environment checkers warn about any other Box action space.
With ``normalize_actions=False`` actions are in the JAX env's physical units
(bpm, mg, J) and the action space is the env's own bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

import cardiosim_jax
from cardiosim_jax.envs.base import (
    CardioSimEnvironment,
    population_axis,
    rescale_action,
    transition,
)

__all__ = [
    "GYMNASIUM_NAMESPACE",
    "CardioSimGymnasiumEnv",
    "CardioSimVectorEnv",
    "UnsupportedRenderModeError",
    "episode_key_from_rng",
    "register_gymnasium_envs",
]

#: Namespace of the Gymnasium ids: ``cardiosim_jax/PacingControl-v0`` etc.
GYMNASIUM_NAMESPACE = "cardiosim_jax"


def register_gymnasium_envs() -> tuple[str, ...]:
    """Register ``cardiosim_jax/<id>`` for every registered id with Gymnasium (idempotent).

    Importing :mod:`cardiosim_jax` already calls this; ids that are already
    registered are left alone, so calling it again never warns.

    Returns:
        The Gymnasium ids.
    """
    return cardiosim_jax.registration.register_gymnasium_envs()


def _jax_env_id(env_id: str) -> str:
    """Accept both ``"PacingControl-v0"`` and ``"cardiosim_jax/PacingControl-v0"``."""
    return env_id.removeprefix(f"{GYMNASIUM_NAMESPACE}/")


# --------------------------------------------------------------------------- keys


def _key_words(rng: np.random.Generator) -> np.ndarray:
    """One 64-bit draw from ``rng`` as two uint32 words ``[high, low]``, shape (2,)."""
    # One raw draw from the bit generator: ~30x cheaper than Generator.integers,
    # which matters when hundreds of vector sub-envs reset in one step.
    raw = int(rng.bit_generator.random_raw())
    return np.array([raw >> 32, raw & 0xFFFFFFFF], np.uint32)


def _episode_key(words: jax.Array) -> jax.Array:
    """JAX key of an episode from its two uint32 words (works for any PRNG impl)."""
    return jax.random.fold_in(jax.random.PRNGKey(words[0]), words[1])


def episode_key_from_rng(rng: np.random.Generator) -> jax.Array:
    """The JAX episode key a reset derives from ``rng`` (advances ``rng`` by one draw).

    ``split(key)[0]`` is the key of the JAX ``env.reset``; step ``t`` of the
    episode is the JAX ``env.step`` with key ``fold_in(split(key)[1], t)``
    (before gymnax's auto-reset). Use it to replay an adapter episode in JAX.
    """
    return _episode_key(jnp.asarray(_key_words(rng)))


# --------------------------------------------------------------------------- info layout


@dataclass(frozen=True)
class _InfoLayout:
    """Names of the JAX env's (scalar) info entries, grouped by the dtype they travel in."""

    float_keys: tuple[str, ...]
    bool_keys: tuple[str, ...]
    int_keys: tuple[str, ...]


@functools.cache
def _info_layout(env: CardioSimEnvironment) -> _InfoLayout:
    """Info keys of ``env.step_env`` by dtype, from an abstract trace (cached per env class)."""
    params = env.default_params
    key = jax.random.PRNGKey(0)
    _, state = jax.eval_shape(env.reset_env, key, params)
    action = jax.ShapeDtypeStruct(env.action_shape, jnp.float32)
    info = jax.eval_shape(env.step_env, key, state, action, params)[4]
    groups: dict[str, list[str]] = {"float": [], "bool": [], "int": []}
    for name, leaf in info.items():
        if leaf.shape != ():
            # Packing keeps one device->host transfer per step; all v0 infos are scalars.
            raise NotImplementedError(f"info[{name!r}] has shape {leaf.shape}; only scalars")
        if jnp.issubdtype(leaf.dtype, jnp.bool_):
            groups["bool"].append(name)
        elif jnp.issubdtype(leaf.dtype, jnp.integer):
            groups["int"].append(name)
        else:
            groups["float"].append(name)
    return _InfoLayout(tuple(groups["float"]), tuple(groups["bool"]), tuple(groups["int"]))


def _pack(
    layout: _InfoLayout,
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    info: dict[str, jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``[reward, float infos]`` (float32), ``[terminated, truncated, bool infos]``, int infos.

    Three arrays instead of a dict of scalars: one transfer per step, not one per entry.
    """
    floats = jnp.stack([reward, *(info[k] for k in layout.float_keys)]).astype(jnp.float32)
    bools = jnp.stack([terminated, truncated, *(info[k] for k in layout.bool_keys)])
    ints = jnp.asarray([info[k] for k in layout.int_keys], jnp.int32).reshape(-1)
    return floats, bools.astype(jnp.bool_), ints


def _to_numpy(*arrays: jax.Array) -> list[np.ndarray]:
    """Host copies of device arrays.

    ``np.asarray`` per array: several times cheaper than ``jax.device_get`` on a
    tuple for outputs this small (measured ~5 vs ~35 us per step).
    """
    return [np.asarray(a) for a in arrays]


def _info_dict(
    layout: _InfoLayout, floats: np.ndarray, bools: np.ndarray, ints: np.ndarray
) -> dict[str, Any]:
    """Single-env info: float32 -> float, bool -> bool, int32 -> int."""
    info: dict[str, Any] = {k: float(v) for k, v in zip(layout.float_keys, floats[1:], strict=True)}
    info.update({k: bool(v) for k, v in zip(layout.bool_keys, bools[2:], strict=True)})
    info.update({k: int(v) for k, v in zip(layout.int_keys, ints, strict=True)})
    return info


def _vector_info(
    layout: _InfoLayout,
    floats: np.ndarray,
    bools: np.ndarray,
    ints: np.ndarray,
    mask: np.ndarray,
) -> dict[str, np.ndarray]:
    """Gymnasium vector info: per key an (N,) array and a ``_key`` mask.

    Dtypes are what ``SyncVectorEnv`` builds from the single env's Python
    scalars (float64, bool, int64); entries outside ``mask`` are zero and keys
    no sub-env reports are absent, as there.
    """
    if not mask.any():
        return {}
    info: dict[str, np.ndarray] = {}
    columns = [
        (layout.float_keys, floats[:, 1:], np.float64),
        (layout.bool_keys, bools[:, 2:], np.bool_),
        (layout.int_keys, ints, np.int64),
    ]
    for keys, values, dtype in columns:
        for j, name in enumerate(keys):
            info[name] = np.where(mask, values[:, j], 0).astype(dtype)
            info[f"_{name}"] = mask.copy()
    return info


# --------------------------------------------------------------------------- compiled core


def _to_physical(env: CardioSimEnvironment, params: Any, action: jax.Array) -> jax.Array:
    """Map a normalized action in [-1, 1] affinely onto the env's action bounds (no clipping)."""
    space = env.action_space(params)
    return rescale_action(action, space.low, space.high)


def _reset_one(
    env: CardioSimEnvironment, words: jax.Array, params: Any
) -> tuple[jax.Array, Any, jax.Array]:
    """Reset from an episode's key words: ``(obs, state, loop_key)``."""
    reset_key, loop_key = jax.random.split(_episode_key(words))
    obs, state = env.reset(reset_key, params)
    return obs, state, loop_key


def _step_one(
    env: CardioSimEnvironment,
    normalize: bool,
    loop_key: jax.Array,
    state: Any,
    action: jax.Array,
    params: Any,
) -> tuple[Any, jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """One transition without auto-reset: ``(next_state, obs, packed outputs)``.

    Same outputs as gymnax's ``env.step(fold_in(loop_key, t), ...)`` before its
    auto-reset (it uses the first half of its key for the transition and
    ``is_truncated`` for the time limit); calling ``step_env`` directly skips
    the reset that ``env.step`` computes on every call.
    """
    if normalize:
        action = _to_physical(env, params, action)
    step_key, _ = jax.random.split(jax.random.fold_in(loop_key, state.time))
    obs, next_state, reward, terminated, truncated, info = transition(
        env, step_key, state, action, params
    )
    packed = _pack(_info_layout(env), reward, jnp.asarray(terminated), truncated, info)
    return next_state, obs, packed


@functools.partial(jax.jit, static_argnums=0)
def _single_reset(env: CardioSimEnvironment, words: jax.Array, params: Any):
    # env is static (instances of one class compare equal) and params traced, so
    # every tier and every adapter instance of a class shares one compilation.
    return _reset_one(env, words, params)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _single_step(
    env: CardioSimEnvironment,
    normalize: bool,
    loop_key: jax.Array,
    state: Any,
    action: jax.Array,
    params: Any,
):
    return _step_one(env, normalize, loop_key, state, action, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _vector_step(
    env: CardioSimEnvironment,
    params_axis: int | None,
    normalize: bool,
    loop_keys: jax.Array,
    states: Any,
    actions: jax.Array,
    reset_mask: jax.Array,
    words: jax.Array,
    params: Any,
):
    """All sub-envs in one call; those in ``reset_mask`` reset instead of stepping.

    One compiled function serves every autoreset mode (an all-False mask when
    nothing resets): the vmapped reset is cheap next to the transition, and
    each extra variant would cost a compilation.
    """

    def one(loop_key, state, action, do_reset, word, p):
        next_state, obs, (floats, bools, ints) = _step_one(
            env, normalize, loop_key, state, action, p
        )
        obs_r, state_r, loop_key_r = _reset_one(env, word, p)

        def pick(reset_leaf, step_leaf):
            return jnp.where(do_reset, reset_leaf, step_leaf)

        next_state = jax.tree_util.tree_map(pick, state_r, next_state)
        # A sub-env being reset reports reward 0 and terminated = truncated = False.
        floats = floats.at[0].set(jnp.where(do_reset, 0.0, floats[0]))
        bools = bools.at[:2].set(bools[:2] & ~do_reset)
        return pick(loop_key_r, loop_key), next_state, pick(obs_r, obs), floats, bools, ints

    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, params_axis))(
        loop_keys, states, actions, reset_mask, words, params
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _vector_reset_where(
    env: CardioSimEnvironment,
    params_axis: int | None,
    mask: jax.Array,
    words: jax.Array,
    loop_keys: jax.Array,
    states: Any,
    params: Any,
):
    """Reset the sub-envs in ``mask``, keep the others: ``(obs, states, loop_keys)``."""
    obs, new_states, new_keys = jax.vmap(
        functools.partial(_reset_one, env), in_axes=(0, params_axis)
    )(words, params)

    def pick(new, old):
        return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

    states = jax.tree_util.tree_map(pick, new_states, states)
    return obs, states, pick(new_keys, loop_keys)


# --------------------------------------------------------------------------- helpers


def _box(low: Any, high: Any, shape: tuple[int, ...]) -> spaces.Box:
    """float32 Gymnasium Box with array bounds of ``shape``."""
    low = np.broadcast_to(np.asarray(low, np.float32), shape).copy()
    high = np.broadcast_to(np.asarray(high, np.float32), shape).copy()
    return spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)


def _params_batch_shape(params: Any) -> tuple[int, ...]:
    """Common batch shape of the params leaves (``()`` for one patient)."""
    leaves = jax.tree_util.tree_leaves(params)
    return tuple(np.broadcast_shapes(*[np.shape(leaf) for leaf in leaves]))


def _coerce_actions(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``action`` as a float32 array of exactly ``shape``, else ``ValueError``."""
    try:
        array = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"action must be numeric with shape {shape}, got {action!r} ({error})"
        ) from error
    if array.shape != shape:
        raise ValueError(f"action must have shape {shape}, got shape {array.shape}: {action!r}")
    return array


def _check_no_options(options: dict[str, Any] | None, allowed: Sequence[str] = ()) -> None:
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unsupported reset options {unknown}; accepted: {list(allowed)}")


def _check_registered_id(env: CardioSimEnvironment, spec: Any) -> None:
    """Refuse a Gymnasium spec whose registered ``env_id`` is not ``env``'s.

    ``gymnasium.make`` merges the caller's keywords over the registered
    ``kwargs``, so ``make("cardiosim_jax/PacingControl-v0",
    env_id="AntiarrhythmicDosing-v0")`` would build a dosing env whose
    ``spec.id`` (what logs, wrappers and saved agents record) says pacing. The
    spec is assigned right after construction, the first moment both are known.
    A spec of an id that is not registered, or registered without an
    ``env_id``, is not checked.

    Raises:
        ValueError: the spec's registered id names another environment.
    """
    from gymnasium.envs.registration import registry

    spec_id = getattr(spec, "id", None)
    registered = registry.get(spec_id) if isinstance(spec_id, str) else None
    registered_id = (registered.kwargs or {}).get("env_id") if registered is not None else None
    if not isinstance(registered_id, str):
        return
    try:
        expected = cardiosim_jax.registration.spec(_jax_env_id(registered_id)).env_id
    except ValueError:
        return
    if expected != env.env_id:
        given = (getattr(spec, "kwargs", None) or {}).get("env_id", env.env_id)
        raise ValueError(
            f"env_id={given!r} conflicts with the Gymnasium id {spec_id!r} (environment "
            f"{expected!r}); omit env_id, or make '{GYMNASIUM_NAMESPACE}/{env.env_id}' instead"
        )


class _CheckedSpec:
    """``spec`` as a property: Gymnasium's assignment is checked (:func:`_check_registered_id`).

    The env keyword cannot be refused earlier: the constructor cannot tell the
    registered ``env_id`` from one the caller passed to ``gymnasium.make``.
    """

    _env: CardioSimEnvironment

    @property
    def spec(self) -> Any:
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value: Any) -> None:
        if value is not None:
            _check_registered_id(self._env, value)
        self.__dict__["_spec"] = value


class UnsupportedRenderModeError(ValueError, TypeError):
    """A ``render_mode`` other than ``None``: these environments do not render.

    A ``TypeError`` as well as a ``ValueError``: Stable-Baselines3's
    ``make_vec_env`` asks every env for ``render_mode="rgb_array"`` and retries
    without it only on ``TypeError`` (as for an env whose constructor has no
    such argument), so its defaults work unchanged.
    """


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None:
        raise UnsupportedRenderModeError(
            f"render_mode={render_mode!r} is not supported; accepted: None (no render modes)"
        )


# --------------------------------------------------------------------------- single env


class CardioSimGymnasiumEnv(_CheckedSpec, gymnasium.Env[np.ndarray, np.ndarray]):
    """One CardioSim patient as a Gymnasium environment (compiled JAX step, NumPy in/out).

    Args:
        env_id: any id of :data:`cardiosim_jax.registered_envs` (the v0 and v1
            environments; a ``"cardiosim_jax/"`` prefix is accepted).
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        render_mode: must be ``None`` (no rendering); anything else raises
            :class:`UnsupportedRenderModeError`.
        normalize_actions: action space ``Box(-1, 1)`` mapped onto the env's
            bounds (default), or the env's physical bounds when ``False``.
        **overrides: JAX env parameters, as for :func:`cardiosim_jax.make`
            (``target_heart_rate_bpm=80``, ``max_steps_in_episode=1000``).

    Raises:
        ValueError: unknown id, tier or parameter, a value out of range, a
            population (array-valued) override, a render mode
            (:class:`UnsupportedRenderModeError`, also a ``TypeError``), or,
            from ``gymnasium.make``/``make_vec``, an ``env_id`` keyword naming
            another environment than the Gymnasium id.

    Observations are float32 arrays of the JAX env's observation shape
    (``(6,)`` for v0, ``(11,)``/``(11,)``/``(10,)`` for pacing/dosing/defibrillation v1) within
    ``observation_space`` (the JAX env's bounds for this tier and overrides);
    ``reward`` is a float; ``terminated`` is the env's own end (successful
    defibrillation, toxic concentration) and ``truncated`` the episode length
    (``max_steps_in_episode``) being reached; ``info`` holds the JAX env's info
    entries as Python scalars. Stepping after an episode ended, or before the
    first reset, raises ``gymnasium.error.ResetNeeded``. NaN actions count as 0
    in the env's physical units (the JAX env sanitizes them) and +-inf are
    clipped by the env, so neither reaches the state.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        env_id: str,
        difficulty: str = "medium",
        render_mode: str | None = None,
        normalize_actions: bool = True,
        **overrides: Any,
    ) -> None:
        _check_render_mode(render_mode)
        env, params = cardiosim_jax.make(_jax_env_id(env_id), difficulty, **overrides)
        if _params_batch_shape(params):
            raise ValueError(
                f"array-valued overrides describe a population of shape "
                f"{_params_batch_shape(params)}; use CardioSimVectorEnv for several patients"
            )
        self.render_mode = None
        # Per-instance copy: SyncVectorEnv writes "autoreset_mode" into its first
        # sub-env's metadata, which would otherwise be the shared class dict.
        self.metadata = dict(type(self).metadata)
        self._env = env
        self._params = params
        self._normalize = bool(normalize_actions)
        self._layout = _info_layout(env)
        obs_space = env.observation_space(params)
        self.observation_space = _box(obs_space.low, obs_space.high, tuple(obs_space.shape))
        act_space = env.action_space(params)
        shape = tuple(act_space.shape)
        self.action_space = (
            _box(-1.0, 1.0, shape)
            if self._normalize
            else _box(act_space.low, act_space.high, shape)
        )
        self._state: Any = None
        self._loop_key: jax.Array | None = None
        self._episode_over = True

    @property
    def jax_env(self) -> CardioSimEnvironment:
        """The underlying gymnax environment."""
        return self._env

    @property
    def jax_params(self) -> Any:
        """The JAX ``EnvParams`` of this tier with the overrides applied."""
        return self._params

    @property
    def state(self) -> Any:
        """The current JAX ``EnvState`` (the physiology); ``None`` before the first reset."""
        return self._state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: ``(obs float32, {})``.

        ``seed`` reseeds ``np_random`` (same seed -> same episode for the same
        actions); ``None`` continues its stream. No options are accepted.
        """
        super().reset(seed=seed)
        _check_no_options(options)
        words = _key_words(self.np_random)
        obs, self._state, self._loop_key = _single_reset(self._env, words, self._params)
        self._episode_over = False
        return np.array(obs, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step (10 ms pacing, 0.1 h dosing, one defibrillation decision)."""
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        if self._episode_over:
            raise ResetNeeded("the episode has ended (terminated or truncated); call reset()")
        action = _coerce_actions(action, self.action_space.shape)
        state, obs, packed = _single_step(
            self._env, self._normalize, self._loop_key, self._state, action, self._params
        )
        obs, floats, bools, ints = _to_numpy(obs, *packed)
        self._state = state
        terminated, truncated = bool(bools[0]), bool(bools[1])
        self._episode_over = terminated or truncated
        info = _info_dict(self._layout, floats, bools, ints)
        return np.array(obs, dtype=np.float32), float(floats[0]), terminated, truncated, info


# --------------------------------------------------------------------------- vector env


class CardioSimVectorEnv(_CheckedSpec, VectorEnv):
    """``num_envs`` CardioSim patients stepped in one compiled, vmapped call (NumPy in/out).

    Returns exactly what ``gymnasium.vector.SyncVectorEnv`` over
    :class:`CardioSimGymnasiumEnv` sub-envs returns, at a fraction of the cost:
    observations ``(N, *obs_shape)`` float32, rewards ``(N,)`` float64, terminations and
    truncations ``(N,)`` bool, and infos as arrays with ``_key`` masks.

    Autoreset (``metadata["autoreset_mode"]``):

    * ``AutoresetMode.NEXT_STEP`` (default): the step that ends an episode
      returns its last observation with ``terminated``/``truncated`` set; the
      *next* call to ``step`` resets that sub-env instead of stepping it,
      ignores its action, and returns the new episode's first observation with
      reward 0, ``terminated = truncated = False`` and no info entries (its
      ``_key`` masks are False).
    * ``AutoresetMode.SAME_STEP``: a sub-env that ends is reset within the same
      call; the returned observation is the new episode's first one, and the
      ended episode's last observation and info are in ``info["final_obs"]``
      (an object array, ``None`` elsewhere) and ``info["final_info"]`` (a
      vector info dict), masked by ``info["_final_obs"]``/``info["_final_info"]``;
      the top-level info entries of that sub-env are masked out.
    * ``AutoresetMode.DISABLED``: no reset; stepping a sub-env whose episode
      ended raises ``ResetNeeded`` until ``reset(options={"reset_mask": mask})``.

    Seeding: sub-env ``i`` owns a NumPy Generator, as a ``SyncVectorEnv`` sub-env
    does: ``reset(seed=s)`` seeds it with ``s + i``, ``seed=[s0, s1, ...]`` with
    ``s_i`` (``None`` entries continue that sub-env's stream), ``seed=None``
    continues every stream (an unseeded one starts from OS entropy). Each reset
    of sub-env ``i`` draws its episode key from its Generator, exactly like
    :class:`CardioSimGymnasiumEnv`, so sub-env ``i`` of ``reset(seed=s)``
    replays ``CardioSimGymnasiumEnv.reset(seed=s + i)``.

    Args:
        env_id: registered JAX env id (``"cardiosim_jax/"`` prefix accepted).
        num_envs: number of sub-envs (patients), >= 1.
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        autoreset_mode: an ``AutoresetMode`` or its value string.
        render_mode: must be ``None`` (as for :class:`CardioSimGymnasiumEnv`).
        normalize_actions: as for :class:`CardioSimGymnasiumEnv`.
        **overrides: JAX env parameters; arrays of shape ``(num_envs,)`` give
            every sub-env its own value (a population). ``observation_space``
            then has per-sub-env bounds and ``single_observation_space`` their union.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        difficulty: str = "medium",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        normalize_actions: bool = True,
        **overrides: Any,
    ) -> None:
        _check_render_mode(render_mode)
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)):
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError as error:
            accepted = [m.value for m in AutoresetMode]
            raise ValueError(
                f"unknown autoreset_mode {autoreset_mode!r}; accepted: {accepted}"
            ) from error
        env, params = cardiosim_jax.make(_jax_env_id(env_id), difficulty, **overrides)
        batch_shape = _params_batch_shape(params)
        try:
            params_axis = population_axis(params, num_envs)
        except ValueError:
            raise ValueError(
                f"array-valued overrides must have shape ({num_envs},) (one value per "
                f"sub-env), got batch shape {batch_shape}"
            ) from None
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {"render_modes": [], "autoreset_mode": mode}
        self.render_mode = None
        self._env = env
        self._params = params
        self._params_axis = params_axis
        self._normalize = bool(normalize_actions)
        self._layout = _info_layout(env)

        obs_space = env.observation_space(params)
        shape = tuple(obs_space.shape)
        low = np.broadcast_to(np.asarray(obs_space.low, np.float32), batch_shape + shape)
        high = np.broadcast_to(np.asarray(obs_space.high, np.float32), batch_shape + shape)
        if batch_shape:
            self.single_observation_space = _box(low.min(axis=0), high.max(axis=0), shape)
            self.observation_space = _box(low, high, (self.num_envs, *shape))
        else:
            self.single_observation_space = _box(low, high, shape)
            self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        act_space = env.action_space(params)
        act_shape = tuple(act_space.shape)
        self.single_action_space = (
            _box(-1.0, 1.0, act_shape)
            if self._normalize
            else _box(act_space.low, act_space.high, act_shape)
        )
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._rng_seeds: list[int | None] = [None] * self.num_envs
        self._states: Any = None
        self._loop_keys: jax.Array | None = None
        self._obs = np.zeros((self.num_envs, *shape), np.float32)
        self._ended = np.zeros(self.num_envs, np.bool_)

    # -- attributes -----------------------------------------------------------------------

    @property
    def jax_env(self) -> CardioSimEnvironment:
        """The underlying gymnax environment."""
        return self._env

    @property
    def jax_params(self) -> Any:
        """The JAX ``EnvParams`` (leaves of shape ``(num_envs,)`` for a population)."""
        return self._params

    @property
    def state(self) -> Any:
        """The batched JAX ``EnvState`` (leading axis = sub-env); ``None`` before reset."""
        return self._states

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """Per-sub-env Generators (as ``SyncVectorEnv.np_random``)."""
        return tuple(self._rng(i) for i in range(self.num_envs))

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        """Per-sub-env seeds (for an entropy-seeded sub-env, the seed drawn from entropy)."""
        for i in range(self.num_envs):
            self._rng(i)
        return tuple(self._rng_seeds)

    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:
            self._rngs[i], self._rng_seeds[i] = seeding.np_random(None)
        return self._rngs[i]

    def _draw_words(self, mask: np.ndarray) -> np.ndarray:
        """Episode key words (N, 2) uint32, drawn only for the sub-envs in ``mask``."""
        words = np.zeros((self.num_envs, 2), np.uint32)
        index = np.flatnonzero(mask)
        if index.size:
            # The same draw as _key_words, batched: hundreds of sub-envs can end in one step.
            raw = np.fromiter(
                (self._rng(i).bit_generator.random_raw() for i in index), np.uint64, index.size
            )
            words[index, 0] = raw >> np.uint64(32)
            words[index, 1] = raw & np.uint64(0xFFFFFFFF)
        return words

    def _placeholder_batch(self) -> tuple[jax.Array, Any]:
        """Zero loop keys and states for the first reset, which overwrites all of them.

        Lets the first reset use the same compiled masked reset as every later one.
        """
        shapes = jax.eval_shape(
            jax.vmap(functools.partial(_reset_one, self._env), in_axes=(0, self._params_axis)),
            jax.ShapeDtypeStruct((self.num_envs, 2), jnp.uint32),
            self._params,
        )
        _, states, loop_keys = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return loop_keys, states

    # -- API ------------------------------------------------------------------------------

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all sub-envs, or those in ``options["reset_mask"]`` (bool array (N,)).

        Returns ``(obs (N, *obs_shape) float32, {})``; with a mask the other rows repeat
        their current observation.
        """
        _check_no_options(options, ("reset_mask",))
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"seed list must have num_envs={self.num_envs} entries, got {len(seeds)}"
                )
        mask = np.ones(self.num_envs, np.bool_)
        if options is not None and "reset_mask" in options:
            mask = options["reset_mask"]
            if not (
                isinstance(mask, np.ndarray)
                and mask.dtype == np.bool_
                and mask.shape == (self.num_envs,)
            ):
                raise ValueError(
                    f"options['reset_mask'] must be a bool NumPy array of shape "
                    f"({self.num_envs},), got {mask!r}"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] selects no sub-env")
            if self._states is None and not mask.all():
                raise ValueError("the first reset must reset every sub-env (no reset_mask)")
        for i in np.flatnonzero(mask):
            if seeds[i] is not None:
                self._rngs[i], self._rng_seeds[i] = seeding.np_random(seeds[i])
        words = self._draw_words(mask)
        if self._states is None:
            self._loop_keys, self._states = self._placeholder_batch()
        obs, self._states, self._loop_keys = _vector_reset_where(
            self._env,
            self._params_axis,
            mask,
            words,
            self._loop_keys,
            self._states,
            self._params,
        )
        obs = np.asarray(obs)
        self._obs[mask] = obs[mask]
        self._ended[mask] = False
        return self._obs.copy(), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env (see the class docstring for the autoreset semantics).

        Args:
            actions: ``(num_envs, *action_shape)``, anything ``np.asarray`` takes.

        Returns:
            ``(obs (N, *obs_shape) float32, rewards (N,) float64, terminations (N,) bool,
            truncations (N,) bool, infos)``.
        """
        if self._states is None:
            raise ResetNeeded("call reset() before step()")
        actions = _coerce_actions(actions, self.action_space.shape)
        next_step = self.autoreset_mode == AutoresetMode.NEXT_STEP
        if self.autoreset_mode == AutoresetMode.DISABLED and self._ended.any():
            raise ResetNeeded(
                f"sub-envs {np.flatnonzero(self._ended).tolist()} ended and autoreset is "
                "disabled; call reset(options={'reset_mask': mask}) first"
            )
        reset_mask = self._ended if next_step else np.zeros(self.num_envs, np.bool_)
        words = self._draw_words(reset_mask)
        self._loop_keys, self._states, obs, *packed = _vector_step(
            self._env,
            self._params_axis,
            self._normalize,
            self._loop_keys,
            self._states,
            actions,
            reset_mask,
            words,
            self._params,
        )
        obs, floats, bools, ints = _to_numpy(obs, *packed)
        obs = np.array(obs, dtype=np.float32)
        rewards = floats[:, 0].astype(np.float64)
        terminations = bools[:, 0].copy()
        truncations = bools[:, 1].copy()
        ended = terminations | truncations
        reported = ~reset_mask

        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = obs[i].copy()
            final_info = _vector_info(self._layout, floats, bools, ints, ended)
            new_obs, self._states, self._loop_keys = _vector_reset_where(
                self._env,
                self._params_axis,
                ended,
                self._draw_words(ended),
                self._loop_keys,
                self._states,
                self._params,
            )
            obs[ended] = np.asarray(new_obs)[ended]
            reported = ~ended
            infos = _vector_info(self._layout, floats, bools, ints, reported)
            infos.update(
                final_obs=final_obs,
                _final_obs=ended.copy(),
                final_info=final_info,
                _final_info=ended.copy(),
            )
            self._ended[:] = False
        else:
            infos = _vector_info(self._layout, floats, bools, ints, reported)
            self._ended = ended
        self._obs = obs
        return obs.copy(), rewards, terminations, truncations, infos
