"""What a particle filter carries from one step to the next, and what each step reports."""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax

import ppl

from .config import SMCConfig

__all__ = ["CSMCState", "History", "Particles", "SMCState", "ScanArgs", "Shared", "StepInfo", "Target"]


class Particles(NamedTuple):
    """Per-particle state between steps (every leaf has a leading particle axis)."""

    prefix: dict
    """Choices made before the scan."""
    scan_args: dict
    """{leaf index: value} for the leaves of the scan's arguments that differ between particles."""
    carry: dict
    """{leaf index: value} for the leaves of the carry entering the next step that differ between particles
    (`Target.carry` holds the others)."""


class Shared(NamedTuple):
    """A pytree split by particle dependence: the leaves every particle holds alike are stored once, not N times,
    and are not gathered when the particles are resampled; the others are each particle's own."""

    treedef: Any
    shared: dict
    """{leaf index: value} for the leaves common to all particles."""

    def join(self, own: dict) -> Any:
        """The whole pytree of one particle, from its own leaves ({leaf index: value})."""
        leaves = {**self.shared, **own}
        return jax.tree.unflatten(self.treedef, [leaves[i] for i in range(len(leaves))])

    def own(self, tree: Any) -> dict:
        """{leaf index: value} for the leaves of `tree` (one particle's, or batched) that are not shared."""
        return {i: x for i, x in enumerate(jax.tree.leaves(tree)) if i not in self.shared}


class ScanArgs(Shared):
    """The arguments the model passed to its scan (init carry, *args), split by particle dependence: leaves that
    do not depend on the prefix's random choices (data, time flags, a prompt) are the same for every particle."""

    __slots__ = ()

    def of(self, particle: Particles) -> tuple:
        """One particle's scan arguments."""
        return self.join(particle.scan_args)


class Target(eqx.Module):
    """What a filter runs on: the model cut at its scan, the observations, and what every particle shares."""

    space: ppl.StateSpace
    observations: dict
    scan_args: ScanArgs
    carry: Shared
    """The carry's split: the leaves that start alike in every particle and that every step hands on unchanged (a
    language model's prompt cache) are shared."""
    config: SMCConfig
    reference: Any = None
    """Under conditional SMC, the reference's step choices (time first)."""

    def carry_of(self, particle: Particles) -> Any:
        """One particle's whole carry."""
        return self.carry.join(particle.carry)

    def step_args(self, particle: Particles, t) -> tuple:
        """The arguments of step `t` for one particle."""
        return self.space.step_args(self.scan_args.of(particle), t, self.carry_of(particle))

    def observed(self, t) -> Any:
        """The observations of step `t`."""
        return self.space.step_constraints(self.observations, t)


class SMCState(eqx.Module):
    """The particles after a step, their weights, and the running evidence estimate."""

    particles: Particles
    log_weights: jax.Array
    """Unnormalised log weights, shape (N,)."""
    log_total: jax.Array
    """logsumexp(log_weights), from the step that set them (the next step needs it and the ESS)."""
    ess: jax.Array
    """The ESS of the weights (0 when all are zero)."""
    log_marginal: jax.Array
    """log Ẑ of the steps so far (-inf once failed)."""
    failed: jax.Array
    """True once some step gave every particle zero weight."""
    target: Target | None
    """None inside a driver's loop, which holds it apart (it is the same at every step)."""


class CSMCState(SMCState):
    """`SMCState` with the slot the reference occupies."""

    reference_slot: jax.Array


class StepInfo(NamedTuple):
    """What happened at a step (stacked over time by `run`)."""

    ess: jax.Array
    """ESS of the weights after extension."""
    resampled: jax.Array
    """Whether the particles were resampled before this step."""
    log_marginal_likelihood: jax.Array
    """The running estimate log Ẑ_{0:t}."""
    acceptance: jax.Array
    """Mean acceptance of the rejuvenation move (0 without rejuvenation)."""
    ancestors: jax.Array | None = None
    """Each particle's ancestor at the last step (None in a run's stacked info: see `History`)."""
    choices: Any = None
    """The particles' choices at this step (None in a run's stacked info: see `History`)."""


class History(NamedTuple):
    """Per-step particle records, shape (T, N, ...), used for lineages and smoothing."""

    ancestors: jax.Array
    choices: Any
    """The latent choices of each step (the observed ones are the observations', not repeated N times)."""
    carries: Any
    """The carries after each step (None unless every step's carry was kept)."""
    log_weights: jax.Array | None
    """The log weights after each step (None when only lineages were kept)."""
