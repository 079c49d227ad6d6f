"""Environment registry and the ``make`` entry point."""

from __future__ import annotations

from typing import Any

from cardiosim_jax.envs import (
    AntiarrhythmicDosing,
    AntiarrhythmicDosingV1,
    DefibrillationTiming,
    DefibrillationTimingV1,
    PacingControl,
    PacingControlV1,
)
from cardiosim_jax.envs.base import CardioSimEnvironment

#: v0: the reference's semantics (Table 2); v1: the physiologically meaningful successors.
V0_ENVS = (PacingControl, AntiarrhythmicDosing, DefibrillationTiming)
V1_ENVS = (PacingControlV1, AntiarrhythmicDosingV1, DefibrillationTimingV1)

_REGISTRY: dict[str, type[CardioSimEnvironment]] = {cls.env_id: cls for cls in V0_ENVS + V1_ENVS}

#: Ids accepted by :func:`make`.
registered_envs: tuple[str, ...] = tuple(_REGISTRY)
#: The reference-faithful v0 ids and the v1 ids.
v0_envs: tuple[str, ...] = tuple(cls.env_id for cls in V0_ENVS)
v1_envs: tuple[str, ...] = tuple(cls.env_id for cls in V1_ENVS)


def make(
    env_id: str, difficulty: str = "medium", **overrides: Any
) -> tuple[CardioSimEnvironment, Any]:
    """Build an environment and its parameters.

    Args:
        env_id: one of :data:`registered_envs` (a ``"cardiosim/"`` prefix, as in
            the reference's Gymnasium ids, is accepted).
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``.
        **overrides: parameter values replacing the tier's, by field name
            (``target_heart_rate_bpm=80``), by model field name (``av_delay=200``)
            or as ``"group.field"``. Values may be arrays with a leading batch
            axis to describe a population of patients for ``jax.vmap``.

    Returns:
        ``(env, params)``; ``env.step(key, state, action, params)`` and
        ``env.reset(key, params)`` follow the gymnax API.

    Raises:
        ValueError: unknown id, unknown difficulty, unknown parameter, or a
            parameter outside its literature range.
    """
    name = env_id.removeprefix("cardiosim/")
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment id {env_id!r}; registered: {list(registered_envs)}")
    env = _REGISTRY[name]()
    return env, env.params_for(difficulty, **overrides)
