"""Environment registry and the ``make`` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cardiosim_jax.envs import (
    AntiarrhythmicDosing,
    AntiarrhythmicDosingV1,
    DefibrillationTiming,
    DefibrillationTimingV1,
    PacingControl,
    PacingControlV1,
)
from cardiosim_jax.envs.base import CardioSimEnvironment
from cardiosim_jax.wrappers import NormalizedActions

#: v0: the reference's semantics (Table 2); v1: the physiologically meaningful successors.
V0_ENVS = (PacingControl, AntiarrhythmicDosing, DefibrillationTiming)
V1_ENVS = (PacingControlV1, AntiarrhythmicDosingV1, DefibrillationTimingV1)

_REGISTRY: dict[str, type[CardioSimEnvironment]] = {cls.env_id: cls for cls in V0_ENVS + V1_ENVS}

#: Ids accepted by :func:`make`.
registered_envs: tuple[str, ...] = tuple(_REGISTRY)
#: The reference-faithful v0 ids and the v1 ids.
v0_envs: tuple[str, ...] = tuple(cls.env_id for cls in V0_ENVS)
v1_envs: tuple[str, ...] = tuple(cls.env_id for cls in V1_ENVS)


def _build(env_id: str, normalize_actions: bool) -> CardioSimEnvironment | NormalizedActions:
    """The environment for ``env_id``, wrapped in :class:`NormalizedActions` if asked."""
    name = env_id.removeprefix("cardiosim/")
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment id {env_id!r}; registered: {list(registered_envs)}")
    # np.bool_ is not a bool; a string such as "False" would silently count as True.
    if not isinstance(normalize_actions, (bool, np.bool_)):
        raise ValueError(f"normalize_actions must be True or False, got {normalize_actions!r}")
    env = _REGISTRY[name]()
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
        ValueError: unknown id, unknown difficulty, unknown parameter, a
            parameter outside its literature range, or a non-bool
            ``normalize_actions``.
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
