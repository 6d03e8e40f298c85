"""`@ppl.gen`: a Python function as a generative function.

Inside the function, `value = gen_fn(*args) @ address` makes a random choice
(for a distribution) or calls another generative function under `address`.
Each GFI method runs the function once, at trace time, under a handler that
interprets `@`; the compiled program holds only the arithmetic.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from . import choicemap, streams
from .core import GenFn, Handler, StoredArgs, Trace, pop_handler, push_handler
from .distribution import Distribution
from .errors import ModelError
from .selection import Selection

__all__ = ["GenTrace", "GenerateHandler", "StaticGenFn", "gen"]


class GenTrace(Trace):
    """The trace of a `@ppl.gen` function: one sub-trace per visited address."""

    subtraces: dict  # address path (tuple) -> Trace
    factor_total: jax.Array  # the sum of all ppl.factor terms
    stored_args: StoredArgs | None
    return_value: Any

    @property
    def choices(self) -> dict:
        return choicemap.nest({path: sub.choices for path, sub in self.subtraces.items()})

    @property
    def score(self):
        return sum((sub.score for sub in self.subtraces.values()), self.factor_total)

    @property
    def retval(self):
        return self.return_value

    @property
    def args(self) -> tuple:
        return self.stored_args.get() if self.stored_args is not None else ()

    def project(self, selection: Selection):
        total = self.factor_total
        for path, sub in self.subtraces.items():
            total = total + sub.project(functools.reduce(lambda s, k: s.step(k), path, selection))
        return total

    def log_densities(self) -> dict:
        return choicemap.nest({path: sub.log_densities() for path, sub in self.subtraces.items()})

    def compact(self) -> GenTrace:
        return GenTrace({p: s.compact() for p, s in self.subtraces.items()}, self.factor_total, None, None)


class _Visits(Handler):
    """What every handler shares: keys, duplicate checks, error addresses, factors."""

    def __init__(self, key):
        self.key = key
        self.n_keys = 0
        self.visited: set[tuple] = set()
        self.prefixes: set[tuple] = set()
        self.factor_total = jnp.zeros(())

    def next_key(self, gen_fn):
        self.n_keys += 1
        if isinstance(gen_fn, Distribution):  # a draw: stream n of the key, no hash of its own (ppl.streams)
            return streams.stream(self.key, self.n_keys)
        return streams.fold_in(self.key, self.n_keys)

    def add_factor(self, log_weight):
        self.factor_total = self.factor_total + log_weight

    def visit(self, path, gen_fn, args):
        if path in self.visited or path in self.prefixes or any(path[:i] in self.visited for i in range(1, len(path))):
            raise ModelError(
                "this address is visited twice in one execution; give each random choice its own address "
                "(for repeated choices use ppl.vmap / ppl.repeat, or an index in the address such as ('x', i))",
                path,
            )
        self.visited.add(path)
        self.prefixes.update(path[:i] for i in range(1, len(path)))
        try:
            return self.on_visit(path, gen_fn, args)
        except ModelError as err:
            raise err.at(*path) from None

    @abc.abstractmethod
    def on_visit(self, path, gen_fn, args) -> Any:
        """Run the callee at `path`; return what the model sees."""


class _Simulate(_Visits):
    def __init__(self, key):
        super().__init__(key)
        self.subtraces: dict = {}

    def on_visit(self, path, gen_fn, args):
        tr = gen_fn._simulate(self.next_key(gen_fn), args)
        self.subtraces[path] = tr
        return tr.retval


class _Assess(_Visits):
    def __init__(self, choices):
        super().__init__(None)
        self.choices = choices
        self.logp = jnp.zeros(())

    def on_visit(self, path, gen_fn, args):
        sub = choicemap.subconstraint(self.choices, path)
        if sub is None:
            raise ModelError("assess needs a value for every random choice, and none was given here; add it to the choice map")
        logp, retval = gen_fn._assess(sub, args)
        self.logp = self.logp + logp
        return retval


class GenerateHandler(_Visits):
    """The handler of `generate`: runs each visited callee's `generate` on its part of the constraints.

    Public so that other modules can subclass it to intercept visits (see `ppl.sequential`).
    """

    def __init__(self, key, constraints):
        super().__init__(key)
        self.constraints = constraints
        self.subtraces: dict = {}
        self.weight = jnp.zeros(())

    def on_visit(self, path, gen_fn, args):
        sub = choicemap.subconstraint(self.constraints, path)
        tr, w = gen_fn._generate(self.next_key(gen_fn), sub, args)
        self.subtraces[path] = tr
        self.weight = self.weight + w
        return tr.retval


class _Update(_Visits):
    def __init__(self, key, old: GenTrace, constraints):
        super().__init__(key)
        self.old = old
        self.constraints = constraints
        self.subtraces: dict = {}
        self.weight = jnp.zeros(())
        self.discard: dict = {}

    def on_visit(self, path, gen_fn, args):
        sub = choicemap.subconstraint(self.constraints, path)
        old = self.old.subtraces.get(path)
        if old is None:  # a new address: its choices come from the internal proposal
            tr, w = gen_fn._generate(self.next_key(gen_fn), sub, args)
        else:
            tr, w, discarded = gen_fn._update(self.next_key(gen_fn), old, sub, args)
            if discarded is not None and not (isinstance(discarded, dict) and not discarded):
                self.discard[path] = discarded
        self.subtraces[path] = tr
        self.weight = self.weight + w
        return tr.retval


class _Regenerate(_Visits):
    def __init__(self, key, old: GenTrace, selection: Selection):
        super().__init__(key)
        self.old = old
        self.selection = selection
        self.subtraces: dict = {}
        self.weight = jnp.zeros(())

    def on_visit(self, path, gen_fn, args):
        old = self.old.subtraces.get(path)
        if old is None:  # new choices from the prior cancel in the MH ratio
            tr = gen_fn._simulate(self.next_key(gen_fn), args)
        else:
            sub_selection = functools.reduce(lambda s, k: s.step(k), path, self.selection)
            tr, w = gen_fn._regenerate(self.next_key(gen_fn), old, sub_selection, args)
            self.weight = self.weight + w
        self.subtraces[path] = tr
        return tr.retval


class StaticGenFn(GenFn):
    """A generative function written as a Python function with `@` (see `ppl.gen`)."""

    fn: Callable = eqx.field(static=True)

    def __repr__(self) -> str:
        return f"ppl.gen({getattr(self.fn, '__qualname__', self.fn)})"

    def _run(self, handler: _Visits, args: tuple) -> Any:
        push_handler(handler)
        try:
            return self.fn(*args)
        except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerIntegerConversionError) as err:
            raise ModelError(
                f"the generative function {self.fn.__name__!r} uses Python control flow (if/while/bool/int) on a "
                "random or traced value, which cannot be compiled; use ppl.cond or ppl.switch to branch on it, "
                "ppl.scan for loops whose length is random-free, or jnp.where for a value-level choice "
                f"(last address visited: {_last(handler)})"
            ) from err
        finally:
            pop_handler()

    def _trace(self, handler, args, retval) -> GenTrace:
        return GenTrace(handler.subtraces, handler.factor_total, StoredArgs.of(args), retval)

    def _simulate(self, key, args):
        handler = _Simulate(key)
        retval = self._run(handler, args)
        return self._trace(handler, args, retval)

    def _assess(self, choices, args):
        handler = _Assess(choices)
        retval = self._run(handler, args)
        choicemap.check_all_visited(choices, handler.visited, "value")
        return handler.logp + handler.factor_total, retval

    def _generate(self, key, constraints, args):
        handler = GenerateHandler(key, constraints)
        retval = self._run(handler, args)
        choicemap.check_all_visited(constraints, handler.visited)
        return self._trace(handler, args, retval), handler.weight + handler.factor_total

    def _update(self, key, trace, constraints, args):
        _check_same_kind(trace, GenTrace, "update")
        handler = _Update(key, trace, constraints)
        retval = self._run(handler, args)
        choicemap.check_all_visited(constraints, handler.visited)
        removed = {p: t for p, t in trace.subtraces.items() if p not in handler.visited}
        weight = handler.weight + handler.factor_total - trace.factor_total
        weight = weight - sum((t.score for t in removed.values()), jnp.zeros(()))
        discard = {**handler.discard, **{p: t.choices for p, t in removed.items()}}
        return self._trace(handler, args, retval), weight, choicemap.nest(discard)

    def _regenerate(self, key, trace, selection, args):
        _check_same_kind(trace, GenTrace, "regenerate")
        handler = _Regenerate(key, trace, selection)
        retval = self._run(handler, args)
        weight = handler.weight + handler.factor_total - trace.factor_total
        return self._trace(handler, args, retval), weight


def _last(handler: _Visits) -> str:
    return "/".join(map(str, max(handler.visited, key=len))) if handler.visited else "none yet"


def _check_same_kind(trace, kind, method):
    if not isinstance(trace, kind):
        raise ModelError(f"{method} got a {type(trace).__name__}, which this generative function did not make")


def gen(fn: Callable) -> StaticGenFn:
    """Turn a Python function into a generative function.

        @ppl.gen
        def model(xs):
            slope = dist.Normal(0.0, 1.0) @ "slope"
            return ppl.vmap(point, in_axes=(0, None))(xs, slope) @ "ys"

    The function may only use `@`, `ppl.factor`, JAX operations and combinators;
    Python `if`/`while` on random values is an error (use `ppl.cond`, `ppl.switch`,
    `ppl.scan`).
    """
    if isinstance(fn, GenFn):
        raise TypeError("ppl.gen was applied twice; decorate the plain Python function once")
    if not callable(fn):
        raise TypeError(f"ppl.gen decorates a function, got {type(fn).__name__}")
    return StaticGenFn(fn)
