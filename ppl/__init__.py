"""ppl: a probabilistic programming language embedded in JAX.

    import ppl
    from ppl import dist

    @ppl.gen
    def model(xs):
        slope = dist.Normal(0.0, 1.0) @ "slope"
        return ppl.vmap(point, in_axes=(0, None))(xs, slope) @ "ys"

See the README and docs/ for the generative function interface.
"""

import warnings

with warnings.catch_warnings():  # numpyro imports tqdm.auto, which warns in every notebook without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    import numpyro  # noqa: F401

from . import choicemap, dist, lm, streams, unconstrained
from .choicemap import Masked, Unconstrained
from .combinators import cond, mix, repeat, scan, switch, vmap
from .core import Call, GenFn, Trace, address_path, factor
from .distribution import ChoiceTrace, Distribution
from .errors import ModelError
from .gen import GenTrace, StaticGenFn, gen
from .pointwise import log_densities
from .selection import Selection, sel
from .sequential import StateSpace, state_space
from .streams import Streams
from .tempered import Tempered

__all__ = [
    "Call",
    "ChoiceTrace",
    "Distribution",
    "GenFn",
    "GenTrace",
    "Masked",
    "ModelError",
    "Selection",
    "StateSpace",
    "StaticGenFn",
    "Streams",
    "Tempered",
    "Trace",
    "Unconstrained",
    "address_path",
    "choicemap",
    "cond",
    "dist",
    "factor",
    "gen",
    "lm",
    "log_densities",
    "mix",
    "repeat",
    "scan",
    "sel",
    "state_space",
    "streams",
    "switch",
    "unconstrained",
    "vmap",
]
