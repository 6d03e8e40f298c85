"""`jit`: compile a function of pytrees whose non-array leaves are static, without waiting for its result."""

from __future__ import annotations

import functools
from typing import Callable

import equinox as eqx
import jax


def jit(fn: Callable) -> Callable:
    """Compile `fn` for the array leaves of its arguments; every other leaf (a model, a function, a setting) is static.

    The same split as `equinox.filter_jit`, but a call returns as soon as the work is
    queued: `filter_jit` waits for every result so that it can report `equinox.error_if`
    failures, which costs a program that raises none the overlap of Python with the
    computation (measured in docs/performance.md). Use it for programs without
    `error_if`; `fn` must return a pytree of arrays.
    """

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def compiled(treedef, static: tuple, arrays: list):
        leaves = [s if a is None else a for s, a in zip(static, arrays)]
        args, kwargs = jax.tree.unflatten(treedef, leaves)
        return fn(*args, **kwargs)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        leaves, treedef = jax.tree.flatten((args, kwargs))
        is_array = [eqx.is_array(x) for x in leaves]
        static = tuple(None if a else x for a, x in zip(is_array, leaves))
        return compiled(treedef, static, [x if a else None for a, x in zip(is_array, leaves)])

    return call
