"""The settings of a particle filter, typed and compared by value.

`SMCConfig` is an `equinox.Module`: its discrete settings are static fields, so two
configurations with equal settings have equal tree structures and a compiled program
that takes one is reused for the other; the proposal and the rejuvenation kernel are
pytrees (their arrays are traced, their structure is static).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, get_args

import equinox as eqx
import jax

import ppl

from .. import inputs, resampling, sharding
from ..mcmc.kernels import Kernel
from ..sharded_resampling import CumulativeWeights, Scope

__all__ = ["AncestorSampling", "Record", "SMCConfig", "ancestor_sampling_mode", "record_mode"]

AncestorSampling = Literal["exact", "metropolis", "none"]
"""How conditional SMC redraws the reference's ancestor: an exact draw from N densities, one
Metropolis-Hastings step (two densities), or not at all (the reference keeps its own past)."""

Record = Literal["none", "lineage", "choices", "full"]
"""What a run keeps of each step: nothing; the ancestors and latent choices (enough for lineages and final traces);
also the weights; also the carries (enough for backward sampling)."""


class SMCConfig(eqx.Module):
    """A particle filter's settings (see `smc.run` for their meaning)."""

    n_particles: int = eqx.field(static=True)
    resampling_scheme: resampling.SchemeName = eqx.field(static=True, default="systematic")
    ess_threshold: float = eqx.field(static=True, default=0.5)
    record: Record = eqx.field(static=True, default="full")
    ancestor_sampling: AncestorSampling = eqx.field(static=True, default="none")
    mesh: jax.sharding.Mesh | None = eqx.field(static=True, default=None, converter=sharding.mesh_of)
    """The devices the particles are split across (`inference.sharding`; a device count is made a mesh)."""
    resampling_scope: Scope = eqx.field(static=True, default="global")
    """Resample among all particles, or each device's apart ("island"; `inference.sharded_resampling`)."""
    cumulative_weights: CumulativeWeights = eqx.field(static=True, default="prefix_sum")
    """Under a mesh, how each device finds the cumulative weights: a prefix sum across devices, or all N gathered."""
    proposal: ppl.GenFn | None = None
    rejuvenation: Kernel | None = None
    progress_bar: bool = eqx.field(static=True, default=False)
    """Advance the current `inference.progress` bar once per step, from inside the compiled program."""

    def __check_init__(self):
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold is a fraction of N in [0, 1], got {self.ess_threshold!r}")
        resampling.get(self.resampling_scheme)  # names the valid schemes if unknown
        if self.record not in get_args(Record):
            raise ValueError(f"record is one of {get_args(Record)}, got {self.record!r}")
        if self.ancestor_sampling not in get_args(AncestorSampling):
            raise ValueError(f"ancestor_sampling is one of {get_args(AncestorSampling)}, "
                             f"got {self.ancestor_sampling!r}")
        sharding.check_size(self.mesh, self.n_particles, "n_particles")
        if self.cumulative_weights not in get_args(CumulativeWeights):
            raise ValueError(f"cumulative_weights is one of {get_args(CumulativeWeights)}, "
                             f"got {self.cumulative_weights!r}")
        if self.resampling_scope not in get_args(Scope):
            raise ValueError(f"resampling_scope is one of {get_args(Scope)}, got {self.resampling_scope!r}")
        if self.resampling_scope == "island" and self.mesh is None:
            raise ValueError("resampling_scope='island' resamples each device's particles apart: it needs mesh= "
                             "(a jax.sharding.Mesh or a device count); on one device use 'global'")

    @classmethod
    def of(cls, n_particles: Any, ess_threshold: Any = 0.5, **settings) -> SMCConfig:
        """A configuration from a user's arguments: N as a Python int, the threshold as a float. Settings seen
        before give the same (immutable) configuration back: building one costs a short filter run ~10% of its
        time, and `smc.run` is called in loops."""
        n, threshold = inputs.count("n_particles", n_particles), float(ess_threshold)
        try:
            return _config(cls, n, threshold, tuple(sorted(settings.items())))
        except TypeError:  # an unhashable setting (a kernel holding arrays)
            return cls(n, ess_threshold=threshold, **settings)


@functools.lru_cache(maxsize=256, typed=True)
def _config(cls, n_particles: int, ess_threshold: float, settings: tuple) -> SMCConfig:
    return cls(n_particles, ess_threshold=ess_threshold, **dict(settings))


def ancestor_sampling_mode(value: bool | str) -> AncestorSampling:
    """The `ancestor_sampling` argument of `csmc`, `csmc_kernel` and `pgibbs.run` (True, False or "metropolis",
    or a mode's name) as a mode."""
    modes = {True: "exact", False: "none"}
    if isinstance(value, bool):
        return modes[value]
    if value in get_args(AncestorSampling):
        return value
    raise ValueError(f'ancestor_sampling is True (an exact draw), "metropolis" (one Metropolis-Hastings step) or '
                     f"False, got {value!r}")


def record_mode(return_traces: bool | str) -> Record:
    """`smc.run`'s `return_traces` (True, False or "history") as what each step keeps."""
    modes = {True: "full", False: "none", "history": "choices"}
    if isinstance(return_traces, (bool, str)) and return_traces in modes:
        return modes[return_traces]
    raise ValueError(f"return_traces is True, False or 'history', got {return_traces!r}")
