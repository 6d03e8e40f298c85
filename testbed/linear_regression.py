"""Bayesian linear regression with a Gaussian prior and known noise: a posterior and evidence in closed form, of
any dimension, for SMC samplers.

    β ~ N(0, τ² I_D),  y = X β + N(0, σ² I_n)

X has i.i.d. N(0, 1) entries and the data are simulated from β drawn from the prior, with fixed seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

PRIOR_SD, NOISE_SD = 1.0, 1.0


@ppl.gen
def regression(X):
    beta = dist.Normal(jnp.zeros(X.shape[1]), PRIOR_SD).to_event(1) @ "beta"
    dist.Normal(X @ beta, NOISE_SD).to_event(1) @ "y"


class Problem(NamedTuple):
    X: jnp.ndarray
    y: jnp.ndarray
    log_evidence: float
    """log p(y | X), exactly: y ~ N(0, τ² X Xᵀ + σ² I)."""
    posterior_mean: np.ndarray
    posterior_cov: np.ndarray

    @property
    def observations(self) -> dict:
        return {"y": self.y}


def problem(dimension: int, n_data: int = 120, seed: int = 0) -> Problem:
    """Simulated data and the exact answers (numpy float64), for `regression(X)` with observations {"y": y}."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_data, dimension))
    y = X @ rng.normal(0.0, PRIOR_SD, dimension) + rng.normal(0.0, NOISE_SD, n_data)
    marginal_cov = PRIOR_SD**2 * X @ X.T + NOISE_SD**2 * np.eye(n_data)
    _, log_det = np.linalg.slogdet(marginal_cov)
    log_evidence = -0.5 * (n_data * np.log(2 * np.pi) + log_det + y @ np.linalg.solve(marginal_cov, y))
    precision = np.eye(dimension) / PRIOR_SD**2 + X.T @ X / NOISE_SD**2
    cov = np.linalg.inv(precision)
    return Problem(jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32), float(log_evidence),
                   cov @ X.T @ y / NOISE_SD**2, cov)
