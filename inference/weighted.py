"""Weighted particles: what importance sampling and SMC return, and what both can say about their weights."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax

import ppl

from . import resampling

__all__ = ["WeightedParticles"]


class WeightedParticles(eqx.Module):
    """Particles as the model's traces (batched along a leading axis) with unnormalised log weights."""

    traces: ppl.Trace | None
    """The model's traces, batched along a leading particle axis."""
    log_weights: jax.Array
    """Unnormalised log weights, shape (N,)."""

    def normalized_weights(self) -> jax.Array:
        """Weights summing to one (all zero when every weight is zero, never NaN)."""
        return resampling.weights(self.log_weights)

    def ess(self) -> jax.Array:
        """Effective sample size 1 / Σ w_i² of the normalised weights (0 when every weight is zero)."""
        return resampling.ess(self.log_weights)

    @property
    def choices(self) -> Any:
        """The traces' choices (None when no traces were kept)."""
        return None if self.traces is None else self.traces.choices
