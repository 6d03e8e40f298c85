"""Checks of what an MCMC run is given and of where its chains start, each failure named and with its fix.

A chain started where the log density is -inf or NaN never moves: every
proposal is compared with a non-finite energy and rejected, NUTS's warm-up
shrinks the step size towards zero, and the draws are the initial point
repeated. These checks find that before sampling and name the addresses
responsible, from the per-address log densities of the initial traces
(`Trace.project` of one address, less the factors) and, for gradient-based
samplers, the unconstrained initial values and the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np

import ppl
from ppl.choicemap import flatten, latents

__all__ = ["Start", "check_latents", "check_start", "check_step_size"]

MIN_STEP_SIZE = 1e-10  # adapted step sizes are O(0.1-1) on the scaled space; this small means warm-up collapsed


def _name(path: tuple) -> str:
    return "/".join(map(str, path))


def check_latents(who: str, traces: ppl.Trace, observations: dict) -> None:
    """Raise a `ModelError` when the model has no unobserved choice to sample."""
    if jax.tree.leaves(latents(traces.choices, observations)):
        return
    observed = ", ".join(repr(_name(p)) for p, _ in flatten(observations)) or "none"
    raise ppl.ModelError(
        f"{who} has nothing to sample: the model has no latent (unobserved) choices; observed addresses: "
        f"{observed}. Leave an address out of the observations to sample it, or use "
        "model.assess(choices, *args) for the log density of a full choice map"
    )


class Start(NamedTuple):
    """Where gradient-based chains start on the unconstrained space; leaves have a leading chain axis."""

    position: dict
    """The unconstrained latents, nested like the choices."""
    log_density: jax.Array
    """log p at the position, Jacobians included: (chain,)."""
    gradient: dict
    """Its gradient, nested like `position`."""


@eqx.filter_jit
def _terms(traces: ppl.Trace) -> tuple[jax.Array, list]:
    """The factors' total and each address's log density (all factors taken out), per chain."""
    paths = [p for p, _ in flatten(traces.choices)]

    def one(tr):
        factors = tr.project(ppl.sel.none())  # project of any selection includes every ppl.factor
        return factors, [tr.project(ppl.sel(*p)) - factors for p in paths]

    return jax.vmap(one)(traces)


def _not_finite(x) -> np.ndarray:
    """Per chain: whether any element of `x` (chain, ...) is NaN or infinite."""
    x = np.asarray(x)
    return ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)


def _chains(failed: np.ndarray) -> str:
    return "every chain" if failed.all() else f"chain(s) {', '.join(map(str, np.flatnonzero(failed)))}"


def _origin(path: tuple, observations: dict, init: Any) -> str:
    if ppl.choicemap.subconstraint(observations, path) is not None:
        return "observed"
    if isinstance(init, dict) and ppl.choicemap.subconstraint(ppl.choicemap.normalize(init), path) is not None:
        return "from init"
    return "latent"


def _values(x, chains: np.ndarray) -> str:
    """The distinct non-finite values of `x` in the failing chains ('-inf', 'nan')."""
    x = np.asarray(x)
    x = x.reshape(len(x), -1)[chains]
    return "/".join(sorted({str(v) for v in x[~np.isfinite(x)]}))


def _causes(traces: ppl.Trace, observations: dict, init: Any, failed: np.ndarray) -> list[str]:
    """One line per term of the log density that is not finite in a failing chain."""
    factors, terms = _terms(traces)
    if _not_finite(factors)[failed].any():  # then every address's term is unknown: project includes the factors
        return [f"ppl.factor: log density {_values(factors, failed)}"]
    return [f"{_name(p)!r} ({_origin(p, observations, init)}): log density {_values(t, failed)}"
            for (p, _), t in zip(flatten(traces.choices), terms) if _not_finite(t)[failed].any()]


def check_start(who: str, traces: ppl.Trace, observations: dict, init: Any, start: Start | None = None) -> None:
    """Raise a `ModelError` naming the addresses where some chain's initial log density (or gradient) is not finite.

    `start`, for gradient-based samplers, adds the unconstrained position and the gradient to what is checked.
    """
    failed = _not_finite(traces.score)
    if start is not None:
        failed |= _not_finite(start.log_density)
        for _, g in flatten(start.gradient):
            failed |= _not_finite(g)
    if not failed.any():
        return
    causes = _causes(traces, observations, init, failed)
    if start is not None:
        causes += [f"{_name(p)!r}: unconstrained initial value {_values(u, failed)}"
                   for p, u in flatten(start.position) if _not_finite(u)[failed].any()]
        if not causes:  # a non-finite density makes every gradient non-finite: name them only when it is finite
            causes = [f"{_name(p)!r}: gradient {_values(g, failed)}"
                      for p, g in flatten(start.gradient) if _not_finite(g)[failed].any()]
    raise ppl.ModelError(
        f"{who} cannot start: the log density or its gradient is not finite at the initial point of {_chains(failed)}; "
        f"{'; '.join(causes) or 'no single address is responsible'}. "
        "A -inf term is a value outside its distribution's support (an observed value: check the data; an `init` "
        "value: start inside the support, or use init='uniform') or a distribution given invalid parameters there "
        "(a negative scale, computed from a value that is itself outside its support, say); a NaN term is a "
        "computation that gives NaN (sqrt or log of a negative number, a NaN in ppl.factor); a non-finite gradient "
        "is a function with an infinite slope there (sqrt at 0). Fix the values or the model so that the density "
        "and its gradient are finite where the chains start"
    )


def check_step_size(step_size: jax.Array) -> None:
    """Raise a `ModelError` when NUTS's warm-up drove the step size of some chain to (near) zero."""
    step_size = np.asarray(step_size)
    collapsed = ~(step_size >= MIN_STEP_SIZE)  # NaN counts as collapsed
    if collapsed.any():
        raise ppl.ModelError(
            f"NUTS's step size collapsed during warm-up ({_chains(collapsed)}: "
            f"{', '.join(f'{s:.3g}' for s in step_size[collapsed])}): the log density or its gradient is not "
            "finite (NaN or inf) near the initial point, so every move was rejected and the draws are the "
            "initial point repeated. Make the model's density finite around where the chains start (look for "
            "sqrt or log of a value that can be negative, or a scale that can be <= 0)"
        )
