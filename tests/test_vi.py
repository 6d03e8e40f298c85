"""Variational inference: every gradient estimator is unbiased against closed-form gradients,
enumeration is exact, IWAE(K=1) is the ELBO and the bounds are ordered, mean-field VI recovers a
conjugate posterior, and fit's checkpoints and errors behave."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from inference import vi
from ppl import dist

R = 20_000  # gradient estimates averaged in the unbiasedness checks


def mean_and_se(estimator, params, key=0, reps=R):
    """Mean and standard error of `reps` independent (value, gradient) estimates."""
    values, grads = jax.jit(jax.vmap(lambda k: estimator(k, params)))(jax.random.split(jax.random.key(key), reps))
    return jax.tree.map(lambda g: (float(np.mean(g)), float(np.std(g) / np.sqrt(reps))), (values, grads))


def assert_unbiased(estimate, exact, what):
    mean, se = estimate
    assert abs(mean - exact) < 4 * se + 1e-4, f"{what}: {mean} ± {se} against {exact}"


# --- Gaussian: E_{z ~ N(mu, 1)} z² = mu² + 1, gradient 2 mu ----------------------------------------------------


@ppl.gen
def gaussian(params):
    return dist.Normal(params["mu"], 1.0) @ "z"


@pytest.mark.parametrize("estimator,baseline", [(vi.reparam, None), (vi.reinforce, None), (vi.reinforce, 3.0),
                                                (vi.reinforce, "loo")])
def test_gaussian_estimators_are_unbiased(estimator, baseline):
    @vi.objective
    def program(params):
        return vi.sample(gaussian, params, estimators={"z": estimator})["z"] ** 2

    num_samples = 4 if baseline == "loo" else 1
    est = mean_and_se(lambda k, p: program.value_and_grad(k, p, num_samples=num_samples, baseline=baseline),
                      {"mu": jnp.array(0.7)})
    assert_unbiased(est[0], 0.7**2 + 1, "value")
    assert_unbiased(est[1]["mu"], 2 * 0.7, "gradient")


# --- Bernoulli and categorical, mixed with a reparameterised Gaussian ----------------------------------------


@ppl.gen
def coin_and_noise(params):
    b = dist.Bernoulli(logits=params["t"]) @ "b"
    z = dist.Normal(params["mu"], 1.0) @ "z"
    return b, z


def bernoulli_exact(t, mu):
    """E[(2b - 0.3)² + b z] and its gradient in (t, mu)."""
    s = jax.nn.sigmoid(t)
    f1, f0 = 1.7**2 + mu, 0.09
    return s * f1 + (1 - s) * f0, {"t": s * (1 - s) * (f1 - f0), "mu": s}


@pytest.mark.parametrize("estimator", [vi.reinforce, vi.enum(), vi.mvd()], ids=["reinforce", "enum", "mvd"])
def test_bernoulli_estimators_are_unbiased_in_a_mixed_model(estimator):
    @vi.objective
    def program(params):
        b, z = vi.sample(coin_and_noise, params, estimators={"b": estimator}).retval
        return (2.0 * b - 0.3) ** 2 + b * z

    params = {"t": jnp.array(0.4), "mu": jnp.array(-0.5)}
    value, grad = bernoulli_exact(0.4, -0.5)
    est = mean_and_se(program.value_and_grad, params)
    assert_unbiased(est[0], value, "value")
    for name in ("t", "mu"):
        assert_unbiased(est[1][name], float(grad[name]), name)


C = jnp.array([1.0, -2.0, 0.5])


@ppl.gen
def die(params):
    return dist.Categorical(logits=params["logits"]) @ "k"


@pytest.mark.parametrize("estimator", [vi.reinforce, vi.enum(jnp.arange(3)), vi.mvd(jnp.arange(3))],
                         ids=["reinforce", "enum", "mvd"])
def test_categorical_estimators_are_unbiased(estimator):
    @vi.objective
    def program(params):
        return C[vi.sample(die, params, estimators={"k": estimator})["k"]]

    logits = jnp.array([0.2, -0.4, 0.9])
    exact_value, exact_grad = jax.value_and_grad(lambda lg: jnp.sum(jax.nn.softmax(lg) * C))(logits)
    values, grads = jax.jit(jax.vmap(lambda k: program.value_and_grad(k, {"logits": logits})))(
        jax.random.split(jax.random.key(0), R))
    grads = np.asarray(grads["logits"])
    assert_unbiased((float(values.mean()), float(values.std() / np.sqrt(R))), float(exact_value), "value")
    mean, se = grads.mean(axis=0), grads.std(axis=0) / np.sqrt(R)
    assert np.all(np.abs(mean - np.asarray(exact_grad)) < 4 * se + 1e-4), (mean, se, exact_grad)


def test_enumeration_and_mvd_of_a_lone_discrete_choice_are_exact():
    """With nothing else random, enumeration gives the exact value and gradient, and so does mvd's gradient."""
    logits = {"logits": jnp.array([0.2, -0.4, 0.9])}
    exact_value, exact_grad = jax.value_and_grad(lambda p: jnp.sum(jax.nn.softmax(p["logits"]) * C))(logits)
    for estimator in (vi.enum(jnp.arange(3)), vi.mvd(jnp.arange(3))):
        program = vi.objective(lambda p, e=estimator: C[vi.sample(die, p, estimators={"k": e})["k"]])
        value, grad = program.value_and_grad(jax.random.key(1), logits)
        np.testing.assert_allclose(grad["logits"], exact_grad["logits"], atol=1e-6)
        if isinstance(estimator, vi.estimators.Enum):
            np.testing.assert_allclose(value, exact_value, atol=1e-6)


