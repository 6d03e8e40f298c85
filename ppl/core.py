"""The generative function interface (GFI), traces, and the `@` operator.

Every model, distribution and combinator is a `GenFn` and implements six
methods, each a pure function of a PRNG key and pytrees:

- `simulate(key, *args) -> Trace`: sample all choices from the model.
- `assess(choices, *args) -> (log p(choices), retval)`: density of a full choice map.
- `generate(key, constraints, *args) -> (trace, log w)`: importance sampling with the
  internal proposal; `w = p(trace) / q(unconstrained choices)`.
- `update(key, trace, constraints, *args) -> (trace', log w, discard)`: move a trace to
  new arguments and/or new values; `w = p'(trace') / (p(trace) q(new choices))`.
- `regenerate(key, trace, selection, *args) -> (trace', log w)`: resample the selected
  choices from the prior; `w` is the Metropolis-Hastings log acceptance ratio.
- `project(trace, selection) -> log w`: the log density of the selected choices
  (and of every `ppl.factor`), i.e. the weight `generate` would return had they
  been the only constraints.

The public methods are compiled with `equinox.filter_jit`: array arguments are
traced, everything else (Python numbers, strings, selections) is static, so a
model is traced once per argument shape and Python control flow over random
values is caught at trace time. Subclasses implement the underscored methods,
which receive `args` as a tuple and are called from inside other traces.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from . import choicemap, display, streams
from .errors import ModelError
from .selection import Selection

__all__ = ["Call", "GenFn", "Handler", "Trace", "address_path", "factor"]


class Trace(eqx.Module):
    """A record of one execution of a generative function: a pytree.

    `choices` (a nested dict), `score` (log density of the choices, including
    factors), `retval` and `args`. Batched traces (from `jax.vmap` or
    `ppl.vmap`) hold arrays with a leading axis at the same addresses.
    """

    @property
    @abc.abstractmethod
    def choices(self) -> Any:
        """The random choices as a nested dict (a bare value for a distribution)."""

    @property
    @abc.abstractmethod
    def score(self) -> jax.Array:
        """log p(choices; args), summed over all choices and factors."""

    @property
    @abc.abstractmethod
    def retval(self) -> Any:
        """What the generative function returned."""

    @property
    def args(self) -> tuple:
        """The arguments the generative function was called with."""
        return ()

    def __getitem__(self, address) -> Any:
        """The choices at `address` (a component or a tuple path)."""
        path = address_path(address)
        value = choicemap.subconstraint(self.choices, path)
        if value is None:
            raise KeyError(f"no choice at address {'/'.join(map(str, path))!r}")
        return value

    @abc.abstractmethod
    def project(self, selection: Selection) -> jax.Array:
        """log density of the selected choices, plus every factor (see `GenFn.project`)."""

    @abc.abstractmethod
    def log_densities(self) -> Any:
        """Each choice's own log density, shaped like `choices` (factors excluded).

        The elements of a `ppl.vmap` and the steps of a `ppl.scan` keep one each: the
        pointwise log-likelihood of an observed plate, as `az.loo` needs it.
        """

    def compact(self) -> Trace:
        """This trace without `args` and `retval`, as kept inside combinator traces."""
        return self

    def _table(self) -> display.ChoiceTable:
        traced = display.is_traced(self.score)
        title = f"{type(self).__name__}" + ("" if traced else f", score {display.fmt(jnp.sum(self.score))}")
        try:
            densities = None if traced else self.log_densities()
        except ModelError:  # a joint density (an autoguide's) has no per-address part
            densities = None
        return display.ChoiceTable(self.choices, title, densities)

    def __repr__(self) -> str:
        return repr(self._table())

    def _repr_html_(self) -> str:
        return self._table()._repr_html_()


class StoredArgs(eqx.Module):
    """Arguments kept in a trace: arrays as pytree leaves, the rest static.

    Python numbers among the arguments stay Python numbers (they often set
    shapes, such as a scan length), even after the trace crosses `jit` or `vmap`.
    """

    dynamic: Any
    static: Any = eqx.field(static=True)

    @classmethod
    def of(cls, args: tuple) -> StoredArgs:
        dynamic, static = eqx.partition(args, eqx.is_array)
        return cls(dynamic, static)

    def get(self) -> tuple:
        return eqx.combine(self.dynamic, self.static)


class GenFn(eqx.Module):
    """A generative function: the one interface that inference code uses."""

    def __call__(self, *args) -> Call:
        """Apply to arguments; `gen_fn(*args) @ "addr"` calls it inside a model."""
        return Call(self, args)

    # --- the public interface: compiled, keys checked, choice maps normalised ---

    def simulate(self, key: jax.Array, *args) -> Trace:
        """Sample a trace of all choices from the model."""
        _check_key(key, "simulate")
        return _jit_simulate(self, key, args)

    def assess(self, choices: dict, *args) -> tuple[jax.Array, Any]:
        """log p(choices; args) of a full choice map, and the return value."""
        if streams.is_key(choices):
            raise ModelError("assess takes no key: call gen_fn.assess(choices, *args)")
        return _jit_assess(self, _observed(choices), args)

    def generate(self, key: jax.Array, constraints: dict | None, *args) -> tuple[Trace, jax.Array]:
        """A trace consistent with `constraints` and its log importance weight."""
        _check_key(key, "generate")
        return _jit_generate(self, key, _observed(constraints), args)

    def update(self, key: jax.Array, trace: Trace, constraints: dict | None, *args) -> tuple[Trace, jax.Array, Any]:
        """Move `trace` to new `args` (the trace's own when none are given) and `constraints`.

        Returns the new trace, the log weight p'(t')/(p(t) q(added choices)) and the
        discarded choices (old values that were replaced or removed) as a nested dict.
        """
        _check_key(key, "update")
        _check_trace(trace, "update")
        args = args if args else trace.args
        return _jit_update(self, key, trace, _observed(constraints), args)

    def regenerate(self, key: jax.Array, trace: Trace, selection: Selection, *args) -> tuple[Trace, jax.Array]:
        """Resample the `selection` from the prior; the weight is the MH log acceptance ratio."""
        _check_key(key, "regenerate")
        _check_trace(trace, "regenerate")
        _check_selection(selection)
        args = args if args else trace.args
        return _jit_regenerate(self, key, trace, selection, args)

    def project(self, trace: Trace, selection: Selection) -> jax.Array:
        """log density of the selected choices (plus all factors) in `trace`."""
        _check_trace(trace, "project")
        _check_selection(selection)
        return _jit_project(trace, selection)

    # --- what each generative function implements ---

    @abc.abstractmethod
    def _simulate(self, key, args: tuple) -> Trace: ...

    @abc.abstractmethod
    def _assess(self, choices, args: tuple) -> tuple[jax.Array, Any]: ...

    @abc.abstractmethod
    def _generate(self, key, constraints, args: tuple) -> tuple[Trace, jax.Array]: ...

    @abc.abstractmethod
    def _update(self, key, trace: Trace, constraints, args: tuple) -> tuple[Trace, jax.Array, Any]: ...

    @abc.abstractmethod
    def _regenerate(self, key, trace: Trace, selection: Selection, args: tuple) -> tuple[Trace, jax.Array]: ...



@eqx.filter_jit
def _jit_simulate(gen_fn, key, args):
    return gen_fn._simulate(key, args)


@eqx.filter_jit
def _jit_assess(gen_fn, choices, args):
    return gen_fn._assess(choices, args)


@eqx.filter_jit
def _jit_generate(gen_fn, key, constraints, args):
    return gen_fn._generate(key, constraints, args)


@eqx.filter_jit
def _jit_update(gen_fn, key, trace, constraints, args):
    return gen_fn._update(key, trace, constraints, args)


@eqx.filter_jit
def _jit_regenerate(gen_fn, key, trace, selection, args):
    choicemap.check_selected(selection.paths(), trace.choices)  # at trace time: a typo would select nothing
    return gen_fn._regenerate(key, trace, selection, args)


@eqx.filter_jit
def _jit_project(trace, selection):
    return trace.project(selection)


def _observed(choices):
    """A choice map given to the model, normalised and refused if a concrete value holds a NaN."""
    choices = choicemap.normalize(choices)
    choicemap.check_observations(choices)
    return choices


def _check_key(key, method: str) -> None:
    if not streams.is_key(key):
        raise ModelError(
            f"{method} takes a PRNG key first, got {type(key).__name__}; "
            f"call gen_fn.{method}(jax.random.key(0), ...) (keys come first and are explicit)"
        )


def _check_trace(trace, method: str) -> None:
    if not isinstance(trace, Trace):
        raise ModelError(f"{method} needs a Trace (from simulate or generate), got {type(trace).__name__}")


def _check_selection(selection) -> None:
    if not isinstance(selection, Selection):
        raise ModelError(f"expected a selection such as ppl.sel('x'), got {type(selection).__name__}")


# --- the `@` operator and the handler stack ---------------------------------


class Call(eqx.Module):
    """A generative function applied to arguments, waiting for `@ address`."""

    gen_fn: GenFn
    args: tuple

    def __matmul__(self, address) -> Any:
        handler = current_handler()
        if handler is None:
            raise ModelError(
                "`@` was used outside a generative function; call it inside a function "
                "decorated with @ppl.gen, or run the generative function with "
                ".simulate(key, ...) / .generate(key, constraints, ...)"
            )
        return handler.visit(address_path(address), self.gen_fn, self.args)


class Handler(abc.ABC):
    """Interprets `@` inside one execution of a `@ppl.gen` function."""

    @abc.abstractmethod
    def visit(self, path: tuple, gen_fn: GenFn, args: tuple) -> Any:
        """Handle `gen_fn(*args) @ path`, returning the value the model sees."""

    @abc.abstractmethod
    def add_factor(self, log_weight: jax.Array) -> None:
        """Handle `ppl.factor(log_weight)`."""


_stack = threading.local()


def current_handler() -> Handler | None:
    handlers = getattr(_stack, "handlers", None)
    return handlers[-1] if handlers else None


def push_handler(handler: Handler) -> None:
    if not hasattr(_stack, "handlers"):
        _stack.handlers = []
    _stack.handlers.append(handler)


def pop_handler() -> None:
    _stack.handlers.pop()


def factor(log_weight) -> None:
    """Add `log_weight` to the model's log density, as a term that is not a named choice.

    Use it for likelihoods written by hand or soft constraints. It counts in
    `score`, in every importance and MH weight, and in `project`.
    """
    handler = current_handler()
    if handler is None:
        raise ModelError("ppl.factor was called outside a generative function; call it inside a @ppl.gen function")
    log_weight = jnp.asarray(log_weight)
    if log_weight.shape != ():
        raise ModelError(f"ppl.factor takes a scalar log weight, got shape {log_weight.shape}; sum it first")
    handler.add_factor(log_weight)


def address_path(address) -> tuple:
    """Validate an address and return it as a tuple of components."""
    path = address if isinstance(address, tuple) else (address,)
    if not path:
        raise ModelError("an address cannot be the empty tuple; use a string such as 'x'")
    for component in path:
        if isinstance(component, jax.Array):
            raise ModelError(
                f"address {address!r} contains a JAX value; addresses must be static strings or "
                "Python ints (use ppl.vmap or ppl.scan instead of indexing addresses by traced values)"
            )
        if not isinstance(component, (str, int)) or isinstance(component, bool):
            raise ModelError(
                f"address {address!r} has a component of type {type(component).__name__}; "
                "addresses are strings, Python ints, or tuples of them, such as 'x' or ('layer', 0, 'w')"
            )
    return path
