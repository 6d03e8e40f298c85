"""Choices on the unconstrained space: what gradient-based inference works on.

Every continuous address has a support (a numpyro constraint) and numpyro's
bijection `biject_to(support)` from unconstrained reals onto it. This module
maps choice maps between the two scales and draws the usual MCMC initial
points; the densities come from `ppl.Unconstrained` constraint leaves, which
every generative function passes down to its distributions:

    u = ppl.unconstrained.unconstrain(model, args, trace.choices)      # same addresses, reals
    log_p_u, _ = model.assess(ppl.unconstrained.wrap(u), *args)          # log p(x(u)) + log |dx/du|
    x = ppl.unconstrained.constrain(model, args, u)                      # back

Discrete addresses keep their values on both scales (and are never wrapped).
Supports may depend on other choices (`Uniform(0, theta)`): the bijection of an
address is built when the model reaches it, with the values drawn before it.
"""

from __future__ import annotations

from typing import Any

import jax

from . import choicemap
from .choicemap import Unconstrained
from .core import GenFn
from .distribution import leaf_mode
from .streams import unused_key

__all__ = ["constrain", "init_uniform", "unconstrain", "wrap"]

def wrap(u: Any) -> dict:
    """Mark every leaf of a choice map of unconstrained values as `ppl.Unconstrained`."""
    return jax.tree.map(Unconstrained, choicemap.normalize(u))


def constrain(model: GenFn, args: tuple, u: dict, observations: dict | None = None) -> dict:
    """The constrained choices `x(u)` (with `observations` added, when given)."""
    constraints = choicemap.merge(wrap(u), observations)
    trace, _ = model._generate(unused_key(), choicemap.normalize(constraints), tuple(args))
    return trace.choices


def unconstrain(model: GenFn, args: tuple, choices: dict) -> dict:
    """The unconstrained values of a full choice map (continuous addresses mapped, discrete kept)."""
    with leaf_mode("inverse"):
        trace, _ = model._generate(unused_key(), choicemap.normalize(choices), tuple(args))
    return trace.choices


def init_uniform(key: jax.Array, model: GenFn, args: tuple, observations: dict | None, radius: float = 2.0):
    """A trace whose unobserved continuous choices are uniform in (-radius, radius) on the unconstrained space.

    Stan's and numpyro's default initialisation for MCMC; it also works where a
    prior cannot be sampled (`dist.ImproperUniform`). Discrete choices are drawn
    from their prior.
    """
    with leaf_mode(("uniform", float(radius))):
        trace, _ = model._generate(key, choicemap.normalize(observations), tuple(args))
    return trace
