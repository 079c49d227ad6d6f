"""What the three CardioSim environments share: tiers, overrides, validation, action hygiene."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import Any, ClassVar, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

from cardiosim_jax.models import prng
from cardiosim_jax.models.validation import ParameterRange, validate_parameters
from cardiosim_jax.models.variability import Variability, lognormal_multiplier

TState = TypeVar("TState", bound=environment.EnvState)
TParams = TypeVar("TParams", bound=environment.EnvParams)

DIFFICULTIES = ("easy", "medium", "hard")

#: Accepted episode lengths (steps); the CardioSim defaults are 500/200/100.
EPISODE_LENGTH_RANGE = ParameterRange(1, 100_000, "steps", "episode length")


def sanitize_action(action: jax.Array) -> jax.Array:
    """float32 action with NaN replaced by 0; +-inf are kept for the env's own clipping."""
    action = jnp.asarray(action, jnp.float32)
    return jnp.nan_to_num(action, nan=0.0, posinf=jnp.inf, neginf=-jnp.inf)


@cache
def _raw_key_shape(impl: str) -> tuple[int, ...]:
    """Shape of a raw (uint32) key of the PRNG implementation ``impl``: (2,) for Threefry."""
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl))).shape)


def check_key(key: Any, where: str) -> None:
    """Raise ``ValueError`` unless ``key`` is one JAX PRNG key.

    Accepted: a typed key of shape ``()`` (``jax.random.key(seed)``) or a raw
    uint32 key of the default implementation's shape, ``(2,)`` for Threefry
    (``jax.random.PRNGKey(seed)``); under ``vmap`` each element is checked.
    Anything else (an int32 array, three words, floats) would otherwise be
    hashed as if it were a key and can give NaN observations. Dtypes and
    shapes are static under ``jit``, so this runs once at trace time.
    """
    impl = str(jax.config.jax_default_prng_impl)
    raw_shape = _raw_key_shape(impl)
    accepted = (
        f"a single JAX PRNG key: jax.random.key(seed) (a typed key of shape ()) or "
        f"jax.random.PRNGKey(seed) (uint32 of shape {raw_shape}); vmap over a batch of keys"
    )
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        raise ValueError(f"{where}: key {key!r} is not {accepted}")
    shape = tuple(np.shape(key))
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
    elif dtype == jnp.uint32 and shape == raw_shape:
        return
    raise ValueError(f"{where}: key of dtype {dtype} and shape {shape} is not {accepted}")


def conform_action(action: Any, action_shape: tuple[int, ...], env_name: str) -> Any:
    """``action`` shaped as the action space: a scalar becomes ``(1,)`` on a 1-D space.

    gymnax's own 1-D envs (Pendulum) accept shapes ``()`` and ``(1,)``, and
    rejax squeezes a ``(1,)`` action to ``()``; both must give the same step.
    An action of the right shape is returned as it came (no conversion, so
    existing callers compile exactly what they did). Shapes are static under
    ``jit``, so the check costs nothing at run time.

    Raises:
        ValueError: any other shape (e.g. a scalar on a 2-D action space,
            which would otherwise be broadcast or indexed silently).
    """
    if not hasattr(action, "shape"):
        # A list or tuple (under jit: of tracers), as step_env's asarray would read it.
        action = jnp.asarray(action)
    shape = tuple(action.shape)
    if shape == tuple(action_shape):
        return action
    if shape == () and tuple(action_shape) == (1,):
        return jnp.reshape(action, (1,))
    accepted = [tuple(action_shape)] + ([()] if tuple(action_shape) == (1,) else [])
    raise ValueError(
        f"action of shape {shape} does not fit {env_name}'s action space; accepted shapes: "
        f"{accepted} (vmap over a batch of actions)"
    )


