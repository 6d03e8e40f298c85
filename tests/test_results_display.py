"""Every result exports to ArviZ with the groups that `az.loo` and `az.plot_ppc` read, and shows itself in text and
HTML with the numbers it holds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import importance, pgibbs, smc, tempering, vi
from inference.draws import import_arviz
from inference.scaling.solve import Solution
from ppl.display import fmt
from testbed import lgssm
from testbed import linear_regression as lr

LOO_GROUPS = {"posterior", "log_likelihood", "observed_data"}


@pytest.fixture(scope="module")
def problem():
    return lr.problem(2, n_data=20, seed=3)


@pytest.fixture(scope="module")
def ssm():
    _, args, observations = lgssm.simulated(12, seed=4)
    return args, observations


def loo_works(idata, n_draws):
    az = import_arviz()
    assert LOO_GROUPS <= set(idata.groups())
    assert idata.posterior.sizes["draw"] == n_draws
    assert np.isfinite(az.loo(idata).elpd_loo)


def test_smc_result_exports_resampled_or_weighted_particles_and_shows_its_steps(ssm):
    args, observations = ssm
    res = smc.run(jax.random.key(0), lgssm.lgssm, args, observations, 200)
    idata = res.to_arviz(posterior_predictive=True)
    loo_works(idata, 200)
    assert idata.posterior["steps/x"].shape == (1, 200, 12)
    assert idata.log_likelihood["steps/y"].shape == (1, 200, 12)  # one term per time step
    assert idata.posterior_predictive["steps/y"].shape == (1, 200, 12)
    weighted = res.to_arviz(resample=False)
    np.testing.assert_allclose(np.exp(weighted.sample_stats["log_weight"].values[0]), res.normalized_weights(),
                               rtol=1e-5)
    np.testing.assert_array_equal(weighted.posterior["steps/x"].values[0], res.choices["steps"]["x"])
    text, html = repr(res), res._repr_html_()
    for shown in (fmt(float(res.log_marginal)), fmt(float(res.ess())), "ESS / N", "12"):
        assert shown in text and shown in html
    assert fmt(float(res.info.log_marginal_likelihood[5])) in text


def test_smc_without_traces_says_how_to_get_draws(ssm):
    args, observations = ssm
    res = smc.run(jax.random.key(0), lgssm.lgssm, args, observations, 20, return_traces=False)
    with pytest.raises(ValueError, match="return_traces=True"):
        res.to_arviz()


def test_importance_and_tempering_results_export_and_show(problem):
    args = (problem.X,)
    res = importance.run(jax.random.key(1), lr.regression, args, problem.observations, 1000)
    loo_works(res.to_arviz(), 1000)
    assert fmt(float(res.log_marginal_likelihood())) in repr(res)
    assert fmt(float(res.ess())) in res._repr_html_()
    tempered = tempering.temper(jax.random.key(2), lr.regression, args, problem.observations, 300,
                                progress_bar=False)
    loo_works(tempered.to_arviz(), 300)
    text, html = repr(tempered), tempered._repr_html_()
    for shown in (f"{float(tempered.log_marginal):.5g}", fmt(float(tempered.acceptance[0])), "stuck"):
        assert shown in text and shown in html
    assert text.count("\n") == int(tempered.n_stages) + 1  # the title, the header, a row per stage


def test_mcmc_and_particle_gibbs_results_show_a_summary_table(ssm):
    args, observations = ssm
    res = pgibbs.run(jax.random.key(3), lgssm.lgssm, args, observations, n_particles=10, num_samples=100,
                     num_chains=2, progress_bar=False, check_convergence=False)
    loo_works(res.to_arviz(), 100)
    html, text = res._repr_html_(), repr(res)
    summary = res.summary()
    for column in ("mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk"):
        assert f"<th>{column}</th>" in html
    row = "steps/x[3]"
    assert fmt(summary.loc[row, "mean"]) in html and fmt(summary.loc[row, "r_hat"]) in html
    x3 = np.asarray(res.samples["steps"]["x"])[..., 3]
    assert fmt(x3.mean()) in text and "2 chains × 100 draws" in text


def test_vi_fit_and_guide_draws_export_and_show(problem):
    args = (problem.X,)
    guide, params = vi.autoguide(lr.regression, args, problem.observations, family="mvn")
    fit = vi.fit(jax.random.key(4), vi.elbo(lr.regression, guide), params, problem.observations, *args,
                 optimizer=optax.adam(3e-2), steps=400, progress_bar=False)
    text = repr(fit)
    assert "400 steps" in text and fmt(float(np.mean(fit.values[350:]))) in text
    assert "<table>" in fit._repr_html_()
    draws = vi.draws(jax.random.key(5), guide, fit.params, args, num_samples=500)
    loo_works(draws.to_arviz(posterior_predictive=True, key=jax.random.key(6)), 500)
    assert fmt(float(np.mean(draws.samples["beta"][..., 0]))) in repr(draws)


def test_traces_choice_maps_and_solutions_show_their_values():
    tr = lr.regression.simulate(jax.random.key(0), jnp.ones((4, 2)))
    text, html = repr(tr), tr._repr_html_()
    for shown in (fmt(float(tr.score)), fmt(float(tr.log_densities()["y"])), "beta", "(2,)"):
        assert shown in text and shown in html
    table = ppl.choicemap.table({"a": 1.5, "b": {"c": jnp.arange(3.0)}})
    assert "b/c" in repr(table) and "1.5" in table._repr_html_()
    solution = Solution(5.0, [5.0, 4.0, 5.0], np.array([0.3, 0.2, 0.5]), ["2 + 3 = 5", "2 + 2 = 4", "so 5"], 60, 3,
                        1.5)
    text = repr(solution)
    assert "answer 5.0" in text and "0.8" in text and "2 + 2 = 4" in solution._repr_html_()


def test_results_returned_inside_jit_show_shapes_without_failing(ssm):
    args, observations = ssm

    def run(key):
        res = smc.run(key, lgssm.lgssm, args, observations, 8)
        assert "traced" in repr(res) and "traced" in repr(res.traces)
        return res.log_marginal

    jax.jit(run)(jax.random.key(0))


def test_smoothing_and_learning_results_show_their_estimates(ssm):
    args, observations = ssm
    res = smc.paris(jax.random.key(0), lgssm.lgssm, args, observations, lgssm.smoothing_moments, 50)
    ppg = pgibbs.ppg(jax.random.key(1), lgssm.lgssm, args, observations, lgssm.smoothing_moments, n_particles=8,
                     num_iterations=6, burn_in=2)
    learned = pgibbs.LearnResult({"a": jnp.asarray(0.8)}, {"a": jnp.linspace(0.5, 0.8, 5)}, jnp.arange(5.0))
    for result, estimate in ((res, res.estimate), (ppg, ppg.estimate), (learned, learned.params)):
        text, html = repr(result), result._repr_html_()
        for name, value in estimate.items():
            assert name in text and fmt(float(value)) in text and fmt(float(value)) in html
