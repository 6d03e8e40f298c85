"""Selections pick addresses of a trace, for `regenerate`, `project` and MCMC kernels.

`ppl.sel("a")` selects address `a` and everything under it; `ppl.sel("b", "c")`
selects the hierarchical address `b/c`. Combine with `|` (union), `&`
(intersection) and `~` (complement). `ppl.sel()` selects everything and
`ppl.sel.none()` nothing. A selection of an address inside a `ppl.vmap` or
`ppl.scan` block applies to every element of the block.
"""

from __future__ import annotations

import abc
import dataclasses

from . import choicemap

__all__ = ["Selection", "sel"]


class Selection(abc.ABC):
    """A set of addresses, navigated one address component at a time."""

    @abc.abstractmethod
    def step(self, component) -> Selection:
        """The selection relative to the child at `component`."""

    @abc.abstractmethod
    def selects_here(self) -> bool:
        """Whether the value at the current address (a leaf) is selected."""

    @abc.abstractmethod
    def paths(self) -> frozenset[tuple]:
        """The addresses this selection names, in unions, intersections and complements alike."""

    def __or__(self, other: Selection) -> Selection:
        return _Or(self, other)

    def __and__(self, other: Selection) -> Selection:
        return _And(self, other)

    def __invert__(self) -> Selection:
        return _Not(self)


@dataclasses.dataclass(frozen=True)
class _All(Selection):
    def step(self, component):
        return self

    def selects_here(self):
        return True

    def paths(self):
        return frozenset()


@dataclasses.dataclass(frozen=True)
class _None(Selection):
    def step(self, component):
        return self

    def selects_here(self):
        return False

    def paths(self):
        return frozenset()


@dataclasses.dataclass(frozen=True)
class _Path(Selection):
    path: tuple

    def step(self, component):
        if not self.path:
            return ALL
        return _Path(self.path[1:]) if self.path[0] == component else NONE

    def selects_here(self):
        return not self.path

    def paths(self):
        return frozenset({self.path})


@dataclasses.dataclass(frozen=True)
class _Or(Selection):
    left: Selection
    right: Selection

    def step(self, component):
        return self.left.step(component) | self.right.step(component)

    def selects_here(self):
        return self.left.selects_here() or self.right.selects_here()

    def paths(self):
        return self.left.paths() | self.right.paths()


@dataclasses.dataclass(frozen=True)
class _And(Selection):
    left: Selection
    right: Selection

    def step(self, component):
        return self.left.step(component) & self.right.step(component)

    def selects_here(self):
        return self.left.selects_here() and self.right.selects_here()

    def paths(self):
        return self.left.paths() | self.right.paths()


@dataclasses.dataclass(frozen=True)
class _Not(Selection):
    inner: Selection

    def step(self, component):
        return ~self.inner.step(component)

    def selects_here(self):
        return not self.inner.selects_here()

    def paths(self):
        return self.inner.paths()


ALL = _All()
NONE = _None()


class _SelBuilder:
    """`sel(*path)` builds a selection; `sel()` is all addresses, `sel.none()` none."""

    def __call__(self, *path) -> Selection:
        if len(path) == 1 and isinstance(path[0], tuple):
            path = path[0]
        for component in path:
            if not isinstance(component, (str, int)):
                raise TypeError(
                    f"selection address components must be strings or ints, got {component!r}; "
                    "write ppl.sel('a', 'b') for the address a/b"
                )
        return _Path(tuple(path)) if path else ALL

    @staticmethod
    def none() -> Selection:
        return NONE

    @staticmethod
    def of(choices) -> Selection:
        """The addresses of a choice map's values (its leaves)."""
        out = NONE
        for path in choicemap.leaf_paths(choices):
            if path:  # a bare value at the root names no address
                out = out | _Path(path)
        return out


sel = _SelBuilder()
