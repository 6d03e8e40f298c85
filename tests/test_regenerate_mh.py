"""`regenerate` weights drive a correct Metropolis-Hastings chain (exact posteriors)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist


def mh_chain(model, args, observations, selection, n_steps, n_chains, seed):
    """Independent MH chains with the prior as proposal for `selection`; returns traces."""

    def one_chain(key):
        k0, k1 = jax.random.split(key)
        tr, _ = model.generate(k0, observations, *args)

        def step(tr, key):
            k_prop, k_acc = jax.random.split(key)
            new, log_alpha = model.regenerate(k_prop, tr, selection, *args)
            accept = jnp.log(jax.random.uniform(k_acc)) < log_alpha
            tr = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, tr)
            return tr, (tr.choices, accept)

        _, (draws, accepted) = jax.lax.scan(step, tr, jax.random.split(k1, n_steps))
        return draws, accepted

    return jax.jit(jax.vmap(one_chain))(jax.random.split(jax.random.key(seed), n_chains))


def check_mean_and_variance(draws: np.ndarray, mean: float, var: float):
    """z-tests with the chains' effective sample size (ArviZ)."""
    ess = float(az.ess(draws))
    assert ess > 400, ess
    z_mean = (draws.mean() - mean) / np.sqrt(var / ess)
    z_var = (draws.var() / var - 1.0) / np.sqrt(2.0 / ess)
    assert abs(z_mean) < 4.0, (draws.mean(), mean, ess)
    assert abs(z_var) < 4.0, (draws.var(), var, ess)


@ppl.gen
def datum(mu):
    return dist.Normal(mu, 1.0) @ "y"


@ppl.gen
def normal_mean(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return ppl.repeat(datum, n)(mu) @ "data"


def test_mh_on_conjugate_normal_mean():
    ys = jnp.array([0.8, 1.9, 1.2, 0.3, 1.5, 2.2, 0.9, 1.1])
    n = ys.shape[0]
    post_var = 1.0 / (1.0 + n)
    post_mean = post_var * float(ys.sum())
    draws, accepted = mh_chain(normal_mean, (n,), {"data": {"y": ys}}, ppl.sel("mu"), 20000, 4, seed=1)
    assert 0.1 < float(accepted.mean()) < 0.9
    check_mean_and_variance(np.asarray(draws["mu"][:, 1000:]), post_mean, post_var)


@ppl.gen
def ar_step(z_prev):
    z = dist.Normal(0.8 * z_prev, 1.0) @ "z"
    dist.Normal(z, 1.0) @ "y"
    return z


@ppl.gen
def ar_model(T):
    return ppl.scan(ar_step, length=T)(0.0) @ "steps"


def test_mh_through_a_scan_block_matches_gaussian_conditioning():
    T = 3
    ys = np.array([1.0, -0.5, 2.0])
    # z = A e with e ~ N(0, I): the AR(1) prior covariance; y = z + noise
    A = np.zeros((T, T))
    for t in range(T):
        for s in range(t + 1):
            A[t, s] = 0.8 ** (t - s)
    prior_cov = A @ A.T
    gain = prior_cov @ np.linalg.inv(prior_cov + np.eye(T))
    post_mean = gain @ ys
    post_cov = prior_cov - gain @ prior_cov
    draws, _ = mh_chain(ar_model, (T,), {"steps": {"y": jnp.asarray(ys, jnp.float32)}},
                        ppl.sel("steps", "z"), 40000, 4, seed=2)
    z = np.asarray(draws["steps"]["z"][:, 2000:])
    for t in range(T):
        check_mean_and_variance(z[..., t], post_mean[t], post_cov[t, t])


def test_selection_algebra():
    a, b, ab = ppl.sel("a"), ppl.sel("b"), ppl.sel("a", "b")
    assert a.step("a").selects_here() and not a.step("b").selects_here()
    assert ab.step("a").step("b").selects_here() and not ab.step("a").selects_here()
    assert ab.step("a").step("b").step("deeper").selects_here()  # a subtree is selected whole
    assert (a | b).step("b").selects_here()
    assert not (a & b).step("a").selects_here()
    assert (~a).step("b").selects_here() and not (~a).step("a").selects_here()
    assert ppl.sel().step("x").selects_here() and not ppl.sel.none().step("x").selects_here()
    assert ppl.sel(("a", "b")) == ab
