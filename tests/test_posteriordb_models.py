"""The posteriordb models of testbed/posteriordb.py have the Stan programs' log densities.

Each model is assessed at the reference posterior mean and compared with the same
density written independently from data.json with numpy/scipy (normalised
densities, as numpyro has them; Stan's flat priors contribute 0).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from testbed import posteriordb

pytestmark = pytest.mark.shared_data  # every test here reads ../shared/data/posteriordb
from testbed.posteriordb import NAMES, load

norm = stats.norm.logpdf


def by_parameter(named: dict) -> dict:
    """{"beta[1]": a, "beta[2]": b, "sigma": c} -> {"beta": stack([a, b], -1), "sigma": c} (float64 numpy)."""
    groups = {}
    for key, value in named.items():
        base, indexed, _ = key.partition("[")
        groups[base] = [*groups.get(base, []), value] if indexed else value
    return {k: np.stack(v, -1) if isinstance(v, list) else np.asarray(v, np.float64) for k, v in groups.items()}


def latents(name: str, params: dict) -> dict:
    """The model's latent addresses from Stan's parameters (eight schools: theta_trans from theta, mu, tau)."""
    params = dict(params)
    if name.startswith("eight_schools"):
        theta = params.pop("theta")
        params["theta_trans"] = (theta - params["mu"][..., None]) / params["tau"][..., None]
    return params


def reference_mean(post) -> dict:
    return by_parameter({k: v["mean"] for k, v in post.reference.items()})


# --- the Stan log densities, written independently (p: the parameters, float64; d: data.json) ---


def eight_schools(d, p):
    theta = p["theta_trans"] * p["tau"] + p["mu"]
    return (
        norm(p["theta_trans"]).sum()
        + norm(p["mu"], 0, 5)
        + stats.halfcauchy.logpdf(p["tau"], scale=5)
        + norm(d["y"], theta, d["sigma"]).sum()
    )


def kidiq(d, p):
    b = p["beta"]
    mean = b[0] + b[1] * np.asarray(d["mom_iq"])
    return stats.halfcauchy.logpdf(p["sigma"], scale=2.5) + norm(d["kid_score"], mean, p["sigma"]).sum()


def kilpisjarvi(d, p):
    mean = p["alpha"] + p["beta"] * np.asarray(d["x"])
    return (
        norm(p["alpha"], d["pmualpha"], d["psalpha"])
        + norm(p["beta"], d["pmubeta"], d["psbeta"])
        + norm(d["y"], mean, p["sigma"]).sum()
    )


def mesquite(d, p):
    b = p["beta"]
    log = lambda k: np.log(np.asarray(d[k]))
    mean = (
        b[0]
        + b[1] * log("diam1")
        + b[2] * log("diam2")
        + b[3] * log("canopy_height")
        + b[4] * log("total_height")
        + b[5] * log("density")
        + b[6] * np.asarray(d["group"])
    )
    return norm(log("weight"), mean, p["sigma"]).sum()


def sblrc(d, p):
    return (
        norm(p["beta"], 0, 10).sum()
        + stats.halfnorm.logpdf(p["sigma"], scale=10)
        + norm(d["y"], np.asarray(d["X"]) @ p["beta"], p["sigma"]).sum()
    )


def ark(d, p):
    y, K = d["y"], d["K"]
    lik = sum(
        norm(y[t], p["alpha"] + sum(p["beta"][k] * y[t - k - 1] for k in range(K)), p["sigma"])
        for t in range(K, d["T"])
    )
    return norm(p["alpha"], 0, 10) + norm(p["beta"], 0, 10).sum() + stats.halfcauchy.logpdf(p["sigma"], scale=2.5) + lik


def gauss_mix(d, p):
    y, mu, s, th = np.asarray(d["y"]), p["mu"], p["sigma"], p["theta"]
    lik = np.logaddexp(np.log(th) + norm(y, mu[0], s[0]), np.log1p(-th) + norm(y, mu[1], s[1])).sum()
    return norm(mu, 0, 2).sum() + stats.halfnorm.logpdf(s, scale=2).sum() + stats.beta.logpdf(th, 5, 5) + lik


def hmm(d, p):
    y, mu = d["y"], p["mu"]
    theta = np.stack([p["theta1"], p["theta2"]])
    gamma = [norm(y[0], mu[k], 1) for k in range(2)]
    for t in range(1, d["N"]):
        gamma = [logsumexp([gamma[j] + np.log(theta[j, k]) + norm(y[t], mu[k], 1) for j in range(2)]) for k in range(2)]
    return norm(mu[0], 3, 1) + norm(mu[1], 10, 1) + logsumexp(gamma)


STAN_LOG_DENSITY = {
    "eight_schools-eight_schools_noncentered": eight_schools,
    "kidiq-kidscore_momiq": kidiq,
    "kilpisjarvi_mod-kilpisjarvi": kilpisjarvi,
    "mesquite-logmesquite": mesquite,
    "sblrc-blr": sblrc,
    "arK-arK": ark,
    "low_dim_gauss_mix-low_dim_gauss_mix": gauss_mix,
    "hmm_example-hmm_example": hmm,
}


def test_all_eight_posteriors():
    assert sorted(NAMES) == sorted(p.name for p in posteriordb.DATA.iterdir() if p.is_dir())
    assert sorted(NAMES) == sorted(STAN_LOG_DENSITY)


@pytest.mark.parametrize("name", NAMES)
def test_log_density_at_reference_mean(name):
    post = load(name)
    data = json.loads((posteriordb.DATA / name / "data.json").read_text())
    point = latents(name, reference_mean(post))
    choices = {**jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), point), **post.observations}
    logp, _ = post.model.assess(choices, *post.args)
    expected = STAN_LOG_DENSITY[name](data, point)
    np.testing.assert_allclose(float(logp), expected, rtol=1e-4)  # float32 agrees to ~1e-6; 1e-4 catches a lost log 2


@pytest.mark.parametrize("name", NAMES)
def test_gradient_is_finite_at_reference_mean(name):
    post = load(name)
    point = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), latents(name, reference_mean(post)))
    grad = jax.grad(lambda z: post.model.assess({**z, **post.observations}, *post.args)[0])(point)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))


@pytest.mark.parametrize("name", NAMES)
def test_stan_draws_gives_back_the_reference_draws(name):
    post = load(name)
    chains = json.loads((posteriordb.DATA / name / "reference_draws.json").read_text())
    draws = {k: np.array([chain[k] for chain in chains]) for k in chains[0]}  # (chain, draw)
    samples = latents(name, by_parameter(draws))  # {address: (chain, draw, *shape)}, as a sampler gives them
    for address, value in post.observations.items():  # observed addresses, if a sampler returns them, are ignored
        samples[address] = np.broadcast_to(np.asarray(value), (10, 1000, *value.shape))
    out = post.stan_draws(samples)
    assert list(out) == list(post.reference)
    for key, value in out.items():
        assert value.shape == (10, 1000), key
        np.testing.assert_allclose(value, draws[key], rtol=1e-6, atol=1e-9, err_msg=key)
