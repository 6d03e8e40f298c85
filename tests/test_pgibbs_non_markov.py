"""Conditional SMC when the step's carry holds the past: ancestor sampling (exact and Metropolis) and backward
sampling weigh a candidate by the trajectory's whole future rescored from its carry (`inference.smc.future`).

Each check starts many independent chains at exact posterior draws and runs a few CSMC sweeps: an invariant kernel
leaves them exactly posterior-distributed, so the final draws are compared with the exact posterior (Gaussian
conditioning for a running sum, enumeration for a toy language model). The same check with the one-step weight
forced, the weight that is exact only for a carry decided by the step's choices, must fail: the test can see
the bias it guards against.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from inference import smc
from inference.smc import conditional, future, lineage
from ppl import dist
from testbed import non_markov
from testbed.lgssm import lgssm

MODES = {"ancestor": dict(ancestor_sampling=True), "metropolis": dict(ancestor_sampling="metropolis"),
         "backward": dict(ancestor_sampling=False, backward_sampling=True)}


def final_draws(model, args, ys, starts, n_particles, n_sweeps, mode, seed=0):
    """Chains started at `starts` (M, T), `n_sweeps` sweeps each: the final trajectories (M, T)."""
    obs = {"steps": {"y": jnp.asarray(ys)}}
    kernel = smc.csmc_kernel(obs, n_particles, **MODES[mode])

    @jax.jit
    def chains(key, starts):
        def one(k, x):
            trace, _ = model.generate(k, {"steps": {"x": x, "y": obs["steps"]["y"]}}, *args)
            trace, _ = jax.lax.scan(lambda tr, kk: (kernel.step(kk, tr, model, args)[0], None), trace,
                                    jax.random.split(k, n_sweeps))
            return trace.choices["steps"]["x"]

        return jax.vmap(one)(jax.random.split(key, starts.shape[0]), starts)

    return np.asarray(chains(jax.random.key(seed), jnp.asarray(starts)))


def force_one_step(monkeypatch):
    """Make conditional SMC and backward sampling weigh candidates by one step's density, as if the carry forgot
    the past."""
    for module in (conditional, lineage):
        monkeypatch.setattr(module, "carry_forgets_past", lambda *args: True)


def carry_forgets_past(model, args, observations):
    space = ppl.state_space(model, args)
    trace, _ = model.generate(jax.random.key(0), observations, *args)
    scan_args = space.generate_prefix(jax.random.key(0), {}, args).scan_args
    step_choices = jax.tree.map(lambda x: x[0], trace.choices["steps"])
    return future.carry_forgets_past(space, scan_args, step_choices, scan_args[0])


@ppl.gen
def jitted_step(x_prev, _position):
    """A Markov step whose carry passes through a jitted call that also reads the old carry."""
    x = dist.Normal(0.9 * x_prev, 1.0) @ "x"
    new, _ = jax.jit(lambda old, x: (x, old + x))(x_prev, x)
    return new


@ppl.gen
def jitted_model(positions):
    return ppl.scan(jitted_step, in_axes=(0,))(0.0, positions) @ "steps"


def test_the_dependence_analysis_tells_a_markov_carry_from_one_that_holds_the_past():
    T = 5
    assert carry_forgets_past(lgssm, (jnp.arange(T) == 0,), {"steps": {"y": jnp.zeros(T)}})
    assert carry_forgets_past(jitted_model, (jnp.arange(T),), {})  # the walk goes into the jitted call
    assert not carry_forgets_past(non_markov.running_sum, (jnp.arange(T),), {"steps": {"y": jnp.zeros(T)}})
    assert not carry_forgets_past(non_markov.toy_lm, (jnp.arange(non_markov.T_LM),),
                                  {"steps": {"y": jnp.zeros(non_markov.T_LM)}})


def test_the_future_log_density_is_the_model_density_of_the_remaining_steps():
    T, t = 6, 2
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=T).astype(np.float32), rng.normal(size=T).astype(np.float32)
    args = (jnp.arange(T),)
    space = ppl.state_space(non_markov.running_sum, args)
    scan_args = space.generate_prefix(jax.random.key(0), {}, args).scan_args
    carry = 0.7  # s_{t-1}
    got = future.future_log_density(jax.random.key(0), space, scan_args, {"x": jnp.asarray(xs), "y": jnp.asarray(ys)},
                                      jnp.float32(carry), t)
    s = carry + np.cumsum(xs[t:].astype(np.float64))
    want = (stats.norm.logpdf(xs[t:], 0, np.sqrt(non_markov.SUM_Q)).sum()
            + stats.norm.logpdf(ys[t:], s, np.sqrt(non_markov.SUM_R)).sum())
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def running_sum_case(T=8, M=3000):
    rng = np.random.default_rng(1)
    ys = (np.cumsum(rng.normal(0, np.sqrt(non_markov.SUM_Q), T)) + rng.normal(0, np.sqrt(non_markov.SUM_R), T))
    mean, cov = non_markov.running_sum_posterior(ys)
    starts = rng.multivariate_normal(mean, cov, M).astype(np.float32)
    return ys.astype(np.float32), (jnp.arange(T),), starts, mean, np.sqrt(np.diag(cov))


@pytest.mark.parametrize("mode", list(MODES))
def test_a_running_sum_keeps_its_exact_posterior(mode):
    ys, args, starts, mean, sd = running_sum_case()
    draws = final_draws(non_markov.running_sum, args, ys, starts, 4, 2, mode)
    M = len(draws)
    z_mean = (draws.mean(0) - mean) / (sd / np.sqrt(M))
    z_var = (draws.var(0, ddof=1) - sd**2) / (sd**2 * np.sqrt(2 / (M - 1)))
    # 16 comparisons, Bonferroni near 1e-3 in all
    assert np.all(np.abs(z_mean) < 4.0), z_mean
    assert np.all(np.abs(z_var) < 4.0), z_var


def toy_lm_chi2(mode, M=4000, n_sweeps=3):
    """Pearson's χ² of the final sequences against the exact posterior (cells below 5 expected pooled): p-value."""
    ys = np.array([0.1, 2.2, 0.3, 1.9], np.float32)
    sequences, p = non_markov.toy_lm_posterior(ys)
    starts = sequences[np.random.default_rng(3).choice(len(sequences), M, p=p)].astype(np.int32)
    draws = final_draws(non_markov.toy_lm, (jnp.arange(non_markov.T_LM),), ys, starts, 3, n_sweeps, mode, seed=2)
    counts = np.bincount((draws * non_markov.V ** np.arange(non_markov.T_LM)[::-1]).sum(1), minlength=len(p))
    expected = M * p
    big = expected >= 5
    observed = np.append(counts[big], counts[~big].sum())
    expected = np.append(expected[big], expected[~big].sum())
    return stats.chi2.sf(((observed - expected) ** 2 / expected).sum(), len(observed) - 1)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_toy_language_model_keeps_its_exact_posterior(mode):
    assert toy_lm_chi2(mode) > 1e-3


@pytest.mark.parametrize("mode", list(MODES))
def test_the_one_step_weight_is_seen_to_be_biased_on_the_toy_language_model(mode, monkeypatch):
    force_one_step(monkeypatch)
    assert toy_lm_chi2(mode) < 1e-3
