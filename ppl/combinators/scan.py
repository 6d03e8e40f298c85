"""`ppl.scan`: a state-space model, one call of a step function per time step.

    @ppl.gen
    def step(z_prev, sigma):
        z = dist.Normal(0.9 * z_prev, 1.0) @ "z"
        dist.Normal(z, sigma) @ "y"
        return z

    zs = ppl.scan(step, length=T)(z0, sigma) @ "steps"

Step t is called as `step(carry_t, *args_t)` and returns the next carry; the
scan returns the stacked carries, shape `(T, ...)`. With `with_outputs=True`
the step returns `(carry, output)` and the scan returns `(final carry, stacked
outputs)`, which keeps large carries (a language model's cache) out of the trace.
`in_axes` marks the arguments after the carry that are scanned over (0, along
their leading axis) or shared by every step (None, the default).

All steps compile to one `lax.scan`. The trace holds the step traces stacked
along a leading time axis, so the choices of all steps are one batched dict
(`{"z": (T,), "y": (T,)}`) and constraints are given the same way.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import streams
from ..core import GenFn, StoredArgs
from ..errors import ModelError
from .batched import BatchedTrace

__all__ = ["Scan", "ScanTrace", "check_block_length", "scan"]


ScanTrace = BatchedTrace  # the trace type of this combinator


class Scan(GenFn):
    """Unroll a step generative function over time with `lax.scan`."""

    kernel: GenFn
    length: int | None = eqx.field(static=True)
    in_axes: Any = eqx.field(static=True)
    with_outputs: bool = eqx.field(static=True)

    def _axes(self, rest: tuple) -> tuple:
        axes = self.in_axes if isinstance(self.in_axes, tuple) else (self.in_axes,) * len(rest)
        if len(axes) != len(rest):
            raise ModelError(
                f"ppl.scan has in_axes for {len(axes)} arguments after the carry but got {len(rest)}; "
                "give one entry (0 or None) per argument after the carry"
            )
        return axes

    def _length(self, rest: tuple) -> int:
        lengths = {leaf.shape[0] for arg, ax in zip(rest, self._axes(rest)) if ax == 0 for leaf in jax.tree.leaves(arg)}
        if self.length is not None:
            lengths.add(self.length)
        if not lengths:
            raise ModelError("ppl.scan needs length=T or an argument scanned over (in_axes=0) to know its length")
        if len(lengths) > 1:
            raise ModelError(f"ppl.scan got inconsistent lengths {sorted(lengths)} from length= and its scanned arguments")
        return lengths.pop()

    def _split(self, retval) -> tuple[Any, Any]:
        if not self.with_outputs:
            return retval, retval
        if not (isinstance(retval, tuple) and len(retval) == 2):
            raise ModelError("with ppl.scan(..., with_outputs=True) the step must return a pair (carry, output)")
        return retval

    def _scan(self, fn, key, per_step: tuple, args: tuple):
        """Run `fn(key_t, *per_step_t, step_args) -> (trace, extra)` over time.

        Returns the stacked traces, the stacked extras, and the scan's return value.
        """
        init, rest = args[0], args[1:]
        axes = self._axes(rest)
        T = self._length(rest)
        for tree in per_step:
            check_block_length(tree, T)
        scanned = tuple(a if ax == 0 else None for a, ax in zip(rest, axes))
        shared = tuple(None if ax == 0 else a for a, ax in zip(rest, axes))
        keys = streams.split(key, T) if key is not None else None

        def body(carry, xs):
            k, step_values, xs_t = xs
            step_args = tuple(x if ax == 0 else s for x, s, ax in zip(xs_t, shared, axes))
            tr, extra = fn(k, *step_values, (carry, *step_args))
            new_carry, out = self._split(tr.retval)
            return new_carry, (tr.compact(), extra, out)

        final, (traces, extras, outs) = jax.lax.scan(body, init, (keys, per_step, scanned), length=T)
        retval = (final, outs) if self.with_outputs else outs
        return traces, extras, retval

    def _trace(self, traces, args, retval) -> ScanTrace:
        return BatchedTrace(traces, StoredArgs.of(args), retval)

    def _simulate(self, key, args):
        traces, _, retval = self._scan(lambda k, a: (self.kernel._simulate(k, a), None), key, (), args)
        return self._trace(traces, args, retval)

    def _assess(self, choices, args):
        def step(k, c, a):
            logp, retval = self.kernel._assess(c, a)
            return _RetvalOnly(retval), logp

        _, logps, retval = self._scan(step, None, (choices,), args)
        return jnp.sum(logps), retval

    def _generate(self, key, constraints, args):
        traces, weights, retval = self._scan(lambda k, c, a: self.kernel._generate(k, c, a), key, (constraints,), args)
        return self._trace(traces, args, retval), jnp.sum(weights)

    def _update(self, key, trace, constraints, args):
        def step(k, t, c, a):
            tr, w, discard = self.kernel._update(k, t, c, a)
            return tr, (w, discard)

        _check_length(trace, self._length(args[1:]))
        traces, (weights, discard), retval = self._scan(step, key, (trace.inner, constraints), args)
        return self._trace(traces, args, retval), jnp.sum(weights), discard

    def _regenerate(self, key, trace, selection, args):
        _check_length(trace, self._length(args[1:]))
        traces, weights, retval = self._scan(
            lambda k, t, a: self.kernel._regenerate(k, t, selection, a), key, (trace.inner,), args
        )
        return self._trace(traces, args, retval), jnp.sum(weights)


class _RetvalOnly(eqx.Module):
    """Stands in for a step trace where only the return value is needed (assess)."""

    retval: Any

    def compact(self):
        return None


def check_block_length(block: Any, T: int) -> None:
    """Raise unless every value given for a scan's block (`ppl.Masked` ones included) has time first, length T."""
    for leaf in jax.tree.leaves(block):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != T:
            raise ModelError(
                f"a value given for this ppl.scan block has shape {jnp.shape(leaf)}, but the scan has {T} "
                f"steps; give one array of shape ({T}, ...) per address, with time first"
            )


def _check_length(trace: ScanTrace, T: int) -> None:
    old = {leaf.shape[0] for leaf in jax.tree.leaves(trace.inner)}
    if old and old != {T}:
        raise ModelError(
            f"this scan's trace has {old.pop()} steps but update/regenerate was asked for {T}; "
            "ppl.scan's length cannot change in update (run generate with the new length instead)"
        )


def scan(step: GenFn, length: int | None = None, in_axes: int | None | tuple = None, with_outputs: bool = False) -> Scan:
    """A generative function that calls `step` T times, threading a carry (see module docs)."""
    if not isinstance(step, GenFn):
        raise TypeError(f"ppl.scan takes a generative function (use @ppl.gen), got {type(step).__name__}")
    if length is not None and (not isinstance(length, int) or length < 0):
        raise ModelError(f"ppl.scan needs a non-negative Python int for length, got {length!r}")
    for axis in in_axes if isinstance(in_axes, tuple) else (in_axes,):
        if axis not in (0, None):
            raise ModelError(f"ppl.scan supports in_axes of 0 or None, got {axis!r}; put the time axis first")
    return Scan(step, length, in_axes, with_outputs)