# --- a conjugate model: ELBO, IWAE, mean-field VI ---------------------------------------------------------------

N_OBS = 20
YS = jax.random.normal(jax.random.key(5), (N_OBS,)) + 1.0
OBS = {"y": YS}
POST_VAR = 1.0 / (1.0 + N_OBS)
POST_MEAN = float(YS.sum() * POST_VAR)
LOG_EVIDENCE = float(jax.scipy.stats.multivariate_normal.logpdf(YS, jnp.zeros(N_OBS), jnp.eye(N_OBS) + 1.0))


@ppl.gen
def conjugate(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(mu, 1.0).expand((n,)) @ "y"


@ppl.gen
def mean_field(params, n):
    return dist.Normal(params["loc"], jnp.exp(params["log_scale"])) @ "mu"


def test_iwae_with_one_sample_is_the_elbo():
    params = {"loc": jnp.array(0.3), "log_scale": jnp.array(-0.5)}
    key = jax.random.key(2)
    v1, g1 = vi.elbo(conjugate, mean_field).value_and_grad(key, params, OBS, N_OBS)
    v2, g2 = vi.iwae(conjugate, mean_field, 1).value_and_grad(key, params, OBS, N_OBS)
    assert v1 == v2
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), g1, g2)
    # and the ELBO's value is exact: KL between Gaussians
    q_mean, q_var = 0.3, float(jnp.exp(-1.0))
    exact = LOG_EVIDENCE - (0.5 * (q_var / POST_VAR + (q_mean - POST_MEAN) ** 2 / POST_VAR - 1 + np.log(POST_VAR / q_var)))
    draws = jax.jit(jax.vmap(lambda k: vi.elbo(conjugate, mean_field).estimate(k, params, OBS, N_OBS)))(
        jax.random.split(key, 20_000))
    assert abs(float(draws.mean()) - exact) < 4 * float(draws.std()) / np.sqrt(20_000), (float(draws.mean()), exact)


