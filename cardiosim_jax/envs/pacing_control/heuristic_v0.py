"""The reference's rule-based pacing controller for PacingControl-v0, as a pure JAX function.

It reads only the observation, so it works batched under ``jax.vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicPacingParams:
    """Proportional rate control: adjustment = -gain x HR error, amplitude = |error| / scale."""

    gain: jax.Array = 0.5
    max_adjustment_bpm: jax.Array = 20.0
    amplitude_scale_bpm: jax.Array = 30.0


def heuristic_pacing_policy(
    params: HeuristicPacingParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """PacingControl action from the heart-rate error (obs[4], bpm)."""
    del key
    hr_error = obs[..., 4]
    adjustment = jnp.clip(
        -params.gain * hr_error, -params.max_adjustment_bpm, params.max_adjustment_bpm
    )
    amplitude = jnp.minimum(1.0, jnp.abs(hr_error) / params.amplitude_scale_bpm)
    return jnp.stack([adjustment, amplitude], axis=-1).astype(jnp.float32)
