"""Conditional SMC (Andrieu, Doucet & Holenstein 2010) as an `init`/`step` pair over a `CSMCState`.

A reference trajectory is kept among the particles, in a slot drawn with the resampling.
Resampling happens before every step but the first, by conditional systematic resampling
(`resampling.conditional_systematic`): the reference's slot and the shared uniform are drawn
together given the reference's ancestor, which keeps the CSMC kernel exact. The ancestor is
the reference's own past, or with ancestor sampling (Lindsten, Jordan & Schön 2014) it is
redrawn with weights w_{t-1}^i p(x_{t:T}^ref, y_{t:T} | carry_{t-1}^i): exactly ("exact", N
candidates) or by one Metropolis-Hastings step towards that law ("metropolis", two). Where the
carry after a step is decided by its choices (the usual state-space model) the weight is the
step's own density; otherwise (a language model's context) the reference's future is rescored
from each candidate's carry (`future`). The reference's step then takes its slot in the
extended particles.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import ppl

from .. import resampling, sharding
from .config import SMCConfig
from .extend import extend, gather, next_carries, reference_step, set_slot, step_keys, weigh
from .filtering import start
from .future import carry_forgets_past, future_log_density
from .state import CSMCState, StepInfo

__all__ = ["conditional_init", "conditional_step"]


def conditional_init(key: jax.Array, model: ppl.GenFn, args: tuple, observations: dict, reference: dict,
                     config: SMCConfig) -> CSMCState:
    """The particles before the first step, every one sharing the reference's choices before the scan; the
    reference's step choices (a full choice map of the model's) are kept in the state's target."""
    space = ppl.state_space(model, args)
    reference = ppl.choicemap.normalize(reference)
    steps = ppl.choicemap.subconstraint(reference, space.path)
    state = start(key, model, args, observations, config, ppl.choicemap.outside(reference, space.path), steps)
    # the first particles are i.i.d. given the shared prefix: the reference may start in any slot
    return CSMCState(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
                     reference_slot=jnp.zeros((), jnp.int32))


def conditional_step(key: jax.Array, state: CSMCState, t) -> tuple[CSMCState, StepInfo]:
    """Step `t` of conditional SMC: conditional resampling (with ancestor sampling as configured), extension,
    and the reference's step in its slot."""
    target = state.target
    config = target.config
    n, mesh = config.n_particles, config.mesh
    k_resample, k_extend, _ = step_keys(key, n)
    log_w, log_total = state.log_weights, state.log_total

    # step t's slices of the reference and the observations, taken once, outside the branches that read them
    ref_t, observed = jax.tree.map(lambda x: x[t], target.reference), target.observed(t)

    # decided when the step is traced: does the reference's future after step t depend on the candidate?
    one_step = config.ancestor_sampling == "none" or carry_forgets_past(
        target.space, target.scan_args.of(gather(state.particles, 0)), ref_t, target.carry_of(gather(state.particles, 0)))

    def from_each(particles):
        """The reference's step from every particle's carry: (traces, log p(x_{t:T}^ref, y_{t:T} | carry) for
        ancestor sampling, incremental weights)."""
        def one(p):
            trace, log_p, increment = reference_step(k_extend, target, p, ref_t, observed, t)
            if not one_step:
                log_p += future_log_density(k_extend, target.space, target.scan_args.of(p), target.reference,
                                            target.space.next_carry(trace.retval), t + 1)
            return trace, log_p, increment

        return jax.vmap(one)(particles)

    def from_slot(particles, slot):
        """The reference's step from the carry in `slot`: (its trace, its incremental weight)."""
        trace, _, increment = reference_step(k_extend, target, sharding.take(mesh, particles, slot), ref_t, observed, t)
        return trace, increment

    def resample(particles):
        all_log_w = sharding.replicate(mesh, log_w)
        if config.ancestor_sampling == "exact":  # the drawn ancestor's step comes with the draw's N densities
            traces, log_joints, increments = from_each(particles)
            ancestors, slot = resampling.ancestor_sampled_systematic(k_resample, all_log_w,
                                                                     sharding.replicate(mesh, log_w + log_joints))
            reference = sharding.take(mesh, (traces, increments), ancestors[slot])
        else:
            if config.ancestor_sampling == "metropolis":
                ancestors, slot = resampling.metropolis_ancestor_systematic(
                    k_resample, all_log_w, state.reference_slot,
                    lambda i: from_each(sharding.take(mesh, particles, i))[1])
            else:
                ancestors, slot = resampling.conditional_systematic(k_resample, all_log_w, state.reference_slot)
            reference = from_slot(particles, ancestors[slot])
        zeros, log_n = jnp.zeros(n), jnp.log(n).astype(log_total.dtype)
        ancestors = sharding.shard(mesh, ancestors, n)
        return sharding.gather(mesh, particles, ancestors), ancestors, zeros, log_n, slot, reference

    def first(particles):
        slot = state.reference_slot
        return particles, jnp.arange(n), log_w, log_total, slot, from_slot(particles, slot)

    particles, ancestors, log_w, log_total, slot, (ref_trace, ref_increment) = jax.lax.cond(
        t > 0, resample, first, state.particles)
    traces, increments = extend(k_extend, target, particles, t)
    # one select puts the reference's step in its slot; the carries follow from the merged return values
    choices, retvals, increments = set_slot((traces.choices, traces.retval, increments), slot,
                                            (ref_trace.choices, ref_trace.retval, ref_increment))
    carries = next_carries(target, retvals)
    weighed = weigh(log_w, log_total, increments, state.log_marginal, state.failed, slot)
    info = StepInfo(weighed.ess, jnp.asarray(t > 0), weighed.log_marginal, jnp.zeros(()), ancestors, choices)
    return dataclasses.replace(state, particles=particles._replace(carry=carries), reference_slot=slot,
                               **weighed._asdict()), info
