"""`ppl.switch` and `ppl.cond`: branch on a random or traced value.

    x = ppl.cond(heavy_tail, light_tail)(is_outlier, mu) @ "x"
    y = ppl.switch(b0, b1, b2)(k, mu) @ "y"

Branches may visit different addresses but must return values of the same
structure, shape and dtype. One `lax.switch` runs the active branch. The trace
keeps a slot for every branch (zeros for the inactive ones), and its choices are
the union of the branches' addresses: an address that every branch visits holds
the active branch's value; an address that only some branches visit holds a
`ppl.Masked` value whose flag says whether the active branch visited it.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import choicemap
from ..choicemap import Masked
from ..core import GenFn, StoredArgs, Trace
from ..errors import ModelError
from ..selection import Selection

__all__ = ["Switch", "SwitchTrace", "cond", "switch"]


class SwitchTrace(Trace):
    """Which branch ran, and a trace slot for every branch."""

    index: jax.Array
    branches: tuple
    stored_args: StoredArgs | None
    return_value: Any

    @property
    def choices(self):
        return _union([tr.choices for tr in self.branches], self.index)

    @property
    def score(self):
        return _select(self.index, range(len(self.branches)), [tr.score for tr in self.branches])

    @property
    def retval(self):
        return self.return_value

    @property
    def args(self):
        return self.stored_args.get() if self.stored_args is not None else ()

    def project(self, selection: Selection):
        return _select(self.index, range(len(self.branches)), [tr.project(selection) for tr in self.branches])

    def log_densities(self):
        # an inactive branch's slot holds zeros, so the sum is the active branch's, and 0 where it made no choice
        branches = [choicemap.flatten(tr.log_densities()) for tr in self.branches]
        total: dict = {}
        for flat in branches:
            for path, value in flat:
                total[path] = total[path] + value if path in total else value
        return total[()] if () in total else choicemap.nest(total)

    def compact(self):
        return SwitchTrace(self.index, self.branches, None, None)


class Switch(GenFn):
    """Run one of several generative functions, chosen by an index (or a predicate)."""

    branches: tuple
    from_predicate: bool = eqx.field(static=True)

    def _index(self, selector) -> jax.Array:
        selector = jnp.asarray(selector)
        if selector.shape != ():
            raise ModelError(
                f"the branch selector of ppl.switch/ppl.cond must be a scalar, got shape {selector.shape}; "
                "wrap the switch in ppl.vmap to branch per element"
            )
        if self.from_predicate:
            return jnp.where(selector, 0, 1).astype(jnp.int32)
        if not jnp.issubdtype(selector.dtype, jnp.integer):
            raise ModelError(f"the index of ppl.switch must be an integer, got dtype {selector.dtype}")
        return jnp.clip(selector, 0, len(self.branches) - 1).astype(jnp.int32)

    def _shapes(self, args: tuple) -> list:
        """Each branch's (compact trace, choices), as shapes only: nothing is run."""
        key = jax.random.key(0)

        def shape_of(b):
            def run(a):
                tr = b._simulate(key, a)
                return tr.compact(), tr.choices

            return jax.eval_shape(run, args)

        return [shape_of(b) for b in self.branches]

    def _dispatch(self, index, run_branch) -> tuple:
        """`lax.switch` over branches; branch i computes `(trace_i, extra)` with `run_branch(i)`.

        Every branch returns a full set of trace slots (zeros for the others), so
        all branches have one output structure.
        """
        # each slot shaped as its branch's own trace in this very method and leaf mode (an unconstrained or
        # pointwise run's traces differ from a simulated one's)
        slot_shapes = [jax.eval_shape(lambda j=j: run_branch(j)[0].compact()) for j in range(len(self.branches))]

        def make(i):
            def branch():
                tr, extra = run_branch(i)
                slots = tuple(tr.compact() if j == i else _zeros(slot_shapes[j]) for j in range(len(self.branches)))
                return slots, tr.retval, extra

            return branch

        try:
            return jax.lax.switch(index, [make(i) for i in range(len(self.branches))])
        except TypeError as err:
            raise ModelError(
                "the branches of ppl.switch/ppl.cond return values of different structure, shape or dtype "
                f"(or produce different extra outputs); make them agree. JAX said: {err}"
            ) from None

    def _trace(self, index, slots, args, retval) -> SwitchTrace:
        return SwitchTrace(index, slots, StoredArgs.of(args), retval)

    def _for_branch(self, choices, i: int, shapes: list):
        """Restrict a choice map to the addresses branch i visits."""
        return _restrict(choices, shapes[i][1])

    def _simulate(self, key, args):
        index, rest = self._index(args[0]), args[1:]
        slots, retval, _ = self._dispatch(index, lambda i: (self.branches[i]._simulate(key, rest), None))
        return self._trace(index, slots, args, retval)

    def _check_known(self, choices, rest, what):
        shapes = self._shapes(rest)
        visited = set()
        for s in shapes:
            visited.update(choicemap.leaf_paths(s[1]))
        if isinstance(choices, dict):
            choicemap.check_all_visited(choices, visited, what)
        return shapes

    def _assess(self, choices, args):
        index, rest = self._index(args[0]), args[1:]
        shapes = self._check_known(choices, rest, "value")
        fns = [
            lambda i=i: self.branches[i]._assess(self._for_branch(choices, i, shapes), rest)
            for i in range(len(self.branches))
        ]
        logp, retval = jax.lax.switch(index, fns)
        return logp, retval

    def _generate(self, key, constraints, args):
        index, rest = self._index(args[0]), args[1:]
        shapes = self._check_known(constraints, rest, "constraint")
        slots, retval, weight = self._dispatch(
            index, lambda i: self.branches[i]._generate(key, self._for_branch(constraints, i, shapes), rest)
        )
        return self._trace(index, slots, args, retval), weight

    def _update(self, key, trace, constraints, args):
        index, rest = self._index(args[0]), args[1:]
        shapes = self._check_known(constraints, rest, "constraint")
        same = index == trace.index

        def run(i):
            sub = self._for_branch(constraints, i, shapes)

            def keep():
                tr, w, _ = self.branches[i]._update(key, trace.branches[i], sub, rest)
                return tr, w

            def switch_branch():  # the old branch's choices are all discarded
                tr, w = self.branches[i]._generate(key, sub, rest)
                return tr, w - trace.score

            return jax.lax.cond(same, keep, switch_branch)

        slots, retval, weight = self._dispatch(index, run)
        new = self._trace(index, slots, args, retval)
        return new, weight, _discard(trace, constraints, same)

    def _regenerate(self, key, trace, selection, args):
        index, rest = self._index(args[0]), args[1:]
        same = index == trace.index

        def run(i):
            def keep():
                return self.branches[i]._regenerate(key, trace.branches[i], selection, rest)

            def switch_branch():  # fresh prior choices: they cancel in the MH ratio
                return self.branches[i]._simulate(key, rest), jnp.zeros(())

            return jax.lax.cond(same, keep, switch_branch)

        slots, retval, weight = self._dispatch(index, run)
        return self._trace(index, slots, args, retval), weight


