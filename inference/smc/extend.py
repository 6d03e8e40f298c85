"""The primitives a filter's step is made of: extend the particles by one step, move them, weigh them.

Extension is `step.generate(key, proposal choices ∪ observations_t, carry, *args_t)`, and the
incremental log weight is that generate weight minus the proposal's score (the bootstrap
proposal is the step's own prior). The running estimate

    log Ẑ = Σ_t [logsumexp(log w_{t-1} + Δ_t) - logsumexp(log w_{t-1})]

stays unbiased (for Ẑ) with adaptive resampling because resampled weights reset to equal
(Del Moral, Doucet & Jasra 2012).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from .. import resampling
from .dependence import passed_through
from .state import Particles, Target

__all__ = ["Weighed", "extend", "gather", "next_carries", "reference_step", "rejuvenate", "set_slot", "step_keys",
           "unchanged_carry", "weigh"]


def gather(tree: Any, index: jax.Array) -> Any:
    """The entries `index` along every leaf's leading axis."""
    return jax.tree.map(lambda x: x[index], tree)


def set_slot(tree: Any, slot: jax.Array, value: Any) -> Any:
    """`tree` with `value` in entry `slot` of the leading axis (a select, which fuses with what computes `tree`)."""
    def put(x, v):
        here = (jnp.arange(x.shape[0]) == slot).reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.where(here, v, x)

    return jax.tree.map(put, tree, value)


