"""Environment registry: one open :func:`register` call per environment, and ``make``.

An environment package (``cardiosim_jax/envs/<name>/``, or a user's own) declares
an :class:`EnvSpec` (the environment class and what belongs to it: heuristic,
PPO settings, trajectory plotter, MPC oracle settings) and calls
:func:`register`; the id then works everywhere: :func:`make`, ``gymnax.make``,
``gymnasium.make("cardiosim_jax/<id>")``, ``agents.baseline_policy``,
``ppo.preset``, ``cardiosim-jax plot`` and the conformance checks.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnax
import numpy as np

if TYPE_CHECKING:
    from cardiosim_jax.envs.base import CardioSimEnvironment
    from cardiosim_jax.wrappers import NormalizedActions


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """An environment and what belongs to it, as data.

    Attributes:
        env_class: a :class:`~cardiosim_jax.envs.base.CardioSimEnvironment`
            subclass; its ``env_id`` is the registered id.
        heuristic: ``(policy, policy_params)``, the rule-based comparator
            (``policy(policy_params, obs, key) -> action``), or ``None``.
        ppo_tuned: settings of the ``tuned`` PPO preset that differ from the
            common ones (``cardiosim_jax.training``), as ``PPOConfig`` field names.
        ppo_tuned_tiers: per difficulty tier, settings that replace ``ppo_tuned``'s
            on that tier only (e.g. ``{"hard": {...}}``).
        ppo_large: settings of the ``large`` preset that differ from ``tuned``'s
            (on every tier), e.g. a smaller learning rate for its larger minibatches.
        ppo_paper: the ``paper`` preset's settings (v0 only: the paper's Table 1).
        plotter: ``"module:function"`` drawing a recorded trajectory on four axes
            (``cardiosim_jax.plotting.plot_trajectory``), imported when used, so
            that registering never imports matplotlib; ``None`` if there is none.
        mpc: ``MPCConfig`` settings of the MPC oracle (``baselines/v1.py``).
        mpc_initial_action: the oracle's first warm start (default: box middle).
    """

    env_class: type[CardioSimEnvironment]
    heuristic: tuple[Callable[..., Any], Any] | None = None
    ppo_tuned: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ppo_tuned_tiers: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    ppo_large: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ppo_paper: Mapping[str, Any] | None = None
    plotter: str | None = None
    mpc: Mapping[str, Any] | None = None
    mpc_initial_action: tuple[float, ...] | None = None

    @property
    def env_id(self) -> str:
        return self.env_class.env_id

    def load_plotter(self) -> Callable[..., str] | None:
        """The plotter function (imported now), or ``None``."""
        if self.plotter is None:
            return None
        module, _, name = self.plotter.partition(":")
        return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, EnvSpec] = {}


class _RegisteredIds(Sequence[str]):
    """A live, read-only view of the registered ids (registration order)."""

    def __getitem__(self, index: Any) -> Any:
        return tuple(_REGISTRY)[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, item: object) -> bool:
        return item in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


#: Ids accepted by :func:`make` (a live view: it includes environments registered later).
registered_envs: Sequence[str] = _RegisteredIds()
#: The reference-faithful v0 ids and the v1 ids shipped with the package.
v0_envs: tuple[str, ...] = (
    "PacingControl-v0",
    "AntiarrhythmicDosing-v0",
    "DefibrillationTiming-v0",
)
v1_envs: tuple[str, ...] = (
    "PacingControl-v1",
    "AntiarrhythmicDosing-v1",
    "DefibrillationTiming-v1",
)


def register(spec: EnvSpec) -> None:
    """Register an environment with :func:`make`, gymnax and (if installed) Gymnasium.

    Registering a class again (a reload of its module, or an updated spec)
    replaces its spec; the gymnax and Gymnasium entries, which look the spec
    up when called, stay.

    Raises:
        ValueError: the class has no ``env_id``, or another class holds the id.
    """
    env_id = getattr(spec.env_class, "env_id", None)
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"{spec.env_class.__name__} needs a string class attribute env_id")
    known = _REGISTRY.get(env_id)
    if known is not None and _source(known.env_class) != _source(spec.env_class):
        raise ValueError(
            f"environment id {env_id!r} is already registered by {_source(known.env_class)}"
        )
    _REGISTRY[env_id] = spec
    if env_id not in gymnax.registered_envs:
        gymnax.register(env_id, gymnax_factory(env_id))
    _register_gymnasium(env_id)


def _source(env_class: type) -> str:
    """Where a class is defined: the same after a module reload, unlike the class object."""
    return f"{env_class.__module__}.{env_class.__qualname__}"


def unregister(env_id: str) -> None:
    """Remove an id registered by :func:`register` (from gymnax and Gymnasium too)."""
    if env_id not in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is not registered")
    del _REGISTRY[env_id]
    # gymnax 1.0.1 has no unregister: its factory table and id list are module state.
    gymnax.registration._registry.pop(env_id, None)
    if env_id in gymnax.registered_envs:
        gymnax.registered_envs.remove(env_id)
    if importlib.util.find_spec("gymnasium") is not None:
        from gymnasium.envs.registration import registry

        registry.pop(f"cardiosim_jax/{env_id}", None)


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of a registered id (a ``"cardiosim/"`` prefix is accepted).

    Raises:
        ValueError: unknown id.
    """
    # Anything but a string (None, a number, a list) is an unknown id, with the same one line.
    name = env_id.removeprefix("cardiosim/") if isinstance(env_id, str) else None
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment id {env_id!r}; registered: {list(registered_envs)}")
    return _REGISTRY[name]