def test_bounds_are_ordered():
    """ELBO <= IWAE_K <= IWAE_2K <= log p(x) on average, for a guide that is off."""
    params = {"loc": jnp.array(0.0), "log_scale": jnp.array(0.0)}
    bounds = []
    for objective in (vi.elbo(conjugate, mean_field), vi.iwae(conjugate, mean_field, 4),
                      vi.iwae(conjugate, mean_field, 8)):
        draws = jax.jit(jax.vmap(lambda k, o=objective: o.estimate(k, params, OBS, N_OBS)))(
            jax.random.split(jax.random.key(3), 4000))
        bounds.append((float(draws.mean()), float(draws.std() / np.sqrt(4000))))
    for (lo, se_lo), (hi, se_hi) in zip(bounds, bounds[1:]):
        assert hi - lo > 3 * np.hypot(se_lo, se_hi), bounds
    assert bounds[-1][0] < LOG_EVIDENCE, (bounds, LOG_EVIDENCE)


def test_mean_field_vi_recovers_the_conjugate_posterior():
    schedule = optax.exponential_decay(0.05, transition_steps=3000, decay_rate=0.02)
    res = vi.fit(jax.random.key(0), vi.elbo(conjugate, mean_field), {"loc": 0.0, "log_scale": 0.0}, OBS, N_OBS,
                 optimizer=optax.adam(schedule), steps=3000, num_samples=8, progress_bar=False)
    assert abs(float(res.params["loc"]) - POST_MEAN) < 0.02
    assert abs(float(jnp.exp(res.params["log_scale"])) - np.sqrt(POST_VAR)) < 0.02
    assert res.values.shape == (3000,) and np.all(np.isfinite(res.values))


# --- fit: checkpoints, baselines, errors ------------------------------------------------------------------------


def test_a_resumed_fit_repeats_an_uninterrupted_one(tmp_path):
    objective = vi.elbo(conjugate, mean_field)
    start = {"loc": jnp.array(0.0), "log_scale": jnp.array(0.0)}
    kwargs = dict(optimizer=optax.adam(0.05), chunk=50, progress_bar=False, baseline="ema")
    whole = vi.fit(jax.random.key(4), objective, start, OBS, N_OBS, steps=200, **kwargs)
    path = tmp_path / "fit.eqx"
    vi.fit(jax.random.key(4), objective, start, OBS, N_OBS, steps=100, checkpoint=path, **kwargs)
    resumed = vi.fit(jax.random.key(4), objective, start, OBS, N_OBS, steps=200, checkpoint=path, **kwargs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), whole.params, resumed.params)
    np.testing.assert_allclose(whole.values, resumed.values, rtol=1e-6)


@ppl.gen
def exploding(params):
    return dist.Normal(params["loc"], jnp.exp(params["log_scale"])) @ "z"


def test_a_non_finite_gradient_names_the_parameter(tmp_path):
    program = vi.objective(lambda p: jnp.exp(jnp.exp(vi.sample(exploding, p)["z"] * 10.0)))
    with pytest.raises(FloatingPointError, match=r"\['loc'\]|\['log_scale'\]|objective"):
        vi.fit(jax.random.key(0), program, {"loc": 5.0, "log_scale": 0.0}, optimizer=optax.sgd(1.0), steps=20,
               chunk=10, progress_bar=False)
    # from a finite start, the checkpoint keeps the values of the steps before the blow-up: resuming
    # with exactly that many steps runs none and hands them back
    start = {"loc": -0.5, "log_scale": -3.0}
    kwargs = dict(optimizer=optax.sgd(0.2), chunk=5, progress_bar=False, checkpoint=tmp_path / "fit.eqx")
    with pytest.raises(FloatingPointError, match=r"stopped at step") as error:
        vi.fit(jax.random.key(0), program, start, steps=60, **kwargs)
    failed_at = int(re.search(r"step (\d+)", str(error.value)).group(1))
    assert failed_at > 5 and failed_at % 5  # past the first chunk, within a chunk
    resumed = vi.fit(jax.random.key(0), program, start, steps=failed_at, **kwargs)
    assert resumed.values.shape == (failed_at,) and np.all(np.isfinite(resumed.values))


