"""Clinical shock-timing rules for DefibrillationTiming-v1, as pure JAX functions.

Two rules share one parameter struct (``amsa_guided`` picks):

* ACLS (Link et al. 2015 Circulation, AHA guidelines; Stiell et al. 2007
  BIPHASIC): shock on arrival, then after every ``cpr_cycle_s`` of CPR, with
  escalating energy 200 -> 300 -> 360 J.
* AMSA-guided (Ristagno et al. 2015 Resuscitation; the AMSA-guided strategy of
  the AMSA trial): shock when AMSA reaches ``amsa_threshold_mv_hz`` (no sooner
  than ``min_interval_s`` after the last shock), else keep doing CPR, but shock
  at the latest after ``cpr_cycle_s``; same energy escalation.

Both read only the observation (``obs[..., 0]`` AMSA, ``3`` time since the last
shock, ``4`` shocks delivered), so they vmap over patients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HeuristicDefibrillationV1Params:
    """Rule parameters (s, J, mV x Hz); ``amsa_guided`` > 0.5 selects the AMSA rule."""

    amsa_guided: jax.Array = 0.0
    amsa_threshold_mv_hz: jax.Array = 15.5
    cpr_cycle_s: jax.Array = 120.0
    min_interval_s: jax.Array = 20.0
    first_energy_j: jax.Array = 200.0
    second_energy_j: jax.Array = 300.0
    later_energy_j: jax.Array = 360.0


def heuristic_defibrillation_v1_policy(
    params: HeuristicDefibrillationV1Params, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """DefibrillationTiming-v1 action ``[shock decision, energy (J)]`` from the observation."""
    del key
    amsa, since_shock, shocks = obs[..., 0], obs[..., 3], obs[..., 4]
    cycle_done = since_shock >= params.cpr_cycle_s
    acls = (shocks < 0.5) | cycle_done
    amsa_ready = (amsa >= params.amsa_threshold_mv_hz) & (
        (shocks < 0.5) | (since_shock >= params.min_interval_s)
    )
    shock = jnp.where(params.amsa_guided > 0.5, amsa_ready | cycle_done, acls)
    energy = jnp.where(
        shocks < 0.5,
        params.first_energy_j,
        jnp.where(shocks < 1.5, params.second_energy_j, params.later_energy_j),
    )
    return jnp.stack([shock.astype(jnp.float32), energy * jnp.ones_like(amsa)], axis=-1).astype(
        jnp.float32
    )
