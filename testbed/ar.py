"""An AR(1) state-space model whose coefficient is a random choice before its scan: the smallest model with a
static parameter, for tests of what a filter does with one (condition on it, or refuse it per particle).

    a ~ N(0.5, 0.5²),  x_0 ~ N(0, 1),  x_t = a x_{t-1} + N(0, 1),  y_t = x_t + N(0, 1)
"""

from __future__ import annotations

import jax.numpy as jnp

import ppl
from ppl import dist


@ppl.gen
def ar_step(x_prev, is_first, a):
    x = dist.Normal(jnp.where(is_first, 0.0, a * x_prev), 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x


@ppl.gen
def ar_model(flags):
    a = dist.Normal(0.5, 0.5) @ "a"
    return ppl.scan(ar_step, in_axes=(0, None))(0.0, flags, a) @ "steps"
