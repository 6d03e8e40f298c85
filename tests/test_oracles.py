"""Checks of the exact reference algorithms in ``testbed/oracles.py``.

The oracles are used as ground truth for SMC / particle Gibbs, so each is checked
here against a different, more direct computation: the LGSSM recursions against
conditioning the full joint Gaussian of (x, y), and the HMM recursions against
brute-force enumeration of every state path.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from testbed import oracles

# ---------------------------------------------------------------------------
# LGSSM
# ---------------------------------------------------------------------------


def _random_lgssm(rng: np.random.Generator) -> dict[str, float]:
    """A random scalar LGSSM; |a| may exceed 1 so non-stationary cases are covered too."""
    return {
        "a": float(rng.uniform(-1.2, 1.2)),
        "c": float(rng.uniform(0.3, 2.0) * rng.choice([-1, 1])),
        "q": float(rng.uniform(0.1, 1.5)),
        "r": float(rng.uniform(0.1, 1.5)),
        "m0": float(rng.normal()),
        "P0": float(rng.uniform(0.2, 2.0)),
    }


def _joint_gaussian(T: int, a: float, c: float, q: float, r: float, m0: float, P0: float):
    """Mean and covariance of (x_0..x_{T-1}) and of y, and Cov(x, y), built from the model.

    Var(x_0) = P0, Var(x_t) = a^2 Var(x_{t-1}) + q, Cov(x_s, x_t) = a^(t-s) Var(x_s) for s <= t;
    y = c x + independent N(0, r) noise.
    """
    mx = m0 * a ** np.arange(T)
    v = np.empty(T)
    v[0] = P0
    for t in range(1, T):
        v[t] = a * a * v[t - 1] + q
    Sxx = np.empty((T, T))
    for s in range(T):
        for t in range(T):
            lo, hi = min(s, t), max(s, t)
            Sxx[s, t] = a ** (hi - lo) * v[lo]
    my = c * mx
    Syy = c * c * Sxx + r * np.eye(T)
    Sxy = c * Sxx
    return mx, Sxx, my, Syy, Sxy


def _condition(mx, Sxx, my, Syy, Sxy, idx_y, ys):
    """Posterior mean and marginal variances of x given y[idx_y] = ys[idx_y]."""
    idx_y = np.asarray(idx_y)
    Syy_o = Syy[np.ix_(idx_y, idx_y)]
    Sxy_o = Sxy[:, idx_y]
    gain = np.linalg.solve(Syy_o, Sxy_o.T).T
    mean = mx + gain @ (ys[idx_y] - my[idx_y])
    cov = Sxx - gain @ Sxy_o.T
    return mean, np.diag(cov)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kalman_loglik_matches_joint_gaussian(seed):
    rng = np.random.default_rng(seed)
    p = _random_lgssm(rng)
    T = 6
    _, ys = oracles.lgssm_simulate(rng, T, **p)
    _, _, loglik = oracles.kalman_filter(ys, **p)
    _, _, my, Syy, _ = _joint_gaussian(T, **p)
    expected = multivariate_normal(mean=my, cov=Syy).logpdf(ys)
    np.testing.assert_allclose(loglik, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kalman_filter_matches_joint_conditioning(seed):
    rng = np.random.default_rng(seed)
    p = _random_lgssm(rng)
    T = 6
    _, ys = oracles.lgssm_simulate(rng, T, **p)
    fm, fv, _ = oracles.kalman_filter(ys, **p)
    joint = _joint_gaussian(T, **p)
    for t in range(T):
        mean, var = _condition(*joint, np.arange(t + 1), ys)
        np.testing.assert_allclose(fm[t], mean[t], rtol=0, atol=1e-8)
        np.testing.assert_allclose(fv[t], var[t], rtol=0, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rts_smoother_matches_joint_conditioning(seed):
    rng = np.random.default_rng(seed)
    p = _random_lgssm(rng)
    T = 6
    _, ys = oracles.lgssm_simulate(rng, T, **p)
    sm, sv = oracles.rts_smoother(ys, **p)
    mean, var = _condition(*_joint_gaussian(T, **p), np.arange(T), ys)
    np.testing.assert_allclose(sm, mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sv, var, rtol=0, atol=1e-8)
    # the last smoothed marginal is the last filtered one
    fm, fv, _ = oracles.kalman_filter(ys, **p)
    np.testing.assert_allclose([sm[-1], sv[-1]], [fm[-1], fv[-1]], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lgssm_posterior_matches_joint_conditioning_and_the_smoother(seed):
    rng = np.random.default_rng(seed)
    p = _random_lgssm(rng)
    T = 6
    _, ys = oracles.lgssm_simulate(rng, T, **p)
    mx, Sxx, my, Syy, Sxy = _joint_gaussian(T, **p)
    gain = np.linalg.solve(Syy, Sxy.T).T
    mean, cov = oracles.lgssm_posterior(ys, **p)
    np.testing.assert_allclose(mean, mx + gain @ (ys - my), rtol=0, atol=1e-8)
    np.testing.assert_allclose(cov, Sxx - gain @ Sxy.T, rtol=0, atol=1e-8)
    moments = oracles.lgssm_smoothed_moments(ys, **p)
    sm, sv = oracles.rts_smoother(ys, **p)
    np.testing.assert_allclose([moments["sum"], moments["square"]], [sm.sum(), (sv + sm**2).sum()], atol=1e-8)


def test_lgssm_simulate_shapes_and_reproducible():
    p = _random_lgssm(np.random.default_rng(3))
    xs, ys = oracles.lgssm_simulate(np.random.default_rng(7), 5, **p)
    xs2, ys2 = oracles.lgssm_simulate(np.random.default_rng(7), 5, **p)
    assert xs.shape == ys.shape == (5,)
    assert xs.dtype == ys.dtype == np.float64
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(ys, ys2)


def test_lgssm_simulate_moments():
    # cheap Monte Carlo check that simulate follows the stated model (x_0 ~ N(m0, P0), observed)
    p = {"a": 0.8, "c": 1.5, "q": 0.5, "r": 0.3, "m0": 1.0, "P0": 2.0}
    rng = np.random.default_rng(11)
    sims = [oracles.lgssm_simulate(rng, 3, **p) for _ in range(4000)]
    xs = np.array([s[0] for s in sims])
    ys = np.array([s[1] for s in sims])
    mx, Sxx, my, Syy, _ = _joint_gaussian(3, **p)
    np.testing.assert_allclose(xs.mean(0), mx, atol=0.1)
    np.testing.assert_allclose(ys.mean(0), my, atol=0.15)
    np.testing.assert_allclose(np.cov(xs.T), Sxx, atol=0.25)
    np.testing.assert_allclose(np.cov(ys.T), Syy, atol=0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("first_step", [True, False])
def test_optimal_proposal_and_predictive_match_conditioning(seed, first_step):
    rng = np.random.default_rng(seed)
    p = _random_lgssm(rng)
    x_prev = None if first_step else float(rng.normal())
    y = float(rng.normal(scale=2.0))
    mean, var = oracles.lgssm_optimal_proposal(x_prev, y, **p)
    pm, pv = oracles.lgssm_predictive(x_prev, **p)

    # joint Gaussian of (x_t, y_t) given x_{t-1}, built from the model, then conditioned on y_t
    mx, vx = (p["m0"], p["P0"]) if first_step else (p["a"] * x_prev, p["q"])
    c, r = p["c"], p["r"]
    mu = np.array([mx, c * mx])
    S = np.array([[vx, c * vx], [c * vx, c * c * vx + r]])
    np.testing.assert_allclose([pm, pv], [mu[1], S[1, 1]], rtol=0, atol=1e-10)
    np.testing.assert_allclose(mean, mu[0] + S[0, 1] / S[1, 1] * (y - mu[1]), rtol=0, atol=1e-10)
    np.testing.assert_allclose(var, S[0, 0] - S[0, 1] ** 2 / S[1, 1], rtol=0, atol=1e-10)

    # Bayes' rule pointwise: p(x | x_prev) p(y | x) = p(y | x_prev) q(x | x_prev, y);
    # this is the identity that makes the optimal-proposal SMC weight equal the predictive.
    xs = mean + np.sqrt(var) * np.linspace(-3, 3, 7)
    lhs = norm.logpdf(xs, mx, np.sqrt(vx)) + norm.logpdf(y, c * xs, np.sqrt(r))
    rhs = norm.logpdf(y, pm, np.sqrt(pv)) + norm.logpdf(xs, mean, np.sqrt(var))
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10)


def test_optimal_proposal_first_step_is_kalman_first_step():
    p = _random_lgssm(np.random.default_rng(5))
    y = 0.7
    fm, fv, ll = oracles.kalman_filter(np.array([y]), **p)
    mean, var = oracles.lgssm_optimal_proposal(None, y, **p)
    pm, pv = oracles.lgssm_predictive(None, **p)
    np.testing.assert_allclose([mean, var], [fm[0], fv[0]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ll, norm.logpdf(y, pm, np.sqrt(pv)), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# HMM
# ---------------------------------------------------------------------------


def _random_hmm(rng: np.random.Generator, K: int):
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    mu = rng.normal(scale=2.0, size=K)
    sigma = rng.uniform(0.5, 1.5, size=K)
    return pi, A, mu, sigma


def _hmm_simulate(rng, T, pi, A, mu, sigma):
    z = np.empty(T, dtype=int)
    z[0] = rng.choice(len(pi), p=pi)
    for t in range(1, T):
        z[t] = rng.choice(len(pi), p=A[z[t - 1]])
    return mu[z] + sigma[z] * rng.standard_normal(T)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hmm_forward_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    T, K = 5, 3
    params = _random_hmm(rng, K)
    ys = _hmm_simulate(rng, T, *params)
    filt, ll = oracles.hmm_forward(ys, *params)
    np.testing.assert_allclose(ll, oracles.hmm_enumerate_log_marginal(ys, *params), rtol=0, atol=1e-10)
    assert filt.shape == (T, K)
    np.testing.assert_allclose(filt.sum(1), 1.0, atol=1e-12)
    # filtering at t is smoothing of the prefix y_0..y_t
    for t in range(T):
        np.testing.assert_allclose(
            filt[t], oracles.hmm_enumerate_smoothing(ys[: t + 1], *params)[t], rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hmm_smoothing_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    T, K = 5, 3
    params = _random_hmm(rng, K)
    ys = _hmm_simulate(rng, T, *params)
    smooth = oracles.hmm_smoothing(ys, *params)
    np.testing.assert_allclose(smooth, oracles.hmm_enumerate_smoothing(ys, *params), rtol=0, atol=1e-10)
    filt, _ = oracles.hmm_forward(ys, *params)
    np.testing.assert_allclose(smooth[-1], filt[-1], rtol=0, atol=1e-12)


def test_hmm_enumeration_matches_hand_computation():
    # guard against a shared mistake in the emission table: T = 2, K = 2, summed by hand
    pi = np.array([0.3, 0.7])
    A = np.array([[0.9, 0.1], [0.2, 0.8]])
    mu = np.array([-1.0, 2.0])
    sigma = np.array([0.5, 1.5])
    ys = np.array([0.1, 1.3])
    e = lambda y, k: norm.pdf(y, mu[k], sigma[k])
    total = sum(pi[i] * e(ys[0], i) * A[i, j] * e(ys[1], j) for i in range(2) for j in range(2))
    np.testing.assert_allclose(oracles.hmm_enumerate_log_marginal(ys, pi, A, mu, sigma), np.log(total), atol=1e-12)
    np.testing.assert_allclose(oracles.hmm_forward(ys, pi, A, mu, sigma)[1], np.log(total), atol=1e-12)


def test_hmm_forward_stable_for_long_sequences():
    # log-space recursion must not underflow where a naive product of densities would
    rng = np.random.default_rng(4)
    params = _random_hmm(rng, 3)
    ys = _hmm_simulate(rng, 2000, *params) * 5.0  # badly fitting data: tiny densities
    filt, ll = oracles.hmm_forward(ys, *params)
    smooth = oracles.hmm_smoothing(ys, *params)
    assert np.isfinite(ll) and ll < -5000
    assert np.all(np.isfinite(filt)) and np.all(np.isfinite(smooth))
    np.testing.assert_allclose(smooth.sum(1), 1.0, atol=1e-10)
