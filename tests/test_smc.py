"""SMC against exact answers: Kalman filter and RTS smoother, HMM forward algorithm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from inference import importance, smc
from ppl import dist
from testbed import oracles
from testbed.lgssm import A, C, M0, P0, Q, R, lg_step, lgssm

T = 25
FLAGS = jnp.arange(T) == 0
_, YS = oracles.lgssm_simulate(np.random.default_rng(0), T, A, C, Q, R, M0, P0)
OBS = {"steps": {"y": jnp.asarray(YS, jnp.float32)}}
FILTER_MEAN, FILTER_VAR, LOG_Z = oracles.kalman_filter(YS, A, C, Q, R, M0, P0)


@ppl.gen
def optimal_proposal(obs_t, x_prev, is_first):
    """The locally optimal proposal p(x_t | x_{t-1}, y_t) of the linear-Gaussian model."""
    prior_mean = jnp.where(is_first, M0, A * x_prev)
    prior_var = jnp.where(is_first, P0, Q)
    var = 1.0 / (1.0 / prior_var + C**2 / R)
    mean = var * (prior_mean / prior_var + C * obs_t["y"] / R)
    return dist.Normal(mean, jnp.sqrt(var)) @ "x"


def log_z_replicates(n_particles, reps, seed, **kwargs):
    run = jax.jit(jax.vmap(lambda k: smc.run(k, lgssm, (FLAGS,), OBS, n_particles, return_traces=False, **kwargs).log_marginal_likelihood()))
    return np.asarray(run(jax.random.split(jax.random.key(seed), reps)), np.float64)


def check_unbiased(log_z, exact):
    """log Ẑ is biased low by Var/2: test mean + s²/2 against log Z within 4 standard errors."""
    se = np.sqrt(log_z.var() / len(log_z) + log_z.var() ** 2 / (2 * (len(log_z) - 1)))
    assert abs(log_z.mean() + log_z.var() / 2 - exact) < 4 * se, (log_z.mean(), log_z.var(), exact)


@pytest.mark.parametrize("threshold", [1.0, 0.5])
@pytest.mark.parametrize("scheme", ["systematic", "multinomial"])
def test_log_marginal_likelihood_is_unbiased(threshold, scheme):
    log_z = log_z_replicates(300, 200, seed=1, ess_threshold=threshold, resampling_scheme=scheme)
    check_unbiased(log_z, LOG_Z)


def test_estimate_converges_as_n_grows():
    small = log_z_replicates(50, 100, seed=2)
    large = log_z_replicates(1000, 100, seed=3)
    assert large.var() < small.var() / 5
    assert abs(large.mean() - LOG_Z) < abs(small.mean() - LOG_Z)


def test_filtering_means_and_variances_match_kalman():
    res = smc.run(jax.random.key(4), lgssm, (FLAGS,), OBS, n_particles=20_000)
    w = np.asarray(jax.nn.softmax(res.history.log_weights, axis=1), np.float64)
    x = np.asarray(res.history.choices["x"], np.float64)
    mean = np.sum(w * x, axis=1)
    var = np.sum(w * (x - mean[:, None]) ** 2, axis=1)
    ess = 1.0 / np.sum(w**2, axis=1)
    # SMC error grows with t through resampling; allow 5 sds of a (conservative) ESS/2 sample
    z = (mean - FILTER_MEAN) / np.sqrt(FILTER_VAR / (ess / 2))
    assert np.all(np.abs(z) < 5), z
    assert np.all(np.abs(var / FILTER_VAR - 1) < 0.1)


def test_final_traces_are_the_models_and_weights_flagged():
    res = smc.run(jax.random.key(5), lgssm, (FLAGS,), OBS, n_particles=64)
    assert res.choices["steps"]["x"].shape == (64, T)
    np.testing.assert_allclose(res.choices["steps"]["y"][3], YS, rtol=1e-6)
    scores = jax.vmap(lambda c: lgssm.assess(c, FLAGS)[0])(res.choices)
    np.testing.assert_allclose(scores, res.traces.score, rtol=1e-5)
    assert res.info.ess.shape == (T,) and res.info.log_marginal_likelihood.shape == (T,)
    np.testing.assert_allclose(res.info.log_marginal_likelihood[-1], res.log_marginal_likelihood())
    assert float(np.sum(res.normalized_weights())) == pytest.approx(1.0, rel=1e-5)
    assert not bool(res.failed)


def test_locally_optimal_proposal_reduces_variance():
    boot = log_z_replicates(100, 200, seed=6)
    opt = log_z_replicates(100, 200, seed=16, proposal=optimal_proposal)
    check_unbiased(opt, LOG_Z)
    # F test: with equal variances the ratio of 200-sample variances exceeds 1.6 with probability < 1e-3
    assert boot.var() / opt.var() > 1.6, (opt.var(), boot.var())


def test_impossible_observation_is_flagged_not_nan():
    @ppl.gen
    def bounded_step(x_prev):
        x = dist.Normal(x_prev, 1.0) @ "x"
        dist.Uniform(x - 1.0, x + 1.0) @ "y"
        return x

    @ppl.gen
    def model():
        return ppl.scan(bounded_step, length=3)(0.0) @ "steps"

    res = smc.run(jax.random.key(0), model, (), {"steps": {"y": jnp.array([0.0, 100.0, 0.0])}}, n_particles=50)
    assert bool(res.failed)
    assert res.log_marginal_likelihood() == -jnp.inf
    assert float(res.ess()) == 0.0
    assert not np.any(np.isnan(np.asarray(res.normalized_weights())))
    assert not np.any(np.isnan(np.asarray(res.info.log_marginal_likelihood)))


@pytest.mark.parametrize("failing_step", [1, 2])
def test_nan_weights_are_flagged_and_cleared(failing_step):
    # a negative observation scale makes every weight of that step NaN (not -inf), at a middle and the last step
    @ppl.gen
    def step(x_prev, scale):
        x = dist.Normal(x_prev, 1.0) @ "x"
        dist.Normal(x, scale) @ "y"
        return x

    @ppl.gen
    def model(scales):
        return ppl.scan(step, in_axes=(0,))(0.0, scales) @ "steps"

    scales = jnp.ones(3).at[failing_step].set(-1.0)
    for return_traces in (False, True):
        res = smc.run(jax.random.key(0), model, (scales,), {"steps": {"y": jnp.zeros(3)}}, n_particles=20,
                      return_traces=return_traces)
        assert bool(res.failed)
        assert res.log_marginal_likelihood() == -jnp.inf
        assert np.all(np.asarray(res.log_weights) == -np.inf)
        assert float(res.ess()) == 0.0
        assert not np.any(np.isnan(np.asarray(res.info.log_marginal_likelihood)))
        if return_traces:
            assert not np.any(np.isnan(np.asarray(res.history.log_weights)))


def test_mh_rejuvenation_keeps_the_filter_right():
    move = smc.mh_rejuvenation(ppl.sel("x"), n_steps=2)
    log_z = log_z_replicates(200, 100, seed=7, rejuvenation=move)
    check_unbiased(log_z, LOG_Z)
    res = smc.run(jax.random.key(8), lgssm, (FLAGS,), OBS, n_particles=5000, rejuvenation=move)
    assert 0.2 < float(res.info.acceptance.mean()) < 0.95
    w = np.asarray(jax.nn.softmax(res.history.log_weights, axis=1))
    mean = np.sum(w * np.asarray(res.history.choices["x"]), axis=1)
    assert np.max(np.abs(mean - FILTER_MEAN) / np.sqrt(FILTER_VAR)) < 0.15


def test_csmc_with_backward_sampling_matches_rts_smoother():
    smooth_mean, smooth_var = oracles.rts_smoother(YS, A, C, Q, R, M0, P0)

    @jax.jit
    def sweep(x_ref, key):
        k_run, k_back = jax.random.split(key)
        reference = {"steps": {"x": x_ref, "y": OBS["steps"]["y"]}}
        res = smc.csmc(k_run, lgssm, (FLAGS,), OBS, reference, n_particles=20)
        x_new = smc.backward_sample(k_back, lgssm, (FLAGS,), res)["x"][0]
        return x_new, x_new

    x0 = jnp.zeros(T)
    _, draws = jax.lax.scan(sweep, x0, jax.random.split(jax.random.key(9), 3000))
    draws = np.asarray(draws[200:], np.float64)
    # successive sweeps are nearly independent with backward sampling: a conservative ESS of n/3
    ess = len(draws) / 3
    z = (draws.mean(0) - smooth_mean) / np.sqrt(smooth_var / ess)
    assert np.all(np.abs(z) < 5), z
    assert np.all(np.abs(draws.var(0) / smooth_var - 1) < 0.2)


def test_csmc_keeps_the_reference_and_ancestor_sampling_rewrites_its_past():
    reference = {"steps": {"x": jnp.linspace(-1, 1, T), "y": OBS["steps"]["y"]}}
    plain = smc.csmc(jax.random.key(1), lgssm, (FLAGS,), OBS, reference, n_particles=5, ancestor_sampling=False)
    np.testing.assert_allclose(plain.choices["steps"]["x"][0], reference["steps"]["x"], rtol=1e-6)
    with_as = smc.csmc(jax.random.key(1), lgssm, (FLAGS,), OBS, reference, n_particles=5)
    assert float(with_as.choices["steps"]["x"][0, -1]) == pytest.approx(float(reference["steps"]["x"][-1]))
    assert np.any(np.asarray(with_as.choices["steps"]["x"][0, :-1]) != np.asarray(reference["steps"]["x"][:-1]))
    # a step's carry is its x: each final carry is its particle's last x, the reference's included (its carry
    # takes its slot a step late, so a missing last substitution would leave slot 0 another particle's draw)
    for res in (plain, with_as):
        np.testing.assert_array_equal(res.carries, res.choices["steps"]["x"][:, -1])


@pytest.mark.parametrize("ancestor_sampling", [True, "metropolis", False])
def test_csmc_weighs_the_references_masked_out_observation_as_latent(ancestor_sampling):
    # the last step's y is masked out, so no particle is weighed by it: the final weights are all 0 (each step
    # resamples them to 0 first), the reference's too, which was once weighed by its y's density there
    @ppl.gen
    def step(x_prev):
        x = dist.Normal(x_prev, 1.0) @ "x"
        dist.Normal(x, 1.0) @ "y"
        return x

    @ppl.gen
    def model():
        return ppl.scan(step, length=4)(0.0) @ "steps"

    obs = {"steps": {"y": ppl.choicemap.Masked(jnp.array([0.5, 9.0, -0.3, 9.0]), jnp.array([True, False, True, False]))}}
    reference, _ = model.generate(jax.random.key(0), obs)
    res = smc.csmc(jax.random.key(1), model, (), obs, reference.choices, 5, ancestor_sampling=ancestor_sampling)
    np.testing.assert_array_equal(res.log_weights, np.zeros(5))


@pytest.mark.parametrize("backward_sampling", [False, True])
def test_csmc_kernel_with_one_particle_returns_the_reference_masked_observations_included(backward_sampling):
    # with N = 1 the only particle is the reference: the new trace is the old one. A y masked out at odd steps is
    # latent there, so it must come back from the particle's path, not be left out of its record and redrawn.
    obs = {"steps": {"y": ppl.choicemap.Masked(OBS["steps"]["y"], jnp.arange(T) % 2 == 0)}}
    trace, _ = lgssm.generate(jax.random.key(0), obs, FLAGS)
    kernel = smc.csmc_kernel(obs, 1, backward_sampling=backward_sampling)
    new, info = jax.jit(lambda k: kernel.step(k, trace, lgssm, (FLAGS,)))(jax.random.key(1))
    for leaf in ("x", "y"):
        np.testing.assert_array_equal(new.choices["steps"][leaf], trace.choices["steps"][leaf])
    assert not bool(info.accepted) and not bool(info.diverging)


@pytest.mark.parametrize("ancestor_sampling", [True, "metropolis", False])
def test_csmc_kernel_flags_an_impossible_reference_and_keeps_the_trace(ancestor_sampling):
    # a CSMC step fails when the reference's weight is -inf or any weight is NaN or +inf: step 1's observation
    # is out of every particle's reach (the reference's too), or its negative scale makes every weight NaN
    @ppl.gen
    def step(x_prev, scale):
        x = dist.Normal(x_prev, 1.0) @ "x"
        dist.Normal(x, scale) @ "y"
        dist.Uniform(x - 3.0, x + 3.0) @ "z"
        return x

    @ppl.gen
    def model(scales):
        return ppl.scan(step, in_axes=(0,))(0.0, scales) @ "steps"

    zeros, ones = jnp.zeros(3), jnp.ones(3)
    cases = [({"y": zeros, "z": zeros}, ones, False), ({"y": zeros, "z": zeros.at[1].set(100.0)}, ones, True),
             ({"y": zeros, "z": zeros}, ones.at[1].set(-1.0), True)]
    for steps, scales, fails in cases:
        trace, _ = model.generate(jax.random.key(0), {"steps": steps}, scales)  # the reference
        kernel = smc.csmc_kernel({"steps": steps}, 10, ancestor_sampling=ancestor_sampling)
        sweeps = jax.jit(jax.vmap(lambda k: kernel.step(k, trace, model, (scales,))))
        new, info = sweeps(jax.random.split(jax.random.key(1), 5))
        assert np.all(np.asarray(info.diverging) == fails)
        if fails:  # the trace is handed back unchanged
            np.testing.assert_array_equal(new.choices["steps"]["x"], np.broadcast_to(trace.choices["steps"]["x"], (5, 3)))
            assert not np.any(np.asarray(info.accepted))
        else:
            assert np.all(np.isfinite(np.asarray(new.score))) and np.any(np.asarray(info.accepted))


# --- a discrete HMM: the forward algorithm ---------------------------------

PI = jnp.array([0.6, 0.3, 0.1])
TRANS = jnp.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
MU, SIGMA = jnp.array([-2.0, 0.0, 2.5]), jnp.array([0.8, 0.6, 1.0])


@ppl.gen
def hmm_step(z_prev, is_first):
    probs = jnp.where(is_first, PI, TRANS[z_prev])
    z = dist.Categorical(probs=probs) @ "z"
    dist.Normal(MU[z], SIGMA[z]) @ "y"
    return z


@ppl.gen
def hmm(first_flags):
    return ppl.scan(hmm_step, in_axes=(0,))(jnp.int32(0), first_flags) @ "steps"


def test_hmm_matches_forward_algorithm():
    rng = np.random.default_rng(3)
    n_steps = 30
    flags = jnp.arange(n_steps) == 0
    tr = hmm.simulate(jax.random.key(3), flags)
    ys = np.asarray(tr["steps", "y"], np.float64)
    probs, log_z = oracles.hmm_forward(ys, np.asarray(PI), np.asarray(TRANS), np.asarray(MU), np.asarray(SIGMA))
    obs = {"steps": {"y": jnp.asarray(ys, jnp.float32)}}
    run = jax.jit(jax.vmap(lambda k: smc.run(k, hmm, (flags,), obs, 300, return_traces=False).log_marginal_likelihood()))
    check_unbiased(np.asarray(run(jax.random.split(jax.random.key(int(rng.integers(1 << 30))), 200)), np.float64), log_z)
    res = smc.run(jax.random.key(4), hmm, (flags,), obs, n_particles=20_000)
    w = np.asarray(jax.nn.softmax(res.history.log_weights, axis=1))
    z = np.asarray(res.history.choices["z"])
    est = np.stack([np.sum(w * (z == k), axis=1) for k in range(3)], axis=1)
    assert np.max(np.abs(est - probs)) < 0.03


@pytest.mark.parametrize("mode", ["plain", "ancestor sampling", "metropolis", "backward sampling"])
def test_csmc_kernel_leaves_the_exact_posterior_invariant(mode):
    """One CSMC sweep from exact posterior draws gives exact posterior draws: chi-square over all 81 paths.

    Three particles and four steps: the reference takes a third of the slots, so a conditional
    resampling with the wrong law given the reference's ancestor shows at once.
    """
    n_steps, draws = 4, 20_000
    flags = jnp.arange(n_steps) == 0
    ys = np.array([-1.0, -0.8, 1.0, 1.5])
    paths, probs = oracles.hmm_enumerate_paths(ys, np.asarray(PI), np.asarray(TRANS), np.asarray(MU), np.asarray(SIGMA))
    obs = {"steps": {"y": jnp.asarray(ys, jnp.float32)}}
    start = paths[np.random.default_rng(11).choice(len(paths), size=draws, p=probs)]
    ancestor_sampling = {"ancestor sampling": True, "metropolis": "metropolis"}.get(mode, False)
    kernel = smc.csmc_kernel(obs, 3, ancestor_sampling, backward_sampling=mode == "backward sampling")

    @jax.jit
    def sweep(key, z):
        trace, _ = hmm.generate(key, {"steps": {"z": z, **obs["steps"]}}, flags)
        return kernel.step(jax.random.fold_in(key, 1), trace, hmm, (flags,))[0].choices["steps"]["z"]

    moved = np.asarray(jax.vmap(sweep)(jax.random.split(jax.random.key(12), draws), jnp.asarray(start, jnp.int32)))
    assert np.mean(np.any(moved != start, axis=1)) > 0.2  # the sweep does move
    index = moved @ (3 ** np.arange(n_steps)[::-1])  # paths are in lexicographic order
    counts, expected = np.bincount(index, minlength=len(paths)), draws * probs
    rare = expected < 5  # pooled into one cell
    observed = np.append(counts[~rare], counts[rare].sum())
    expected = np.append(expected[~rare], expected[rare].sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3, (observed, expected.round(1))


def test_importance_sampling_on_the_lgssm():
    res = importance.run(jax.random.key(0), lgssm, (FLAGS,), OBS, n_particles=50_000)
    # prior importance sampling is poor in 25 dimensions but still unbiased for Z: only a loose check
    assert np.isfinite(float(res.log_marginal_likelihood()))
    resampled = importance.sample_importance_resampling(jax.random.key(1), res, 100)
    assert resampled.choices["steps"]["x"].shape == (100, T)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="valid|systematic"):
        smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 10, resampling_scheme="bogus")
    with pytest.raises(ValueError, match="ess_threshold"):
        smc.run(jax.random.key(0), lgssm, (FLAGS,), OBS, 10, ess_threshold=2.0)
    with pytest.raises(ppl.ModelError, match="exactly one ppl.scan"):
        smc.run(jax.random.key(0), lg_step, (0.0, True), {}, 10)


def test_a_loop_of_ones_own_over_init_and_step_is_what_run_computes():
    """`smc.run` is `init` then `step` at t = 0..T-1 (keys split as run splits them); CSMC likewise."""
    import equinox as eqx

    key = jax.random.key(3)
    k_init, k_steps, _ = jax.random.split(key, 3)
    step = eqx.filter_jit(smc.step)
    state = smc.init(k_init, lgssm, (FLAGS,), OBS, 64)
    for t, k in enumerate(jax.random.split(k_steps, smc.n_steps(state))):
        state, info = step(k, state, jnp.asarray(t))
    res = smc.run(key, lgssm, (FLAGS,), OBS, 64, return_traces=False)
    np.testing.assert_allclose(state.log_marginal, res.log_marginal_likelihood(), rtol=1e-5)
    np.testing.assert_allclose(state.log_weights, res.log_weights, rtol=1e-4, atol=1e-4)
    assert float(info.log_marginal_likelihood) == pytest.approx(float(state.log_marginal))

    reference = ppl.choicemap.index(smc.run(key, lgssm, (FLAGS,), OBS, 64).choices, 0)
    config = smc.SMCConfig(8, ess_threshold=1.0, ancestor_sampling="exact")
    cstate = smc.conditional_init(k_init, lgssm, (FLAGS,), OBS, reference, config)
    cstep = eqx.filter_jit(smc.conditional_step)
    for t, k in enumerate(jax.random.split(k_steps, smc.n_steps(cstate))):
        cstate, _ = cstep(k, cstate, jnp.asarray(t))
    conditional = smc.csmc(key, lgssm, (FLAGS,), OBS, reference, 8)
    np.testing.assert_allclose(cstate.log_marginal, conditional.log_marginal_likelihood(), rtol=1e-5)


def test_config_names_its_bad_settings():
    with pytest.raises(ValueError, match="ancestor_sampling is one of"):
        smc.SMCConfig(8, ancestor_sampling="gibbs")
    with pytest.raises(ValueError, match="record is one of"):
        smc.SMCConfig(8, record="all")
    assert smc.SMCConfig(8, ess_threshold=0.5) == smc.SMCConfig(8, ess_threshold=0.5)


def _drifting(copy_table: bool):
    """x_t ~ N(x_{t-1} + table[0], 1), y_t ~ N(x_t, scale); the carry (x, table) hands the table on unchanged, or
    (with `copy_table`) a table computed from it (equal, plus zero)."""

    @ppl.gen
    def step(carry, scale):
        x, table = carry
        x = dist.Normal(x + table[0], 1.0) @ "x"
        dist.Normal(x, scale) @ "y"
        return (x, table + 0.0 if copy_table else table)

    @ppl.gen
    def model(table, scale):
        return ppl.scan(step, length=4)((jnp.zeros(()), table), scale) @ "steps"

    return model


@pytest.mark.parametrize("ancestor_sampling", [None, True])
def test_a_carry_leaf_that_no_step_changes_is_stored_once_and_not_gathered(ancestor_sampling):
    """A carry leaf that starts alike in every particle and that every step hands on unchanged (a language model's
    prompt cache) is kept once by the target, not per particle; the filter computes what it computed with the leaf
    per particle (the same leaf, changed by adding zero, is per particle)."""
    table, obs = jnp.arange(3.0), {"steps": {"y": jnp.array([0.5, 1.0, 2.5, 3.0])}}
    handing_on, copying = _drifting(False), _drifting(True)
    state = smc.init(jax.random.key(0), handing_on, (table, 0.5), obs, 7)
    assert list(state.target.carry.shared) == [1] and list(state.particles.carry) == [0]
    np.testing.assert_array_equal(state.target.carry.shared[1], table)
    assert not smc.init(jax.random.key(0), copying, (table, 0.5), obs, 7).target.carry.shared
    if ancestor_sampling is None:
        shared, copied = (smc.run(jax.random.key(1), m, (table, 0.5), obs, 7, ess_threshold=1.0)
                          for m in (handing_on, copying))
    else:
        reference = {"steps": {"x": jnp.linspace(0.0, 2.0, 4), "y": obs["steps"]["y"]}}
        shared, copied = (smc.csmc(jax.random.key(1), m, (table, 0.5), obs, reference, 7, ancestor_sampling=True)
                          for m in (handing_on, copying))
    np.testing.assert_allclose(shared.log_marginal, copied.log_marginal, rtol=1e-6)
    np.testing.assert_allclose(shared.choices["steps"]["x"], copied.choices["steps"]["x"], rtol=1e-6)
    np.testing.assert_array_equal(shared.carries[1], np.broadcast_to(table, (7, 3)))  # the result's carries are whole
