"""A fitted guide's draws as a `Draws` result: summary, display and ArviZ export like MCMC's."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import ppl

from .. import inputs
from ..draws import Draws, Posterior
from .autoguide import AutoGuide

__all__ = ["draws"]


def draws(key: jax.Array, guide: ppl.GenFn, params: Any, args: tuple, num_samples: int = 1000,
          model: ppl.GenFn | None = None, observations: dict | None = None) -> Draws:
    """`num_samples` independent draws of `guide(params, *args)`, shaped (1, num_samples, ...) as one chain.

    With `model` and `observations` (an autoguide knows its own) the result's `to_arviz()` has the
    pointwise log-likelihood and the observed data, so `az.loo` and `az.compare` take a VI fit too.
    """
    args = inputs.model_args(args)
    n = inputs.count("num_samples", num_samples)
    if model is None and isinstance(guide, AutoGuide):
        model, observations = guide.model, guide.observations
    if (model is None) != (observations is None):
        raise ValueError("give model and observations together (or neither): the log-likelihood needs both")
    choices = jax.vmap(lambda i: guide.simulate(ppl.Streams(key, i), params, *args).choices)(jnp.arange(n))
    target = None if model is None else Posterior(model, args, inputs.observations(observations))
    return Draws(jax.tree.map(lambda x: x[None], choices), {}, target)
