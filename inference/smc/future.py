"""How much of a trajectory's future a step's carry decides: the weights of ancestor and backward sampling.

Both redraw a trajectory's past given its future x_{t:T} (with the observations y_{t:T}): candidate i,
a particle before step t with carry c_{t-1}^i, is weighed by w_{t-1}^i p(x_{t:T}, y_{t:T} | c_{t-1}^i)
(Lindsten, Jordan & Schön 2014, the non-Markovian case). When the carry after a step whose choices are
all given does not depend on the carry before it (the usual state-space model, whose carry is the step's
latent state), every factor after step t is the same for every candidate and the weight is one step's
density. Otherwise (a language model's context, a running sum, an RNN state) the future is rescored from
each candidate's carry, step by step through the trajectory's choices: T - t step densities a candidate.
Which case holds is decided once, when the step is traced, by a dependence analysis of its jaxpr.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import ppl

from .dependence import dependent_outputs

__all__ = ["carry_forgets_past", "future_log_density"]


def _step(key, space: ppl.StateSpace, scan_args: tuple, choices_t: Any, carry: Any, t) -> tuple[Any, jax.Array]:
    """Step `t` with all its choices given, from `carry`: (the next carry, log p(choices_t | carry))."""
    trace, log_p = space.step.generate(key, choices_t, *space.step_args(scan_args, t, carry))
    return space.next_carry(trace.retval), log_p


def carry_forgets_past(space: ppl.StateSpace, scan_args: tuple, choices_t: Any, carry: Any) -> bool:
    """Whether the carry after a step given all its choices (`choices_t`, one step's) is the same whatever the
    carry before it (`carry`, one particle's): a Python bool, from the traced step's dataflow (conservative)."""
    key = jax.random.key(0)
    return not any(dependent_outputs(lambda c: jax.tree.leaves(_step(key, space, scan_args, choices_t, c, 0)[0]),
                                     carry))


def future_log_density(key: jax.Array, space: ppl.StateSpace, scan_args: tuple, choices: Any, carry: Any,
                       start) -> jax.Array:
    """log p(x_s, y_s for s = start..T-1 | carry_{start-1} = `carry`), the steps' choices `choices` (time first,
    latent and observed) rescored from `carry` and the carries it leads to (0 when `start` = T)."""

    def body(s, state):
        carry, total = state
        carry, log_p = _step(key, space, scan_args, jax.tree.map(lambda x: x[s], choices), carry, s)
        return carry, total + log_p

    return jax.lax.fori_loop(start, space.length, body, (carry, jnp.zeros(())))[1]
