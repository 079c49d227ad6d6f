"""Tooling around cardiosim-jax: the benchmark suite and the reference-package oracle.

Nothing in :mod:`cardiosim_jax` imports this package except the CLI's
``bench`` command; tests, ``benchmarks/`` and ``baselines/`` use it directly.
"""
