"""Exact reference algorithms (oracles) for testing SMC and particle Gibbs, and for the benchmarks' sanity checks.

Everything here is plain numpy in float64, deliberately independent of JAX and of
the library under test, so a disagreement points at the inference code rather
than at shared machinery.

Two model families with closed-form posteriors:

* Scalar linear-Gaussian state-space model (LGSSM)::

      x_0 ~ N(m0, P0)
      x_t = a * x_{t-1} + N(0, q)      for t >= 1
      y_t = c * x_t     + N(0, r)      for t = 0 .. T-1

  ``q``, ``r`` and ``P0`` are *variances*. Exact answers come from the Kalman filter
  and the Rauch-Tung-Striebel smoother.

* Discrete hidden Markov model with Gaussian emissions::

      z_0 ~ Categorical(pi)
      z_t | z_{t-1} ~ Categorical(A[z_{t-1}])
      y_t | z_t ~ N(mu[z_t], sigma[z_t]**2)

  ``sigma`` is a vector of *standard deviations*. Exact answers come from the
  forward(-backward) algorithm; brute-force enumeration checks those for tiny T.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)


def _normal_logpdf(y: ArrayLike, mean: ArrayLike, var: ArrayLike) -> np.ndarray:
    """log N(y; mean, var) elementwise, with var a variance."""
    y, mean, var = (np.asarray(v, dtype=np.float64) for v in (y, mean, var))
    return -0.5 * (_LOG_2PI + np.log(var) + (y - mean) ** 2 / var)


def _logsumexp(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Stable log(sum(exp(x))); kept local so the oracles need only numpy."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # all -inf would otherwise give nan
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


# ---------------------------------------------------------------------------
# Scalar linear-Gaussian state-space model
# ---------------------------------------------------------------------------


def lgssm_simulate(
    rng: np.random.Generator,
    T: int,
    a: float,
    c: float,
    q: float,
    r: float,
    m0: float,
    P0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one trajectory ``(xs, ys)``, each of shape (T,), from the LGSSM."""
    xs = np.empty(T, dtype=np.float64)
    ys = np.empty(T, dtype=np.float64)
    for t in range(T):
        if t == 0:
            xs[t] = m0 + math.sqrt(P0) * rng.standard_normal()
        else:
            xs[t] = a * xs[t - 1] + math.sqrt(q) * rng.standard_normal()
        ys[t] = c * xs[t] + math.sqrt(r) * rng.standard_normal()
    return xs, ys


def _lgssm_prior_step(x_prev: float | None, a: float, q: float, m0: float, P0: float) -> tuple[float, float]:
    """Mean and variance of p(x_t | x_{t-1}); at t = 0 (x_prev None) the initial prior."""
    if x_prev is None:
        return float(m0), float(P0)
    return float(a * x_prev), float(q)


def lgssm_optimal_proposal(
    x_prev: float | None,
    y: float,
    a: float,
    c: float,
    q: float,
    r: float,
    m0: float,
    P0: float,
) -> tuple[float, float]:
    """Locally optimal proposal p(x_t | x_{t-1}, y_t) as ``(mean, var)``.

    Pass ``x_prev=None`` for t = 0, where the prior N(m0, P0) replaces the transition.
    This is one Kalman update of the one-step prior with the observation y_t.
    """
    mp, vp = _lgssm_prior_step(x_prev, a, q, m0, P0)
    s = c * c * vp + r  # innovation variance
    k = vp * c / s  # gain
    return mp + k * (y - c * mp), vp - k * c * vp


def lgssm_predictive(
    x_prev: float | None,
    a: float,
    c: float,
    q: float,
    r: float,
    m0: float,
    P0: float,
) -> tuple[float, float]:
    """Predictive p(y_t | x_{t-1}) as ``(mean, var)``; ``x_prev=None`` for t = 0.

    This is the incremental weight of SMC with the locally optimal proposal.
    """
    mp, vp = _lgssm_prior_step(x_prev, a, q, m0, P0)
    return c * mp, c * c * vp + r


