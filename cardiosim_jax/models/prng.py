"""``jax.random`` draws, bit for bit, with a fusible Threefry on CPU.

XLA:CPU lowers JAX's ``threefry2x32`` primitive as a rolled 5-iteration
``while`` loop (to keep compile times short). Inside a vmapped environment step
every key split and every draw then becomes its own loop over the batch that
nothing can fuse with: at 4,096 patients that was about a third of a dosing
step (``benchmarks/profile_envs.py``). The functions here compute the very same
Threefry-2x32 hash with plain ``jnp`` integer ops, which XLA fuses into the
surrounding arithmetic, and reproduce ``jax.random.split`` / ``uniform`` /
``normal`` exactly (same counters, same bit-to-float conversion), so the
environments' random streams are unchanged.

They also let a draw be computed *where it is used*: ``uniform_at(key, i)`` is
element ``i`` of ``uniform(key, (n,))`` for any ``n > i``, so a substep loop can
draw its own noise without materialising the whole vector first.

The fused form makes programs larger: they compile 30-50 % slower (a v1
environment's rollout: about 7 s instead of 5 s on a 2-core CPU). Where
compilation dominates (a test suite, many short runs), ``CARDIOSIM_JAX_FUSED_PRNG=0``
in the environment before import, or :func:`fused_threefry` around tracing,
falls back to ``jax.random``: the same numbers, compiled faster, run slower.

Keys other than Threefry keys (typed keys of another implementation, or raw
keys while ``jax_default_prng_impl`` is not Threefry), and the non-default
``jax_threefry_partitionable=False`` mode, fall back to ``jax.random`` itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
#: Lower bound jax.random.normal draws its uniform from: nextafter(-1, 0) in float32.
_NORMAL_LOW = float(np.nextafter(np.float32(-1.0), np.float32(0.0)))
_SQRT2 = np.float32(np.sqrt(2.0))


_fused = os.environ.get("CARDIOSIM_JAX_FUSED_PRNG", "1") != "0"


@contextlib.contextmanager
def fused_threefry(enabled: bool) -> Iterator[None]:
    """Trace draws with (``True``) or without the fused Threefry inside the block.

    Both give the same numbers, so a program compiled under the other setting
    (``jit`` caches do not see this switch) computes the same results.
    """
    global _fused
    previous, _fused = _fused, bool(enabled)
    try:
        yield
    finally:
        _fused = previous


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(
    k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds) of counters ``(x0, x1)`` under key ``(k0, k1)``, unrolled.

    All arguments are uint32 and broadcast together; identical to
    ``jax.extend.random.threefry2x32_p``.
    """
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for block in range(5):
        for rot in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, rot) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _threefry_data(key: jax.Array) -> jax.Array | None:
    """The uint32 ``(2,)`` data of a Threefry key handled here, else ``None`` (fall back)."""
    if not _fused or not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(key) != "threefry2x32":
            return None
        return jax.random.key_data(key)
    if jax.config.jax_default_prng_impl != "threefry2x32":
        return None
    return key


def _like_input(key: jax.Array, data: jax.Array) -> jax.Array:
    """New key data in the form of ``key`` (typed key or raw uint32)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl="threefry2x32")
    return data


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split(key, num)``, bit for bit."""
    data = _threefry_data(key)
    if data is None:
        return jax.random.split(key, num)
    b0, b1 = threefry2x32(data[0], data[1], np.uint32(0), jnp.arange(num, dtype=jnp.uint32))
    return _like_input(key, jnp.stack([b0, b1], axis=-1))


def bits_at(key: jax.Array, index: jax.Array | int) -> jax.Array | None:
    """Element ``index`` of ``jax.random.bits(key, (n,))`` (uint32); ``None`` for other keys.

    ``index`` may be an int or a traced/array uint32-compatible value (elementwise).
    """
    data = _threefry_data(key)
    if data is None:
        return None
    b0, b1 = threefry2x32(data[0], data[1], np.uint32(0), jnp.asarray(index, jnp.uint32))
    return b0 ^ b1


def _bits_to_unit(bits: jax.Array) -> jax.Array:
    """jax.random's float32 in [0, 1): 23 random mantissa bits under exponent 0."""
    mantissa = (bits >> np.uint32(9)) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)


def _scale(unit: jax.Array, minval: jax.Array, maxval: jax.Array) -> jax.Array:
    minval = jnp.asarray(minval, jnp.float32)
    maxval = jnp.asarray(maxval, jnp.float32)
    return jnp.maximum(minval, unit * (maxval - minval) + minval)


def uniform_at(
    key: jax.Array,
    index: jax.Array | int,
    n: int,
    minval: jax.Array = 0.0,
    maxval: jax.Array = 1.0,
) -> jax.Array:
    """Element ``index`` (< ``n``) of ``jax.random.uniform(key, (n,), minval=..., maxval=...)``.

    For Threefry keys the result does not depend on ``n``; other keys draw the
    whole ``(n,)`` vector and index it.
    """
    bits = bits_at(key, index)
    if bits is None:
        return jax.random.uniform(key, (n,), jnp.float32, minval, maxval)[index]
    return _scale(_bits_to_unit(bits), minval, maxval)


def uniform(
    key: jax.Array,
    shape: tuple[int, ...] = (),
    minval: jax.Array = 0.0,
    maxval: jax.Array = 1.0,
) -> jax.Array:
    """``jax.random.uniform(key, shape, jnp.float32, minval, maxval)``, bit for bit."""
    data = _threefry_data(key)
    if data is None:
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
    size = int(np.prod(shape))
    counters = jnp.arange(size, dtype=jnp.uint32).reshape(shape)
    b0, b1 = threefry2x32(data[0], data[1], np.uint32(0), counters)
    return _scale(_bits_to_unit(b0 ^ b1), minval, maxval)


def unit_to_normal(unit_bits: jax.Array) -> jax.Array:
    """jax.random.normal's transform of uint32 bits: sqrt(2) erfinv(U(nextafter(-1, 0), 1))."""
    return _SQRT2 * jax.lax.erf_inv(_scale(_bits_to_unit(unit_bits), _NORMAL_LOW, 1.0))


def normal_at(key: jax.Array, index: jax.Array | int, n: int) -> jax.Array:
    """Element ``index`` (< ``n``) of ``jax.random.normal(key, (n,))`` (float32)."""
    bits = bits_at(key, index)
    if bits is None:
        return jax.random.normal(key, (n,), jnp.float32)[index]
    return unit_to_normal(bits)


def normal(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """``jax.random.normal(key, shape, jnp.float32)``, bit for bit."""
    data = _threefry_data(key)
    if data is None:
        return jax.random.normal(key, shape, jnp.float32)
    size = int(np.prod(shape))
    counters = jnp.arange(size, dtype=jnp.uint32).reshape(shape)
    b0, b1 = threefry2x32(data[0], data[1], np.uint32(0), counters)
    return unit_to_normal(b0 ^ b1)
