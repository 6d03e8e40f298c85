"""`ppl.vmap` and `ppl.repeat`: independent copies of a generative function (a plate).

The trace holds the inner trace batched along a leading axis, so choices keep
the inner addresses with arrays of length n: `{"y": (n,)}`. Constraints for the
block are given the same way, as one batched array per address.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import streams
from ..core import GenFn, StoredArgs, Trace
from ..errors import ModelError
from .batched import BatchedTrace

__all__ = ["Vmap", "VmapTrace", "repeat", "vmap"]


VmapTrace = BatchedTrace  # the trace type of this combinator


class Vmap(GenFn):
    """Map a generative function over a leading axis of some of its arguments."""

    inner: GenFn
    in_axes: Any = eqx.field(static=True)
    axis_size: int | None = eqx.field(static=True, default=None)

    def _axes(self, args: tuple) -> tuple:
        if isinstance(self.in_axes, tuple):
            if len(self.in_axes) != len(args):
                raise ModelError(
                    f"ppl.vmap has in_axes for {len(self.in_axes)} arguments but was called with {len(args)}; "
                    "give one entry (0 or None) per argument"
                )
            return self.in_axes
        return (self.in_axes,) * len(args)

    def _size(self, args: tuple) -> int:
        sizes = {
            leaf.shape[0]
            for arg, axis in zip(args, self._axes(args))
            if axis is not None
            for leaf in jax.tree.leaves(arg)
        }
        if self.axis_size is not None:
            sizes.add(self.axis_size)
        if not sizes:
            raise ModelError("ppl.vmap needs at least one mapped argument (in_axes=0); for copies without inputs use ppl.repeat(gen_fn, n)")
        if len(sizes) > 1:
            raise ModelError(f"ppl.vmap got mapped arguments of different lengths {sorted(sizes)}; they must agree")
        return sizes.pop()

    def _map(self, fn, key, batched: tuple, args: tuple):
        """vmap `fn(key, *batched, args)` over n elements; `batched` leaves have a leading axis."""
        n = self._size(args)
        for tree in batched:
            for leaf in jax.tree.leaves(tree):
                if leaf.ndim == 0 or leaf.shape[0] != n:
                    raise ModelError(
                        f"a value given for this ppl.vmap block has shape {leaf.shape}, but the block has {n} "
                        f"elements; give one batched array of shape ({n}, ...) per address"
                    )
        keys = streams.split(key, n) if key is not None else None
        in_axes = (0 if key is not None else None, (0,) * len(batched), self._axes(args))
        return jax.vmap(lambda k, b, a: fn(k, *b, a), in_axes=in_axes)(keys, batched, args)

    def _trace(self, inner: Trace, args: tuple) -> VmapTrace:
        return BatchedTrace(inner.compact(), StoredArgs.of(args), inner.retval)

    def _simulate(self, key, args):
        tr = self._map(lambda k, a: self.inner._simulate(k, a), key, (), args)
        return self._trace(tr, args)

    def _assess(self, choices, args):
        logp, retval = self._map(lambda k, c, a: self.inner._assess(c, a), None, (choices,), args)
        return jnp.sum(logp), retval

    def _generate(self, key, constraints, args):
        tr, w = self._map(lambda k, c, a: self.inner._generate(k, c, a), key, (constraints,), args)
        return self._trace(tr, args), jnp.sum(w)

    def _update(self, key, trace, constraints, args):
        tr, w, discard = self._map(
            lambda k, t, c, a: self.inner._update(k, t, c, a), key, (trace.inner, constraints), args
        )
        return self._trace(tr, args), jnp.sum(w), discard

    def _regenerate(self, key, trace, selection, args):
        tr, w = self._map(lambda k, t, a: self.inner._regenerate(k, t, selection, a), key, (trace.inner,), args)
        return self._trace(tr, args), jnp.sum(w)


def vmap(gen_fn: GenFn, in_axes: int | None | tuple = 0) -> Vmap:
    """Independent copies of `gen_fn`, one per element of the mapped arguments.

    `in_axes` is as in `jax.vmap`, restricted to 0 (mapped over the leading axis)
    or None (shared): one entry per argument, or one for all.
    """
    if not isinstance(gen_fn, GenFn):
        raise TypeError(f"ppl.vmap takes a generative function (use @ppl.gen), got {type(gen_fn).__name__}")
    for axis in in_axes if isinstance(in_axes, tuple) else (in_axes,):
        if axis not in (0, None):
            raise ModelError(f"ppl.vmap supports in_axes of 0 or None, got {axis!r}; move the mapped axis first")
    return Vmap(gen_fn, in_axes)


def repeat(gen_fn: GenFn, n: int) -> Vmap:
    """`n` independent copies of `gen_fn` called with the same arguments."""
    if not isinstance(gen_fn, GenFn):
        raise TypeError(f"ppl.repeat takes a generative function, got {type(gen_fn).__name__}")
    if not isinstance(n, int) or n < 0:
        raise ModelError(f"ppl.repeat needs a non-negative Python int for n, got {n!r}")
    return Vmap(gen_fn, None, n)
