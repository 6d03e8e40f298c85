"""Which outputs of a traced function depend on an input: a dataflow walk over its jaxpr."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.extend.core

__all__ = ["dependent_outputs"]


def _walk(jaxpr, dependent: set) -> list[bool]:
    """Marks what depends on the vars in `dependent`; returns the outputs' marks. A call of a sub-jaxpr (`jit`,
    custom derivatives) is walked into; any other use of a dependent input marks all of an equation's outputs."""
    for eqn in jaxpr.eqns:
        marks = [isinstance(v, jax.extend.core.Var) and v in dependent for v in eqn.invars]
        if not any(marks):
            continue
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        inner = getattr(inner, "jaxpr", inner)
        if (isinstance(inner, jax.extend.core.Jaxpr) and len(inner.invars) == len(eqn.invars)
                and len(inner.outvars) == len(eqn.outvars)):
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

