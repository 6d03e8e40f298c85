"""Particle Gibbs against exact answers: a grid posterior of the AR coefficient of a
linear-Gaussian model (Kalman likelihood at every grid point) and its state marginals
(RTS smoothers mixed over the grid); the update rate of ancestor sampling against plain
CSMC; maximum likelihood by Markov score climbing against the Kalman likelihood
maximised directly.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import pgibbs, smc
from inference.mcmc import kernels
from ppl import dist
from testbed import oracles
from testbed.lgssm import kalman_mle, lgssm_params

C, Q, R, M0, P0 = 1.0, 0.5, 1.0, 0.0, 1.0
A_TRUE, A_PRIOR_MEAN, A_PRIOR_SD = 0.9, 0.5, 0.5


@ppl.gen
def ar_step(x_prev, is_first, a):
    mean = jnp.where(is_first, M0, a * x_prev)
    var = jnp.where(is_first, P0, Q)
    x = dist.Normal(mean, jnp.sqrt(var)) @ "x"
    dist.Normal(C * x, jnp.sqrt(R)) @ "y"
    return x


@ppl.gen
def ar_model(flags):
    a = dist.Normal(A_PRIOR_MEAN, A_PRIOR_SD) @ "a"
    return ppl.scan(ar_step, in_axes=(0, None))(0.0, flags, a) @ "steps"


@ppl.gen
def a_given_x(choices, flags):
    """The exact full conditional p(a | x): Gaussian prior times Gaussian AR transitions."""
    x = choices["steps"]["x"]
    precision = 1.0 / A_PRIOR_SD**2 + jnp.sum(x[:-1] ** 2) / Q
    mean = (A_PRIOR_MEAN / A_PRIOR_SD**2 + jnp.sum(x[1:] * x[:-1]) / Q) / precision
    return dist.Normal(mean, 1.0 / jnp.sqrt(precision)) @ "a"


def data(T, seed):
    _, ys = oracles.lgssm_simulate(np.random.default_rng(seed), T, A_TRUE, C, Q, R, M0, P0)
    return jnp.arange(T) == 0, ys, {"steps": {"y": jnp.asarray(ys, jnp.float32)}}


def grid_posterior(ys):
    """p(a | y) on a grid and the state marginals mixed over it: (grid, weights, mean_x, var_x)."""
    grid = np.linspace(-0.5, 1.8, 1201)
    log_post = np.array([oracles.kalman_filter(ys, a, C, Q, R, M0, P0)[2] for a in grid])
    log_post += -0.5 * ((grid - A_PRIOR_MEAN) / A_PRIOR_SD) ** 2
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    keep = w > 1e-10 * w.max()
    smooth = [oracles.rts_smoother(ys, a, C, Q, R, M0, P0) for a in grid[keep]]
    means = np.array([m for m, _ in smooth])
    second = np.array([v + m**2 for m, v in smooth])
    wk = w[keep] / w[keep].sum()
    mean_x = wk @ means
    return grid, w, mean_x, wk @ second - mean_x**2


def z_scores(draws, exact_mean, exact_sd):
    """(draws' mean - exact) / (exact sd / sqrt(ESS)), per trailing index; draws shaped (chain, draw, ...)."""
    draws = np.asarray(draws, np.float64)
    ess = np.asarray(az.ess(az.convert_to_dataset({"v": draws}))["v"])
    return (np.asarray(draws).mean(axis=(0, 1)) - exact_mean) / (exact_sd / np.sqrt(ess)), ess


@pytest.mark.parametrize("parameter_kernel", ["exact conditional", "nuts"])
def test_particle_gibbs_matches_the_grid_posterior(parameter_kernel):
    flags, ys, obs = data(40, seed=0)
    grid, w, mean_x, var_x = grid_posterior(ys)
    mean_a = w @ grid
    sd_a = np.sqrt(w @ (grid - mean_a) ** 2)
    kernel = (kernels.mh_proposal(a_given_x) if parameter_kernel == "exact conditional"
              else kernels.nuts(ppl.sel("a"), step_size=0.1))
    res = pgibbs.run(jax.random.key(1), ar_model, (flags,), obs, n_particles=10, num_samples=1000,
                     parameter_kernel=kernel, num_warmup=100, progress_bar=False)

    a = np.asarray(res.samples["a"])
    z_a, ess_a = z_scores(a, mean_a, sd_a)
    assert abs(z_a) < 4, (a.mean(), mean_a, ess_a)
    assert abs(a.std() / sd_a - 1) < 4 / np.sqrt(2 * ess_a), (a.std(), sd_a, ess_a)
    z_x, _ = z_scores(res.samples["steps"]["x"], mean_x, np.sqrt(var_x))
    assert np.all(np.abs(z_x) < 4), z_x
    if parameter_kernel == "exact conditional":  # an exact conditional as MH proposal: always accepted
        assert np.mean(np.asarray(res.stats["accept_prob"])) > 0.999


def test_ancestor_sampling_renews_early_steps_where_plain_csmc_degenerates():
    flags, _, obs = data(100, seed=2)
    obs = {**obs, "a": A_TRUE}  # the parameter observed: only the trajectory moves

    def rates(**kwargs):
        res = pgibbs.run(jax.random.key(3), ar_model, (flags,), obs, n_particles=5, num_samples=300, num_chains=2,
                         progress_bar=False, **kwargs)
        return np.asarray(pgibbs.update_rate(res.samples["steps"]))

    plain, ancestor, backward = rates(ancestor_sampling=False), rates(), rates(ancestor_sampling=False,
                                                                              backward_sampling=True)
    metropolis = rates(ancestor_sampling="metropolis")
    early = slice(0, 20)
    assert plain[early].mean() < 0.1, plain[early]
    for renewed in (ancestor, metropolis, backward):  # every early step moves, most of them most of the time
        assert renewed[early].mean() > 0.5 and renewed[early].min() > 0.2, renewed[early]
    assert plain[-1] > 0.5  # the last step is renewed by plain CSMC too: degeneracy is a path effect


def test_learn_recovers_the_maximum_likelihood_parameters():
    flags, ys, obs = data(200, seed=1)
    nll, ml, se = kalman_mle(ys)
    res = pgibbs.learn(jax.random.key(0), lgssm_params, {"a": 0.5, "log_q": 0.0, "log_r": 0.0}, (flags,), obs,
                       n_particles=20, num_steps=2000, optimizer=optax.adam(1e-2), progress_bar=False)
    est = np.array([res.params["a"], res.params["log_q"], res.params["log_r"]], np.float64)
    # the optimisation error is small beside the statistical error of the MLE itself
    assert np.all(np.abs(est - ml) < 0.5 * se), (est, ml, se)
    assert nll(est) - nll(ml) < 0.1
    assert res.trace["a"].shape == (2000,)


def test_bad_input_is_named():
    flags, _, obs = data(10, seed=0)
    with pytest.raises(ValueError, match="floating"):
        pgibbs.learn(jax.random.key(0), lgssm_params, {"a": 1}, (flags,), obs, 5, 10)
    with pytest.raises(ValueError, match="n_particles"):
        smc.csmc_kernel(obs, 0)
    with pytest.raises(ValueError, match="metropolis"):
        smc.csmc_kernel(obs, 5, ancestor_sampling="mh")
    with pytest.raises(ValueError, match="num_steps"):
        pgibbs.learn(jax.random.key(0), lgssm_params, {"a": 0.5}, (flags,), obs, 5, 1)
