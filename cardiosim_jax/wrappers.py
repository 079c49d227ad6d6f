"""JAX-level wrappers: the environments as JAX RL code written for gymnax expects them."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
from gymnax.environments import environment, spaces

from cardiosim_jax.envs.base import CardioSimEnvironment, box, conform_action, rescale_action

__all__ = ["NormalizedActions"]


class NormalizedActions(environment.Environment):
    """A CardioSim environment whose action space is ``Box(-1, 1)``.

    PureJaxRL-style policies emit actions around 0 in [-1, 1] (``ClipAction(-1,
    1)``, a zero-centred Gaussian); in physical units that is no dose and no
    shock. Here an action ``a`` is mapped affinely onto the wrapped env's
    bounds, ``low + (a + 1) / 2 * (high - low)`` (``-1`` -> ``low``, ``1`` ->
    ``high``), the same map as the Gymnasium adapter's default, and is not
    clipped (the env clips). Everything else is the wrapped env's: ``step``
    returns exactly what ``env.step`` returns for the mapped action and the
    same key, observations and params are unchanged, and attributes the
    wrapper does not define (``params_for``, ``env_id``, ...) are the env's.

    Build it with ``cardiosim_jax.make(env_id, normalize_actions=True)`` or
    ``gymnax.make(env_id, normalize_actions=True)``.
    """

    def __init__(self, env: CardioSimEnvironment) -> None:
        if not isinstance(env, CardioSimEnvironment):
            raise ValueError(
                f"NormalizedActions wraps a CardioSim environment, got {type(env).__name__}"
            )
        self._env = env

    # Equal wrappers of equal envs share jit caches, as the envs themselves do.
    def __hash__(self) -> int:
        return hash((type(self), self._env))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._env == other._env

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the wrapper lacks; guard _env against
        # recursion while unpickling or deep-copying (no _env yet).
        if name == "_env":
            raise AttributeError(name)
        return getattr(self._env, name)

    def __repr__(self) -> str:
        return f"NormalizedActions({type(self._env).__name__}())"

    @property
    def unwrapped(self) -> CardioSimEnvironment:
        """The wrapped environment (physical action units)."""
        return self._env

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    def to_physical(self, action: Any, params: Any) -> jax.Array:
        """The wrapped env's action (physical units) for a normalised ``action``."""
        action = conform_action(action, self._env.action_shape, self.name)
        bounds = self._env.action_space(params)
        return rescale_action(action, bounds.low, bounds.high)

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: Any, action: Any, params: Any | None = None
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """The wrapped env's auto-resetting ``step`` on the mapped action."""
        if params is None:
            params = self.default_params
        return self._env.step(key, state, self.to_physical(action, params), params)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any | None = None) -> tuple[jax.Array, Any]:
        return self._env.reset(key, params)

    def step_env(
        self, key: jax.Array, state: Any, action: Any, params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict[str, Any]]:
        return self._env.step_env(key, state, self.to_physical(action, params), params)

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        return self._env.reset_env(key, params)

    # gymnax's Environment defines these hooks, so __getattr__ would not reach the env's.
    def observe(self, key: jax.Array, state: Any, action: Any, params: Any) -> Any:
        return self._env.observe(key, state, action, params)

    def get_obs(self, state: Any, params: Any = None, key: jax.Array | None = None) -> Any:
        return self._env.get_obs(state, params, key)

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return self._env.is_truncated(state, params)

    def is_terminal(self, state: Any, params: Any) -> jax.Array:
        return self._env.is_terminal(state, params)

    def is_terminated(self, state: Any, params: Any) -> jax.Array:
        return self._env.is_terminated(state, params)

    def discount(self, state: Any, params: Any) -> jax.Array:
        return self._env.discount(state, params)

    def action_space(self, params: Any | None = None) -> spaces.Box:
        """``Box(-1, 1)`` of the wrapped env's action shape."""
        return box(-1.0, 1.0, tuple(self._env.action_shape))

    def observation_space(self, params: Any) -> spaces.Box:
        return self._env.observation_space(params)

    def state_space(self, params: Any) -> Any:
        return self._env.state_space(params)