def test_bad_input_is_named():
    with pytest.raises(RuntimeError, match="inside an @vi.objective"):
        vi.sample(die, {"logits": jnp.zeros(3)})
    with pytest.raises(ValueError, match="no pathwise gradient"):
        vi.objective(lambda p: vi.sample(die, p, estimators={"k": vi.reparam})["k"] * 1.0).value_and_grad(
            jax.random.key(0), {"logits": jnp.zeros(3)})
    with pytest.raises(ValueError, match="does not sample"):
        vi.objective(lambda p: vi.sample(die, p, estimators={"x": vi.reinforce})["k"] * 1.0).value_and_grad(
            jax.random.key(0), {"logits": jnp.zeros(3)})
    with pytest.raises(Exception, match="do not cover"):  # two of three values: probabilities sum below one
        vi.objective(lambda p: vi.sample(die, p, estimators={"k": vi.enum(jnp.arange(2))})["k"] * 1.0
                     ).value_and_grad(jax.random.key(0), {"logits": jnp.zeros(3)})
    with pytest.raises(ValueError, match="loo"):
        vi.elbo(conjugate, mean_field).value_and_grad(jax.random.key(0), {"loc": 0.0, "log_scale": 0.0}, OBS,
                                                      N_OBS, baseline="loo")


@pytest.mark.parametrize("second", ["enum", "mvd"])
def test_two_discrete_sites_with_default_names(second):
    """E[C[k1] C[k2]] over two sites: k1 enumerated, k2 enumerated too (exact) or by mvd (unbiased)."""
    estimator = vi.enum(jnp.arange(3)) if second == "enum" else vi.mvd(jnp.arange(3))

    @vi.objective
    def program(params):
        k1 = vi.sample(die, params, estimators={"k": vi.enum(jnp.arange(3))})["k"]
        k2 = vi.sample(die, params, estimators={"k": estimator})["k"]
        return C[k1] * C[k2]

    params = {"logits": jnp.array([0.2, -0.4, 0.9])}
    exact_value, exact_grad = jax.value_and_grad(lambda p: jnp.sum(jax.nn.softmax(p["logits"]) * C) ** 2)(params)
    if second == "enum":
        value, grad = program.value_and_grad(jax.random.key(0), params)
        np.testing.assert_allclose(value, exact_value, atol=1e-5)
        np.testing.assert_allclose(grad["logits"], exact_grad["logits"], atol=1e-5)
    else:
        grads = np.asarray(jax.jit(jax.vmap(lambda k: program.value_and_grad(k, params)[1]["logits"]))(
            jax.random.split(jax.random.key(0), 4000)))
        se = grads.std(axis=0) / np.sqrt(4000)
        assert np.all(np.abs(grads.mean(axis=0) - np.asarray(exact_grad["logits"])) < 4 * se + 1e-4)


# --- reweighted wake-sleep, hierarchical VI, the SMC bound -----------------------------------------------------


@ppl.gen
def conjugate_with_prior_mean(params, n):
    mu = dist.Normal(params["prior_mean"], 1.0) @ "mu"
    dist.Normal(mu, 1.0).expand((n,)) @ "y"


def test_reweighted_wake_sleep_learns_the_model_and_the_posterior():
    """RWS on the conjugate model with a learnt prior mean: the maximum-likelihood prior mean is mean(y)
    (marginally y ~ N(m 1, I + 1 1ᵀ)), and wake-q fits the exact posterior at that prior."""
    start = {"prior_mean": jnp.array(0.0), "loc": jnp.array(0.0), "log_scale": jnp.array(0.0)}
    schedule = optax.exponential_decay(0.05, transition_steps=3000, decay_rate=0.02)
    res = vi.fit(jax.random.key(1), vi.rws(conjugate_with_prior_mean, mean_field, k=16), start, OBS, N_OBS,
                 optimizer=optax.adam(schedule), steps=3000, progress_bar=False)
    m = float(YS.mean())
    assert abs(float(res.params["prior_mean"]) - m) < 0.05
    assert abs(float(res.params["loc"]) - (m + float(YS.sum())) * POST_VAR) < 0.05
    assert abs(float(jnp.exp(res.params["log_scale"])) - np.sqrt(POST_VAR)) < 0.03


