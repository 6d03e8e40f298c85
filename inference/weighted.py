"""Weighted particles: what importance sampling and SMC return, and what both can say about their weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np

import ppl
from ppl.display import tabulated

from . import resampling
from .draws import Draws, Posterior

if TYPE_CHECKING:
    import arviz

__all__ = ["WeightedParticles", "particle_draws"]


def particle_draws(traces: ppl.Trace | None, posterior: Posterior | None, stats: dict | None = None) -> Draws:
    """Equally weighted particles' latent choices as one chain of draws, shaped (1, N, ...)."""
    if traces is None:
        raise ValueError("this run kept no traces: run it with return_traces=True to have its particles as draws")
    choices = traces.choices
    if posterior is not None:
        choices = ppl.choicemap.latents(choices, posterior.observations)
    return Draws(jax.tree.map(lambda x: x[None], choices), stats or {}, posterior)


@tabulated
class WeightedParticles(eqx.Module):
    """Particles as the model's traces (batched along a leading axis) with unnormalised log weights."""

    traces: ppl.Trace | None
    """The model's traces, batched along a leading particle axis."""
    log_weights: jax.Array
    """Unnormalised log weights, shape (N,)."""
    posterior: Posterior | None = eqx.field(default=None, kw_only=True)
    """The model, arguments and observations the particles target (None for particles built by hand)."""

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

    def draws(self, key: jax.Array | None = None, resample: bool = True) -> Draws:
        """The particles' latents as one chain of N draws: resampled by weight (systematic, with `key`;
        `jax.random.key(0)` when none is given), or as they are with `resample=False`, their normalised
        log weights then in the stats as "log_weight" (ArviZ's summaries and `az.loo` ignore weights)."""
        if not resample:
            return particle_draws(self.traces, self.posterior, {"log_weight": np.log(self.normalized_weights())[None]})
        key = jax.random.key(0) if key is None else key
        ancestors = resampling.get("systematic")(key, self.log_weights, self.log_weights.shape[0])
        return particle_draws(jax.tree.map(lambda x: x[ancestors], self.traces), self.posterior)

    def to_arviz(self, key: jax.Array | None = None, resample: bool = True,
                 posterior_predictive: bool = False) -> arviz.InferenceData:
        """`draws(key, resample).to_arviz(...)`: posterior, log_likelihood, observed_data (and posterior_predictive
        when asked) of the particles, resampled to equal weight unless `resample=False`."""
        key = jax.random.key(0) if key is None else key
        k_resample, k_predictive = jax.random.split(key)
        return self.draws(k_resample, resample).to_arviz(posterior_predictive, k_predictive)

    def _summary(self) -> tuple[str, list]:
        """The title and (name, value) rows that every weighted result shows (subclasses define log Ẑ)."""
        n = self.log_weights.shape[-1]
        rows = [("particles", n), ("ESS", float(self.ess())), ("log Ẑ", float(self.log_marginal_likelihood()))]
        return type(self).__name__, rows

    def _tables(self) -> list:
        title, rows = self._summary()
        return [(title, ["", "value"], rows)]

