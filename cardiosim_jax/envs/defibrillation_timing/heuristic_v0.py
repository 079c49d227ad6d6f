"""The rule-based comparator for DefibrillationTiming-v0 (shock at maximum energy), in JAX.

CardioSim ships no defibrillation heuristic; see :func:`always_shock_policy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class AlwaysShockParams:
    """Shock on every step at a fixed energy (J)."""

    energy_j: jax.Array = 360.0


def always_shock_policy(
    params: AlwaysShockParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """DefibrillationTiming action: shock now at ``energy_j``.

    CardioSim ships no defibrillation heuristic; since shock success ignores
    the cell state, shocking at maximum energy on every step is the natural
    rule-based comparator (about 140 on easy).
    """
    del key
    ones = jnp.ones(obs.shape[:-1], jnp.float32)
    return jnp.stack([ones, ones * params.energy_j], axis=-1)
