"""Each observation's own log density: what leave-one-out cross-validation and WAIC need.

    ppl.log_densities(model, args, choices)["y"]     # log p(y_i | the rest), one per element of y

A distribution over a batch of values (`dist.Normal(mu, sigma)` with `mu` of shape (n,)) has one
log density per batch element; a `ppl.vmap` or `ppl.scan` has one per element or step, and each
of those one per batch element of its own choices. A trace keeps only each address's total
(`Trace.log_densities`); this runs the model again keeping the elements apart.
"""

from __future__ import annotations

from typing import Any

from . import choicemap
from .core import GenFn
from .distribution import leaf_mode
from .streams import unused_key

__all__ = ["log_densities"]


def log_densities(model: GenFn, args: tuple, choices: dict) -> Any:
    """The log density of every choice of a full choice map, per batch element, shaped like `choices`
    (less each distribution's event dimensions)."""
    with leaf_mode("pointwise"):
        trace, _ = model._generate(unused_key(), choicemap.normalize(choices), tuple(args))
    return trace.log_densities()
