"""Shard a batch of patients (episodes, environments) across devices with ``jax.sharding``.

One 1-D mesh axis, :data:`AXIS`, spans every device JAX sees (``jax.devices()``:
all local devices, or every host's devices after ``jax.distributed.initialize``).
Batched arrays are split along their patient axis over it; everything else
(network weights, optimizer state, shared env params) is replicated. Inside
``jit`` the helpers only add ``jax.lax.with_sharding_constraint``: the XLA SPMD
partitioner splits the computation and inserts the collectives (for example the
all-reduce of a gradient averaged over the batch). See ``docs/sharding.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

#: Name of the mesh axis the patient batch is split over.
AXIS = "patients"


def patient_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``) with axis :data:`AXIS`.

    The axis is ``AxisType.Auto``: shardings are constraints for the
    compiler's partitioner, not part of the array types, so the same traced
    code runs sharded and unsharded.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("patient_mesh needs at least one device")
    return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def batch_spec(axis: int = 0) -> PartitionSpec:
    """``PartitionSpec`` splitting dimension ``axis`` over :data:`AXIS`, the others whole."""
    return PartitionSpec(*([None] * axis), AXIS)


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Sharding that splits dimension ``axis`` (default: the leading one) over the mesh."""
    return NamedSharding(mesh, batch_spec(axis))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(size: int, mesh: Mesh, what: str = "batch size") -> None:
    """Raise ``ValueError`` unless ``size`` splits evenly over the mesh's devices.

    Even shards keep every device's program identical (no padding) and make
    the sharded run compute exactly what the single-device run computes.
    """
    n_devices = mesh.devices.size
    if size % n_devices:
        raise ValueError(
            f"{what} ({size}) must be divisible by the number of devices ({n_devices}) "
            f"to shard it over the {AXIS!r} mesh axis"
        )


def _leaf_sharding(leaf: Any, mesh: Mesh, axis: int) -> NamedSharding:
    # Leaves without a batch dimension (scalars, counters) are replicated.
    return batch_sharding(mesh, axis) if np.ndim(leaf) > axis else replicated_sharding(mesh)


def _batch_sizes(tree: Any, axis: int) -> set[int]:
    return {
        np.shape(leaf)[axis] for leaf in jax.tree_util.tree_leaves(tree) if np.ndim(leaf) > axis
    }


def shard_batch(tree: Any, mesh: Mesh, axis: int = 0) -> Any:
    """Place ``tree`` on the mesh (``jax.device_put``): dimension ``axis`` split, scalars copied.

    For concrete arrays outside ``jit``. Every batched leaf's dimension
    ``axis`` must be divisible by the device count (``ValueError`` otherwise).
    """
    for size in _batch_sizes(tree, axis):
        check_divisible(size, mesh)
    shardings = jax.tree_util.tree_map(lambda leaf: _leaf_sharding(leaf, mesh, axis), tree)
    return jax.device_put(tree, shardings)


def constrain_batch(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Inside ``jit``: constrain dimension ``axis`` of every leaf to be split over the mesh.

    Leaves with ``ndim <= axis`` are constrained to be replicated. ``mesh=None``
    returns ``tree`` unchanged (the unsharded path traces no constraint at all).
    Under ``vmap`` the mapped dimension is left unconstrained by JAX's
    batching rule, so e.g. a vmap over seeds keeps the patient axis split.
    """
    if mesh is None:
        return tree
    for size in _batch_sizes(tree, axis):
        check_divisible(size, mesh)
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.with_sharding_constraint(leaf, _leaf_sharding(leaf, mesh, axis)),
        tree,
    )


def constrain_replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: constrain every leaf of ``tree`` to be replicated (no-op if no mesh)."""
    if mesh is None:
        return tree
    sharding = replicated_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.with_sharding_constraint(leaf, sharding), tree
    )