def transition(
    env: Any, key: jax.Array, state: Any, action: Any, params: Any
) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """One transition without auto-reset: ``(obs, state, reward, terminated, truncated, info)``.

    ``env.step_env`` and gymnax's time limit (``env.is_truncated`` of the new
    state), for any gymnax environment. ``key`` is the transition's own key:
    ``env.step(key, ...)`` passes the first half of ``prng.split(key)``. It is
    the one no-reset step behind :meth:`CardioSimEnvironment.step`, rollouts,
    the batched step, the Gymnasium adapter and the oracles, so a finished
    episode's final state can be kept where the caller needs it.

    The key and, for an environment with an ``action_shape`` (CardioSim
    environments and their wrappers), the action shape are checked as
    ``env.step`` checks them (:func:`check_key`, :func:`conform_action`):
    ``step_env`` itself would index a wrong shape silently.
    """
    name = getattr(env, "name", type(env).__name__)
    check_key(key, f"{name} transition")
    action_shape = getattr(env, "action_shape", None)
    if action_shape is not None:
        action = conform_action(action, tuple(action_shape), name)
    obs, next_state, reward, terminated, info = env.step_env(key, state, action, params)
    return obs, next_state, reward, terminated, env.is_truncated(next_state, params), info


def rescale_action(action: Any, low: Any, high: Any) -> jax.Array:
    """Map a normalised action in [-1, 1] affinely onto ``[low, high]`` (no clipping).

    ``-1`` -> ``low``, ``1`` -> ``high``; values outside [-1, 1] extrapolate
    and are left to the environment's own clipping, NaN stays NaN (the env
    reads it as 0 in physical units).
    """
    low = jnp.asarray(low, jnp.float32)
    high = jnp.asarray(high, jnp.float32)
    return low + (action + 1.0) * 0.5 * (high - low)


class _FloatableBound(np.ndarray):
    """A size-1 float32 bound that ``float()`` accepts.

    ``gymnax.environments.spaces.gymnax_space_to_gym_space`` (behind gymnax's
    ``GymnaxToGymWrapper``/``GymnaxToVectorGymWrapper``) calls ``float()`` on
    any size-1 Box bound, as gymnax's own 1-D envs use Python floats; NumPy 2
    and JAX refuse ``float()`` of a shape-(1,) array. Everything else still
    sees an ordinary shape-(1,) array (``np.asarray`` and ``jnp.asarray``
    return plain arrays), so bounds keep the action's shape for our tooling.
    """

    def __float__(self) -> float:
        return float(self.view(np.ndarray).reshape(()))


def box(low: Any, high: Any, shape: tuple[int, ...]) -> spaces.Box:
    """float32 gymnax ``Box`` with constant bounds broadcast to ``shape``.

    For action spaces whose bounds do not depend on the params. Bounds of a
    shape-(1,) box also convert with ``float()``, as gymnax's Gym wrappers require.
    """
    bounds = []
    for value in (low, high):
        array = np.broadcast_to(np.asarray(value, np.float32), shape).copy()
        bounds.append(array.view(_FloatableBound) if array.size == 1 else array)
    return spaces.Box(low=bounds[0], high=bounds[1], shape=tuple(shape), dtype=jnp.float32)


def as_arrays(params: Any) -> Any:
    """Every leaf as a JAX array (float32, or int32 for integer leaves)."""

    def convert(leaf: Any) -> jax.Array:
        arr = np.asarray(leaf)
        dtype = jnp.int32 if np.issubdtype(arr.dtype, np.integer) else jnp.float32
        return jnp.asarray(arr, dtype)

    return jax.tree_util.tree_map(convert, params)


def _real_values(arr: np.ndarray) -> np.ndarray | None:
    """``arr`` as float64 if every entry is a real number (bools count), else ``None``.

    Object arrays (Python ints beyond int64, mixed lists) are checked entry by
    entry: NumPy would read ``None`` as NaN and ``"3"`` as 3.
    """
    if arr.dtype.kind == "O":
        real = (int, float, np.integer, np.floating, np.bool_)
        if not all(isinstance(x, real) for x in arr.ravel()):
            return None
    elif arr.dtype.kind not in "biuf":
        return None
    return arr.astype(np.float64)


