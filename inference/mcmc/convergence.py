"""Stan's convergence checks after sampling, as a warning that names the parameters.

A run is flagged, as Stan flags it (Vehtari et al. 2021), when for some
parameter the rank-normalised split R-hat exceeds 1.01 (with two or more
chains; it is undefined for one) or the bulk effective sample size is under
100 per chain, or when any transition after warm-up diverged; and also when a
chain never moved (ArviZ gives a constant chain an ESS equal to its length).
R-hat and ESS are ArviZ's, computed on the result's ArviZ export, whose names
the warning uses (addresses joined by '/', elements indexed as `arviz.summary`
does).
"""

from __future__ import annotations

import warnings

import numpy as np

from ppl.choicemap import flatten

from ..draws import import_arviz, inference_data
from .result import MCMCResult

__all__ = ["ESS_BULK_PER_CHAIN", "RHAT_MAX", "ConvergenceWarning", "problems", "warn_if_not_converged"]

RHAT_MAX = 1.01
ESS_BULK_PER_CHAIN = 100
SHOWN = 5  # parameters named per failed check, worst first


class ConvergenceWarning(UserWarning):
    """MCMC draws that may not represent the posterior: high R-hat, low bulk ESS, a stuck chain, or divergences."""


def _elements(ds) -> list[tuple[str, float]]:
    """(name, value) of every element of every variable of an ArviZ dataset, named as `arviz.summary` names them."""
    out = []
    for var in ds.data_vars:
        values = np.asarray(ds[var])
        out += [(f"{var}[{', '.join(map(str, i))}]" if i else var, float(values[i])) for i in np.ndindex(values.shape)]
    return out


def _worst(failed: list[tuple[str, float]], fmt: str, high_is_bad: bool) -> str:
    """The failed parameters and their values, worst first (NaN worst of all), at most `SHOWN` of them."""
    sign = -1.0 if high_is_bad else 1.0
    ranked = sorted(failed, key=lambda nv: np.nan_to_num(sign * nv[1], nan=-np.inf))
    shown = ", ".join(f"{name} ({value:{fmt}})" for name, value in ranked[:SHOWN])
    return shown + (f" and {len(failed) - SHOWN} more" if len(failed) > SHOWN else "")


def _frozen(result: MCMCResult) -> np.ndarray:
    """Per chain: whether every draw equals the first."""
    draws = [np.asarray(x) for _, x in flatten(result.samples)]
    chains, num_draws = draws[0].shape[:2]
    if num_draws < 2:
        return np.zeros(chains, bool)
    return np.all([(x == x[:, :1]).reshape(chains, -1).all(axis=1) for x in draws], axis=0)


def problems(result: MCMCResult) -> list[str]:
    """One line per failed check of `result` (empty when the run passes them all)."""
    az, idata = import_arviz(), inference_data(result.samples)
    chains = idata.posterior.sizes["chain"]
    with np.errstate(divide="ignore", invalid="ignore"):  # stuck chains: their inf or NaN is reported below
        rhat = az.rhat(idata) if chains > 1 else None
        ess = az.ess(idata, method="bulk")
    found = []
    if rhat is not None:
        # `not <=` and `not >=`: a NaN fails the check
        failed = [(n, v) for n, v in _elements(rhat) if not v <= RHAT_MAX]
        if failed:
            found.append(f"R-hat > {RHAT_MAX} for {_worst(failed, '.3f', high_is_bad=True)}")
    min_ess = ESS_BULK_PER_CHAIN * chains
    failed = [(n, v) for n, v in _elements(ess) if not v >= min_ess]
    if failed:
        found.append(f"bulk ESS < {min_ess} ({ESS_BULK_PER_CHAIN} per chain) for "
                     f"{_worst(failed, '.0f', high_is_bad=False)}")
    frozen = np.flatnonzero(_frozen(result))
    if frozen.size:
        found.append(f"chain(s) {', '.join(map(str, frozen))} never moved from the first draw")
    divergences = int(np.sum(np.asarray(result.stats["diverging"])))
    if divergences:
        found.append(f"{divergences} divergent transition(s) after warm-up")
    return found


def warn_if_not_converged(result: MCMCResult, stacklevel: int = 3) -> None:
    """Warn with a `ConvergenceWarning` when `problems(result)` finds any (by default, at the caller's caller)."""
    found = problems(result)
    if found:
        warnings.warn(ConvergenceWarning(
            f"the chains may not have converged: {'; '.join(found)}. Run longer (more num_warmup and "
            "num_samples), reparameterise the model (e.g. non-centred hierarchical scales), or, against "
            "divergences, raise target_accept_prob; result.summary() has every parameter's R-hat and ESS. "
            "Pass check_convergence=False to skip this check"
        ), stacklevel=stacklevel)
