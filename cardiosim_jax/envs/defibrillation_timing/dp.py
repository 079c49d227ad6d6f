"""The exact optimum of DefibrillationTiming-v0 by dynamic programming.

In v0 a shock's success probability depends only on its energy ``E`` and the
number of shocks ``n`` delivered before it (``base x (1 - exp(-E/150 J)) x
0.95^(n+1)``); the cell's state only decorates the observation. So the
decision problem is a finite-horizon MDP on ``(t, n)`` (step, shocks so far;
the episode ends on success), and backward induction gives its optimal
value and policy exactly, up to the energy grid (``energy_step_j``):

    V(T, n) = 0
    wait:   -0.1 - 50 [t + 1 = T] + V(t + 1, n)
    shock:  -(2 + 0.005 E) + p(E, n) (100 + 50 [n + 1 <= 3])
            + (1 - p(E, n)) (-0.1 - 50 [t + 1 = T] + V(t + 1, n + 1))
    V(t, n) = max(wait, max_E shock)

``t`` and ``n`` are observation entries 3 and 4 (steps in fibrillation,
shocks delivered), so the optimal policy is an ordinary observation policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from cardiosim_jax.envs.defibrillation_timing import v0 as v0


@struct.dataclass
class DefibrillationDPParams:
    """Optimal policy tables over (step, shocks so far): shock? and its energy (J)."""

    shock: jax.Array  # (T, T + 1) bool
    energy_j: jax.Array  # (T, T + 1) float32
    value: jax.Array  # (T + 1, T + 2) float32, V(t, n); V(0, 0) is the optimal expected return


def solve(params: v0.EnvParams, energy_step_j: float = 0.5) -> DefibrillationDPParams:
    """Backward induction for one (unbatched) v0 parameter set."""
    horizon = int(np.asarray(params.max_steps_in_episode))
    base = float(np.asarray(params.defibrillation_success_base))
    energies = np.arange(0.0, v0.MAX_ENERGY_J + 1e-9, energy_step_j)
    shock_cost = v0.SHOCK_PENALTY + v0.ENERGY_PENALTY_PER_J * energies  # (E,)
    max_shocks = horizon + 1
    value = np.zeros((horizon + 1, max_shocks + 1))
    shock = np.zeros((horizon, max_shocks), bool)
    energy = np.zeros((horizon, max_shocks))
    n = np.arange(max_shocks)
    # Success probability with this shock counted, as the environment computes it.
    p = (
        base
        * (1.0 - np.exp(-energies[None, :] / v0.ENERGY_SCALE_J))
        * v0.FATIGUE ** (n[:, None] + 1.0)
    )  # (n, E)
    success = v0.SUCCESS_REWARD + np.where(n + 1 <= v0.QUICK_SUCCESS_MAX_SHOCKS, 50.0, 0.0)
    for t in range(horizon - 1, -1, -1):
        timeout = v0.TIMEOUT_PENALTY if t + 1 == horizon else 0.0
        fail = -v0.FIBRILLATION_PENALTY - timeout
        wait = fail + value[t + 1, :max_shocks]
        shock_q = (
            -shock_cost[None, :]
            + p * success[:, None]
            + (1.0 - p) * (fail + value[t + 1, 1 : max_shocks + 1])[:, None]
        )
        best = np.argmax(shock_q, axis=1)
        best_q = shock_q[n, best]
        shock[t] = best_q > wait
        energy[t] = np.where(shock[t], energies[best], 0.0)
        value[t, :max_shocks] = np.maximum(wait, best_q)
    return DefibrillationDPParams(
        shock=jnp.asarray(shock),
        energy_j=jnp.asarray(energy, jnp.float32),
        value=jnp.asarray(value, jnp.float32),
    )


def dp_policy(
    params: DefibrillationDPParams, obs: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """The optimal v0 action from the observation's step (obs[3]) and shock count (obs[4])."""
    del key
    horizon, max_shocks = params.shock.shape
    t = jnp.clip(jnp.round(obs[..., 3]).astype(jnp.int32), 0, horizon - 1)
    n = jnp.clip(jnp.round(obs[..., 4]).astype(jnp.int32), 0, max_shocks - 1)
    shock = params.shock[t, n]
    return jnp.stack(
        [shock.astype(jnp.float32), jnp.where(shock, params.energy_j[t, n], 0.0)], axis=-1
    )
