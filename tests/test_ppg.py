"""PaRIS particle Gibbs (`pgibbs.ppg`, `smc.conditional_paris`) and learning on its score estimates
(`pgibbs.learn(method="ppg")`), against exact answers of the scalar LGSSM: its joint posterior by Gaussian
conditioning, the smoothed moments, and the Kalman likelihood maximised directly.

At N = 8 particles, PaRIS is biased beyond its Monte Carlo error (tests/test_paris.py); the same N under PPG is
not, and a conditional sweep started from exact posterior draws leaves them exact while moving every step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_paris import T, assert_unbiased, lgssm_data, moments

import ppl
from inference import pgibbs, ppg, smc
from ppl import dist
from testbed import oracles
from testbed.lgssm import M0, P0, A, C, Q, R, kalman_mle, lgssm, lgssm_params, simulated


def test_ppg_is_unbiased_where_paris_of_the_same_n_is_not():
    reps = 400
    ys, args, obs = lgssm_data()
    run = jax.jit(jax.vmap(lambda k: pgibbs.ppg(k, lgssm, args, obs, moments, 8, num_iterations=40,
                                                 burn_in=10).estimate))
    assert_unbiased(ys, run(jax.random.split(jax.random.key(3), reps)))


def test_a_conditional_sweep_from_exact_posterior_draws_keeps_them_exact_and_moves_them():
    # the kernel's invariance: references drawn from p(x | y), one sweep each, the new references' law
    reps, n_particles = 400, 4
    ys, args, obs = lgssm_data()
    mean, cov = oracles.lgssm_posterior(ys, A, C, Q, R, M0, P0)
    xs = np.random.default_rng(0).multivariate_normal(mean, cov, size=reps).astype(np.float32)
    config = smc.SMCConfig.of(n_particles, 1.0, record="none")
    increment = smc.functional_increment(moments)

    def one_sweep(key, x):
        reference = {"steps": {"x": x, "y": obs["steps"]["y"]}}
        res, new = smc.conditional_paris(key, lgssm, args, obs, reference, increment, smc.Backward(2), config)
        return new["steps"]["x"], res.estimate

    new, estimates = jax.jit(jax.vmap(one_sweep))(jax.random.split(jax.random.key(1), reps), jnp.asarray(xs))
    new = np.asarray(new)
    sd = np.sqrt(np.diag(cov))
    z = (new.mean(axis=0) - mean) / (sd / np.sqrt(reps))
    assert np.all(np.abs(z) < 4), z  # T = 20 z-scores: 4 is a Bonferroni bound near 1e-3
    ratio = new.var(axis=0, ddof=1) / sd**2
    assert np.all(np.abs(ratio - 1) < 4 * np.sqrt(2 / reps)), ratio
    renewed = np.mean(new != xs, axis=0)  # an identity kernel would pass the checks above: the sweep must move
    assert renewed.mean() > 0.5 and renewed.min() > 0.15, renewed  # the first step included
    assert_unbiased(ys, estimates)  # at stationarity the conditional estimate is unbiased even at N = 4


def test_ppg_result_fields():
    _, args, obs = lgssm_data()
    res = pgibbs.ppg(jax.random.key(0), lgssm, args, obs, moments, 8, num_iterations=6, burn_in=2)
    assert res.estimates["sum"].shape == (6,) and res.log_marginal.shape == (6,)
    assert np.allclose(float(res.estimate["sum"]), float(np.mean(res.estimates["sum"][2:])), rtol=1e-5)
    assert res.reference["steps"]["x"].shape == (T,)
    assert np.array_equal(res.reference["steps"]["y"], obs["steps"]["y"])
    assert np.all(np.isfinite(res.log_marginal))


def test_ppg_refuses_bad_arguments():
    _, args, obs = lgssm_data()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="burn_in \\(5\\) leaves no iteration to average"):
        pgibbs.ppg(key, lgssm, args, obs, moments, 8, num_iterations=5, burn_in=5)
    with pytest.raises(ValueError, match="n_particles must be at least 2"):
        pgibbs.ppg(key, lgssm, args, obs, moments, 1)
    with pytest.raises(TypeError, match="functional is a function"):
        pgibbs.ppg(key, lgssm, args, obs, "x", 8)
    with pytest.raises(ValueError, match="n_backward must be at least 1"):
        pgibbs.ppg(key, lgssm, args, obs, moments, 8, n_backward=0)


def test_learn_by_ppg_recovers_the_maximum_likelihood_parameters():
    ys, args, obs = simulated(200, 1)
    nll, ml, se = kalman_mle(ys)
    res = pgibbs.learn(jax.random.key(0), lgssm_params, {"a": 0.5, "log_q": 0.0, "log_r": 0.0}, args, obs,
                       n_particles=10, num_steps=500, optimizer=optax.adam(1e-2), progress_bar=False, method="ppg")
    est = np.array([res.params["a"], res.params["log_q"], res.params["log_r"]], np.float64)
    assert np.all(np.abs(est - ml) < 0.5 * se), (est, ml, se)
    assert nll(est) - nll(ml) < 0.1
    assert res.trace["a"].shape == (500,) and np.all(np.isfinite(res.log_marginal))


@ppl.gen
def scaled_step(s_prev, is_first, p):
    x = dist.Normal(jnp.where(is_first, 0.0, s_prev), 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return p["a"] * x  # the carry is a function of the parameter, not the choice alone


@ppl.gen
def scaled(p, flags):
    return ppl.scan(scaled_step, in_axes=(0, None))(0.0, flags, p) @ "steps"


def test_learn_by_ppg_refuses_a_carry_that_depends_on_the_parameters():
    flags, obs = jnp.arange(5) == 0, {"steps": {"y": jnp.zeros(5)}}
    with pytest.raises(ValueError, match="carry is its choices"):
        pgibbs.learn(jax.random.key(0), scaled, {"a": 0.5}, (flags,), obs, 4, 3, progress_bar=False, method="ppg")
    with pytest.raises(ValueError, match='method is "msc"'):
        pgibbs.learn(jax.random.key(0), scaled, {"a": 0.5}, (flags,), obs, 4, 3, method="paris")


def test_the_ppg_score_averages_to_the_kalman_likelihoods_gradient():
    # Fisher's identity at a fixed θ away from the MLE: the chain's mean score is ∇_θ log p_θ(y), exactly
    ys, args, obs = simulated(50, 2)
    theta = np.array([0.8, np.log(0.6), np.log(0.9)])

    def log_lik(t):
        return oracles.kalman_filter(ys, t[0], C, np.exp(t[1]), np.exp(t[2]), M0, P0)[2]

    h = 1e-5
    exact = np.array([(log_lik(theta + h * e) - log_lik(theta - h * e)) / (2 * h) for e in np.eye(3)])
    params = {"a": jnp.float32(theta[0]), "log_q": jnp.float32(theta[1]), "log_r": jnp.float32(theta[2])}

    def chain(key):
        k_init, k_sweeps = jax.random.split(key)
        reference = lgssm_params.generate(k_init, obs, params, *args)[0].choices

        def sweep(reference, k):
            score, reference, _ = ppg.score_sweep(k, lgssm_params, params, args, obs, reference, 8, 2)
            return reference, score

        _, scores = jax.lax.scan(sweep, reference, jax.random.split(k_sweeps, 30))
        return jax.tree.map(lambda s: jnp.mean(s[10:], axis=0), scores)

    reps = 200
    estimates = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(4), reps))
    for i, name in enumerate(["a", "log_q", "log_r"]):
        values = np.asarray(estimates[name], np.float64)
        z = (values.mean() - exact[i]) / (values.std(ddof=1) / np.sqrt(reps))
        assert abs(z) < 4, (name, values.mean(), exact[i], z)