def _zeros(shape_tree):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape_tree)


def _select(index, owners, values):
    """The value of the branch `index` among `values` (of branches `owners`); `index` may be batched."""

    def pick(*leaves):
        out = leaves[0]
        for i, leaf in zip(list(owners)[1:], leaves[1:]):
            flag = jnp.reshape(index == i, index.shape + (1,) * (leaf.ndim - index.ndim))
            out = jnp.where(flag, leaf, out)
        return out

    return jax.tree.map(pick, *values)


def _restrict(choices, structure):
    """The part of `choices` at the addresses present in `structure`."""
    if choices is None:
        return None
    if not isinstance(structure, dict):
        return choices
    if not isinstance(choices, dict):
        return choices  # a leaf where the branch has a dict: the branch reports the error
    out = {k: _restrict(choices[k], structure[k]) for k in structure if k in choices}
    out = {k: v for k, v in out.items() if v is not None}
    return out or None


def _union(branch_choices: list, index) -> Any:
    """Merge the branches' choice maps: see the module docstring."""
    paths: dict[tuple, list] = {}
    for i, chm in enumerate(branch_choices):
        for path in choicemap.leaf_paths(chm):
            paths.setdefault(path, []).append(i)
    out: dict = {}
    for path, owners in paths.items():
        values = [choicemap.subconstraint(branch_choices[i], path) for i in owners]
        values = [v.value if isinstance(v, Masked) else v for v in values]
        kinds = {(jnp.shape(v), jnp.result_type(v)) for v in values}
        if len(kinds) > 1:
            raise ModelError(
                f"branches {owners} of this ppl.switch/ppl.cond visit one address with values of different "
                f"shapes or dtypes {sorted(map(str, kinds))}; give those choices different addresses",
                path,
            )
        value = _select(index, owners, values)
        if len(owners) < len(branch_choices):
            value = choicemap.masked(value, functools.reduce(jnp.logical_or, [index == i for i in owners]))
        if path == ():
            return value
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return out


def _discard(trace: SwitchTrace, constraints, same) -> Any:
    """Old values that a switch update replaced (constrained) or removed (branch changed)."""
    constrained = set(choicemap.leaf_paths(constraints)) if constraints else set()
    old = trace.choices

    def mark(value, path):
        replaced = jnp.logical_or(jnp.logical_not(same), path in constrained)
        if isinstance(value, Masked):
            return Masked(value.value, jnp.logical_and(value.valid, choicemap.masked(value.value, replaced).valid))
        return choicemap.masked(value, replaced)

    if not isinstance(old, dict):
        return mark(old, ())
    return _map_leaves(old, mark)


def _map_leaves(chm, fn, prefix=()):
    if not isinstance(chm, dict):
        return fn(chm, prefix)
    return {k: _map_leaves(v, fn, prefix + (k,)) for k, v in chm.items()}


def switch(*branches: GenFn) -> Switch:
    """Call as `ppl.switch(b0, b1, ...)(index, *args) @ addr`: run branch `index`."""
    if len(branches) < 1 or not all(isinstance(b, GenFn) for b in branches):
        raise TypeError("ppl.switch takes one or more generative functions (use @ppl.gen or ppl.dist)")
    return Switch(tuple(branches), False)


def cond(if_true: GenFn, if_false: GenFn) -> Switch:
    """Call as `ppl.cond(if_true, if_false)(predicate, *args) @ addr`."""
    if not (isinstance(if_true, GenFn) and isinstance(if_false, GenFn)):
        raise TypeError("ppl.cond takes two generative functions (use @ppl.gen or ppl.dist)")
    return Switch((if_true, if_false), True)
