"""The `mesh=` argument of the drivers: an independent axis (particles, chains, samples, problems) split across devices.

Every driver that has such an axis takes `mesh=`, one of

- a `jax.sharding.Mesh` with one axis (its name is free), over the devices of this process or, under
  `jax.distributed`, of every process;
- an int D: a one-axis mesh over the first D of `jax.devices()`;
- None: one device, nothing sharded.

The axis is split in D equal contiguous blocks, block d on device d of the mesh (`shard`); values every device needs
whole are replicated (`replicate`). Most of a driver's work is per entry of the axis and needs no communication: XLA
partitions it from these constraints. Where entries move between devices (resampling, a reference particle) the
driver calls `gather` or `take`, which move them by collectives inside `jax.shard_map` (`inference.ring`), or
`inference.sharded_resampling`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import ring

__all__ = ["axis", "blockwise", "check_size", "gather", "mesh_of", "readable", "replicate", "shard", "size",
           "take"]

FORCE_CPU_DEVICES = "XLA_FLAGS=--xla_force_host_platform_device_count=8"
"""How a CPU-only machine gets several (virtual) devices: set before JAX starts."""


def mesh_of(mesh: Mesh | int | None) -> Mesh | None:
    """The `mesh=` argument as a one-axis `Mesh` (or None): an int D is a mesh over the first D of `jax.devices()`."""
    if mesh is None or isinstance(mesh, Mesh):
        if mesh is not None and len(mesh.axis_names) != 1:
            raise ValueError(f"mesh= shards one axis, so its Mesh has one axis; got axes {mesh.axis_names}: build "
                             f"jax.sharding.Mesh(np.array(jax.devices()), ('particles',)) or pass a device count")
        return mesh
    if isinstance(mesh, bool) or not isinstance(mesh, (int, np.integer)):
        raise TypeError(f"mesh= is a jax.sharding.Mesh, a device count or None, got {type(mesh).__name__} {mesh!r}")
    return _mesh_over(int(mesh))


@functools.lru_cache(maxsize=16)
def _mesh_over(count: int) -> Mesh:
    devices = jax.devices()
    if not 1 <= count <= len(devices):
        raise ValueError(f"mesh={count} asks for {count} devices, but JAX sees {len(devices)} "
                         f"({devices[0].platform}); on a CPU, start Python with {FORCE_CPU_DEVICES} for 8 devices")
    return Mesh(np.array(devices[:count]), ("devices",))


def size(mesh: Mesh | None) -> int:
    """D, the number of devices the axis is split across (1 without a mesh)."""
    return 1 if mesh is None else mesh.devices.size


def axis(mesh: Mesh) -> str:
    """The name of the mesh's one axis (what collectives inside `jax.shard_map` name)."""
    return mesh.axis_names[0]


def check_size(mesh: Mesh | None, count: int, name: str) -> None:
    """Refuse an axis that does not split in equal blocks: `count` (the argument `name`) must be a multiple of D."""
    if count % size(mesh):
        d = size(mesh)
        raise ValueError(f"{name} ({count}) must be a multiple of the mesh's {d} devices, each holding {name} / {d}: "
                         f"use {name}={-(-count // d) * d}, or a mesh whose device count divides {count}")


def shard(mesh: Mesh | None, tree: Any, count: int) -> Any:
    """Every leaf of `tree` whose leading axis has length `count` split across the mesh (others untouched)."""
    if mesh is None:
        return tree
    blocks = NamedSharding(mesh, PartitionSpec(axis(mesh)))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, blocks) if jnp.ndim(x) and x.shape[0] == count
                        else x, tree)


def replicate(mesh: Mesh | None, tree: Any) -> Any:
    """A full copy of every array of `tree` on every device (its other leaves, such as a module's functions, kept)."""
    if mesh is None:
        return tree
    arrays, others = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.lax.with_sharding_constraint(arrays, NamedSharding(mesh, PartitionSpec())), others)


def blockwise(mesh: Mesh | None, fn: Callable) -> Callable:
    """`fn`, vectorised over the leading axis of every argument and output, run by each device on its own block.

    Inside `jax.shard_map` a device's loops end when its own entries are done: a vectorised `while_loop` partitioned by
    XLA instead waits at every iteration for the longest-running entry of any device (NUTS trees, say).
    """
    if mesh is None:
        return fn
    blocks = PartitionSpec(axis(mesh))
    # no replication checks: each block is independent of the others by construction
    return jax.shard_map(fn, mesh=mesh, in_specs=blocks, out_specs=blocks, check_vma=False)


def readable(mesh: Mesh | None, tree: Any) -> Any:
    """`tree` as every process can read it: replicated when the mesh spans several processes (a process cannot read
    the shards another one holds), left as it is otherwise. For results small beside the work, such as MCMC draws."""
    if mesh is None or not mesh.is_multi_process:
        return tree
    return replicate(mesh, tree)


def gather(mesh: Mesh | None, tree: Any, indices: jax.Array) -> Any:
    """The entries `indices` of `tree`'s leading axis, split like `indices` (block d of `indices` ends on device d).

    Under a mesh the entries travel around a ring of devices (`ring.gather`): O(N / D) memory a device, and only as far
    as the farthest entry a device needs; without one it is `x[indices]`.
    """
    if mesh is None:
        return jax.tree.map(lambda x: x[indices], tree)
    blocks = PartitionSpec(axis(mesh))
    return jax.shard_map(functools.partial(ring.gather, axis=axis(mesh)), mesh=mesh, in_specs=(blocks, blocks),
                         out_specs=blocks)(tree, indices)


def take(mesh: Mesh | None, tree: Any, indices: jax.Array) -> Any:
    """A few entries `indices` (an index or a vector of them, the same on every device) of `tree`'s leading axis,
    copied to every device (`ring.take`)."""
    if mesh is None:
        return jax.tree.map(lambda x: x[indices], tree)
    if jnp.ndim(indices) == 0:
        return jax.tree.map(lambda x: x[0], take(mesh, tree, jnp.reshape(indices, (1,))))
    # every device keeps the same copies of the all-gathered entries, which the type system cannot see
    return jax.shard_map(functools.partial(ring.take, axis=axis(mesh)), mesh=mesh, check_vma=False,
                         in_specs=(PartitionSpec(axis(mesh)), PartitionSpec()), out_specs=PartitionSpec())(tree, indices)
