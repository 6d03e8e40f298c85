"""Conditional SMC as an MCMC kernel on a model's trace: the trajectory move of particle Gibbs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl

from .. import inputs, resampling
from ..mcmc import kernels
from ..mcmc.kernels import Kernel
from .conditional import conditional_init, conditional_step
from .config import AncestorSampling, SMCConfig, ancestor_sampling_mode
from .lineage import backward_trajectory, lineage
from .loop import iterate

__all__ = ["CSMCMove", "csmc_kernel"]


def csmc_kernel(
    observations: dict,
    n_particles: int,
    ancestor_sampling: bool | AncestorSampling = True,
    backward_sampling: bool = False,
    proposal: ppl.GenFn | None = None,
) -> Kernel:
    """The conditional SMC move of particle Gibbs, as an `inference.mcmc` kernel on a model's trace.

    `step(key, trace, model, args)` runs CSMC with the trace's trajectory (its
    scan block) as the reference and the trace's other choices (static parameters)
    held fixed, then draws the new trajectory: the lineage of a particle chosen by
    its final weight, or, with `backward_sampling`, a backward-simulated path
    (Whiteley 2010). Either leaves p(trajectory | parameters, observations)
    invariant (Andrieu, Doucet & Holenstein 2010). `ancestor_sampling` is as in
    `csmc` (True, "metropolis" or False). Ancestor and backward sampling are exact for
    any carry: one that holds the past (a language model's context) has the trajectory's
    future rescored from each candidate (`smc.conditional_step`). `Info.accepted` says whether the
    trajectory changed. Cycle it with kernels on the parameters for particle Gibbs:

        kernels.cycle(smc.csmc_kernel(obs, 20), kernels.nuts(ppl.sel("sigma"), 0.2))
    """
    # the lineage needs ancestors and latent choices only; backward sampling also needs every step's carries
    config = SMCConfig.of(n_particles, 1.0, ancestor_sampling=ancestor_sampling_mode(ancestor_sampling),
                          record="full" if backward_sampling else "lineage", proposal=proposal)
    return Kernel(kernels.identity, CSMCMove(inputs.observations(observations), config, bool(backward_sampling)))


class CSMCMove(eqx.Module):
    """`csmc_kernel`'s step: a pytree whose observations are traced and whose settings compare by value, so a
    compiled program that takes the kernel is reused across calls."""

    observations: dict
    config: SMCConfig
    backward_sampling: bool = eqx.field(static=True)

    def __call__(self, key, trace, gen_fn, args):
        k_init, k_steps, k_pick, k_gen = jax.random.split(key, 4)
        space = ppl.state_space(gen_fn, args)
        prefix = ppl.choicemap.outside(trace.choices, space.path)
        reference = ppl.choicemap.subconstraint(trace.choices, space.path)
        observed = space.observed_steps(self.observations)
        state = conditional_init(k_init, gen_fn, args, self.observations, trace.choices, self.config)
        state, _, history = iterate(conditional_step, k_steps, state, self.config.record)
        if self.backward_sampling:
            scan_args = space.generate_prefix(k_gen, prefix, args).scan_args
            steps = backward_trajectory(k_pick, space, scan_args, history, observed)
        else:  # the lineage record holds the latent choices only
            steps = lineage(history, resampling.categorical(k_pick, state.log_weights, 1)[0])
        # only an impossible reference fails: its path is kept (selecting the path, not the trace's every leaf)
        old = ppl.choicemap.latents(reference, observed)
        steps = jax.tree.map(lambda a, b: jnp.where(state.failed, b, a), steps, old)
        new, _ = gen_fn.generate(k_gen, space.full_choices(prefix, ppl.choicemap.merge(steps, observed)), *args)
        changed = jnp.any(jnp.stack([jnp.any(a != b) for a, b in zip(jax.tree.leaves(steps), jax.tree.leaves(old))]))
        return new, kernels.Info(jnp.ones(()), changed & ~state.failed, state.failed, jnp.zeros((), jnp.int32))
