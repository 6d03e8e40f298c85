"""Densities against numpyro's log_prob, summed by hand, for every kind of model part."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import dist

KEY = jax.random.key(0)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@ppl.gen
def point(x, slope, noise):
    return dist.Normal(slope * x, noise) @ "y"


@ppl.gen
def regression(xs):
    slope = dist.Normal(0.0, 1.0) @ "slope"
    noise = dist.HalfNormal(1.0) @ "noise"
    return ppl.vmap(point, in_axes=(0, None, None))(xs, slope, noise) @ "ys"


XS = jnp.linspace(-2.0, 2.0, 7)


def regression_logp(c, xs=XS):
    return (
        nd.Normal(0.0, 1.0).log_prob(c["slope"])
        + nd.HalfNormal(1.0).log_prob(c["noise"])
        + nd.Normal(c["slope"] * xs, c["noise"]).log_prob(c["ys"]["y"]).sum()
    )


def test_regression_score_assess_and_generate_match_numpyro():
    tr = regression.simulate(KEY, XS)
    close(tr.score, regression_logp(tr.choices))
    close(regression.assess(tr.choices, XS)[0], regression_logp(tr.choices))
    obs = {"ys": {"y": tr.choices["ys"]["y"]}}
    tr2, w = regression.generate(KEY, obs, XS)
    expected_w = nd.Normal(tr2["slope"] * XS, tr2["noise"]).log_prob(obs["ys"]["y"]).sum()
    close(w, expected_w)
    close(tr2.score, regression_logp(tr2.choices))
    assert tr.retval.shape == (7,) and tr.args[0].shape == (7,)


@ppl.gen
def zoo():
    """A little of every kind of distribution: discrete, continuous, batched, event-shaped, masked."""
    p = dist.Beta(2.0, 3.0) @ "p"
    k = dist.Bernoulli(p) @ "k"
    rate = dist.Gamma(2.0, 1.0) @ "rate"
    dist.Poisson(rate * jnp.ones(3)) @ "counts"
    w = dist.Dirichlet(jnp.ones(4)) @ "w"
    c = dist.Categorical(probs=w) @ "c"
    mvn = dist.MultivariateNormal(jnp.zeros(2), jnp.array([[2.0, 0.5], [0.5, 1.0]])) @ "mvn"
    dist.Normal(jnp.zeros(4), 1.0).mask(jnp.array([True, False, True, False])) @ "masked"
    dist.Normal(jnp.zeros(3), 2.0).to_event(1) @ "ev"
    ppl.factor(-0.5 * jnp.sum(mvn**2))
    return k + c


def zoo_logp(c):
    return (
        nd.Beta(2.0, 3.0).log_prob(c["p"])
        + nd.Bernoulli(c["p"]).log_prob(c["k"])
        + nd.Gamma(2.0, 1.0).log_prob(c["rate"])
        + nd.Poisson(c["rate"] * jnp.ones(3)).log_prob(c["counts"]).sum()
        + nd.Dirichlet(jnp.ones(4)).log_prob(c["w"])
        + nd.Categorical(probs=c["w"]).log_prob(c["c"])
        + nd.MultivariateNormal(jnp.zeros(2), jnp.array([[2.0, 0.5], [0.5, 1.0]])).log_prob(c["mvn"])
        + (nd.Normal(0.0, 1.0).log_prob(c["masked"]) * jnp.array([1.0, 0.0, 1.0, 0.0])).sum()
        + nd.Normal(0.0, 2.0).log_prob(c["ev"]).sum()
        - 0.5 * jnp.sum(c["mvn"] ** 2)
    )


def test_every_kind_of_distribution_and_factor():
    for seed in range(3):
        tr = zoo.simulate(jax.random.key(seed))
        assert tr["k"].dtype in (jnp.int32, jnp.bool_) and tr["c"].dtype == jnp.int32
        close(tr.score, zoo_logp(tr.choices))
        close(zoo.assess(tr.choices)[0], zoo_logp(tr.choices))
        # project of nothing is the factor alone
        close(zoo.project(tr, ppl.sel.none()), -0.5 * jnp.sum(tr["mvn"] ** 2))
        close(zoo.project(tr, ppl.sel("p") | ppl.sel("k")),
              nd.Beta(2.0, 3.0).log_prob(tr["p"]) + nd.Bernoulli(tr["p"]).log_prob(tr["k"]) - 0.5 * jnp.sum(tr["mvn"] ** 2))


@ppl.gen
def ar_step(z_prev, phi, sigma):
    z = dist.Normal(phi * z_prev, 1.0) @ "z"
    dist.Normal(z, sigma) @ "y"
    return z


@ppl.gen
def ssm(T):
    phi = dist.Uniform(-1.0, 1.0) @ "phi"
    sigma = dist.HalfNormal(1.0) @ "sigma"
    return ppl.scan(ar_step, length=T)(0.0, phi, sigma) @ "steps"


def ssm_logp(c):
    z, y = c["steps"]["z"], c["steps"]["y"]
    z_prev = jnp.concatenate([jnp.zeros(1), z[:-1]])
    return (
        nd.Uniform(-1.0, 1.0).log_prob(c["phi"])
        + nd.HalfNormal(1.0).log_prob(c["sigma"])
        + nd.Normal(c["phi"] * z_prev, 1.0).log_prob(z).sum()
        + nd.Normal(z, c["sigma"]).log_prob(y).sum()
    )


def test_scan_density_and_return_value():
    tr = ssm.simulate(KEY, 6)
    close(tr.score, ssm_logp(tr.choices))
    close(tr.retval, tr.choices["steps"]["z"])  # the scan returns the stacked carries
    ys = jnp.arange(6.0)
    tr2, w = ssm.generate(KEY, {"steps": {"y": ys}}, 6)
    close(w, nd.Normal(tr2["steps", "z"], tr2["sigma"]).log_prob(ys).sum())


def test_zero_length_scan_and_vmap():
    tr = ssm.simulate(KEY, 0)
    assert tr.choices["steps"]["z"].shape == (0,)
    close(tr.score, nd.Uniform(-1.0, 1.0).log_prob(tr["phi"]) + nd.HalfNormal(1.0).log_prob(tr["sigma"]))
    tr2, w, _ = ssm.update(KEY, tr, {"phi": 0.5})
    close(w, tr2.score - tr.score)
    _tr3, w3 = ssm.generate(KEY, {"steps": {"y": jnp.zeros(0)}}, 0)
    close(w3, 0.0)
    empty = regression.simulate(KEY, jnp.zeros(0))
    close(empty.score, nd.Normal(0.0, 1.0).log_prob(empty["slope"]) + nd.HalfNormal(1.0).log_prob(empty["noise"]))


def test_scan_with_outputs_and_scanned_inputs():
    @ppl.gen
    def step(total, x):
        inc = dist.Normal(x, 1.0) @ "inc"
        return total + inc, 2.0 * inc

    @ppl.gen
    def model(xs):
        return ppl.scan(step, in_axes=(0,), with_outputs=True)(0.0, xs) @ "s"

    xs = jnp.array([1.0, -1.0, 3.0])
    tr = model.simulate(KEY, xs)
    final, outs = tr.retval
    close(final, jnp.sum(tr["s", "inc"]))
    close(outs, 2.0 * tr["s", "inc"])
    close(tr.score, nd.Normal(xs, 1.0).log_prob(tr["s", "inc"]).sum())


@ppl.gen
def narrow(mu):
    return dist.Normal(mu, 1.0) @ "x"


@ppl.gen
def wide(mu):
    x = dist.Normal(mu, 10.0) @ "x"
    shift = dist.Normal(0.0, 1.0) @ "shift"
    return x + shift


@ppl.gen
def outlier_model():
    is_outlier = dist.Bernoulli(0.2) @ "outlier"
    return ppl.cond(wide, narrow)(is_outlier == 1, 1.0) @ "obs"


def test_cond_density_per_branch():
    for seed in range(6):
        tr = outlier_model.simulate(jax.random.key(seed))
        o = tr["outlier"]
        x = tr["obs", "x"]
        if o == 1:
            expected = nd.Bernoulli(0.2).log_prob(1) + nd.Normal(1.0, 10.0).log_prob(x) + nd.Normal(0.0, 1.0).log_prob(tr["obs", "shift"].value)
            assert bool(tr["obs", "shift"].valid)
        else:
            expected = nd.Bernoulli(0.2).log_prob(0) + nd.Normal(1.0, 1.0).log_prob(x)
            assert not bool(tr["obs", "shift"].valid)
        close(tr.score, expected)


def test_cond_update_that_adds_a_choice_has_the_right_ratio():
    """Switching to the branch with an extra choice: w = p'(t') / (p(t) q(shift))."""
    tr, _ = outlier_model.generate(KEY, {"outlier": jnp.int32(0), "obs": {"x": 0.5}})
    new, w, discard = outlier_model.update(jax.random.key(3), tr, {"outlier": jnp.int32(1)})
    x = new["obs", "x"]
    # the new branch's x is proposed fresh (unconstrained), as is shift: both cancel with q
    expected = nd.Bernoulli(0.2).log_prob(1) - (nd.Bernoulli(0.2).log_prob(0) + nd.Normal(1.0, 1.0).log_prob(0.5))
    close(w, expected)
    assert discard["outlier"] == 0 and bool(discard["obs"]["x"].valid)
    # and back, with x constrained: the extra choice is removed
    back, w_back, _ = outlier_model.update(KEY, new, {"outlier": jnp.int32(0), "obs": {"x": 0.5}})
    close(w_back, back.score - new.score)
    assert x.shape == ()


def test_mix_density():
    components = (dist.Normal(-2.0, 1.0), dist.Normal(2.0, 0.5))
    mixture = ppl.mix(*components)
    logits = jnp.log(jnp.array([0.3, 0.7]))

    @ppl.gen
    def model():
        return mixture(logits) @ "y"

    for seed in range(4):
        tr = model.simulate(jax.random.key(seed))
        k, y = tr["y", "index"], tr["y", "component"]
        expected = jnp.log(jnp.array([0.3, 0.7]))[k] + jnp.where(k == 0, nd.Normal(-2.0, 1.0).log_prob(y), nd.Normal(2.0, 0.5).log_prob(y))
        close(tr.score, expected)


@ppl.gen
def nested_child(mu):
    a = dist.Normal(mu, 1.0) @ "a"
    b = dist.Normal(a, 1.0) @ ("deep", "b")
    return b


@ppl.gen
def nested_parent():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return nested_child(mu) @ "child"


def test_hierarchical_addresses_nest_in_choices():
    tr = nested_parent.simulate(KEY)
    c = tr.choices
    assert set(c) == {"mu", "child"} and set(c["child"]) == {"a", "deep"}
    expected = nd.Normal(0.0, 1.0).log_prob(c["mu"]) + nd.Normal(c["mu"], 1.0).log_prob(c["child"]["a"]) + nd.Normal(c["child"]["a"], 1.0).log_prob(c["child"]["deep"]["b"])
    close(tr.score, expected)
    # tuple keys in constraints mean the same as nesting
    _, w1 = nested_parent.generate(KEY, {("child", "deep", "b"): 0.3})
    _, w2 = nested_parent.generate(KEY, {"child": {"deep": {"b": 0.3}}})
    close(w1, w2)
    assert tr["child", "deep", "b"] == c["child"]["deep"]["b"]


def test_update_with_new_arguments_rescores():
    tr = regression.simulate(KEY, XS)
    new_xs = XS + 1.0
    tr2, w, discard = regression.update(KEY, tr, None, new_xs)
    assert discard == {}
    close(w, regression_logp(tr.choices, new_xs) - tr.score)
    close(tr2.args[0], new_xs)


def test_grad_of_assess_matches_numpyro():
    tr = regression.simulate(KEY, XS)
    g = jax.grad(lambda c: regression.assess(c, XS)[0])(tr.choices)
    g_ref = jax.grad(regression_logp)(tr.choices)
    jax.tree.map(close, g, g_ref)


def test_masked_constraint_constrains_only_where_flagged():
    flags = jnp.array([True, False, True])
    values = jnp.array([5.0, 0.0, -5.0])

    @ppl.gen
    def model():
        return ppl.vmap(narrow)(jnp.zeros(3)) @ "xs"

    tr, w = model.generate(KEY, {"xs": {"x": ppl.Masked(values, flags)}})
    x = tr["xs", "x"]
    assert x[0] == 5.0 and x[2] == -5.0 and x[1] != 0.0
    close(w, nd.Normal(0.0, 1.0).log_prob(jnp.array([5.0, -5.0])).sum())


@pytest.mark.parametrize("name", ["Normal", "Bernoulli", "Categorical", "MultivariateNormal", "Gamma", "Binomial"])
def test_every_numpyro_name_is_exposed(name):
    assert callable(getattr(dist, name))
    assert dist.constraints is nd.constraints


def test_support_and_bijection_exposed():
    d = dist.HalfNormal(1.0)
    assert d.support is nd.constraints.positive
    close(d.to_constrained(jnp.float32(-3.0)), jnp.exp(-3.0))
    assert dist.Bernoulli(0.5).is_discrete and not d.is_discrete


@ppl.gen
def growing(n_extra):
    a = dist.Normal(0.0, 1.0) @ "a"
    for i in range(n_extra):  # a Python int argument is static: it sets the structure
        dist.Normal(a, 1.0) @ ("extra", i)
    return a


def test_update_that_adds_and_removes_addresses():
    tr = growing.simulate(KEY, 1)
    bigger, w_add, discard = growing.update(jax.random.key(5), tr, {"a": 0.5}, 2)
    new_choice = bigger["extra", 1]
    # w = p'(t') / (p(t) q(added)), the added choice proposed from its prior
    close(w_add, bigger.score - nd.Normal(0.5, 1.0).log_prob(new_choice) - tr.score)
    assert discard == {"a": tr["a"]}
    smaller, w_rm, discard = growing.update(KEY, bigger, None, 0)
    close(w_rm, smaller.score - bigger.score)
    assert set(discard["extra"]) == {0, 1}
    assert smaller.args == (0,) and isinstance(smaller.args[0], int)


def test_minus_inf_logits_mask_categories_out():
    """-inf logits are a legitimate traced argument (a category masked out), not an invalid one."""

    @ppl.gen
    def masked_choice(done):
        logits = jnp.where(done, jnp.log(jnp.array([0.0, 0.0, 1.0])), jnp.log(jnp.array([0.5, 0.3, 0.2])))
        return dist.Categorical(logits=logits) @ "x"

    logp, _ = masked_choice.assess({"x": jnp.int32(2)}, jnp.bool_(True))
    assert float(logp) == 0.0
    logp, _ = masked_choice.assess({"x": jnp.int32(0)}, jnp.bool_(True))
    assert float(logp) == -np.inf


def test_mixtures_take_ppl_dist_components():
    """ppl.dist's mixtures take ppl.dist components, as the docs say (numpyro's constructor refused them)."""
    weights, locs = jnp.array([0.3, 0.7]), jnp.array([-2.0, 2.0])
    same = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(locs, 1.0))
    general = dist.MixtureGeneral(dist.Categorical(probs=weights), [dist.Normal(-2.0, 1.0), dist.Normal(2.0, 1.0)])
    expected = jax.scipy.special.logsumexp(jnp.log(weights) + jax.scipy.stats.norm.logpdf(0.5, locs, 1.0))
    close(same.log_prob(0.5), expected)
    close(general.log_prob(0.5), expected)
