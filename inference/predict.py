"""Prior and posterior predictive draws, and the pointwise log-likelihood of posterior draws.

    prior = inference.predictive(key, model, args, {}, num_samples=500)          # every address, (500, ...)
    post = inference.predictive(key, model, args, res.samples)                   # (chain, draw, ...)
    post["ys"]["y"]                                                               # replicated data

Each draw of `samples` (latent choices with any leading dimensions, such as MCMC's
`(chain, draw)`) fixes the latents; the model is run forward from them, so the
observed addresses are drawn afresh from p(y | latents) and latents the samples do
not hold are drawn from their prior given the rest.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.choicemap import flatten, merge, normalize, subconstraint

from . import inputs

__all__ = ["leading_shape", "pointwise_log_likelihood", "predictive"]


def _site_shapes(model: ppl.GenFn, args: tuple) -> dict:
    """{address path: shape of one value} for every choice of a prior draw (nothing is computed)."""
    choices = jax.eval_shape(lambda k: model.simulate(k, *args).choices, jax.random.key(0))
    return {path: tuple(sds.shape) for path, sds in flatten(choices)}


def leading_shape(model: ppl.GenFn, args: tuple, samples: Any, what: str = "samples") -> tuple:
    """The leading dimensions that every leaf of `samples` has before the shape of one value of its address."""
    sites = _site_shapes(model, args)
    leading = None
    for path, leaf in flatten(normalize(samples)):
        name = "/".join(map(str, path))
        if path not in sites:
            raise ValueError(f"{what} hold address {name!r}, which the model does not sample; "
                             f"its addresses are {sorted('/'.join(map(str, p)) for p in sites)}")
        shape, site = tuple(np.shape(leaf)), sites[path]
        if len(shape) < len(site) or shape[len(shape) - len(site):] != site:
            raise ValueError(f"{what}[{name!r}] has shape {shape}, which does not end with the shape {site} of one "
                             "value of that address; give draws stacked along leading axes, such as (chain, draw)")
        here = shape[:len(shape) - len(site)]
        if leading is not None and here != leading:
            raise ValueError(f"{what}[{name!r}] has leading dimensions {here}, the other addresses {leading}; every "
                             "address needs the same draws")
        leading = here
    if leading is None:
        raise ValueError(f"{what} is empty; give draws of the latents, or {{}} with num_samples for the prior")
    return leading


def _per_draw(fn, samples: Any, leading: tuple) -> Any:
    """`fn(i, draw_i)` for every draw, vectorised, with the outputs given `leading` dimensions back."""
    n = math.prod(leading)
    flat = jax.tree.map(lambda x: jnp.reshape(jnp.asarray(x), (n, *jnp.shape(x)[len(leading):])), samples)
    out = jax.vmap(fn)(jnp.arange(n), flat)
    return jax.tree.map(lambda x: jnp.reshape(x, (*leading, *x.shape[1:])), out)


def predictive(key: jax.Array, model: ppl.GenFn, args: tuple, samples: dict, num_samples: int | None = None) -> dict:
    """Draws of every address of `model(*args)`: the prior predictive, or the posterior predictive of `samples`.

    Args:
        key: a PRNG key.
        model: the model.
        args: its arguments.
        samples: latent draws (a choice map whose leaves have the same leading dimensions, e.g. an
            `MCMCResult.samples` shaped (chain, draw, ...), a VI guide's draws, resampled SMC particles less
            their observations); `{}` for the prior predictive.
        num_samples: the number of prior draws (only with `samples={}`).

    Returns:
        A nested dict of every address, observed ones included, with the leading dimensions of `samples`
        (`(num_samples,)` for the prior).
    """
    args = inputs.model_args(args)
    samples = normalize(samples)
    if not samples:
        if num_samples is None:
            raise ValueError("predictive with samples={} draws from the prior: give num_samples=")
        n = inputs.count("num_samples", num_samples)
        return jax.vmap(lambda i: model.simulate(ppl.Streams(key, i), *args).choices)(jnp.arange(n))
    if num_samples is not None:
        raise ValueError("num_samples is for prior draws (samples={}); posterior draws keep the samples' leading "
                         "dimensions, so subsample the samples instead")
    leading = leading_shape(model, args, samples)
    return _per_draw(lambda i, draw: model.generate(ppl.Streams(key, i), draw, *args)[0].choices, samples, leading)


def pointwise_log_likelihood(model: ppl.GenFn, args: tuple, samples: dict, observations: dict) -> dict:
    """{observed address path: log p(y | latents) of each draw}, per batch element of the address's distribution
    and per element of a `ppl.vmap` or `ppl.scan`.

    Shaped like the draws' leading dimensions followed by each address's own element dimensions: what
    `arviz.loo` and `arviz.waic` read from an InferenceData's log_likelihood group.
    """
    samples, observations = normalize(samples), normalize(observations)
    leading = leading_shape(model, args, samples)

    observed = [path for path, _ in flatten(observations)]

    def one(i, draw):
        densities = ppl.log_densities(model, args, merge(draw, observations))
        return {path: subconstraint(densities, path) for path in observed}

    return _per_draw(one, samples, leading)
