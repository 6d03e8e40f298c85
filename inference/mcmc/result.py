"""What an MCMC run returns: draws per address, per-draw statistics, ArviZ diagnostics."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import equinox as eqx
import numpy as np

from ppl.choicemap import flatten

if TYPE_CHECKING:
    import arviz


def import_arviz():
    """ArviZ, imported on first use: it costs a second or more, and its import prints a daily FutureWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz
    return arviz


class MCMCResult(eqx.Module):
    """Draws of every unobserved address, shaped `(chain, draw, ...)`, and per-draw statistics."""

    samples: dict
    """Nested dict of the latent choices (constrained scale), leaves shaped (chain, draw, ...)."""
    stats: dict
    """Per-draw sampler statistics (chain, draw): accept_prob, diverging, num_steps, and for NUTS energy."""
    step_size: Any = None
    """The adapted step size per chain (NUTS)."""
    inverse_mass_matrix: Any = None
    """The adapted diagonal inverse mass matrix per chain (NUTS), over the flattened unconstrained latents."""

    def to_arviz(self) -> arviz.InferenceData:
        """An `arviz.InferenceData` with a posterior group (addresses joined by '/') and sample stats."""
        posterior = {"/".join(map(str, path)): np.asarray(v) for path, v in flatten(self.samples)}
        names = {"accept_prob": "acceptance_rate", "num_steps": "n_steps"}
        stats = {names.get(k, k): np.asarray(v) for k, v in self.stats.items()}
        return import_arviz().from_dict(posterior=posterior, sample_stats=stats)

    def summary(self, **kwargs):
        """`arviz.summary`: mean, sd, HDI, MCSE, bulk and tail ESS and R-hat per parameter."""
        return import_arviz().summary(self.to_arviz(), **kwargs)

    def diagnostics(self) -> dict:
        """Worst-case convergence numbers: max R-hat, min bulk/tail ESS, divergences, mean acceptance."""
        az, idata = import_arviz(), self.to_arviz()
        rhat = az.rhat(idata)
        bulk, tail = az.ess(idata, method="bulk"), az.ess(idata, method="tail")

        def extreme(ds, fn):
            return float(fn([fn(np.asarray(ds[v])) for v in ds.data_vars]))

        return {
            "max_rhat": extreme(rhat, np.max),
            "min_ess_bulk": extreme(bulk, np.min),
            "min_ess_tail": extreme(tail, np.min),
            "divergences": int(np.sum(np.asarray(self.stats["diverging"]))),
            "mean_accept_prob": float(np.mean(np.asarray(self.stats["accept_prob"]))),
        }
