"""PaRIS (`smc.paris`), the online smoother of additive functionals, against the RTS smoother's exact moments.

The functional's three parts have closed forms under the scalar LGSSM: Σ_t E[x_t | y], Σ_t E[x_t² | y] and
Σ_t E[x_{t-1} x_t | y] (`oracles.lgssm_smoothed_moments`, by Gaussian conditioning). PaRIS is biased
by O(1/N); at the N used here the bias is far below the Monte Carlo error of the mean over replications.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from inference import smc
from ppl import dist
from testbed import non_markov, oracles
from testbed.lgssm import A, C, M0, P0, Q, R, lgssm

T = 20


def moments(x_prev, x):
    return {"sum": x, "square": x**2, "lag": x_prev * x}


def exact_moments(ys):
    return oracles.lgssm_smoothed_moments(ys, A, C, Q, R, M0, P0)


def lgssm_data(seed=1):
    _, ys = oracles.lgssm_simulate(np.random.default_rng(seed), T, A, C, Q, R, M0, P0)
    return ys, (jnp.arange(T) == 0,), {"steps": {"y": jnp.asarray(ys, jnp.float32)}}


def replicated_estimates(n_particles, n_backward, reps, seed=0):
    ys, args, obs = lgssm_data()
    run = jax.jit(jax.vmap(lambda k: smc.paris(k, lgssm, args, obs, moments, n_particles, n_backward).estimate))
    return ys, jax.tree.map(np.asarray, run(jax.random.split(jax.random.key(seed), reps)))


@pytest.mark.parametrize("n_backward", [1, 2, 4])
def test_paris_matches_the_rts_smoother(n_backward):
    reps = 64
    ys, estimates = replicated_estimates(512, n_backward, reps)
    for name, exact in exact_moments(ys).items():
        values = estimates[name]
        z = (values.mean() - exact) / (values.std(ddof=1) / np.sqrt(reps))
        assert abs(z) < 4, (name, values.mean(), exact, z)


def test_paris_is_biased_at_small_n_as_its_theory_says():
    # the squared moment is underestimated by O(1/N): the bias PaRIS particle Gibbs removes, visible here
    reps = 400
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


@ppl.gen
def ar_step(x_prev, is_first, a):
    x = dist.Normal(jnp.where(is_first, 0.0, a * x_prev), 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x


@ppl.gen
def ar_with_a_latent_coefficient(flags):
    a = dist.Normal(0.5, 0.5) @ "a"
    return ppl.scan(ar_step, in_axes=(0, None))(0.0, flags, a) @ "steps"


def test_paris_refuses_parameters_drawn_per_particle():
    flags, obs = jnp.arange(4) == 0, {"steps": {"y": jnp.zeros(4)}}
    with pytest.raises(ValueError, match="pass the model's parameters as arguments or observe them"):
        smc.paris(jax.random.key(0), ar_with_a_latent_coefficient, (flags,), obs, moments, 8)
    smc.paris(jax.random.key(0), ar_with_a_latent_coefficient, (flags,), {**obs, "a": 0.5}, moments, 8)
