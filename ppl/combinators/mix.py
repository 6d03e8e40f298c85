"""`ppl.mix`: a mixture whose component index is an explicit random choice.

    y = ppl.mix(dist.Normal(-2.0, 1.0), dist.Normal(2.0, 1.0))(logits) @ "y"

The choices are `{"index": k, "component": <the component's choices>}`, so
inference can condition on, or resample, the assignment. For the marginal
density with the index summed out, use numpyro's `MixtureSameFamily` or
`MixtureGeneral` through `ppl.dist`.
"""

from __future__ import annotations

import numpyro.distributions as nd

from ..core import GenFn
from ..distribution import Distribution
from ..gen import StaticGenFn, gen
from .switch import switch

__all__ = ["mix"]


def mix(*components: GenFn) -> StaticGenFn:
    """Call as `ppl.mix(c0, c1, ...)(logits, *args) @ addr`; component k gets `*args`."""
    branches = switch(*components)

    @gen
    def mixture(logits, *args):
        if logits.shape[-1:] != (len(components),):
            raise ValueError(f"ppl.mix has {len(components)} components but got logits of shape {logits.shape}")
        k = Distribution(nd.CategoricalLogits(logits)) @ "index"
        return branches(k, *args) @ "component"

    return mixture
