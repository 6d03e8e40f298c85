"""Trajectories from a filter's per-step record: particles' lineages, and backward simulation.

`backward_sample` draws trajectories from the smoothing distribution through the stored
filtering distributions (Godsill, Doucet & West 2004), for any carry (see `future`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import ppl

from .. import resampling
from .._jit import jit
from .extend import gather
from .future import carry_forgets_past, future_log_density
from .state import History, Particles

__all__ = ["backward_sample", "backward_trajectory", "final_traces", "lineage", "lineages"]


def lineage(history: History, b) -> Any:
    """The step choices of final particle `b`, traced back through its ancestors: (T, ...)."""

    def back(b, record):
        ancestors, choices = record
        return ancestors[b], gather(choices, b)

    _, steps = jax.lax.scan(back, b, (history.ancestors, history.choices), reverse=True)
    return steps


def lineages(history: History) -> Any:
    """Every final particle's lineage: (N, T, ...)."""
    return jax.vmap(lambda b: lineage(history, b))(jnp.arange(history.ancestors.shape[1]))


def final_traces(key: jax.Array, space: ppl.StateSpace, args: tuple, particles: Particles, history: History,
                 observations: dict):
    """The final particles as the model's traces, batched: each one's prefix and lineage (its latent choices), with
    the observations, regenerated."""
    full = jax.vmap(space.full_choices)(particles.prefix, lineages(history))
    n = history.ancestors.shape[1]

    def trace(k, choices):
        return space.model.generate(k, ppl.choicemap.merge(choices, ppl.choicemap.drop_masked(observations)), *args)[0]

    return jax.vmap(trace)(jax.random.split(key, n), full)


def backward_trajectory(key: jax.Array, space: ppl.StateSpace, scan_args: tuple, history: History,
                        observed: Any) -> Any:
    """One trajectory of latent step choices (T, ...) by backward simulation through `history`, whose prefix (and
    so `scan_args`) all particles share; `observed` is the scan's block of observations (time first, without
    `Masked` leaves). Particle i at step t is weighed by w_t^i p(x_{t+1:T}, y_{t+1:T} | carry_t^i): one step's
    density when the carry forgets the past, the whole drawn future otherwise (`future`)."""
    T = history.log_weights.shape[0]
    keys = jax.random.split(key, T)
    last = resampling.categorical(keys[-1], history.log_weights[-1], 1)[0]
    # the trajectory drawn so far, filled from the end (its entries before t + 1 are not read at step t)
    drawn = jax.tree.map(lambda x: x[:, last], history.choices)
    first = ppl.choicemap.merge(gather(drawn, 0), gather(observed, 0))
    one_step = carry_forgets_past(space, scan_args, first, gather(gather(history.carries, 0), 0))

    def back(drawn, inputs):
        t, k = inputs  # choose x_t given x_{t+1:T}
        future = ppl.choicemap.merge(drawn, observed)
        if one_step:
            x_next = gather(future, t + 1)
            score = lambda c: space.step.assess(x_next, *space.step_args(scan_args, t + 1, c))[0]
        else:
            score = lambda c: future_log_density(k, space, scan_args, future, c, t + 1)
        logits = history.log_weights[t] + jax.vmap(score)(gather(history.carries, t))
        x_t = gather(gather(history.choices, t), resampling.categorical(k, logits, 1)[0])
        return jax.tree.map(lambda a, x: a.at[t].set(x), drawn, x_t), None

    drawn, _ = jax.lax.scan(back, drawn, (jnp.arange(T - 1), keys[:-1]), reverse=True)
    return drawn


def backward_sample(key: jax.Array, model: ppl.GenFn, args: tuple, result, n_samples: int = 1) -> Any:
    """Trajectories from the smoothing distribution by backward simulation.

    Returns the scan block's step choices, shape (n_samples, T, ...). Uses the stored per-step
    weighted particles of `result` (an `SMCResult` of `smc.run(..., return_traces=True)` or `smc.csmc`);
    the prefix (static parameters) must be the same for all particles (as under `csmc`, or a model
    without prefix choices).
    """
    if result.history is None or result.history.carries is None:
        raise ValueError("backward_sample needs the per-step history with carries: run smc with return_traces=True")
    return _backward_program(key, model, tuple(args), result.history, result.traces, result.posterior.observations,
                             n_samples)


@jit
def _backward_program(key, model, args, history: History, traces, observations, n_samples):
    space = ppl.state_space(model, args)
    first = jax.tree.map(lambda x: x[0], traces)  # the scan's arguments, shared by all particles, from particle 0's
    scan_args = space.generate_prefix(jax.random.key(0), ppl.choicemap.outside(first.choices, space.path),
                                      args).scan_args
    observed = space.observed_steps(observations)
    latent = jax.vmap(lambda k: backward_trajectory(k, space, scan_args, history, observed))(
        jax.random.split(key, n_samples))
    return ppl.choicemap.merge(latent, jax.tree.map(lambda y: jnp.broadcast_to(y, (n_samples, *y.shape)), observed))
