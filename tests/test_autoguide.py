"""Automatic guides: fitted means and variances against exact Gaussian posteriors and against Stan's reference
draws of posteriordb models; the guide as a generative function (scores, constraints, errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import vi
from ppl import dist
from testbed import linear_regression as lr

STEPS = 2000


def fit_autoguide(model, args, observations, family, steps=STEPS, learning_rate=3e-2, **kwargs):
    guide, params = vi.autoguide(model, args, observations, family=family, **kwargs)
    schedule = optax.exponential_decay(learning_rate, steps, 0.01)  # the step shrinks 100-fold: SGD noise with it
    fit = vi.fit(jax.random.key(0), vi.elbo(model, guide), params, observations, *args,
                 optimizer=optax.adam(schedule), steps=steps, num_samples=4, progress_bar=False)
    return guide, fit


@pytest.fixture(scope="module")
def problem():
    return lr.problem(3, n_data=30, seed=1)


@pytest.mark.parametrize("family", ["normal", "mvn", "lowrank", "delta"])
def test_autoguide_on_a_gaussian_posterior(problem, family):
    """Full-rank families recover the exact posterior; mean-field the exact means and the conditional variances
    1/Λ_ii (what mean-field VI of a Gaussian converges to); delta the mode, which is the mean."""
    args = (problem.X,)
    guide, fit = fit_autoguide(lr.regression, args, problem.observations, family, rank=2)
    draws = vi.draws(jax.random.key(1), guide, fit.params, args, num_samples=20_000)
    beta = np.asarray(draws.samples["beta"][0], np.float64)
    sd = np.sqrt(np.diag(problem.posterior_cov))
    # tolerance: the fit's own noise (a decayed SGD optimum), several times the draws' Monte Carlo error (0.007 sd)
    np.testing.assert_array_less(np.abs(beta.mean(0) - problem.posterior_mean) / sd, 0.05)
    if family == "delta":
        assert np.all(beta.std(0) == 0)
        return
    expected = 1 / np.diag(np.linalg.inv(problem.posterior_cov)) if family == "normal" else np.diag(
        problem.posterior_cov)
    np.testing.assert_allclose(beta.var(0), expected, rtol=0.1)
    if family != "normal":
        np.testing.assert_allclose(np.cov(beta.T), problem.posterior_cov, atol=0.1 * sd.max() ** 2)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["arK-arK", pytest.param("low_dim_gauss_mix-low_dim_gauss_mix", marks=pytest.mark.slow)])
def test_full_rank_autoguide_matches_stan_on_posteriordb(name):
    """Near-Gaussian posteriors (an AR(5) with 200 points, a two-component mixture with 1000): the full-rank
    guide's means within 0.15 reference sd and sds within 5% of Stan's reference draws."""
    from testbed.posteriordb import load

    post = load(name)
    guide, fit = fit_autoguide(post.model, post.args, post.observations, "mvn", steps=3000, learning_rate=5e-2)
    draws = post.stan_draws(vi.draws(jax.random.key(1), guide, fit.params, post.args, num_samples=20_000).samples)
    for param, ref in post.reference.items():
        assert abs(draws[param].mean() - ref["mean"]) < 0.15 * ref["sd"], (param, draws[param].mean(), ref)
        assert abs(draws[param].std() / ref["sd"] - 1) < 0.05, (param, draws[param].std(), ref)


@ppl.gen
def bounded():
    theta = dist.Exponential(1.0) @ "theta"
    dist.Uniform(0.0, theta) @ "x"
    dist.Normal(theta, 0.5) @ "y"


def test_autoguide_is_a_generative_function_over_the_models_latents():
    obs = {"y": jnp.asarray(1.3)}
    guide, params = vi.autoguide(bounded, (), obs, family="mvn")
    params = {**params, "loc": jnp.asarray([0.4, -0.3])}
    tr = guide.simulate(jax.random.key(0), params)
    assert set(tr.choices) == {"theta", "x"}
    draws = vi.draws(jax.random.key(1), guide, params, (), num_samples=2000).samples
    assert np.all(draws["x"] < draws["theta"])  # the support of x depends on theta: mapped by the model itself
    logq, _ = guide.assess(tr.choices, params)
    np.testing.assert_allclose(logq, tr.score, rtol=1e-5)
    # log q(x) = log N(u; loc, LLᵀ) - log|dx/du| with u = (log θ, logit(x/θ)): by hand
    theta, x = float(tr.choices["theta"]), float(tr.choices["x"])
    u = np.array([np.log(theta), np.log(x / theta) - np.log1p(-x / theta)])
    q = guide.q(params)
    log_jacobian = np.log(theta) + np.log(theta) + np.log(x / theta) + np.log1p(-x / theta)
    np.testing.assert_allclose(logq, q.log_prob(u) - log_jacobian, rtol=1e-4)
    same, w = guide.generate(jax.random.key(2), tr.choices, params)
    np.testing.assert_allclose(w, tr.score, rtol=1e-5)
    np.testing.assert_allclose(same.score, tr.score, rtol=1e-5)
    moved, w, _ = guide.update(jax.random.key(3), tr, {"theta": 2.0, "x": 0.5})
    assert float(moved.choices["theta"]) == 2.0
    np.testing.assert_allclose(w, guide.assess({"theta": 2.0, "x": 0.5}, params)[0] - tr.score, rtol=1e-5)
    with pytest.raises(ppl.ModelError, match="all of its addresses or none"):
        guide.generate(jax.random.key(2), {"theta": 1.0}, params)
    with pytest.raises(ppl.ModelError, match="select all of them or none"):
        guide.regenerate(jax.random.key(2), tr, ppl.sel("x"))
    np.testing.assert_allclose(guide.project(tr, ppl.sel("theta") | ppl.sel("x")), tr.score)


def test_autoguide_refuses_what_it_cannot_cover():
    @ppl.gen
    def discrete():
        k = dist.Poisson(3.0) @ "k"
        dist.Normal(k, 1.0) @ "y"

    with pytest.raises(ppl.ModelError, match="'k' is discrete"):
        vi.autoguide(discrete, (), {"y": 2.0})
    with pytest.raises(ValueError, match="family must be one of"):
        vi.autoguide(bounded, (), {"y": 1.0}, family="gaussian")
    with pytest.raises(ppl.ModelError, match="no latent choice"):
        vi.autoguide(bounded, (), {"y": 1.0, "theta": 1.0, "x": 0.5})


def test_autoguide_starts_where_init_says():
    @ppl.gen
    def scaled():
        a = dist.Normal(90.0, 20.0) @ "a"
        s = dist.HalfNormal(30.0) @ "s"
        dist.Normal(a, s) @ "y"

    _, params = vi.autoguide(scaled, (), {"y": 80.0})
    assert np.all(np.abs(params["loc"]) < 2)  # uniform in (-2, 2) on the unconstrained space
    _, params = vi.autoguide(scaled, (), {"y": 80.0}, init="median")
    assert 60 < params["loc"][0] < 120 and np.log(5.0) < params["loc"][1] < np.log(60.0)
    guide, params = vi.autoguide(scaled, (), {"y": 80.0}, init={"a": 50.0, "s": 2.0})
    np.testing.assert_allclose(params["loc"], [50.0, np.log(2.0)], rtol=1e-6)
    assert guide.median(params) == pytest.approx({"a": 50.0, "s": 2.0})
    with pytest.raises(ValueError, match="init must be"):
        vi.autoguide(scaled, (), {"y": 80.0}, init="mode")
