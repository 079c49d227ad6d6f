"""Clinical programming rule for PacingControl-v1, as a pure JAX policy.

What a clinician does at a follow-up, without the patient's hidden values:
program the lower-rate limit at the target rate, keep the nominal output
(3.5 V at 0.4 ms, a safety margin of at least 2x for typical thresholds of
0.5-1.5 V; Ellenbogen et al. 2011), and raise the output by a fixed step
whenever loss of capture is seen (fewer captures than pulses), never lowering
it again within the episode. Reads only the observation, so it vmaps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from cardiosim_jax.envs.pacing_control_v1 import AMPLITUDE_LIMITS

#: Observation slots used (see ``cardiosim_jax.envs.pacing_control_v1``).
_TARGET, _PACES, _CAPTURES, _AMPLITUDE = 0, 4, 5, 9


@struct.dataclass
class HeuristicPacingV1Params:
    """Lower rate = target + offset (bpm); output never below nominal, + step on loss of capture."""

    lower_rate_offset_bpm: jax.Array = 0.0
    nominal_amplitude_v: jax.Array = 3.5
    loss_of_capture_step_v: jax.Array = 1.0


def heuristic_pacing_v1_policy(
    params: HeuristicPacingV1Params, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """PacingControl-v1 action [lower-rate limit (bpm), amplitude (V)] from the observation."""
    del key
    lower_rate = obs[..., _TARGET] + params.lower_rate_offset_bpm
    loss_of_capture = obs[..., _CAPTURES] < obs[..., _PACES]
    amplitude = jnp.maximum(obs[..., _AMPLITUDE], params.nominal_amplitude_v)
    amplitude = jnp.where(loss_of_capture, amplitude + params.loss_of_capture_step_v, amplitude)
    amplitude = jnp.clip(amplitude, *AMPLITUDE_LIMITS)
    return jnp.stack([lower_rate, amplitude], axis=-1).astype(jnp.float32)