def _as_given(leaf: Any, bad: np.ndarray) -> str:
    """The first offending entry of ``leaf`` as the caller wrote it (an int stays exact)."""
    value = np.ravel(np.asarray(leaf, dtype=object))[int(np.flatnonzero(np.ravel(bad))[0])]
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return f"{float(value):g}"


def cast_like(
    template: Any, params: Any, ranges: Mapping[str, ParameterRange] | None = None
) -> Any:
    """``params`` with every leaf converted to the dtype of ``template``'s leaf.

    An int given for a float parameter stays float32 (so one compiled function
    serves it). Values are checked before the cast, which would change them
    silently: an integer parameter (the episode length) must be a whole number
    that int32 holds (``2**32 + 100`` would wrap to 100), a float parameter a
    value float32 holds (``1e39`` would become inf). The message shows the
    value as given and the accepted range: the literature range from
    ``ranges`` (keyed ``"field"`` or ``"group.field"``) when known.

    Raises:
        ValueError: a value that is not a real number, a non-integral value
            for an integer parameter, or a value the cast cannot hold.
    """
    ranges = ranges or {}

    def convert(path: Any, like: jax.Array, leaf: Any) -> jax.Array:
        name = jax.tree_util.keystr(path).lstrip(".")
        arr = np.asarray(leaf)
        values = _real_values(arr)
        if values is None:
            raise ValueError(f"parameter '{name}' = {leaf!r} must be a real number")
        where = "" if arr.ndim == 0 else " (in a population)"
        bounds = ranges.get(name)
        if np.issubdtype(like.dtype, np.integer):
            if arr.dtype.kind not in "biu":
                bad = ~np.isfinite(values) | (values != np.round(values))
                if np.any(bad):
                    shown = _as_given(leaf, bad)
                    within = f" in its literature range {bounds.describe()}" if bounds else ""
                    raise ValueError(
                        f"parameter '{name}' = {shown}{where} must be a whole number{within}"
                    )
            info = np.iinfo(like.dtype)
            # Integers are compared exactly (int64 and Python ints as given), against the
            # literature range when known, so the message shows the value, not its cast.
            exact = arr if arr.dtype.kind in "iuO" else values
            low, high = (bounds.low, bounds.high) if bounds else (info.min, info.max)
            bad = (exact < max(low, info.min)) | (exact > min(high, info.max))
            held = f"the {like.dtype} range [{info.min}, {info.max}]"
        else:
            limit = float(np.finfo(like.dtype).max)
            # inf and NaN are left to range validation, which names them as they are.
            bad = np.isfinite(values) & (np.abs(values) > limit)
            held = f"the {like.dtype} range [{-limit:g}, {limit:g}]"
        if np.any(bad):
            accepted = f"its literature range {bounds.describe()}" if bounds else held
            raise ValueError(
                f"parameter '{name}' = {_as_given(leaf, bad)}{where} is outside {accepted}"
            )
        return jnp.asarray(arr, like.dtype)

    return jax.tree_util.tree_map_with_path(convert, template, params)


def broadcast_population(params: Any) -> Any:
    """Give every leaf the common batch shape when any leaf is batched.

    Every parameter is a scalar per patient, so array-valued overrides describe
    a population; broadcasting all leaves lets ``jax.vmap(..., in_axes=0)`` map
    over the whole params pytree.
    """
    leaves = jax.tree_util.tree_leaves(params)
    batch_shape = np.broadcast_shapes(*[np.shape(leaf) for leaf in leaves])
    if not batch_shape:
        return params
    return jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, batch_shape), params)


