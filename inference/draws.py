"""Draws of a posterior, and their export to ArviZ with every group `az.loo`, `az.compare` and `az.plot_ppc` read.

    idata = res.to_arviz()                              # posterior, sample_stats, log_likelihood, observed_data
    idata = res.to_arviz(posterior_predictive=True)     # and replicated data of every observed address
    az.loo(idata); az.plot_ppc(idata)

Every result that holds draws knows the posterior it targeted (a `Posterior`: the
model, its arguments and the observations), so the pointwise log-likelihood
log p(y_i | latents) of each draw is computed here, per element of a `ppl.vmap` or a
`ppl.scan` over the observations. Variables are named by their addresses, joined by '/'.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np

import ppl
from ppl.choicemap import flatten
from ppl.display import html_table, is_traced, text_table

from .predict import pointwise_log_likelihood, predictive

if TYPE_CHECKING:
    import arviz

__all__ = ["Draws", "Posterior", "import_arviz", "inference_data"]

STAT_NAMES = {"accept_prob": "acceptance_rate", "num_steps": "n_steps"}  # ArviZ's names for sample stats
QUANTILES = (0.05, 0.5, 0.95)


def import_arviz():
    """ArviZ, imported on first use: it costs a second or more, and its import prints a daily FutureWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz
    return arviz


class Posterior(eqx.Module):
    """The posterior p(latents | observations) of `model(*args)` that a run targeted."""

    model: ppl.GenFn
    args: tuple
    observations: dict


def with_posterior(result: Any, posterior: Posterior) -> Any:
    """`result` (fresh from a compiled program, shared with no one) with its `posterior` field set in place: a
    copy through the module's constructor costs a short `smc.run` call ~40 µs (docs/performance.md)."""
    object.__setattr__(result, "posterior", posterior)
    return result


def name(path: tuple) -> str:
    """An address as an ArviZ variable name."""
    return "/".join(map(str, path))


def _named(tree: Any) -> dict:
    return {name(path): np.asarray(x) for path, x in flatten(tree)}


def inference_data(samples: dict, stats: dict | None = None, posterior: Posterior | None = None,
                   posterior_predictive: bool = False, key: jax.Array | None = None) -> arviz.InferenceData:
    """An InferenceData of latent `samples` shaped (chain, draw, ...), with the groups `posterior` allows.

    With a `posterior`: `observed_data`, `log_likelihood` (pointwise, per observed address) and, when
    `posterior_predictive`, replicated data of each observed address drawn with `key`.
    """
    groups: dict = {"posterior": _named(samples)}
    if stats:
        groups["sample_stats"] = {STAT_NAMES.get(k, k): np.asarray(v) for k, v in stats.items()}
    if posterior is not None:
        model, args, observations = posterior.model, posterior.args, posterior.observations
        groups["observed_data"] = _named(ppl.choicemap.unmask(observations))
        groups["log_likelihood"] = {name(path): np.asarray(v) for path, v in
                                    pointwise_log_likelihood(model, args, samples, observations).items()}
        if posterior_predictive:
            if key is None:
                raise ValueError("posterior_predictive=True draws replicated data: give key= as well")
            replicated = predictive(key, model, args, samples)
            groups["posterior_predictive"] = {v: np.asarray(ppl.choicemap.subconstraint(replicated, path))
                                              for v, path in ((name(p), p) for p, _ in flatten(observations))}
    elif posterior_predictive:
        raise ValueError("these draws do not know their model and observations, so they have no predictive")
    return import_arviz().from_dict(**groups)


class Draws(eqx.Module):
    """Draws of every latent address shaped `(chain, draw, ...)`, per-draw statistics, and the posterior targeted."""

    samples: dict
    """Nested dict of the latent choices (constrained scale), leaves shaped (chain, draw, ...)."""
    stats: dict
    """Per-draw statistics (chain, draw) of the sampler (empty for independent draws)."""
    posterior: Posterior | None = None
    """The model, arguments and observations the draws are of (None for draws built by hand)."""

    def to_arviz(self, posterior_predictive: bool = False, key: jax.Array | None = None) -> arviz.InferenceData:
        """An `arviz.InferenceData`: posterior, sample_stats, log_likelihood (pointwise), observed_data, and
        posterior_predictive when asked (drawn with `key`)."""
        return inference_data(self.samples, self.stats, self.posterior, posterior_predictive, key)

    def summary(self, **kwargs):
        """`arviz.summary` (mean, sd, HDI, MCSE, bulk and tail ESS, R-hat) with 5%, 50% and 95% quantiles."""
        az = import_arviz()
        quantiles = {f"{q:.0%}": (lambda x, q=q: np.quantile(x, q)) for q in QUANTILES}
        if self._shape()[0] == 1:  # one chain (independent draws, a single run): no R-hat, nor ArviZ's warning
            kwargs.setdefault("kind", "stats")
        return az.summary(inference_data(self.samples), stat_funcs=quantiles, extend=True, **kwargs)

    def _shape(self) -> tuple:
        return tuple(jax.tree.leaves(self.samples)[0].shape[:2]) if jax.tree.leaves(self.samples) else (0, 0)

    def _title(self) -> str:
        chains, draws = self._shape()
        return f"{type(self).__name__}: {chains} chain{'s' * (chains != 1)} × {draws} draws"

    def __repr__(self) -> str:
        if is_traced(self.samples):
            rows = [(name(p), str(tuple(x.shape[2:]))) for p, x in flatten(self.samples)]
            return text_table(self._title(), ["address", "shape"], rows)
        rows = [(f"{name(p)}[{', '.join(map(str, i))}]" if i else name(p), np.mean(x[(..., *i)]), np.std(x[(..., *i)]))
                for p, x in flatten(self.samples) for i in np.ndindex(np.shape(x)[2:])]
        return text_table(self._title(), ["", "mean", "sd"], rows)

    def _repr_html_(self) -> str:
        if is_traced(self.samples):
            return f"<pre>{self!r}</pre>"
        table = self.summary()
        columns = [c for c in ["mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail"] if c in table]
        rows = [(index, *table.loc[index, columns]) for index in table.index]
        return html_table(self._title(), ["", *columns], rows)
