"""Importance sampling and sampling importance resampling, through the GFI.

With the prior as proposal, each particle is `model.generate(key, observations, *args)`
and its log weight is log p(observations | latents) (plus factors). With a custom
proposal q, a generative function over the model's latent addresses called as
`proposal(*proposal_args)`, each particle samples q, then constrains the model to
q's choices and the observations:

    log w = log p(latents, observations) - log q(latents).

The estimate of the log marginal likelihood is log Ẑ = logsumexp(log w) - log N
(Ẑ is unbiased; log Ẑ is biased low by about Var(Ẑ/Z)/2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from . import inputs, resampling
from .weighted import WeightedParticles

__all__ = ["ImportanceResult", "run", "sample_importance_resampling"]


class ImportanceResult(WeightedParticles):
    """Weighted particles from importance sampling: the model's traces, batched along a leading particle axis,
    and their unnormalised log importance weights, shape (N,)."""

    def log_marginal_likelihood(self) -> jax.Array:
        """log Ẑ = logsumexp(log w) - log N; -inf when every weight is zero."""
        return logsumexp(self.log_weights) - jnp.log(self.log_weights.shape[0])


def run(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    proposal: ppl.GenFn | None = None,
    proposal_args: tuple = (),
) -> ImportanceResult:
    """Importance sampling with `n_particles` particles (see the module docstring)."""
    args, observations = inputs.model_args(args), inputs.observations(observations)
    n_particles = inputs.count("n_particles", n_particles)

    def one(i):
        stream = ppl.Streams(key, i)  # all particles share the key, each draws from its own stream
        if proposal is None:
            return model.generate(stream, observations, *args)
        k_q, k_p = ppl.streams.fold_in(stream, 0), ppl.streams.fold_in(stream, 1)
        q = proposal.simulate(k_q, *proposal_args)
        tr, w = model.generate(k_p, ppl.choicemap.merge(q.choices, observations), *args)
        return tr, w - q.score

    traces, log_w = jax.vmap(one)(jnp.arange(n_particles))
    return ImportanceResult(traces, log_w)


def sample_importance_resampling(
    key: jax.Array, result: ImportanceResult, n_samples: int, scheme: str = "systematic"
) -> ppl.Trace:
    """Draw `n_samples` traces (equally weighted) from weighted particles."""
    ancestors = resampling.get(scheme)(key, result.log_weights, n_samples)
    return jax.tree.map(lambda x: x[ancestors], result.traces)
