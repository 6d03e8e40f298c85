"""Standard objectives, written as programs in the same language users write theirs in.

Each takes a model and a guide: the guide is called as `guide(params, *args)`, the
model as `model(*args)`, and the observations are the program's first argument after
the parameters, so an objective is estimated as `objective.value_and_grad(key, params,
observations, *args)`. The guide's addresses are the model's latent addresses.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from .program import Objective, objective, sample

__all__ = ["elbo", "iwae"]


def _log_weight(model, guide, params, observations, args, name, estimators):
    """log p(x, z) - log q(z) for one z ~ q."""
    q = sample(guide, params, *args, name=name, estimators=estimators)
    log_p, _ = model.assess(ppl.choicemap.merge(q.choices, observations), *args)
    return log_p - q.score


def elbo(model: ppl.GenFn, guide: ppl.GenFn, estimators: dict | None = None) -> Objective:
    """The evidence lower bound E_q[log p(x, z) - log q(z)] ≤ log p(x)."""

    def program(params, observations, *args):
        return _log_weight(model, guide, params, observations, args, "guide", estimators)

    return objective(program)


def iwae(model: ppl.GenFn, guide: ppl.GenFn, k: int, estimators: dict | None = None) -> Objective:
    """The importance-weighted bound E[log (1/K) Σ_k p(x, z_k) / q(z_k)] (Burda et al. 2016).

    It equals the ELBO at K = 1 and increases with K towards log p(x).
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of importance samples) must be a positive int, got {k!r}")

    def program(params, observations, *args):
        log_w = jnp.stack([_log_weight(model, guide, params, observations, args, f"guide{i}", estimators)
                           for i in range(k)])
        return logsumexp(log_w) - jnp.log(k)

    return objective(program)
