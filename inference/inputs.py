"""Checks of what a user hands an inference driver, made in Python before anything is traced, so that a bad
argument raises an error that names it and the fix instead of a JAX error (or a silent wrong answer) later."""

from __future__ import annotations

import operator
from typing import Any

import ppl

__all__ = ["count", "model_args", "observations"]


def model_args(args: Any) -> tuple:
    """The model's arguments as a tuple; a bare value (`20` for `(20,)`) is refused, naming `args`."""
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args is the tuple of the model's arguments, got {type(args).__name__} {args!r}; "
                        f"write ({args!r},) for a model of one argument, () for none")
    return tuple(args)


def count(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as a Python int of at least `minimum`; NumPy and JAX integers are accepted (not bools or floats)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def observations(choices: Any) -> Any:
    """The observations as a normalised choice map, refused if a concrete value holds a NaN (named by address)."""
    choices = ppl.choicemap.normalize(choices)
    ppl.choicemap.check_observations(choices)
    return choices
