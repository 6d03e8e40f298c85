"""ppl: a probabilistic programming language embedded in JAX.

    import ppl
    from ppl import dist

    @ppl.gen
    def model(xs):
        slope = dist.Normal(0.0, 1.0) @ "slope"
        return ppl.vmap(point, in_axes=(0, None))(xs, slope) @ "ys"

See the README and docs/ for the generative function interface.
"""

from . import dist, lm, streams, unconstrained
from .choicemap import Masked, Unconstrained
from .combinators import cond, mix, repeat, scan, switch, vmap
from .core import Call, GenFn, Trace, factor
from .distribution import ChoiceTrace, Distribution
from .errors import ModelError
from .gen import GenTrace, StaticGenFn, gen
from .selection import Selection, sel
from .streams import Streams

__all__ = [
    "Call",
    "ChoiceTrace",
    "Distribution",
    "GenFn",
    "GenTrace",
    "Masked",
    "ModelError",
    "Selection",
    "StaticGenFn",
    "Streams",
    "Trace",
    "Unconstrained",
    "cond",
    "dist",
    "factor",
    "gen",
    "lm",
    "mix",
    "repeat",
    "scan",
    "sel",
    "streams",
    "switch",
    "unconstrained",
    "vmap",
]
