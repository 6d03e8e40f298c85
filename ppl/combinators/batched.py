"""The trace of a block of independent or sequential copies (`ppl.vmap`, `ppl.scan`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core import StoredArgs, Trace
from ..selection import Selection

__all__ = ["BatchedTrace"]


class BatchedTrace(Trace):
    """The inner traces stacked along a leading axis (elements of a plate, or time steps)."""

    inner: Trace
    stored_args: StoredArgs | None
    return_value: Any

    @property
    def choices(self):
        return self.inner.choices

    @property
    def score(self):
        return jnp.sum(self.inner.score, axis=-1)  # the block's own axis: works on batched traces too

    @property
    def retval(self):
        return self.return_value

    @property
    def args(self):
        return self.stored_args.get() if self.stored_args is not None else ()

    def project(self, selection: Selection):
        return jnp.sum(jax.vmap(lambda tr: tr.project(selection))(self.inner))

    def log_densities(self):
        return self.inner.log_densities()

    def compact(self):
        return BatchedTrace(self.inner, None, None)
