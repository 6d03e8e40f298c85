"""Which outputs of a traced function depend on an input: a dataflow walk over its jaxpr."""

from __future__ import annotations

from typing import Callable

import jax
import jax.extend.core

__all__ = ["key_dependent"]


def key_dependent(fn: Callable, key: jax.Array) -> list[bool]:
    """For each output leaf of `fn(key)`, whether it depends on `key` (conservative: any use counts)."""
    closed = jax.make_jaxpr(fn)(key)
    dependent = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(isinstance(v, jax.extend.core.Var) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return [isinstance(v, jax.extend.core.Var) and v in dependent for v in closed.jaxpr.outvars]
