"""What an MCMC run returns: draws per address, per-draw statistics, ArviZ diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..draws import Draws, import_arviz, inference_data

__all__ = ["MCMCResult", "import_arviz"]


class MCMCResult(Draws):
    """Draws of every unobserved address, shaped `(chain, draw, ...)`, and per-draw statistics.

    `stats` holds accept_prob, diverging, num_steps, and for NUTS energy; `to_arviz()` exports them with the
    pointwise log-likelihood, `summary()` and `diagnostics()` read them.
    """

    step_size: Any = None
    """The adapted step size per chain (NUTS)."""
    inverse_mass_matrix: Any = None
    """The adapted diagonal inverse mass matrix per chain (NUTS), over the flattened unconstrained latents."""

    def diagnostics(self) -> dict:
        """Worst-case convergence numbers: max R-hat, min bulk/tail ESS, divergences, mean acceptance."""
        az, idata = import_arviz(), inference_data(self.samples)
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
