"""cardiosim-jax: pure-JAX cardiac control environments (a JAX successor of CardioSim)."""

from cardiosim_jax.registration import make, registered_envs

__version__ = "0.1.0"

__all__ = ["__version__", "make", "registered_envs"]
