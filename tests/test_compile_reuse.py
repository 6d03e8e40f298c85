"""A second call with the same shapes and freshly rebuilt, equal arguments compiles nothing.

Each case calls an inference entry point twice, rebuilding its arguments (kernels, observations,
parameters) between the calls and changing the key, and counts XLA compilations during the second
call through `jax.monitoring`: a kernel, selection or setting that compares by identity rather than
by value would make the compiled program miss its cache and show up here. Models are module-level,
as a user's are; so is vi.fit's optax optimizer, whose functions are closures compared by identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import optax
from test_vi import conjugate, mean_field

import ppl
from inference import mcmc, pgibbs, smc, tempering, vi
from inference.mcmc import kernels
from ppl import dist
from testbed.ar import ar_model

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compilations() -> Iterator[list[str]]:
    """The names of the programs XLA compiles inside the block."""
    names: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def assert_reused(call: Callable[[int], object]) -> None:
    """`call(seed)` rebuilds its arguments; the call with seed 1 must hit every cache the one with seed 0 filled."""
    jax.block_until_ready(call(0))
    with compilations() as compiled:
        jax.block_until_ready(call(1))
    assert not compiled, f"the second call compiled again: {compiled}"


@ppl.gen
def location_scale_digit(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    sigma = dist.LogNormal(0.0, 0.5) @ "sigma"
    digit = dist.Categorical(jnp.full(3, 1.0 / 3.0)) @ "digit"
    dist.Normal(mu + digit, sigma).expand((n,)) @ "y"


@ppl.gen
def random_walk(choices, n):
    return dist.Normal(choices["mu"], 0.5) @ "mu"


def test_kernels_built_twice_are_equal():
    assert ppl.sel("a") | ~ppl.sel("b", "c") == ppl.sel("a") | ~ppl.sel("b", "c")  # selections compare by value
    assert hash(ppl.sel("a") | ~ppl.sel("b", "c")) == hash(ppl.sel("a") | ~ppl.sel("b", "c"))
    build = lambda: kernels.cycle(kernels.mh(ppl.sel("mu")), kernels.nuts(ppl.sel("sigma"), 0.3))
    assert build() == build()
    assert kernels.nuts(ppl.sel("sigma"), 0.3) != kernels.nuts(ppl.sel("sigma"), 0.4)
    assert kernels.hmc(ppl.sel("sigma"), 0.3, 4) != kernels.hmc(ppl.sel("sigma"), 0.3, 5)


def run_mcmc(seed, kernel):
    obs = {"y": jnp.array([0.1, -0.4, 0.9])}
    return mcmc.run(jax.random.key(seed), kernel, location_scale_digit, (3,), obs, num_samples=4, num_chains=2,
                    progress_bar=False, check_convergence=False).samples


def test_mcmc_run_with_a_rebuilt_cycle_of_mh_and_nuts():
    assert_reused(lambda seed: run_mcmc(
        seed, kernels.cycle(kernels.mh(ppl.sel("mu")), kernels.nuts(ppl.sel("sigma"), 0.3, max_tree_depth=3))))


def test_mcmc_run_with_every_other_kernel_rebuilt():
    continuous = ppl.sel("mu") | ppl.sel("sigma")
    assert_reused(lambda seed: run_mcmc(seed, kernels.cycle(
        kernels.mixture([kernels.mh(ppl.sel("mu")), kernels.mala(continuous, 0.05)], probs=[0.3, 0.7]),
        kernels.hmc(continuous, 0.1, 3, inverse_mass_matrix=jnp.array([1.0, 0.5])),
        kernels.mh_proposal(random_walk),
        kernels.gibbs("digit", jnp.arange(3)),
    )))


def ar_data():
    return jnp.arange(5) == 0, {"steps": {"y": jnp.array([0.3, -0.2, 0.8, 1.1, 0.4])}}


def test_pgibbs_run_with_a_rebuilt_parameter_kernel():
    def call(seed):
        flags, obs = ar_data()
        return pgibbs.run(jax.random.key(seed), ar_model, (flags,), obs, n_particles=3, num_samples=3, num_chains=2,
                          parameter_kernel=kernels.nuts(ppl.sel("a"), 0.2, max_tree_depth=3), progress_bar=False,
                          check_convergence=False).samples

    assert_reused(call)


def test_smc_run():
    def call(seed):
        flags, obs = ar_data()
        return smc.run(jax.random.key(seed), ar_model, (flags,), obs, 8).log_marginal_likelihood()

    assert_reused(call)


@ppl.gen
def datum(mu, included):
    return dist.Normal(mu, 0.5).mask(included) @ "y"


@ppl.gen
def masked_model(included):
    mu = dist.Normal(0.0, 2.0) @ "mu"
    return ppl.vmap(datum, in_axes=(None, 0))(mu, included) @ "data"


def test_tempering_temper():
    def call(seed):
        obs = {"data": {"y": jnp.array([0.8, 1.9, 1.2, 0.3])}}
        return tempering.temper(jax.random.key(seed), masked_model, (jnp.ones(4, bool),), obs, 16, n_mcmc=2,
                                max_stages=5).log_marginal_likelihood()

    assert_reused(call)


def test_tempering_anneal():
    def call(seed):
        obs = {"data": {"y": jnp.array([0.8, 1.9, 1.2, 0.3])}}
        masks = jnp.arange(5)[:, None] > jnp.arange(4)[None, :]
        res = tempering.anneal(jax.random.key(seed), masked_model, (masks,), obs, 16, n_mcmc=2)
        return res.log_marginal_likelihood()

    assert_reused(call)


def elbo(params, observations, n):
    q = vi.sample(mean_field, params, n)
    log_p, _ = conjugate.assess({**q.choices, **observations}, n)
    return log_p - q.score


OPTIMIZER = optax.adam(0.05)  # optax's transformations are closures: a rebuilt one is a different object


def fit(seed, objective):
    params = {"loc": jnp.array(0.0), "log_scale": jnp.array(0.0)}
    obs = {"y": jnp.array([0.5, 1.5, 1.0])}
    return vi.fit(jax.random.key(seed), objective, params, obs, 3, optimizer=OPTIMIZER, steps=6, chunk=4,
                  progress_bar=False).params


def test_vi_fit_with_a_rebuilt_objective_and_parameters():
    assert_reused(lambda seed: fit(seed, vi.objective(elbo)))


def test_vi_fit_with_a_rebuilt_vi_elbo():
    assert_reused(lambda seed: fit(seed, vi.elbo(conjugate, mean_field)))


def test_vi_fit_with_a_rebuilt_vi_iwae_and_its_estimators():
    assert_reused(lambda seed: fit(seed, vi.iwae(conjugate, mean_field, 2, estimators={"mu": vi.reinforce})))


def last_state(x_prev, x):
    return x


def test_smc_paris():
    def call(seed):
        flags, obs = ar_data()
        return smc.paris(jax.random.key(seed), ar_model, (flags,), {**obs, "a": 0.5}, last_state, 8).estimate

    assert_reused(call)


def test_pgibbs_ppg():
    def call(seed):
        flags, obs = ar_data()
        return pgibbs.ppg(jax.random.key(seed), ar_model, (flags,), {**obs, "a": 0.5}, last_state, 4,
                          num_iterations=3, burn_in=1).estimates

    assert_reused(call)


@ppl.gen
def ar_params_step(x_prev, is_first, p):
    x = dist.Normal(jnp.where(is_first, 0.0, p["a"] * x_prev), 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x


@ppl.gen
def ar_params(p, flags):
    return ppl.scan(ar_params_step, in_axes=(0, None))(0.0, flags, p) @ "steps"



def test_pgibbs_learn_by_ppg():
    def call(seed):
        flags, obs = ar_data()
        return pgibbs.learn(jax.random.key(seed), ar_params, {"a": jnp.asarray(0.5)}, (flags,), obs, 4, 3,
                            optimizer=OPTIMIZER, progress_bar=False, method="ppg").trace

    assert_reused(call)


def test_predictive_and_pointwise_log_likelihood():
    from inference import predict
    from testbed import linear_regression as lr

    problem = lr.problem(3, n_data=30)

    def call(seed):
        draws = {"beta": jnp.zeros((2, 50, 3)) + seed}
        replicated = predict.predictive(jax.random.key(seed), lr.regression, (problem.X,), draws)
        prior = predict.predictive(jax.random.key(seed), lr.regression, (problem.X,), {}, num_samples=20)
        return replicated, prior, predict.pointwise_log_likelihood(lr.regression, (problem.X,), draws,
                                                                   {"y": problem.y + 0.0})

    assert_reused(call)


def test_autoguide_rebuilt_fitted_and_drawn():
    from testbed import linear_regression as lr

    problem = lr.problem(3, n_data=30)

    def call(seed):
        observations = {"y": problem.y + 0.0}
        guide, params = vi.autoguide(lr.regression, (problem.X,), observations, family="mvn")
        fit = vi.fit(jax.random.key(seed), vi.elbo(lr.regression, guide), params, observations, problem.X,
                     optimizer=OPTIMIZER, steps=20, progress_bar=False)
        return vi.draws(jax.random.key(seed), guide, fit.params, (problem.X,), num_samples=30).samples

    assert_reused(call)
