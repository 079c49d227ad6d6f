"""Bedside titration of norepinephrine: up when MAP is under target, down when over."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from .env import MAP_TARGET_LOW, RATE_LIMITS


@struct.dataclass
class TitrationParams:
    """Aim (mmHg) a little above the 65 mmHg floor; rate change per mmHg of error (ug/kg/min)."""

    aim_mmhg: jax.Array = MAP_TARGET_LOW + 5.0
    gain_per_mmhg: jax.Array = 0.02


def titration_policy(
    params: TitrationParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """Next infusion rate from the observed MAP (obs[0]) and the running rate (obs[1])."""
    del key
    rate = obs[..., 1] + params.gain_per_mmhg * (params.aim_mmhg - obs[..., 0])
    return jnp.clip(rate, *RATE_LIMITS)[..., None].astype(jnp.float32)