def step_keys(key: jax.Array, n_particles: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A step's keys, made without a hash: (resampling, extension, move). The particles draw from streams
    0..N-1 of `key` (`ppl.Streams`), resampling from stream N and the move from stream N + 1."""
    return (ppl.streams.as_key(ppl.Streams(key, n_particles)), key,
            ppl.streams.as_key(ppl.Streams(key, n_particles + 1)))


def _extend_one(target: Target, key, particle: Particles, observed, t):
    """One particle, one step: (step trace, incremental log weight)."""
    step, proposal = target.space.step, target.config.proposal
    args = target.step_args(particle, t)
    if proposal is None:
        return step.generate(key, observed, *args)
    k_q, k_p = ppl.streams.fold_in(key, 0), ppl.streams.fold_in(key, 1)
    q = proposal.simulate(k_q, observed, *args)
    trace, log_w = step.generate(k_p, ppl.choicemap.merge(q.choices, observed), *args)
    return trace, log_w - q.score


def extend(key: jax.Array, target: Target, particles: Particles, t) -> tuple[ppl.Trace, jax.Array]:
    """Every particle extended by step `t`: (the step's traces, incremental log weights), batched.

    The particles share `key`, each drawing from its own stream of it (`ppl.Streams`)."""
    observed = target.observed(t)
    n = target.config.n_particles
    return jax.vmap(lambda i, p: _extend_one(target, ppl.Streams(key, i), p, observed, t))(jnp.arange(n), particles)


def rejuvenate(key: jax.Array, target: Target, traces: ppl.Trace, particles: Particles,
               t) -> tuple[ppl.Trace, jax.Array]:
    """The configured MCMC move applied to each particle's step trace: (traces, mean acceptance).

    A move that leaves the step's target invariant keeps the weights proper."""
    kernel = target.config.rejuvenation
    if kernel is None:
        return traces, jnp.zeros(())

    def move(k, trace, particle):
        moved, info = kernel.step(k, kernel.init(trace), target.space.step, target.step_args(particle, t))
        return moved, info.accept_prob

    traces, accepted = jax.vmap(move)(jax.random.split(key, target.config.n_particles), traces, particles)
    return traces, jnp.mean(accepted)


def reference_step(key: jax.Array, target: Target, particle: Particles, ref_t: Any, observed: Any,
                   t) -> tuple[ppl.Trace, jax.Array, jax.Array]:
    """The reference's step `t` (its choices `ref_t`, the step's observations `observed`) from `particle`'s carry:
    (its trace, log p(x_t^ref, y_t | carry), its incremental weight as if it had been proposed, p / q). Ancestor
    sampling weighs the candidates with the second."""
    step, proposal = target.space.step, target.config.proposal
    args = target.step_args(particle, t)
    trace, log_joint = step.generate(key, ref_t, *args)
    weighed = log_joint
    if ppl.choicemap.has_masked(observed):  # a masked-out observation is latent: weighed as the particles weigh it
        _, weighed = step.generate(key, ppl.choicemap.merge(ppl.choicemap.latents(ref_t, observed), observed), *args)
    if proposal is None:  # bootstrap: q is the step's prior over its latent choices (project adds factors)
        log_prior = step.project(trace, ~ppl.sel.of(observed)) - step.project(trace, ppl.sel.none())
        return trace, log_joint, weighed - log_prior
    log_q, _ = proposal.assess(ppl.choicemap.latents(ref_t, observed), observed, *args)
    return trace, log_joint, weighed - log_q


def next_carries(target: Target, retvals: Any) -> dict:
    """The carries the step's return values (batched) hand to the next step: each particle's own leaves."""
    return jax.vmap(lambda retval: target.carry.own(target.space.next_carry(retval)))(retvals)


def unchanged_carry(target: Target, particle: Particles) -> list[bool]:
    """For each leaf of the carry, whether a step hands it on unchanged whatever its value: through the extension,
    the move and, under conditional SMC, the reference's step. A Python bool per leaf, from the dataflow of step 0
    traced from `particle` (whose carry holds every leaf: `target` shares none yet)."""
    key, observed = jax.random.key(0), target.observed(0)

    def next_carries_of(carry):
        particle_ = particle._replace(carry=carry)
        trace, _ = _extend_one(target, key, particle_, observed, 0)
        traces = [trace]
        kernel = target.config.rejuvenation
        if kernel is not None:
            traces.append(kernel.step(key, kernel.init(trace), target.space.step, target.step_args(particle_, 0))[0])
        if target.reference is not None:
            ref_0 = jax.tree.map(lambda x: x[0], target.reference)
            traces.append(reference_step(key, target, particle_, ref_0, observed, 0)[0])
        return [target.space.next_carry(trace.retval) for trace in traces]

    n = len(particle.carry)
    sources = passed_through(next_carries_of, particle.carry)
    return [all(sources[k + i] == i for k in range(0, len(sources), n)) for i in range(n)]


class Weighed(NamedTuple):
    """The weights after a step and what follows from them (the `SMCState` fields of the same names)."""

    log_weights: jax.Array
    log_total: jax.Array
    ess: jax.Array
    log_marginal: jax.Array
    failed: jax.Array


def weigh(log_weights: jax.Array, log_total: jax.Array, increments: jax.Array, log_marginal: jax.Array,
          failed: jax.Array, reference_slot: jax.Array | None = None) -> Weighed:
    """The weights after a step, their log-sum-exp and ESS, the running log Ẑ and the failure flag.

    `log_total` is logsumexp(`log_weights`). A step fails when no weight is finite and positive, or some weight
    is NaN or +inf, or (under conditional SMC) the reference's weight is zero; a failed run stays failed, with
    all weights zero and log Ẑ = -inf, and no NaN escapes.
    """
    new = jnp.where(failed, -jnp.inf, log_weights + increments)
    total = logsumexp(new)
    if reference_slot is None:
        step_failed = ~jnp.isfinite(total)
    else:  # the reference's weight is positive unless it is impossible: a check that needs no log-sum-exp
        step_failed = ~(jnp.all(new < jnp.inf) & (new[reference_slot] > -jnp.inf))
    failed = failed | step_failed
    log_marginal = jnp.where(failed, -jnp.inf, log_marginal + total - log_total)
    total = jnp.where(failed, -jnp.inf, total)
    return Weighed(jnp.where(failed, -jnp.inf, new), total, resampling.ess(new, total), log_marginal, failed)
