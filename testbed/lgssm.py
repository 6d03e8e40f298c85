"""The scalar linear-Gaussian state-space model of `testbed.oracles`, written with `ppl.scan`.

    x_0 ~ N(M0, P0),  x_t = A x_{t-1} + N(0, Q),  y_t = C x_t + N(0, R),  t = 0 .. T-1

`Q`, `R` and `P0` are variances, as in the oracles. The first step is selected by a scanned `is_first` flag, so
the model's argument is `first_flags = jnp.arange(T) == 0` and its observations are `{"steps": {"y": ys}}`.
"""

from __future__ import annotations

import jax.numpy as jnp

import ppl
from ppl import dist

A, C, Q, R, M0, P0 = 0.9, 1.0, 0.5, 1.0, 0.0, 1.0


@ppl.gen
def lg_step(x_prev, is_first):
    """x_0 ~ N(M0, P0), x_t ~ N(A x_{t-1}, Q); y_t ~ N(C x_t, R): the oracles' model."""
    mean = jnp.where(is_first, M0, A * x_prev)
    var = jnp.where(is_first, P0, Q)
    x = dist.Normal(mean, jnp.sqrt(var)) @ "x"
    dist.Normal(C * x, jnp.sqrt(R)) @ "y"
    return x


@ppl.gen
def lgssm(first_flags):
    return ppl.scan(lg_step, in_axes=(0,))(0.0, first_flags) @ "steps"
