"""Log-normal inter-patient multipliers: mean one, the stated CV, clipped tails."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cardiosim_jax.models import variability


@pytest.mark.parametrize("cv", [0.2, 0.3, 0.4])
def test_multipliers_have_mean_one_and_the_stated_cv(cv):
    draws = np.asarray(variability.lognormal_multiplier(jax.random.PRNGKey(0), cv, (200_000,)))
    assert np.all(draws > 0)
    # Standard errors at n = 2e5: mean ~cv/450, CV ~cv/630; the 3-sd clip trims 0.3 % of mass.
    assert draws.mean() == pytest.approx(1.0, abs=0.01)
    assert draws.std() / draws.mean() == pytest.approx(cv, rel=0.05)
    # log-normal: the log has sd sqrt(log(1 + cv^2)).
    assert np.log(draws).std() == pytest.approx(float(variability.log_sd(cv)), rel=0.03)


def test_zero_cv_gives_exactly_one():
    draws = variability.lognormal_multiplier(jax.random.PRNGKey(1), 0.0, (1000,))
    np.testing.assert_array_equal(np.asarray(draws), 1.0)


def test_tails_are_clipped_at_three_log_sds():
    cv = 0.4
    draws = np.asarray(variability.lognormal_multiplier(jax.random.PRNGKey(2), cv, (100_000,)))
    s = float(variability.log_sd(cv))
    bound = variability.MAX_LOG_SDS * s
    log_centred = np.log(draws) + 0.5 * s**2
    assert log_centred.max() <= bound + 1e-5 and log_centred.min() >= -bound - 1e-5
    # Some draws do reach the clip (about 0.27 % beyond 3 sd).
    assert np.sum(np.abs(log_centred) > bound - 1e-5) > 10


def test_traced_cv_compiles_once_for_every_tier():
    fn = jax.jit(lambda key, cv: variability.lognormal_multiplier(key, cv, (4,)))
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(np.asarray(fn(key, jnp.float32(0.0))), 1.0)
    varied = np.asarray(fn(key, jnp.float32(0.3)))
    assert np.all(varied != 1.0)
    assert fn._cache_size() == 1
