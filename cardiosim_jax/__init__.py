"""cardiosim-jax: pure-JAX cardiac control environments (a JAX successor of CardioSim)."""

from __future__ import annotations

import importlib.util

import gymnax

from cardiosim_jax.registration import gymnax_factory, make, registered_envs

__version__ = "0.1.0"

__all__ = ["__version__", "make", "registered_envs"]


def _register_gymnasium_envs() -> tuple[str, ...]:
    """Register ``cardiosim_jax/<EnvId>`` with Gymnasium if it is installed; idempotent.

    Gymnasium stays optional for the core package: it is imported here only
    after ``find_spec`` found it, and the entry points are strings, so
    :mod:`cardiosim_jax.gymnasium_adapter` is imported only by
    ``gymnasium.make``/``make_vec``. Ids already registered are skipped (a
    re-import or reload must not warn about overriding them). No
    ``max_episode_steps``: the JAX env truncates itself at its own
    ``max_steps_in_episode`` (which overrides can change), and a TimeLimit
    wrapper would cut episodes that a longer override asks for.

    Returns:
        The Gymnasium ids, or ``()`` when Gymnasium is not installed.
    """
    if importlib.util.find_spec("gymnasium") is None:
        return ()
    from gymnasium.envs.registration import register, registry

    ids = []
    for name in registered_envs:
        gym_id = f"cardiosim_jax/{name}"
        ids.append(gym_id)
        if gym_id in registry:
            continue
        register(
            id=gym_id,
            entry_point="cardiosim_jax.gymnasium_adapter:CardioSimGymnasiumEnv",
            vector_entry_point="cardiosim_jax.gymnasium_adapter:CardioSimVectorEnv",
            kwargs={"env_id": name},
            max_episode_steps=None,
        )
    return tuple(ids)


def _register_gymnax_envs() -> tuple[str, ...]:
    """Register every id with gymnax's registry (``gymnax.make``); idempotent.

    So that code which names its env by string finds ours: ``gymnax.make(id)``,
    gymnax's ``RolloutWrapper(env_name=id)``, rejax's ``PPO.create(env=id)``.
    The ids are the bare JAX ids: rejax reads a ``"prefix/"`` as another
    library's namespace. Ids already registered (a re-import or reload) are skipped.

    Returns:
        The gymnax ids.
    """
    for name in registered_envs:
        if name not in gymnax.registered_envs:
            gymnax.register(name, gymnax_factory(name))
    return registered_envs


_register_gymnasium_envs()
_register_gymnax_envs()
