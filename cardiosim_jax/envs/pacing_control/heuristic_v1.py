"""Clinical programming rule for PacingControl-v1, as a pure JAX policy.

Standard programming at a follow-up, from the observation only: a lower-rate
limit of 60 bpm (VVI 60, the usual nominal rate; Kusumoto et al. 2019) and an
amplitude of twice the threshold measured at the follow-up (the 2:1 voltage
safety margin; Ellenbogen et al. 2011), raised by a fixed step for every loss of
capture the device has recorded (the counter in the observation, so the rule
stays memoryless). It does not chase the heart rate, so pacing stops whenever
the patient's own rhythm is faster than 60 bpm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.envs.pacing_control.v1 import AMPLITUDE_LIMITS, LOWER_RATE_LIMITS

#: Observation slots used (see ``cardiosim_jax.envs.pacing_control.v1``).
_MEASURED_THRESHOLD, _LOST_SO_FAR = 7, 10


@struct.dataclass
class HeuristicPacingV1Params:
    """Lower rate (bpm); safety factor x measured threshold; + step (V) per loss of capture."""

    lower_rate_bpm: jax.Array = 60.0
    safety_factor: jax.Array = 2.0
    loss_of_capture_step_v: jax.Array = 1.0


def heuristic_pacing_v1_policy(
    params: HeuristicPacingV1Params, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """PacingControl-v1 action [lower-rate limit (bpm), amplitude (V)] from the observation."""
    del key
    amplitude = (
        params.safety_factor * obs[..., _MEASURED_THRESHOLD]
        + params.loss_of_capture_step_v * obs[..., _LOST_SO_FAR]
    )
    amplitude = jnp.clip(amplitude, *AMPLITUDE_LIMITS)
    lower_rate = jnp.clip(
        jnp.broadcast_to(params.lower_rate_bpm, amplitude.shape), *LOWER_RATE_LIMITS
    )
    return jnp.stack([lower_rate, amplitude], axis=-1).astype(jnp.float32)
