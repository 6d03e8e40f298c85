"""PaRIS (`smc.paris`), the online smoother of additive functionals, against the RTS smoother's exact moments.

The functional's three parts have closed forms under the scalar LGSSM: Σ_t E[x_t | y], Σ_t E[x_t² | y] and
Σ_t E[x_{t-1} x_t | y] (`oracles.lgssm_smoothed_moments`, by Gaussian conditioning). PaRIS is biased
by O(1/N); at the N used here the bias is far below the Monte Carlo error of the mean over replications.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import smc
from testbed import non_markov, oracles
from testbed.ar import ar_model
from testbed.lgssm import M0, P0, A, C, Q, R, lg_step, lgssm, log_density_bound, simulated, smoothing_moments

T = 20


moments = smoothing_moments


def exact_moments(ys):
    return oracles.lgssm_smoothed_moments(ys, A, C, Q, R, M0, P0)


def lgssm_data(seed=1):
    return simulated(T, seed)


def replicated_estimates(n_particles, n_backward, reps, seed=0, **settings):
    ys, args, obs = lgssm_data()
    run = jax.jit(jax.vmap(lambda k: smc.paris(k, lgssm, args, obs, moments, n_particles, n_backward,
                                               **settings).estimate))
    return ys, jax.tree.map(np.asarray, run(jax.random.split(jax.random.key(seed), reps)))


def assert_unbiased(ys, estimates):
    """Each moment's mean over replications within 4 standard errors of the exact smoothed moment."""
    for name, exact in exact_moments(ys).items():
        values = np.asarray(estimates[name])
        z = (values.mean() - exact) / (values.std(ddof=1) / np.sqrt(len(values)))
        assert abs(z) < 4, (name, values.mean(), exact, z)


@pytest.mark.parametrize("n_backward", [pytest.param(1, marks=pytest.mark.slow), 2,
                                        pytest.param(4, marks=pytest.mark.slow)])  # 5-6 s each
def test_paris_matches_the_rts_smoother(n_backward):
    assert_unbiased(*replicated_estimates(512, n_backward, 64))


def test_paris_is_biased_at_small_n_as_its_theory_says():
    # the squared moment is underestimated by O(1/N): the bias PaRIS particle Gibbs removes, visible here
    reps = 1000
    ys, estimates = replicated_estimates(8, 2, reps)
    values, exact = estimates["square"], exact_moments(ys)["square"]
    z = (values.mean() - exact) / (values.std(ddof=1) / np.sqrt(reps))
    assert z < -4, (values.mean(), exact, z)


def test_paris_result_fields():
    ys, args, obs = lgssm_data()
    result = smc.paris(jax.random.key(0), lgssm, args, obs, moments, 64)
    filtered = smc.run(jax.random.key(0), lgssm, args, obs, 64, return_traces=False)
    assert result.statistics["sum"].shape == (64,) and result.log_weights.shape == (64,)
    assert not bool(result.failed)
    _, _, log_z = oracles.kalman_filter(ys, A, C, Q, R, M0, P0)
    assert abs(float(result.log_marginal) - log_z) < 1.0 and abs(float(filtered.log_marginal) - log_z) < 1.0
    weights = jax.nn.softmax(result.log_weights)
    assert np.allclose(float(weights @ result.statistics["sum"]), float(result.estimate["sum"]), rtol=1e-5)


def test_paris_refuses_a_carry_that_holds_the_past():
    positions = jnp.arange(5)
    obs = {"steps": {"y": jnp.zeros(5)}}
    with pytest.raises(ValueError, match="carry holds the past"):
        smc.paris(jax.random.key(0), non_markov.running_sum, (positions,), obs, moments, 8)


def test_paris_refuses_bad_arguments():
    _, args, obs = lgssm_data()
    with pytest.raises(ValueError, match="n_backward must be at least 1"):
        smc.paris(jax.random.key(0), lgssm, args, obs, moments, 8, n_backward=0)
    with pytest.raises(TypeError, match="functional is a function"):
        smc.paris(jax.random.key(0), lgssm, args, obs, {"sum": 1.0}, 8)


def test_paris_refuses_parameters_drawn_per_particle():
    flags, obs = jnp.arange(4) == 0, {"steps": {"y": jnp.zeros(4)}}
    with pytest.raises(ValueError, match="pass the model's parameters as arguments or observe them"):
        smc.paris(jax.random.key(0), ar_model, (flags,), obs, moments, 8)
    smc.paris(jax.random.key(0), ar_model, (flags,), {**obs, "a": 0.5}, moments, 8)


@pytest.mark.parametrize("n_proposals", [1, pytest.param(16, marks=pytest.mark.slow)])
def test_accept_reject_backward_draws_have_the_backward_kernels_law(n_proposals):
    # one tries-per-draw leaves most draws to the exact fallback, sixteen almost none: both must be exact
    from scipy import stats

    from inference.smc.paris import backward_draws

    _, args, obs = lgssm_data()
    n, draws = 6, 20_000
    state = smc.init(jax.random.key(0), lgssm, args, obs, n)
    state, _ = smc.step(jax.random.key(1), state, 0)
    _, info = smc.step(jax.random.key(2), state, 1)
    backward = smc.Backward(draws, log_density_bound, n_proposals)
    drawn, exceeded = backward_draws(jax.random.key(3), state.target, state, info.choices, backward, 1)
    assert not bool(exceeded)
    def log_densities(choice):  # new particle's step under each previous particle's carry
        return jax.vmap(lambda p: lg_step.assess(choice, *state.target.step_args(p, 1))[0])(state.particles)

    laws = np.asarray(jax.nn.softmax(state.log_weights + jax.vmap(log_densities)(info.choices), axis=-1), np.float64)
    for i, probs in enumerate(laws):
        counts = np.bincount(np.asarray(drawn[i]), minlength=n)
        kept = probs * draws > 5
        observed = np.r_[counts[kept], counts[~kept].sum()]
        expected = np.r_[probs[kept], probs[~kept].sum()] * draws
        if expected[-1] == 0:
            observed, expected = observed[:-1], expected[:-1]
        assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-3 / n


def test_paris_by_accept_reject_matches_the_rts_smoother():
    assert_unbiased(*replicated_estimates(512, 2, 64, seed=5, log_density_bound=log_density_bound))


def test_paris_refuses_a_bound_below_the_density():
    _, args, obs = lgssm_data()
    with pytest.raises(ValueError, match="log_density_bound is below the step's log density"):
        smc.paris(jax.random.key(0), lgssm, args, obs, moments, 16,
                  log_density_bound=lambda c, t: log_density_bound(c, t) - 3.0)
    with pytest.raises(TypeError, match="log_density_bound is a function"):
        smc.paris(jax.random.key(0), lgssm, args, obs, moments, 16, log_density_bound=1.0)