def plottable_envs() -> list[str]:
    """Registered ids with a trajectory plotter (``cardiosim-jax plot`` accepts these)."""
    return [env_id for env_id, entry in _REGISTRY.items() if entry.plotter is not None]


def register_gymnasium_envs() -> tuple[str, ...]:
    """``cardiosim_jax/<id>`` in Gymnasium's registry for every registered id; idempotent.

    :func:`register` already does this for each id; calling it again (e.g. after
    Gymnasium became importable) never warns. Returns the Gymnasium ids, or
    ``()`` when Gymnasium is not installed.
    """
    if importlib.util.find_spec("gymnasium") is None:
        return ()
    for env_id in _REGISTRY:
        _register_gymnasium(env_id)
    return tuple(f"cardiosim_jax/{env_id}" for env_id in _REGISTRY)


def _register_gymnasium(env_id: str) -> None:
    """``cardiosim_jax/<id>`` in Gymnasium's registry, if Gymnasium is installed; idempotent.

    Gymnasium stays optional for the core package: it is imported only after
    ``find_spec`` found it, and the entry points are strings, so
    :mod:`cardiosim_jax.gymnasium_adapter` is imported only by
    ``gymnasium.make``/``make_vec``. No ``max_episode_steps``: the JAX env
    truncates itself at its own ``max_steps_in_episode`` (which overrides can
    change), and a TimeLimit wrapper would cut episodes a longer override asks for.
    """
    if importlib.util.find_spec("gymnasium") is None:
        return
    from gymnasium.envs.registration import register as gymnasium_register
    from gymnasium.envs.registration import registry

    gym_id = f"cardiosim_jax/{env_id}"
    if gym_id in registry:
        return
    gymnasium_register(
        id=gym_id,
        entry_point="cardiosim_jax.gymnasium_adapter:CardioSimGymnasiumEnv",
        vector_entry_point="cardiosim_jax.gymnasium_adapter:CardioSimVectorEnv",
        kwargs={"env_id": env_id},
        max_episode_steps=None,
    )


def _build(env_id: str, normalize_actions: bool) -> CardioSimEnvironment | NormalizedActions:
    """The environment for ``env_id``, wrapped in :class:`NormalizedActions` if asked."""
    env_class = spec(env_id).env_class
    # np.bool_ is not a bool; a string such as "False" would silently count as True.
    if not isinstance(normalize_actions, (bool, np.bool_)):
        raise ValueError(f"normalize_actions must be True or False, got {normalize_actions!r}")
    from cardiosim_jax.wrappers import NormalizedActions

    env = env_class()
    return NormalizedActions(env) if normalize_actions else env


def make(
    env_id: str, difficulty: str = "medium", *, normalize_actions: bool = False, **overrides: Any
) -> tuple[CardioSimEnvironment | NormalizedActions, Any]:
    """Build an environment and its parameters.

    Args:
        env_id: one of :data:`registered_envs` (a ``"cardiosim/"`` prefix, as in
            the reference's Gymnasium ids, is accepted).
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        normalize_actions: ``True`` wraps the env in :class:`NormalizedActions`:
            action space ``Box(-1, 1)``, mapped affinely onto the physical
            bounds, for policies that act in [-1, 1] (PureJaxRL, rejax). The
            default keeps physical units (bpm, mg, J).
        **overrides: parameter values replacing the tier's, by field name
            (``target_heart_rate_bpm=80``), by model field name (``av_delay=200``)
            or as ``"group.field"``. Values may be arrays with a leading batch
            axis to describe a population of patients for ``jax.vmap``.

    Returns:
        ``(env, params)``; ``env.step(key, state, action, params)`` and
        ``env.reset(key, params)`` follow the gymnax API.

    Raises:
        ValueError: unknown id (also ``None`` or any non-string), unknown
            difficulty, unknown parameter, a parameter outside its literature
            range (checked on the value as given, before any cast: an integer
            beyond int32 is refused, never wrapped), an override with more
            than one axis or population overrides of different lengths, or a
            non-bool ``normalize_actions``.
    """
    env = _build(env_id, normalize_actions)
    return env, env.params_for(difficulty, **overrides)


def gymnax_factory(env_id: str) -> Callable[..., CardioSimEnvironment | NormalizedActions]:
    """The factory ``gymnax.register`` takes for ``env_id``.

    ``gymnax.make(env_id, **kwargs)`` calls it with its keyword arguments and
    returns ``(env, env.default_params)`` (the medium tier). It accepts only
    ``normalize_actions``: tiers and overrides are params, not environments
    (``env.params_for("hard", target_heart_rate_bpm=80)``).
    """

    def factory(
        normalize_actions: bool = False, **kwargs: Any
    ) -> CardioSimEnvironment | NormalizedActions:
        if kwargs:
            raise ValueError(
                f"gymnax.make({env_id!r}) accepts only normalize_actions, got {sorted(kwargs)}; "
                "for a tier or overrides pass env.params_for(difficulty, **overrides) as params"
            )
        return _build(env_id, normalize_actions)

    factory.__name__ = factory.__qualname__ = f"make_{env_id.replace('-', '_')}"
    return factory
