"""Moving entries of an axis split across devices, by collectives: call these inside `jax.shard_map`.

The axis (length N) is split in D equal blocks of n = N / D, block d on device d of the mesh axis `axis`. A device
that needs entries of other blocks gets them by `visit`: each device's block is passed around the ring of devices,
to the right (d -> d + 1) and to the left (d -> d - 1), with `jax.lax.ppermute`, and each device keeps what it needs
of the blocks that pass. The blocks travel only as far as the farthest block some device needs, in each direction
(a `while_loop` whose trip count every device agrees on, by a `pmax`): after resampling with balanced weights that is
a step or two, not D - 1.

Against the alternatives, for particles of B bytes each:

- `all_gather` of the blocks: every device holds all N particles, N B memory a device, (D - 1) n B received always;
- `all_to_all`: static shapes make every device's buffer for every other device n particles long (the worst case,
  one device's particles filling every slot), N B a device again, and the same traffic as `all_gather`;
- the ring: 3 n B a device (its block, the visiting one, the output), R n B received, R the farthest distance an
  entry travels (R <= D - 1, the worst case costing what `all_gather` costs), in R steps each way.

Memory is what limits particles that hold a language model's cache, hence the ring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["gather", "take", "visit"]


def visit(block: Any, origins: jax.Array, consume: Callable[[Any, Any, jax.Array], Any], out: Any, axis: str) -> Any:
    """`consume(out, visiting, origin)` on this device's own block, then on every block that reaches it.

    `origins` are the blocks this device needs (their indices 0..D-1); blocks go around the ring as far as some device
    needs one. `consume` may be called on blocks not in `origins` and must ignore them.
    """
    d, me = jax.lax.axis_size(axis), jax.lax.axis_index(axis)
    out = consume(out, block, me)
    # how far blocks must travel right (from a lower device) and left, as far as any device needs
    reach = jax.lax.pmax(jnp.maximum(jnp.stack([jnp.max(me - origins), jnp.max(origins - me)]), 0), axis)
    for direction, steps in ((1, reach[0]), (-1, reach[1])):
        ring = [(i, (i + direction) % d) for i in range(d)]

        def step(state, direction=direction, ring=ring):
            r, visiting, out = state
            visiting = jax.lax.ppermute(visiting, axis, ring)
            # a block that wrapped around the ring has an origin outside 0..D-1: no device asked for it
            return r + 1, visiting, consume(out, visiting, me - direction * (r + 1))

        _, _, out = jax.lax.while_loop(lambda state, steps=steps: state[0] < steps, step,
                                       (jnp.zeros((), jnp.int32), block, out))
    return out


def gather(tree: Any, indices: jax.Array, axis: str) -> Any:
    """The entries `indices` (global, in 0..N-1) of `tree`'s leading axis, for this device's share of the output."""
    n = jax.tree.leaves(tree)[0].shape[0]
    origins, local = indices // n, indices % n

    def consume(out, visiting, origin):
        mine = origins == origin
        return jax.tree.map(lambda o, v: jnp.where(mine.reshape(mine.shape + (1,) * (o.ndim - 1)), v[local], o),
                            out, visiting)

    return visit(tree, origins, consume, jax.tree.map(lambda x: x[local], tree), axis)


def take(tree: Any, indices: jax.Array, axis: str) -> Any:
    """The entries `indices` (global, the same on every device) of `tree`'s leading axis, on every device.

    Each device offers its copy of each entry and all are gathered, D copies of each entry, so for a few entries:
    the owner's copy is kept, bit for bit.
    """
    n = jax.tree.leaves(tree)[0].shape[0]
    offered = jax.lax.all_gather(jax.tree.map(lambda x: x[indices % n], tree), axis)
    return jax.tree.map(lambda x: x[indices // n, jnp.arange(indices.shape[0])], offered)
