"""Observation preprocessing: symlog and running mean-and-variance normalisation.

The statistics live in PPO's train state (not in the environment state) and are
frozen during each rollout, so a saved policy normalises exactly as it did in
training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningMeanStd:
    """Running mean and variance of observations (parallel-variance update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningMeanStd:
        # A tiny prior count keeps the first update's weights finite.
        return cls(mean=jnp.zeros(shape), var=jnp.ones(shape), count=jnp.asarray(1e-4))

    def update(self, batch: jax.Array) -> RunningMeanStd:
        """Statistics after also seeing ``batch`` (any leading axes, last axis features)."""
        batch = batch.reshape(-1, batch.shape[-1])
        batch_mean, batch_var, n = batch.mean(0), batch.var(0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningMeanStd(mean=mean, var=m2 / total, count=total)

    def normalize(self, obs: jax.Array, clip: float = 10.0) -> jax.Array:
        """``obs`` standardised by these statistics, clipped to ``[-clip, clip]``."""
        return jnp.clip((obs - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


def symlog(x: jax.Array) -> jax.Array:
    """sign(x) log(1 + |x|): compresses heavy tails (pacing heart rates reach 60,000 bpm)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def preprocess(
    obs: jax.Array, stats: RunningMeanStd, normalize: bool, use_symlog: bool
) -> jax.Array:
    """Observation as the network sees it: optional symlog, then optional normalisation."""
    obs = symlog(obs) if use_symlog else obs
    return stats.normalize(obs) if normalize else obs


def update_statistics(
    stats: RunningMeanStd, obs: jax.Array, normalize: bool, use_symlog: bool
) -> RunningMeanStd:
    """``stats`` after seeing raw ``obs`` as :func:`preprocess` transforms them.

    Unchanged when ``normalize`` is off (the statistics are then unused).
    """
    if not normalize:
        return stats
    return stats.update(symlog(obs) if use_symlog else obs)
