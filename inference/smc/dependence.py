"""Which outputs of a traced function depend on an input, and which are an input handed on unchanged: dataflow
walks over its jaxpr."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.extend.core

__all__ = ["dependent_outputs", "passed_through"]


def _called(eqn):
    """The jaxpr an equation calls with its own inputs and outputs (`jit`, custom derivatives), or None."""
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    inner = getattr(inner, "jaxpr", inner)
    if (isinstance(inner, jax.extend.core.Jaxpr) and len(inner.invars) == len(eqn.invars)
            and len(inner.outvars) == len(eqn.outvars)):
        return inner
    return None


def _walk(jaxpr, dependent: set) -> list[bool]:
    """Marks what depends on the vars in `dependent`; returns the outputs' marks. A call of a sub-jaxpr (`jit`,
    custom derivatives) is walked into; any other use of a dependent input marks all of an equation's outputs."""
    for eqn in jaxpr.eqns:
        marks = [isinstance(v, jax.extend.core.Var) and v in dependent for v in eqn.invars]
        if not any(marks):
            continue
        inner = _called(eqn)
        if inner is not None:
            out = _walk(inner, {v for v, m in zip(inner.invars, marks) if m})
            dependent.update(v for v, m in zip(eqn.outvars, out) if m)
        else:
            dependent.update(eqn.outvars)
    return [isinstance(v, jax.extend.core.Var) and v in dependent for v in jaxpr.outvars]


def dependent_outputs(fn: Callable, x) -> list[bool]:
    """For each output leaf of `fn(x)`, whether it depends on `x` (conservative: a use of `x` by an operation
    other than a call counts for all that operation's outputs)."""
    closed = jax.make_jaxpr(fn)(x)
    return _walk(closed.jaxpr, set(closed.jaxpr.invars))



def _forwarded(jaxpr) -> list:
    """For each output of `jaxpr`, the index of the input it is (followed through calls of sub-jaxprs), or None."""
    source = {v: i for i, v in enumerate(jaxpr.invars)}
    for eqn in jaxpr.eqns:
        inner = _called(eqn)
        if inner is None:
            continue
        for out, j in zip(eqn.outvars, _forwarded(inner)):
            if j is not None and isinstance(eqn.invars[j], jax.extend.core.Var) and eqn.invars[j] in source:
                source[out] = source[eqn.invars[j]]
    return [source.get(v) if isinstance(v, jax.extend.core.Var) else None for v in jaxpr.outvars]


def passed_through(fn: Callable, x) -> list:
    """For each output leaf of `fn(x)`, the index of the leaf of `x` that it is, handed on unchanged, or None
    (conservative: anything computed from a leaf, even an equal value, is not it)."""
    closed = jax.make_jaxpr(lambda x: jax.tree.leaves(fn(x)))(x)
    return _forwarded(closed.jaxpr)
