"""The particle filter as an `init`/`step` pair of pure functions over an `SMCState`.

    state = smc.init(key, model, args, observations, n_particles)
    for t in range(smc.n_steps(state)):
        state, info = smc.step(jax.random.fold_in(key, t), state, t)
    state.log_marginal, state.log_weights

The model is cut at its scan (`ppl.state_space`): the choices before the scan (static
parameters) are drawn once per particle by `generate`, then each step runs, for every particle,

    resample (when ESS/N < threshold)  ->  extend with the step's GFI  ->  rejuvenate (optional)

(`extend` has the weights). `smc.run` is this loop under one `lax.scan`; a loop of one's own
can stop early or log each step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from .. import inputs, resampling, sharding
from ..sharded_resampling import CumulativeWeights, Resampled, Scope
from ..sharded_resampling import resample as resample_particles
from .config import SMCConfig
from .dependence import dependent_outputs
from .extend import extend, gather, next_carries, rejuvenate, step_keys, unchanged_carry, weigh
from .state import Particles, ScanArgs, Shared, SMCState, StepInfo, Target

__all__ = ["init", "n_steps", "start", "step"]


def start(key: jax.Array, model: ppl.GenFn, args: tuple, observations: dict, config: SMCConfig,
          prefix: dict | None = None, reference: Any = None) -> SMCState:
    """The particles before the first step, with their target: each particle's prefix drawn by `generate`, given
    `prefix` (a reference's choices before the scan) when one is given."""
    space = ppl.state_space(model, args)
    space.check_observations(observations)  # each step slices its block: a wrong length would go unseen
    prefix = None if prefix is None else ppl.choicemap.latents(prefix, observations)  # observed values are given once
    constraints = ppl.choicemap.merge(ppl.choicemap.outside(observations, space.path), prefix)

    def prefix_of(k):
        return space.generate_prefix(k, constraints, args)

    drawn = jax.vmap(prefix_of)(jax.random.split(key, config.n_particles))
    leaves, treedef = jax.tree.flatten(drawn.scan_args)
    per_particle = dependent_outputs(lambda k: jax.tree.leaves(prefix_of(k).scan_args), key)
    shared = ScanArgs(treedef, {i: x[0] for i, x in enumerate(leaves) if not per_particle[i]})
    carry, carry_treedef = jax.tree.flatten(drawn.scan_args[0])  # the scan arguments' first leaves
    target = Target(space, observations, shared, Shared(carry_treedef, {}), config, reference)
    particles = Particles(drawn.choices, {i: x for i, x in enumerate(leaves) if per_particle[i]}, dict(enumerate(carry)))
    if not all(per_particle[:len(carry)]):  # a leaf that starts alike and that no step changes is stored once
        unchanged = unchanged_carry(target, gather(particles, 0))
        target = dataclasses.replace(target, carry=Shared(carry_treedef, {
            i: x[0] for i, x in enumerate(carry) if unchanged[i] and not per_particle[i]}))
        particles = particles._replace(carry=target.carry.own(drawn.scan_args[0]))
    particles = sharding.shard(config.mesh, particles, config.n_particles)
    log_total = logsumexp(drawn.weight)
    log_z = log_total - jnp.log(config.n_particles)
    failed = ~jnp.isfinite(log_z)
    return SMCState(particles, drawn.weight, log_total, resampling.ess(drawn.weight, log_total),
                    jnp.where(failed, -jnp.inf, log_z), failed, target)


def init(key: jax.Array, model: ppl.GenFn, args: tuple, observations: dict, n_particles: int,
         proposal: ppl.GenFn | None = None, resampling_scheme: resampling.SchemeName = "systematic",
         ess_threshold: float = 0.5, rejuvenation=None, mesh: jax.sharding.Mesh | int | None = None,
         resampling_scope: Scope = "global", cumulative_weights: CumulativeWeights = "prefix_sum") -> SMCState:
    """The particles before the first step (the settings are `smc.run`'s)."""
    config = SMCConfig.of(n_particles, ess_threshold, resampling_scheme=resampling_scheme, proposal=proposal,
                          rejuvenation=rejuvenation, mesh=mesh, resampling_scope=resampling_scope,
                          cumulative_weights=cumulative_weights)
    return start(key, model, inputs.model_args(args), inputs.observations(observations), config)


def n_steps(state: SMCState) -> int:
    """T, the number of steps of the state's scan."""
    return state.target.space.length


def step(key: jax.Array, state: SMCState, t) -> tuple[SMCState, StepInfo]:
    """Step `t`: resample when ESS/N is below the threshold (never before the first step), extend, rejuvenate."""
    target = state.target
    config = target.config
    n = config.n_particles
    k_resample, k_extend, k_move = step_keys(key, n)
    log_w, log_total = state.log_weights, state.log_total
    if config.ess_threshold >= 1.0:
        resample_now = t > 0
    else:
        resample_now = (t > 0) & (state.ess < config.ess_threshold * n)

    def resample(particles):
        return resample_particles(k_resample, log_w, particles, config.resampling_scheme, config.mesh,
                                  scope=config.resampling_scope, ess_threshold=config.ess_threshold,
                                  cumulative_weights=config.cumulative_weights)

    def keep(particles):
        return Resampled(particles, jnp.arange(n), log_w, log_total)

    # lax.cond skips the search and the gather on steps that do not resample
    particles, ancestors, log_w, log_total = jax.lax.cond(resample_now, resample, keep, state.particles)
    traces, increments = extend(k_extend, target, particles, t)
    traces, acceptance = rejuvenate(k_move, target, traces, particles, t)
    weighed = weigh(log_w, log_total, increments, state.log_marginal, state.failed)
    particles = sharding.shard(config.mesh, particles._replace(carry=next_carries(target, traces.retval)), n)
    info = StepInfo(weighed.ess, resample_now, weighed.log_marginal, acceptance, ancestors, traces.choices)
    return dataclasses.replace(state, particles=particles, **weighed._asdict()), info