def kalman_filter(
    ys: ArrayLike,
    a: float,
    c: float,
    q: float,
    r: float,
    m0: float,
    P0: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Kalman filter: ``(filter_means, filter_vars, log_marginal_likelihood)``.

    ``filter_means[t] = E[x_t | y_0..y_t]`` and ``filter_vars[t]`` the matching variance;
    the log-likelihood is ``sum_t log N(y_t; c m_pred, c^2 P_pred + r)``.
    """
    ys = np.asarray(ys, dtype=np.float64)
    T = ys.shape[0]
    means = np.empty(T)
    variances = np.empty(T)
    loglik = 0.0
    m, P = float(m0), float(P0)  # predictive moments of x_0
    for t in range(T):
        if t > 0:
            m, P = a * means[t - 1], a * a * variances[t - 1] + q
        s = c * c * P + r
        loglik += float(_normal_logpdf(ys[t], c * m, s))
        k = P * c / s
        means[t] = m + k * (ys[t] - c * m)
        # Joseph-free form is fine in 1-D: P - k c P = P r / s stays positive.
        variances[t] = P * r / s
    return means, variances, loglik


def rts_smoother(
    ys: ArrayLike,
    a: float,
    c: float,
    q: float,
    r: float,
    m0: float,
    P0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Rauch-Tung-Striebel smoother: ``(smooth_means, smooth_vars)`` of p(x_t | y_0..y_{T-1})."""
    fm, fv, _ = kalman_filter(ys, a, c, q, r, m0, P0)
    T = fm.shape[0]
    sm = fm.copy()
    sv = fv.copy()
    for t in range(T - 2, -1, -1):
        pm = a * fm[t]  # predicted mean/var of x_{t+1} given y_0..y_t
        pv = a * a * fv[t] + q
        g = fv[t] * a / pv  # smoother gain
        sm[t] = fm[t] + g * (sm[t + 1] - pm)
        sv[t] = fv[t] + g * g * (sv[t + 1] - pv)
    return sm, sv


def lgssm_posterior(ys: ArrayLike, a: float, c: float, q: float, r: float, m0: float,
                    P0: float) -> tuple[np.ndarray, np.ndarray]:
    """The joint posterior of x_0..x_{T-1} given y by Gaussian conditioning: ``(mean, covariance)``."""
    ys = np.asarray(ys, dtype=np.float64)
    T = ys.shape[0]
    steps = np.arange(T)
    lower = np.tril(a ** (steps[:, None] - steps[None, :]).clip(0))  # x = mean + lower @ noise
    prior_cov = lower @ np.diag(np.r_[P0, np.full(T - 1, q)]) @ lower.T
    prior_mean = m0 * a**steps
    precision = np.linalg.inv(prior_cov) + np.eye(T) * c * c / r
    cov = np.linalg.inv(precision)
    return cov @ (np.linalg.solve(prior_cov, prior_mean) + c * ys / r), cov


def lgssm_smoothed_moments(ys: ArrayLike, a: float, c: float, q: float, r: float, m0: float,
                           P0: float) -> dict[str, float]:
    """The smoothed expectations of three additive functionals: Σ_t x_t, Σ_t x_t² and Σ_t x_{t-1} x_t."""
    mean, cov = lgssm_posterior(ys, a, c, q, r, m0, P0)
    second = cov + np.outer(mean, mean)
    return {"sum": float(mean.sum()), "square": float(np.trace(second)),
            "lag": float(np.diagonal(second, offset=1).sum())}


# ---------------------------------------------------------------------------
# Discrete HMM with Gaussian emissions
# ---------------------------------------------------------------------------


def _hmm_log_emissions(ys: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """(T, K) array of log N(y_t; mu_k, sigma_k^2)."""
    ys = np.asarray(ys, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    return _normal_logpdf(ys[:, None], mu[None, :], (sigma**2)[None, :])


def _hmm_log_forward(ys, pi, A, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Log forward messages log p(z_t, y_0..y_t) (T, K) and the emission table."""
    log_e = _hmm_log_emissions(ys, mu, sigma)
    log_pi = np.log(np.asarray(pi, dtype=np.float64))
    log_A = np.log(np.asarray(A, dtype=np.float64))
    T, K = log_e.shape
    log_alpha = np.empty((T, K))
    log_alpha[0] = log_pi + log_e[0]
    for t in range(1, T):
        # log sum_j alpha_{t-1}(j) A[j, k], done in log space for stability
        log_alpha[t] = _logsumexp(log_alpha[t - 1][:, None] + log_A, axis=0) + log_e[t]
    return log_alpha, log_e


def hmm_forward(
    ys: ArrayLike,
    pi: ArrayLike,
    A: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
) -> tuple[np.ndarray, float]:
    """Forward algorithm: ``(filter_probs, log_marginal_likelihood)``.

    ``filter_probs[t, k] = p(z_t = k | y_0..y_t)``, shape (T, K). Computed in log space.
    """
    log_alpha, _ = _hmm_log_forward(ys, pi, A, mu, sigma)
    log_norm = _logsumexp(log_alpha, axis=1)
    filter_probs = np.exp(log_alpha - log_norm[:, None])
    return filter_probs, float(log_norm[-1])


def hmm_smoothing(
    ys: ArrayLike,
    pi: ArrayLike,
    A: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
) -> np.ndarray:
    """Forward-backward: ``smooth_probs[t, k] = p(z_t = k | y_0..y_{T-1})``, shape (T, K)."""
    log_alpha, log_e = _hmm_log_forward(ys, pi, A, mu, sigma)
    log_A = np.log(np.asarray(A, dtype=np.float64))
    T, K = log_alpha.shape
    log_beta = np.zeros((T, K))  # log p(y_{t+1..T-1} | z_t)
    for t in range(T - 2, -1, -1):
        log_beta[t] = _logsumexp(log_A + (log_e[t + 1] + log_beta[t + 1])[None, :], axis=1)
    log_post = log_alpha + log_beta
    return np.exp(log_post - _logsumexp(log_post, axis=1)[:, None])


def hmm_enumerate_log_marginal(
    ys: ArrayLike,
    pi: ArrayLike,
    A: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
) -> float:
    """log p(y_0..y_{T-1}) by summing over all K^T state paths. Tiny T only."""
    return float(_logsumexp(_hmm_enumerate_path_logjoints(ys, pi, A, mu, sigma)[1]))


def _hmm_enumerate_path_logjoints(ys, pi, A, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    """All K^T paths (K^T, T) and their log p(z, y); brute force, independent of the recursion."""
    log_e = _hmm_log_emissions(ys, mu, sigma)
    log_pi = np.log(np.asarray(pi, dtype=np.float64))
    log_A = np.log(np.asarray(A, dtype=np.float64))
    T, K = log_e.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)), dtype=np.int64).reshape(-1, T)
    lp = log_pi[paths[:, 0]] + log_e[0, paths[:, 0]]
    for t in range(1, T):
        lp = lp + log_A[paths[:, t - 1], paths[:, t]] + log_e[t, paths[:, t]]
    return paths, lp


def hmm_enumerate_paths(
    ys: ArrayLike,
    pi: ArrayLike,
    A: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """All K^T state paths (K^T, T), in lexicographic order, and their posterior probabilities p(z | y). Tiny T only."""
    paths, lp = _hmm_enumerate_path_logjoints(ys, pi, A, mu, sigma)
    return paths, np.exp(lp - _logsumexp(lp))


def hmm_enumerate_smoothing(
    ys: ArrayLike,
    pi: ArrayLike,
    A: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
) -> np.ndarray:
    """Posterior marginals p(z_t = k | y) (T, K) by brute-force enumeration. Tiny T only."""
    paths, w = hmm_enumerate_paths(ys, pi, A, mu, sigma)
    T = paths.shape[1]
    K = np.asarray(pi).shape[0]
    out = np.zeros((T, K))
    for t in range(T):
        np.add.at(out[t], paths[:, t], w)
    return out
