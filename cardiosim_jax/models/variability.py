"""Inter-patient variability: log-normal multipliers with a given coefficient of variation.

Pharmacometric convention (e.g. Mould & Upton 2013): an individual parameter
is ``typical x exp(eta)`` with ``eta ~ N(-s^2/2, s^2)`` and
``s^2 = log(1 + CV^2)``, so the multiplier is positive, has mean 1 and the
stated CV. Environments draw these at reset (per-episode patients on the
harder tiers); :mod:`cardiosim_jax.patients` draws them for named cohorts.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from cardiosim_jax.models import prng

#: Multipliers are clipped to this many log-sd either side of the mean, so a
#: tail draw never produces a physiologically absurd patient.
MAX_LOG_SDS = 3.0


@dataclasses.dataclass(frozen=True)
class Variability:
    """Inter-patient variability of one parameter: coefficient of variation and its source."""

    cv: float
    source: str


def log_sd(cv: jax.Array | float) -> jax.Array:
    """Standard deviation of log(multiplier) for coefficient of variation ``cv``."""
    return jnp.sqrt(jnp.log1p(jnp.square(jnp.asarray(cv, jnp.float32))))


def lognormal_multiplier(
    key: jax.Array, cv: jax.Array | float, shape: tuple[int, ...] = ()
) -> jax.Array:
    """Mean-one log-normal multiplier(s) with coefficient of variation ``cv`` (0 gives 1).

    ``cv`` may be traced (a tier's scale times a literature CV), so one
    compiled function serves deterministic and variable tiers alike.
    """
    s = log_sd(cv)
    z = jnp.clip(prng.normal(key, shape), -MAX_LOG_SDS, MAX_LOG_SDS)
    return jnp.exp(s * z - 0.5 * jnp.square(s))
