"""The scalar linear-Gaussian state-space model of `testbed.oracles`, written with `ppl.scan`.

    x_0 ~ N(M0, P0),  x_t = A x_{t-1} + N(0, Q),  y_t = C x_t + N(0, R),  t = 0 .. T-1

`Q`, `R` and `P0` are variances, as in the oracles. The first step is selected by a scanned `is_first` flag, so
the model's argument is `first_flags = jnp.arange(T) == 0` and its observations are `{"steps": {"y": ys}}`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

from . import oracles

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


def log_density_bound(choices, t):
    """An upper bound of `lg_step`'s log density p(x_t, y_t | x_{t-1}) over x_{t-1}, for PaRIS's accept-reject
    backward draws: the transition's largest density (its exact density at the first step, which ignores the
    carry) plus the observation's log density."""
    x, y = choices["x"], choices["y"]
    log_transition = jnp.where(t == 0, -0.5 * (jnp.log(2 * jnp.pi * P0) + (x - M0) ** 2 / P0),
                               -0.5 * jnp.log(2 * jnp.pi * Q))
    return log_transition - 0.5 * (jnp.log(2 * jnp.pi * R) + (y - C * x) ** 2 / R)


def smoothing_moments(x_prev, x):
    """Three additive functionals whose smoothed expectations `oracles.lgssm_smoothed_moments` gives exactly:
    Σ_t x_t, Σ_t x_t² and Σ_t x_{t-1} x_t (with x_{-1} = 0, the scan's initial carry)."""
    return {"sum": x, "square": x**2, "lag": x_prev * x}


def simulated(T: int, seed: int):
    """Data simulated from the model: (ys as numpy float64, the model's args, its observations)."""
    _, ys = oracles.lgssm_simulate(np.random.default_rng(seed), T, A, C, Q, R, M0, P0)
    return ys, (jnp.arange(T) == 0,), {"steps": {"y": jnp.asarray(ys, jnp.float32)}}


@ppl.gen
def lg_step_params(x_prev, is_first, p):
    """`lg_step` with `p = {"a", "log_q", "log_r"}` (unconstrained) in place of A, Q and R."""
    mean = jnp.where(is_first, M0, p["a"] * x_prev)
    var = jnp.where(is_first, P0, jnp.exp(p["log_q"]))
    x = dist.Normal(mean, jnp.sqrt(var)) @ "x"
    dist.Normal(C * x, jnp.exp(0.5 * p["log_r"])) @ "y"
    return x


@ppl.gen
def lgssm_params(p, first_flags):
    """The model with its parameters as its first argument, as `pgibbs.learn` takes them."""
    return ppl.scan(lg_step_params, in_axes=(0, None))(0.0, first_flags, p) @ "steps"


def kalman_mle(ys) -> tuple:
    """The maximum-likelihood (a, log q, log r) of `lgssm_params` by the Kalman likelihood maximised directly:
    (the negative log-likelihood function, the MLE, its standard errors from the observed information)."""
    from scipy import optimize

    def nll(theta):
        return -oracles.kalman_filter(ys, theta[0], C, np.exp(theta[1]), np.exp(theta[2]), M0, P0)[2]

    ml = optimize.minimize(nll, [0.5, 0.0, 0.0], method="Nelder-Mead",
                           options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 10_000}).x
    h, eye = 1e-3, np.eye(3)  # the observed information by finite differences
    hess = np.array([[(nll(ml + h * (ei + ej)) - nll(ml + h * (ei - ej)) - nll(ml - h * (ei - ej))
                       + nll(ml - h * (ei + ej))) / (4 * h * h) for ej in eye] for ei in eye])
    return nll, ml, np.sqrt(np.diag(np.linalg.inv(hess)))
