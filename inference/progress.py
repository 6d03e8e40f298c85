"""Progress bars advanced from inside a compiled program (`jax.debug.callback`), for the drivers that run as one
program (`mcmc.nuts` moves its bar between compiled calls instead: see `inference.mcmc.nuts.CHUNKS`).

A compiled program is cached and reused, so its callbacks cannot hold the bar of one run: they
advance whichever bar `progress` has put in `BAR` for the call in progress, and do nothing when
there is none (a run under a caller's `jit`, whose program runs after the call has returned).
Whether a run shows a bar is a traced flag (`shown`), not a setting: the callbacks are compiled in and
skipped at run time when it is false, so toggling `progress_bar` compiles nothing.

A bar's total is an int (iterations, particles), None until the program says it (the number of
SMC steps is known when the program is traced, not before), or a float (tempering's
temperature, from 0 to 1). Callbacks set the bar's position, not an increment, so a callback
that arrives twice or late cannot push it past the truth.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import numpy as np
from tqdm.std import TqdmWarning

with warnings.catch_warnings():  # without ipywidgets, notebooks get text bars, which need no warning in every output
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

__all__ = ["BAR", "advance", "progress", "progress_callback", "shown", "tqdm", "tracing"]

BAR: dict = {}  # the tqdm bar of the run in progress, at "bar"


def _move_to(position, total=None, postfix=None):
    """Host side: the bar in `BAR` (if any) at `position` of `total` (set on the first call that gives it)."""
    bar = BAR.get("bar")
    if bar is None:
        return
    if total is not None and bar.total != total:
        bar.total = total
    position = position.item()
    if postfix is not None:
        bar.set_postfix(postfix, refresh=False)
    if position > bar.n:
        bar.update(position - bar.n)
    else:
        bar.refresh()


def advance(position: jax.Array, total: float | None = None, **postfix: jax.Array) -> None:
    """Inside a compiled program: move the current bar to `position` (a traced scalar) of `total` (static, or
    None to keep the bar's own); `postfix` names a static label for each traced value shown after the bar
    (`stage=i` shows "stage=7")."""
    if postfix:
        names = tuple(postfix)
        jax.debug.callback(lambda p, *v: _move_to(p, total, {n: int(x) for n, x in zip(names, v)}),
                           position, *postfix.values())
    else:
        jax.debug.callback(functools.partial(_move_to, total=total), position)


def progress_callback(total: int, show: jax.Array):
    """A function to call inside a loop at iteration i of `total`: where the traced flag `show` is true, it moves
    the bar to i + 1 of `total` about 100 times in all, the last iteration included (so the bar's total may be
    unknown until then)."""
    every = max(1, total // 100)

    def maybe(i):
        due = show & (((i + 1) % every == 0) | (i + 1 == total))
        jax.lax.cond(due, lambda: advance(i + 1, total), lambda: None)

    return maybe


def shown(progress_bar: bool, *trees: Any) -> np.ndarray:
    """The flag a compiled program reads to call the bar's callbacks: an array, not a static setting, so a run
    with the bar on and one with it off are one compiled program. False under a caller's `jit` or `vmap`."""
    return np.asarray(bool(progress_bar) and not tracing(*trees))  # numpy: concrete even under a caller's jit


def tracing(*trees: Any) -> bool:
    """Whether any leaf of `trees` is a tracer: the driver was called inside a caller's `jit` or `vmap`, where its
    program runs (if at all) after the call returns, so a bar would show nothing."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


class progress:
    """Context: a tqdm bar in `BAR` for the compiled program to advance, closed when the program's callbacks are done.

    `total` is an int, None (the program sets it) or a float (a bar from 0 to `total` showing `n` with three
    decimals, as tempering's β); other keyword arguments go to tqdm. The bar of an enclosing run is put back
    on exit.
    """

    def __init__(self, enabled: bool, total: float | None, desc: str, **tqdm_kwargs: Any):
        self.enabled, self.total, self.desc, self.tqdm_kwargs = enabled, total, desc, tqdm_kwargs
        self.outer = None

    def __enter__(self):
        if self.enabled:
            kwargs = dict(self.tqdm_kwargs)
            if isinstance(self.total, float):
                kwargs.setdefault("bar_format", "{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:g} "
                                                "[{elapsed}{postfix}]")
            self.outer = BAR.get("bar")
            BAR["bar"] = tqdm(total=self.total, desc=self.desc, **kwargs)

    def __exit__(self, *exc):
        if not self.enabled:
            return
        jax.effects_barrier()  # every callback of the program has run
        bar = BAR.pop("bar", None)
        if bar is not None:
            bar.close()
        if self.outer is not None:
            BAR["bar"] = self.outer
