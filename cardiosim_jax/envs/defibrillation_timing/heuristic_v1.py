"""Clinical shock rules for DefibrillationTiming-v1, as pure JAX functions.

Two rules share one parameter struct (``amsa_guided`` picks):

* ACLS / ERC (Panchal et al. 2020 Circulation, AHA; Soar et al. 2021
  Resuscitation, ERC): on arrival, check the rhythm and shock if it is VF; then
  2 min of CPR, rhythm check, shock if VF, and so on. A rhythm that is not VF
  (PEA, asystole) is never shocked. Energy escalates 200 -> 300 -> 360 J
  (Stiell et al. 2007 Circulation, BIPHASIC); equal energies give the fixed-energy
  protocol of other devices.
* AMSA-guided (Ristagno et al. 2015 Resuscitation): in VF, shock when the
  measured AMSA reaches ``amsa_threshold_mv_hz`` (no sooner than ``min_interval_s``
  after the last shock), else keep doing CPR, but shock VF at the latest after
  ``cpr_cycle_s``; same energies.

Both read only the observation (``obs[..., 0]`` AMSA, ``3`` time since the
last shock, ``4`` shocks delivered, ``7`` VF on the monitor), so they vmap over
patients. The action is the shock energy (J), 0 for "no shock".
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
    """DefibrillationTiming-v1 action ``[shock energy (J), 0 = no shock]`` from the observation."""
    del key
    amsa, since_shock, shocks = obs[..., 0], obs[..., 3], obs[..., 4]
    in_vf = obs[..., 7] > 0.5
    first = shocks < 0.5
    # Rhythm check at arrival and at the end of every CPR cycle.
    rhythm_check = first | (since_shock >= params.cpr_cycle_s)
    amsa_ready = (amsa >= params.amsa_threshold_mv_hz) & (
        first | (since_shock >= params.min_interval_s)
    )
    shock = in_vf & jnp.where(
        params.amsa_guided > 0.5, amsa_ready | (rhythm_check & ~first), rhythm_check
    )
    energy = jnp.where(
        first,
        params.first_energy_j,
        jnp.where(shocks < 1.5, params.second_energy_j, params.later_energy_j),
    )
    return jnp.where(shock, energy, 0.0)[..., None].astype(jnp.float32)
