"""A tqdm bar advanced from inside a compiled MCMC program (`jax.debug.callback`).

The compiled program is cached, so its callback cannot hold the bar of one run:
it advances whichever bar `progress` has put in `BAR` for the call in progress.
"""

from __future__ import annotations

import jax
from tqdm.auto import tqdm

BAR: dict = {}  # the tqdm bar of the run in progress


def progress_callback(total: int):
    """A function to call inside a scan at iteration i: advances the bar in `BAR` about 100 times in all."""
    every = max(1, total // 100)

    def advance(i):
        bar = BAR.get("bar")
        if bar is not None:
            bar.update(min(every, total - bar.n))

    def maybe(i):
        jax.lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(advance, i), lambda: None)

    return maybe


class progress:
    """Context: a tqdm bar in `BAR` for the compiled program to advance."""

    def __init__(self, enabled: bool, total: int, desc: str):
        self.enabled, self.total, self.desc = enabled, total, desc

    def __enter__(self):
        if self.enabled:
            BAR["bar"] = tqdm(total=self.total, desc=self.desc)

    def __exit__(self, *exc):
        bar = BAR.pop("bar", None)
        if bar is not None:
            bar.update(self.total - bar.n)
            bar.close()