@ppl.gen
def hierarchical_guide(params, n):
    eps = dist.Normal(0.0, 1.0) @ "eps"
    return dist.Normal(params["loc"] + params["mix"] * eps, jnp.exp(params["log_scale"])) @ "mu"


@ppl.gen
def reverse_model(z, params, n):
    return dist.Normal(params["r_slope"] * z["mu"], jnp.exp(params["r_log_scale"])) @ "eps"


def test_hierarchical_bounds_are_ordered():
    """HVI <= IWHVI(4) <= IWHVI(16) <= log p(x) on average, for a reverse model that is off."""
    params = {"loc": jnp.array(0.3), "mix": jnp.array(0.4), "log_scale": jnp.array(-1.0),
              "r_slope": jnp.array(0.5), "r_log_scale": jnp.array(0.0)}
    draws = []
    for k in (0, 4, 16):  # the same keys: the same guide draws, so the differences are paired
        objective = vi.hvi(conjugate, hierarchical_guide, reverse_model, k=k)
        draws.append(np.asarray(jax.jit(jax.vmap(lambda key, o=objective: o.estimate(key, params, OBS, N_OBS)))(
            jax.random.split(jax.random.key(6), 4000)), np.float64))
    for lo, hi in zip(draws, draws[1:]):
        gain = hi - lo
        assert gain.mean() > 3 * gain.std() / np.sqrt(gain.size), (gain.mean(), gain.std())
    assert draws[-1].mean() + 3 * draws[-1].std() / np.sqrt(4000) < LOG_EVIDENCE, (draws[-1].mean(), LOG_EVIDENCE)
    _, grads = vi.hvi(conjugate, hierarchical_guide, reverse_model, k=4).value_and_grad(
        jax.random.key(0), params, OBS, N_OBS)
    assert all(np.isfinite(np.asarray(g)) for g in jax.tree.leaves(grads))


@ppl.gen
def ar_step(x_prev, is_first):
    x = dist.Normal(jnp.where(is_first, 0.0, 0.9 * x_prev), 1.0) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x


@ppl.gen
def ar_chain(flags):
    return ppl.scan(ar_step, in_axes=(0,))(0.0, flags) @ "steps"


def test_smc_bound_is_below_the_evidence_and_tightens_with_particles():
    from testbed import oracles

    T = 20
    flags = jnp.arange(T) == 0
    _, ys = oracles.lgssm_simulate(np.random.default_rng(0), T, 0.9, 1.0, 1.0, 1.0, 0.0, 1.0)
    log_z = oracles.kalman_filter(ys, 0.9, 1.0, 1.0, 1.0, 0.0, 1.0)[2]
    obs = {"steps": {"y": jnp.asarray(ys, jnp.float32)}}

    def proposal(params):
        @ppl.gen
        def q(obs_t, x_prev, is_first):  # a learnable shift of the prior towards the observation
            mean = jnp.where(is_first, 0.0, 0.9 * x_prev)
            return dist.Normal(mean + params["w"] * (obs_t["y"] - mean), jnp.exp(params["log_s"])) @ "x"

        return q

    params = {"w": jnp.array(0.2), "log_s": jnp.array(0.0)}
    bounds = []
    for n in (4, 64):
        objective = vi.smc_elbo(ar_chain, proposal, n)
        draws = jax.jit(jax.vmap(lambda k, o=objective: o.estimate(k, params, obs, flags)))(
            jax.random.split(jax.random.key(7), 500))
        bounds.append((float(draws.mean()), float(draws.std() / np.sqrt(500))))
    assert bounds[0][0] + 3 * np.hypot(bounds[0][1], bounds[1][1]) < bounds[1][0] < log_z, (bounds, log_z)
    _, grads = vi.smc_elbo(ar_chain, proposal, 16).value_and_grad(jax.random.key(0), params, obs, flags)
    assert all(np.isfinite(np.asarray(g)) for g in jax.tree.leaves(grads))
