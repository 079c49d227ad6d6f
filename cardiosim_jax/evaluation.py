"""Summary statistics of episode returns: mean, std, IQM and a bootstrap 95 % CI."""

from __future__ import annotations

import numpy as np
from scipy import stats


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50 % of values (25 % trimmed from each end)."""
    return float(stats.trim_mean(np.asarray(values, dtype=np.float64), 0.25))


def summarize_returns(returns: np.ndarray, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """``{"mean", "std", "iqm", "median", "ci95": [lo, hi], "n_episodes"}`` of ``returns``.

    ``ci95`` is the percentile-bootstrap 95 % confidence interval of the mean
    (``scipy.stats.bootstrap``); ``std`` is the sample standard deviation of
    the episode returns.
    """
    returns = np.asarray(returns, dtype=np.float64).ravel()
    if returns.size < 2 or np.ptp(returns) == 0.0:
        ci = (float(returns.mean()), float(returns.mean()))
    else:
        boot = stats.bootstrap(
            (returns,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=0.95,
            method="percentile",
            random_state=seed,
        )
        ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    return {
        "mean": float(returns.mean()),
        "std": float(returns.std(ddof=1)) if returns.size > 1 else 0.0,
        "iqm": interquartile_mean(returns),
        "median": float(np.median(returns)),
        "ci95": [ci[0], ci[1]],
        "n_episodes": int(returns.size),
    }
