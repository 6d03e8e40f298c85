"""The part of a trace a kernel moves, seen as a density on the unconstrained space.

A kernel on a selection of a trace moves the selected choices and keeps the
rest (other latents and observations) fixed. Gradient-based kernels work on
the unconstrained values `u` of the selected continuous choices, flattened to
one vector, with the log density `log p(x(u), rest) + log |dx/du|` given by the
model's own `assess` on `ppl.Unconstrained` leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import ppl
from ppl import unconstrained


class Target(NamedTuple):
    """A selection of one trace as a flat unconstrained vector and its log density."""

    position: jax.Array
    """The selected choices' unconstrained values, flattened."""
    log_density: Callable[[jax.Array], jax.Array]
    to_trace: Callable[[jax.Array], ppl.Trace]
    """The model's trace with the selection set to a position (the rest unchanged)."""


def target(gen_fn: ppl.GenFn, trace: ppl.Trace, selection: ppl.Selection, args: tuple) -> Target:
    """The unconstrained target of `selection` in `trace` (continuous choices only)."""
    selected, rest = ppl.choicemap.split(trace.choices, selection)
    if not selected:
        raise ValueError("the selection holds no choice of this trace; select the addresses to move")
    u = ppl.choicemap.split(unconstrained.unconstrain(gen_fn, args, trace.choices), selection)[0]
    if not all(jnp.issubdtype(x.dtype, jnp.floating) for x in jax.tree.leaves(u)):
        raise ValueError(
            "gradient-based kernels move continuous choices only; this selection holds a discrete one "
            "(move it with mcmc.kernels.gibbs or mh, and combine the kernels with mcmc.kernels.cycle)"
        )
    flat, unravel = ravel_pytree(u)

    def constraints(position):
        return ppl.choicemap.merge(unconstrained.wrap(unravel(position)), rest)

    def log_density(position):
        return gen_fn.assess(constraints(position), *args)[0]

    def to_trace(position):
        return gen_fn.generate(jax.random.key(0), constraints(position), *args)[0]

    return Target(flat, log_density, to_trace)
