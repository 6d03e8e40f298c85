"""Predictive draws against the exact predictive of a conjugate regression; per-choice log densities exactly;
the ArviZ export's pointwise log-likelihood and `az.loo` against ones computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
from scipy import stats
from test_densities import point
from test_densities import regression as line

import inference
import inference.predict
import ppl
from inference import mcmc
from inference.draws import import_arviz
from ppl import dist
from testbed import linear_regression as lr

Z = 4.5  # |z| bound: about 1e-3 two-sided per element over 30 elements, Bonferroni-corrected


@pytest.fixture(scope="module")
def problem():
    return lr.problem(3, n_data=30, seed=1)


def exact_posterior_draws(problem, shape, seed=0):
    rng = np.random.default_rng(seed)
    beta = rng.multivariate_normal(problem.posterior_mean, problem.posterior_cov, size=shape)
    return {"beta": jnp.asarray(beta, jnp.float32)}


def test_posterior_predictive_matches_the_exact_predictive(problem):
    draws = exact_posterior_draws(problem, (4, 1000))
    y = np.asarray(inference.predictive(jax.random.key(0), lr.regression, (problem.X,), draws)["y"], np.float64)
    assert y.shape == (4, 1000, 30)
    X = np.asarray(problem.X, np.float64)
    mean = X @ problem.posterior_mean
    var = np.einsum("ij,jk,ik->i", X, problem.posterior_cov, X) + lr.NOISE_SD**2
    y = y.reshape(-1, 30)
    n = y.shape[0]
    assert np.all(np.abs(y.mean(0) - mean) / np.sqrt(var / n) < Z)
    assert np.all(np.abs(y.var(0) / var - 1) < Z * np.sqrt(2 / n))


def test_prior_predictive_matches_the_exact_marginal(problem):
    n = 4000
    draws = inference.predictive(jax.random.key(1), lr.regression, (problem.X,), {}, num_samples=n)
    assert draws["beta"].shape == (n, 3) and draws["y"].shape == (n, 30)
    X = np.asarray(problem.X, np.float64)
    var = np.sum(X**2, axis=1) * lr.PRIOR_SD**2 + lr.NOISE_SD**2
    y = np.asarray(draws["y"], np.float64)
    assert np.all(np.abs(y.mean(0)) / np.sqrt(var / n) < Z)
    assert np.all(np.abs(y.var(0) / var - 1) < Z * np.sqrt(2 / n))


def test_predictive_refuses_what_it_cannot_use(problem):
    args = (problem.X,)
    with pytest.raises(ValueError, match="num_samples"):
        inference.predictive(jax.random.key(0), lr.regression, args, {})
    with pytest.raises(ValueError, match="'betta'.*does not sample"):
        inference.predictive(jax.random.key(0), lr.regression, args, {"betta": jnp.zeros((5, 3))})
    with pytest.raises(ValueError, match=r"shape \(5, 2\).*\(3,\)"):
        inference.predictive(jax.random.key(0), lr.regression, args, {"beta": jnp.zeros((5, 2))})
    with pytest.raises(ValueError, match="num_samples is for prior"):
        inference.predictive(jax.random.key(0), lr.regression, args, {"beta": jnp.zeros((5, 3))}, num_samples=5)


@ppl.gen
def branching_line(xs):
    slope = dist.Normal(0.0, 1.0) @ "slope"
    noise = dist.HalfNormal(1.0) @ "noise"
    ppl.cond(dist.Normal(0.0, 2.0), dist.Exponential(1.0))(slope > 0) @ "branch"
    return ppl.vmap(point, in_axes=(0, None, None))(xs, slope, noise) @ "ys"


XS = jnp.linspace(-1.0, 1.0, 12)
OBS = {"ys": {"y": 0.5 * XS + 0.2 * jnp.sin(9.0 * XS)}}


def test_log_densities_are_each_choices_own():
    for seed in range(3):
        tr = branching_line.simulate(jax.random.key(seed), XS)
        ld = tr.log_densities()
        slope, noise = tr["slope"], tr["noise"]
        expected_y = nd.Normal(slope * XS, noise).log_prob(tr["ys"]["y"])
        branch = nd.Normal(0.0, 2.0) if slope > 0 else nd.Exponential(1.0)
        np.testing.assert_allclose(ld["ys"]["y"], expected_y, rtol=1e-6)
        np.testing.assert_allclose(ld["slope"], nd.Normal(0.0, 1.0).log_prob(slope), rtol=1e-6)
        np.testing.assert_allclose(ld["noise"], nd.HalfNormal(1.0).log_prob(noise), rtol=1e-6)
        np.testing.assert_allclose(ld["branch"], branch.log_prob(tr["branch"]), rtol=1e-6)
        np.testing.assert_allclose(sum(jnp.sum(v) for v in jax.tree.leaves(ld)), tr.score, rtol=1e-6)


@ppl.gen
def vector_line(xs):
    slope = dist.Normal(0.0, 1.0) @ "slope"
    noise = dist.HalfNormal(1.0) @ "noise"
    dist.Normal(slope * xs, noise) @ "y"  # one address, a batch of 12 values


def test_log_densities_per_batch_element_of_a_vectorised_observation():
    tr = vector_line.simulate(jax.random.key(0), XS)
    pointwise = ppl.log_densities(vector_line, (XS,), tr.choices)
    expected = nd.Normal(tr["slope"] * XS, tr["noise"]).log_prob(tr["y"])
    np.testing.assert_allclose(pointwise["y"], expected, rtol=1e-6)
    np.testing.assert_allclose(jnp.sum(pointwise["y"]), tr.log_densities()["y"], rtol=1e-6)
    samples = {"slope": jnp.asarray([[0.2, 0.4]]), "noise": jnp.asarray([[0.5, 1.5]])}
    ll = inference.predict.pointwise_log_likelihood(vector_line, (XS,), samples, {"y": OBS["ys"]["y"]})
    expected = stats.norm.logpdf(np.asarray(OBS["ys"]["y"]), np.asarray(samples["slope"])[..., None] * np.asarray(XS),
                                 np.asarray(samples["noise"])[..., None])
    np.testing.assert_allclose(ll[("y",)], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def line_result():
    return mcmc.nuts(jax.random.key(0), line, (XS,), OBS, num_chains=2, num_warmup=200, num_samples=200,
                     progress_bar=False, check_convergence=False)


def test_arviz_export_has_every_group_and_loo_equals_arviz_on_a_hand_made_log_likelihood(line_result):
    az = import_arviz()
    idata = line_result.to_arviz(posterior_predictive=True, key=jax.random.key(3))
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "posterior_predictive"} <= set(
        idata.groups())
    samples = line_result.samples
    by_hand = stats.norm.logpdf(np.asarray(OBS["ys"]["y"]), np.asarray(samples["slope"])[..., None] * np.asarray(XS),
                                np.asarray(samples["noise"])[..., None])
    np.testing.assert_allclose(idata.log_likelihood["ys/y"].values, by_hand, rtol=1e-4, atol=1e-4)
    reference = az.from_dict(posterior={k: np.asarray(v) for k, v in samples.items()},
                             log_likelihood={"ys/y": by_hand})
    ours, theirs = az.loo(idata), az.loo(reference)
    assert ours.elpd_loo == pytest.approx(theirs.elpd_loo, rel=1e-5)
    assert ours.se == pytest.approx(theirs.se, rel=1e-4)
    assert az.waic(idata).elpd_waic == pytest.approx(az.waic(reference).elpd_waic, rel=1e-5)
    assert idata.posterior_predictive["ys/y"].shape == (2, 200, 12)
    np.testing.assert_array_equal(idata.observed_data["ys/y"].values, np.asarray(OBS["ys"]["y"]))


def test_posterior_predictive_of_mcmc_draws_follows_each_draw(line_result):
    replicated = inference.predictive(jax.random.key(5), line, (XS,), line_result.samples)
    np.testing.assert_array_equal(replicated["slope"], line_result.samples["slope"])
    residual = (np.asarray(replicated["ys"]["y"]) - np.asarray(replicated["slope"])[..., None] * np.asarray(XS)) \
        / np.asarray(replicated["noise"])[..., None]
    assert abs(residual.mean()) < Z / np.sqrt(residual.size) and abs(residual.std() - 1) < 0.05


def test_posterior_predictive_export_needs_a_key(line_result):
    with pytest.raises(ValueError, match="give key="):
        line_result.to_arviz(posterior_predictive=True)


def test_nuts_and_the_pointwise_log_likelihood_on_a_model_with_a_branch():
    """A ppl.cond's inactive branch slot is shaped as the active one's trace in every leaf mode (it was shaped as
    a simulated trace, which NUTS's unconstrained run refused as a different pytree)."""
    res = mcmc.nuts(jax.random.key(1), branching_line, (XS,), OBS, num_chains=2, num_warmup=100, num_samples=50,
                    progress_bar=False, check_convergence=False)
    assert res.to_arviz().log_likelihood["ys/y"].shape == (2, 50, 12)
