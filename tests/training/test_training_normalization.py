"""Observation preprocessing: running statistics, symlog, and their composition."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cardiosim_jax.training import normalization
from cardiosim_jax.training.normalization import RunningMeanStd


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(50, 4)) for _ in range(3)]
    stats = RunningMeanStd.create((4,))
    for batch in batches:
        stats = stats.update(jnp.asarray(batch, jnp.float32))
    data = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3)
    assert float(stats.count) == pytest.approx(150, abs=1e-3)


def test_symlog_is_odd_and_compresses_heavy_tails():
    x = jnp.array([-6e4, -1.0, 0.0, 1.0, 6e4])
    y = np.asarray(normalization.symlog(x))
    np.testing.assert_allclose(y, np.sign(x) * np.log1p(np.abs(x)), rtol=1e-6)
    np.testing.assert_allclose(y, -y[::-1])
    assert y[-1] < 12.0  # 60,000 bpm becomes ~11


def test_statistics_are_of_what_the_network_sees():
    rng = np.random.default_rng(2)
    obs = jnp.asarray(rng.lognormal(5.0, 2.0, size=(200, 3)), jnp.float32)
    fresh = RunningMeanStd.create((3,))
    # Off: statistics untouched and observations only symlogged (or passed through).
    assert normalization.update_statistics(fresh, obs, False, True) is fresh
    np.testing.assert_array_equal(normalization.preprocess(obs, fresh, False, False), obs)
    # On: statistics are of symlog(obs), so the preprocessed batch is standardised.
    stats = normalization.update_statistics(fresh, obs, True, True)
    seen = np.asarray(normalization.preprocess(obs, stats, True, True))
    np.testing.assert_allclose(seen.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(seen.std(0), 1.0, rtol=1e-3)
