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


def evaluate(
    policy,
    env,
    params,
    key,
    n_episodes: int,
    n_seeds: int = 1,
    policy_params=None,
    *,
    n_resamples: int = 2000,
    block_size: int | None = None,
    shard: bool = False,
) -> dict:
    """Evaluate ``policy`` on ``n_seeds x n_episodes`` episodes in one vmapped, jitted call.

    Args:
        policy: ``policy(policy_params, obs, key) -> action``.
        env, params: a cardiosim-jax environment and its parameters.
        key: PRNG key.
        n_episodes: episodes per seed.
        n_seeds: independent policies (e.g. training seeds). When > 1,
            ``policy_params`` has a leading axis of that length and the 95 % CI
            is a bootstrap over seeds of the per-seed mean return (what varies
            between training runs); otherwise over episodes.
        policy_params: passed to ``policy`` (``None`` for parameter-free policies).
        block_size: also report how the mean of a ``block_size``-episode
            evaluation of one seed spreads (``"block_means"``: the 2.5th and
            97.5th percentiles of the means of consecutive blocks within each
            seed, and their count), the yardstick for a published cell that
            averaged that many episodes of one policy.
        shard: split each seed's episodes over all devices
            (:func:`cardiosim_jax.rollout.run_episodes`); ``n_episodes`` must be
            divisible by the device count. The same returns as unsharded.

    Returns:
        ``summarize_returns`` of all episode returns (``ci95`` as described),
        plus ``"n_seeds"``, ``"seed_means"`` and, with ``block_size``, ``"block_means"``.
    """
    import jax  # local: keep this module importable for pure statistics

    from cardiosim_jax.rollout import run_episodes

    max_steps = int(np.max(np.asarray(params.max_steps_in_episode)))
    seed_keys = jax.random.split(key, n_seeds)
    if n_seeds > 1:
        stats_ = jax.vmap(
            lambda pp, k: run_episodes(env, params, policy, pp, k, n_episodes, max_steps, shard)
        )(policy_params, seed_keys)
    else:
        stats_ = jax.tree_util.tree_map(
            lambda x: x[None],
            run_episodes(
                env, params, policy, policy_params, seed_keys[0], n_episodes, max_steps, shard
            ),
        )
    returns = np.asarray(stats_.episode_return, dtype=np.float64)  # (n_seeds, n_episodes)
    summary = summarize_returns(returns, n_resamples=n_resamples)
    seed_means = returns.mean(axis=1)
    if n_seeds > 1:
        summary["ci95"] = summarize_returns(seed_means, n_resamples=n_resamples)["ci95"]
        summary["iqm"] = interquartile_mean(returns.ravel())
    summary["n_seeds"] = int(n_seeds)
    summary["seed_means"] = seed_means.tolist()
    if block_size is not None:
        blocks = n_episodes // block_size
        if blocks < 1:
            raise ValueError(f"block_size {block_size} exceeds the {n_episodes} episodes per seed")
        means = returns[:, : blocks * block_size].reshape(n_seeds, blocks, block_size).mean(-1)
        low, high = np.percentile(means, [2.5, 97.5])
        summary["block_means"] = {
            "size": int(block_size),
            "p2.5": float(low),
            "p97.5": float(high),
            "n": int(means.size),
        }
    return summary
