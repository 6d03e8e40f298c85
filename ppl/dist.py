"""Every `numpyro.distributions` class, usable with `@` inside a model.

    from ppl import dist
    x = dist.Normal(0.0, 1.0) @ "x"
    k = dist.Categorical(probs=p) @ "k"
    y = dist.Normal(mu, 1.0).mask(observed) @ "y"

`dist.X(...)` takes exactly the arguments of `numpyro.distributions.X` and returns
a `ppl.Distribution`. Anything else in `numpyro.distributions` (`constraints`,
`transforms`, `biject_to`, ...) is forwarded unchanged. `dist.wrap(d)` wraps an
existing numpyro distribution instance.
"""

from __future__ import annotations

import functools
import inspect

import numpyro.distributions as _nd

from .core import current_handler
from .distribution import Distribution, wrap

__all__ = ["Distribution", "wrap"]


class _Factory:
    """Builds a numpyro distribution and wraps it as a generative function."""

    def __init__(self, cls):
        self.cls = cls
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__
        self.__wrapped__ = cls
        self.validates = "validate_args" in inspect.signature(cls).parameters

    def __call__(self, *args, **kwargs) -> Distribution:
        if self.validates:  # ppl validates the arguments itself, in Distribution.log_prob where the address is known
            kwargs.setdefault("validate_args", False)
        args, kwargs = _numpyro(args), {k: _numpyro(v) for k, v in kwargs.items()}
        d = Distribution(self.cls(*args, **kwargs))
        return d if current_handler() is not None else d.validate()  # outside a model there is no address to wait for

    def __repr__(self) -> str:
        return f"ppl.dist.{self.cls.__name__}"


def _numpyro(x):
    """`ppl.dist` distributions among a constructor's arguments (a mixture's components, a list of them) as the
    numpyro distributions that numpyro's constructors take."""
    if isinstance(x, Distribution):
        return x.dist
    if isinstance(x, (list, tuple)):
        return type(x)(_numpyro(v) for v in x)
    return x


@functools.cache
def _factory(name: str) -> _Factory:
    return _Factory(getattr(_nd, name))


def _is_distribution_class(obj) -> bool:
    """A distribution class, or one of numpyro's factories such as `Bernoulli(probs=..., logits=...)`."""
    if inspect.isclass(obj):
        return issubclass(obj, _nd.Distribution) and obj is not _nd.Distribution
    return inspect.isfunction(obj) and obj.__name__[:1].isupper()


def __getattr__(name: str):
    obj = getattr(_nd, name, None)
    if obj is None:
        raise AttributeError(f"ppl.dist has no {name!r}: numpyro.distributions has no such distribution")
    return _factory(name) if _is_distribution_class(obj) else obj


def __dir__():
    return sorted(set(__all__) | set(dir(_nd)))