def population_axis(params: Any, size: int) -> int | None:
    """The ``vmap`` axis of ``params`` over ``size`` patients: ``0`` or ``None`` (shared).

    The one rule every batched caller (rollouts, the batched step, the trainer,
    the Gymnasium vector adapter, the oracles) applies: every parameter is a
    scalar per patient, so any leaf with an axis makes ``params`` a population,
    and then every leaf must have a leading axis of ``size``
    (:func:`broadcast_population`, as ``make`` builds them).

    Raises:
        ValueError: a batched leaf without a leading axis of ``size``.
    """
    leaves = jax.tree_util.tree_leaves(params)
    if not any(np.ndim(leaf) > 0 for leaf in leaves):
        return None
    if any(np.shape(leaf)[:1] != (size,) for leaf in leaves):
        shapes = sorted({tuple(np.shape(leaf)) for leaf in leaves})
        raise ValueError(
            f"a population of env params needs a leading axis of {size} on every leaf; "
            f"got leaf shapes {shapes}"
        )
    return 0


def check_population_overrides(overrides: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless every override is a scalar or one ``(n,)`` population.

    Every parameter is a scalar per patient, so a population is one leading
    axis of ``n`` patients, the same ``n`` for every array-valued override: a
    2-D override would build params that ``reset`` cannot use.
    """
    lengths = {}
    for name, value in overrides.items():
        shape = np.shape(value)
        if len(shape) > 1:
            raise ValueError(
                f"override '{name}' has shape {shape}; accepted: a scalar, or one value per "
                "patient of shape (n,) (a population is one leading axis)"
            )
        if shape:
            lengths[name] = shape[0]
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"population overrides must share one length n (one value per patient); got "
            f"lengths {lengths}"
        )


def _nested_fields(params: Any) -> dict[str, tuple[str, ...]]:
    """Map every accepted override name to its attribute path.

    Top-level fields are reachable by name; fields of nested model parameter
    structs by their own name (when unique) and by ``"group.name"``.
    """
    paths: dict[str, tuple[str, ...]] = {}
    leaf_names: dict[str, list[tuple[str, ...]]] = {}
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                paths[f"{field.name}.{sub.name}"] = (field.name, sub.name)
                leaf_names.setdefault(sub.name, []).append((field.name, sub.name))
        else:
            paths[field.name] = (field.name,)
    for name, candidates in leaf_names.items():
        if len(candidates) == 1 and name not in paths:
            paths[name] = candidates[0]
    return paths


def replace_params(params: TParams, overrides: Mapping[str, Any], env_name: str) -> TParams:
    """Return ``params`` with ``overrides`` applied; unknown names raise ``ValueError``."""
    paths = _nested_fields(params)
    for name, value in overrides.items():
        if name not in paths:
            raise ValueError(
                f"unknown parameter '{name}' for {env_name}; accepted: {sorted(paths)}"
            )
        path = paths[name]
        if len(path) == 1:
            params = params.replace(**{path[0]: value})
        else:
            group = getattr(params, path[0]).replace(**{path[1]: value})
            params = params.replace(**{path[0]: group})
    return params


class CardioSimEnvironment(environment.Environment[TState, TParams], Generic[TState, TParams]):
    """gymnax ``Environment`` with CardioSim difficulty tiers and parameter validation.

    Instances carry no data: everything that varies lives in ``EnvParams``, so
    all instances of one class compare equal and share jit caches, and one
    compiled ``step`` serves every tier and patient.
    """

    #: Registered id, e.g. ``"PacingControl-v0"``.
    env_id: ClassVar[str]
    #: Overrides of ``default_params`` per difficulty tier.
    tiers: ClassVar[Mapping[str, Mapping[str, Any]]]
    #: Ranges for the top-level (environment) fields of ``EnvParams``.
    parameter_ranges: ClassVar[Mapping[str, ParameterRange]]
    #: Model validators, keyed by the ``EnvParams`` field holding that model's params.
    model_validators: ClassVar[Mapping[str, Callable[..., None]]]
    #: Shape of the action vector.
    action_shape: ClassVar[tuple[int, ...]]
    #: Inter-patient variability (log-normal CV) of parameters, by override name;
    #: empty where the environment has no patient model (the v0 environments).
    patient_variation: ClassVar[Mapping[str, Variability]] = {}
    #: Whether CardioSim 0.1.0's env object of this id carries parameters from one
    #: ``reset()`` to the next (:meth:`params_after_resets` says how).
    reference_carries_params: ClassVar[bool] = False

    def __hash__(self) -> int:
        return hash(type(self))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    @property
    def name(self) -> str:
        return self.env_id

    @property
    def num_actions(self) -> int:
        return int(np.prod(self.action_shape))

    @property
    def default_params(self) -> TParams:
        """Medium tier, as in CardioSim."""
        return self.params_for("medium")

    def base_params(self) -> TParams:  # pragma: no cover - overridden
        raise NotImplementedError

    def params_for(self, difficulty: str = "medium", **overrides: Any) -> TParams:
        """Parameters of a difficulty tier with optional overrides, validated.

        Raises:
            ValueError: unknown difficulty, unknown parameter name, a value
                outside its literature range, a non-integral episode length,
                or an override with more than one axis.
        """
        # A list would be unhashable here; any non-string is simply not a tier.
        if not isinstance(difficulty, str) or difficulty not in self.tiers:
            raise ValueError(
                f"unknown difficulty {difficulty!r} for {self.env_id}; accepted: {list(self.tiers)}"
            )
        check_population_overrides(overrides)
        tiered = as_arrays(replace_params(self.base_params(), self.tiers[difficulty], self.env_id))
        params = cast_like(
            tiered, replace_params(tiered, overrides, self.env_id), self.literature_ranges()
        )
        self.validate_params(params)
        return broadcast_population(params)

    def validate_params(self, params: TParams) -> None:
        """Raise ``ValueError`` naming the first parameter outside its accepted range."""
        validate_parameters(params, self.parameter_ranges)
        for field_name, validator in self.model_validators.items():
            validator(getattr(params, field_name), prefix=f"{field_name}.")
        self.check_consistency(params)

    def check_consistency(self, params: TParams) -> None:
        """Cross-parameter checks (e.g. low <= high); none by default."""

    def consistent_patients(self, drawn: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Make independently drawn patient parameters satisfy ``check_consistency``.

        :meth:`draw_patient` varies each parameter on its own and applies this
        last, so every reset and :func:`cardiosim_jax.patients.sample` get the
        same consistent patients. Written with ``jnp`` (it runs under ``jit``
        and ``vmap``); identity by default.
        """
        return drawn

    def parameter_value(self, params: TParams, name: str) -> Any:
        """The value of a parameter in ``params``, by the name ``params_for`` accepts."""
        path = _nested_fields(params).get(name)
        if path is None:
            raise ValueError(f"unknown parameter {name!r} for {self.env_id}")
        value = params
        for part in path:
            value = getattr(value, part)
        return value

    def literature_ranges(self) -> dict[str, ParameterRange]:
        """Every range-checked parameter: top-level fields by name, model ones as ``"group.field"``.

        Model ranges are the ``PARAMETER_RANGES`` of the module that defines
        that model's validator.
        """
        ranges = dict(self.parameter_ranges)
        for group, validator in self.model_validators.items():
            model_ranges = getattr(sys.modules[validator.__module__], "PARAMETER_RANGES", {})
            ranges.update({f"{group}.{name}": r for name, r in model_ranges.items()})
        return ranges

    def parameter_range(self, name: str) -> ParameterRange:
        """The literature range of a parameter, by the name ``params_for`` accepts."""
        path = _nested_fields(self.base_params()).get(name)
        if path is None:
            raise ValueError(f"unknown parameter {name!r} for {self.env_id}")
        bounds = self.literature_ranges().get(".".join(path))
        if bounds is None:
            raise ValueError(f"parameter {name!r} of {self.env_id} has no literature range")
        return bounds

    def draw_patient(self, key: jax.Array, params: TParams) -> dict[str, jax.Array]:
        """One patient's values of the ``patient_variation`` parameters.

        Each is its typical value in ``params`` times a mean-one log-normal
        factor of CV ``cv x params.patient_variability``, clipped to its
        literature range (:meth:`parameter_range`); the factors use
        ``prng.split(key, n)`` in declaration order, then
        :meth:`consistent_patients` applies the cross-parameter rules. The one
        patient draw: every v1 reset calls it, and
        :func:`cardiosim_jax.patients.sample` vmaps it over patients.
        """
        table = self.patient_variation
        drawn = {}
        for name_key, (name, variability) in zip(
            prng.split(key, len(table)), table.items(), strict=True
        ):
            bounds = self.parameter_range(name)
            factor = lognormal_multiplier(name_key, variability.cv * params.patient_variability)
            typical = self.parameter_value(params, name)
            drawn[name] = jnp.clip(typical * factor, bounds.low, bounds.high)
        return self.consistent_patients(drawn)

    def params_after_resets(
        self, key: jax.Array, params: TParams, resets: jax.Array | int
    ) -> TParams:
        """The parameters a CardioSim 0.1.0 env object holds after ``resets`` resets.

        The reference's env objects carry parameters from one ``reset()`` to the
        next, and the paper's Table 2 played consecutive episodes of one object
        (``baselines/table2.py`` and :func:`cardiosim_jax.experiments.run_table2`
        reproduce that protocol). Resetting these ``params`` then plays the
        ``resets + 1``-th episode of such an object, in distribution; ``key``
        draws what the earlier resets drew. ``resets`` may be traced (it is vmapped
        over episodes). Identity where nothing carries over.
        """
        del key, resets
        return params

    def observe(self, key: jax.Array, state: TState, action: Any, params: TParams) -> jax.Array:
        """gymnax 1.0's keyed observation hook: the observation of ``state``.

        ``action`` is the action that produced ``state`` (``None`` at reset).
        Every CardioSim ``step_env`` and ``reset_env`` observes through here,
        so a variant that changes what is monitored (another sensor, a
        partially observed ablation) overrides this one method. The default
        is ``get_obs(state, params, key)``: in v1 the key draws the
        measurement noise (``get_obs`` without a key is the noise-free
        reading), v0 observations are exact and ignore it.
        """
        del action
        return self.get_obs(state, params, key)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: TParams | None = None) -> tuple[jax.Array, TState]:
        """gymnax's ``Environment.reset`` (``reset_env`` under ``jit``), with the key checked.

        Raises:
            ValueError: ``key`` is not one JAX PRNG key (:func:`check_key`), at trace time.
        """
        check_key(key, f"{self.env_id}.reset")
        if params is None:
            params = self.default_params
        return self.reset_env(key, params)

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: TState,
        action: Any,
        params: TParams | None = None,
    ) -> tuple[jax.Array, TState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """gymnax's auto-resetting ``Environment.step``, output for output.

        The key is split with :func:`prng.split`, which gives the same keys as
        ``jax.random.split`` but fuses on CPU (JAX lowers Threefry there as a
        loop), and a scalar action on a 1-D action space counts as its
        ``(1,)`` action (:func:`conform_action`). As in gymnax, ``reset_env``
        runs on every step and is selected where the episode ended; see
        :func:`cardiosim_jax.envs.vector.make_batched_step` to reset only a few.

        Raises:
            ValueError: ``key`` is not one JAX PRNG key (:func:`check_key`) or
                the action's shape does not fit, at trace time.
        """
        check_key(key, f"{self.env_id}.step")
        if params is None:
            params = self.default_params
        key_step, key_reset = prng.split(key)  # transition conforms the action
        obs_st, state_st, reward, terminated, truncated, info = transition(
            self, key_step, state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state, reward, terminated, truncated, info


def stack_last(values: list[Any]) -> jax.Array:
    """Broadcast scalars and (possibly batched) arrays together, stacked on a new last axis."""
    return jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(v, jnp.float32) for v in values]), axis=-1)
