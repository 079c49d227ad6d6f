"""cardiosim-jax: pure-JAX cardiac control environments (a JAX successor of CardioSim)."""

from __future__ import annotations

# Importing the environment packages registers them (one register() call each).
import cardiosim_jax.envs  # noqa: F401
from cardiosim_jax.registration import EnvSpec, make, register, registered_envs

__version__ = "0.1.0"

__all__ = ["EnvSpec", "__version__", "make", "register", "registered_envs"]
