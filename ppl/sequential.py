"""A model seen as a state-space model: the choices before its `ppl.scan`, then the steps.

Sequential Monte Carlo extends particles one time step at a time, with fixed
shapes, so it needs the model cut at its scan:

    @ppl.gen
    def model(T):
        sigma = dist.HalfNormal(1.0) @ "sigma"                     # the prefix
        return ppl.scan(step, length=T)(0.0, sigma) @ "steps"      # the steps

`state_space(model, args)` finds the scan (by tracing the model once, shapes
only) and returns a `StateSpace` with the step generative function and the
scan's length. `StateSpace.generate_prefix` runs `generate` on the prefix
alone and returns the arguments the scan was called with, so each step can be
run with `step.generate(key, constraints_t, *StateSpace.step_args(scan_args, t, carry))`.
The model may not make random choices after its scan returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import choicemap
from .combinators.scan import Scan, check_block_length
from .core import GenFn
from .errors import ModelError
from .gen import GenerateHandler, StaticGenFn

__all__ = ["Prefix", "StateSpace", "state_space"]


class Prefix(NamedTuple):
    """The prefix of one execution: its choices, its weight, and the scan's call."""

    choices: dict
    weight: jax.Array
    scan_args: tuple  # (init carry, *arguments) as the model passed them to the scan


class _Stop(Exception):
    """Raised by the prefix handler when the model visits anything after its scan."""


class _PrefixHandler(GenerateHandler):
    def __init__(self, key, constraints, path, placeholder):
        super().__init__(key, constraints)
        self.scan_path = path
        self.placeholder = placeholder
        self.scan_args = None

    def on_visit(self, path, gen_fn, args):
        if self.scan_args is not None:
            raise ModelError(
                "this model makes random choices after its ppl.scan; sequential inference needs the scan "
                "to be the model's last random part (move these choices before the scan or into its step)"
            )
        if path == self.scan_path:
            self.scan_args = args
            return self.placeholder
        return super().on_visit(path, gen_fn, args)


class _FindScans(GenerateHandler):
    """Records every `ppl.scan` visited at the top level of the model."""

    def __init__(self, key):
        super().__init__(key, None)
        self.scans: list = []

    def on_visit(self, path, gen_fn, args):
        if isinstance(gen_fn, Scan):
            self.scans.append((path, gen_fn, args))
        return super().on_visit(path, gen_fn, args)


class StateSpace(NamedTuple):
    """A model with one top-level `ppl.scan`: where it is and how to run its steps."""

    model: GenFn
    path: tuple  # the scan's address in the model
    scan: Scan
    length: int
    retval_shape: Any

    @property
    def step(self) -> GenFn:
        """The step generative function: `step(carry, *args_t)`."""
        return self.scan.kernel

    def generate_prefix(self, key, constraints, args: tuple) -> Prefix:
        """`generate` on the choices before the scan; the scan itself is not run."""
        constraints = choicemap.normalize(constraints)
        placeholder = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.retval_shape)
        handler = _PrefixHandler(key, constraints, self.path, placeholder)
        self.model._run(handler, tuple(args))
        outside = {k: v for k, v in constraints.items() if k != self.path[0]} if len(self.path) == 1 else constraints
        choicemap.check_all_visited(outside, handler.visited - {self.path})
        choices = choicemap.nest({p: tr.choices for p, tr in handler.subtraces.items()})
        return Prefix(choices, handler.weight + handler.factor_total, handler.scan_args)

    def step_args(self, scan_args: tuple, t, carry) -> tuple:
        """The arguments of step `t`: the carry, then each scan argument (sliced at t if scanned)."""
        rest = scan_args[1:]
        axes = self.scan._axes(rest)
        return (carry, *(jax.tree.map(lambda x: x[t], a) if ax == 0 else a for a, ax in zip(rest, axes)))

    def next_carry(self, step_retval) -> Any:
        """The carry a step hands to the next one (its return value, or the first of a pair)."""
        return self.scan._split(step_retval)[0]

    def step_constraints(self, observations, t) -> Any:
        """The constraints of step `t`: the scan's block of `observations`, indexed at t."""
        block = choicemap.subconstraint(choicemap.normalize(observations), self.path)
        return None if block is None else jax.tree.map(lambda x: x[t], block)

    def observed_steps(self, observations) -> Any:
        """The scan's block of `observations` (time first) without its `Masked` leaves: the values given at every
        step, which a filter's record leaves out."""
        return choicemap.drop_masked(choicemap.subconstraint(choicemap.normalize(observations), self.path))

    def check_observations(self, observations) -> None:
        """Raise a `ModelError` at the scan's address unless its block of `observations` has time first, of
        the scan's length (sequential inference slices it per step, where a wrong length would go unseen)."""
        block = choicemap.subconstraint(choicemap.normalize(observations), self.path)
        try:
            check_block_length(block, self.length)
        except ModelError as error:
            raise error.at(*self.path) from None

    def full_choices(self, prefix_choices: dict, step_choices) -> dict:
        """A complete choice map: the prefix's choices and the stacked step choices at the scan's address."""
        out = dict(prefix_choices)
        node = out
        for k in self.path[:-1]:
            node = node.setdefault(k, {})
        node[self.path[-1]] = step_choices
        return out


def state_space(model: GenFn, args: tuple) -> StateSpace:
    """Cut `model` at its one top-level `ppl.scan` (see the module docstring)."""
    if not isinstance(model, StaticGenFn):
        raise ModelError("sequential inference needs a @ppl.gen model that calls ppl.scan at its top level")
    args = tuple(args)

    def find(key):
        handler = _FindScans(key)
        model._run(handler, args)
        found.extend(handler.scans)
        return [gen_fn._simulate(key, a).retval for _, gen_fn, a in handler.scans]

    found: list = []
    retvals = jax.eval_shape(find, jax.random.key(0))
    if len(found) != 1:
        raise ModelError(
            f"sequential inference needs exactly one ppl.scan at the top level of the model, found {len(found)} "
            f"({[ '/'.join(map(str, p)) for p, _, _ in found]}); put the time steps in one ppl.scan"
        )
    path, scan, scan_args = found[0]
    return StateSpace(model, path, scan, scan._length(tuple(scan_args)[1:]), retvals[0])
