"""The posteriordb models of `testbed/posteriordb.py` written natively in NumPyro, with the same distributions
and the same arguments (`post.args`) and observed keywords (`post.observations`), for the NUTS and gradient
benchmarks. `MODELS` maps a short name to (posteriordb folder, NumPyro model)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as nd
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

C = nd.constraints


def flat(support, *shape: int):
    return nd.ImproperUniform(support, (), shape)


def eight_schools(sigma, y=None):
    theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0).expand(sigma.shape))
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    numpyro.sample("y", nd.Normal(theta_trans * tau + mu, sigma), obs=y)


def kidiq(mom_iq, kid_score=None):
    beta = numpyro.sample("beta", flat(C.real, 2))
    sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
    numpyro.sample("kid_score", nd.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


def kilpisjarvi(x, prior, y=None):
    alpha = numpyro.sample("alpha", nd.Normal(prior["pmualpha"], prior["psalpha"]))
    beta = numpyro.sample("beta", nd.Normal(prior["pmubeta"], prior["psbeta"]))
    sigma = numpyro.sample("sigma", flat(C.positive))
    numpyro.sample("y", nd.Normal(alpha + beta * x, sigma), obs=y)


def mesquite(X, log_weight=None):
    beta = numpyro.sample("beta", flat(C.real, X.shape[1]))
    sigma = numpyro.sample("sigma", flat(C.positive))
    numpyro.sample("log_weight", nd.Normal(jnp.sum(X * beta, axis=-1), sigma), obs=log_weight)


def blr(X, y=None):
    beta = numpyro.sample("beta", nd.Normal(0.0, 10.0).expand((X.shape[1],)))
    sigma = numpyro.sample("sigma", nd.HalfNormal(10.0))
    numpyro.sample("y", nd.Normal(jnp.sum(X * beta, axis=-1), sigma), obs=y)


def arK(lags, y=None):
    alpha = numpyro.sample("alpha", nd.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", nd.Normal(0.0, 10.0).expand((lags.shape[1],)))
    sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
    numpyro.sample("y", nd.Normal(alpha + jnp.sum(lags * beta, axis=-1), sigma), obs=y)


def gauss_mix(y):
    mu = numpyro.sample("mu", flat(C.ordered_vector, 2))
    numpyro.factor("mu_prior", jnp.sum(norm.logpdf(mu, 0.0, 2.0)))
    sigma = numpyro.sample("sigma", nd.HalfNormal(2.0).expand((2,)))
    theta = numpyro.sample("theta", nd.Beta(5.0, 5.0))
    log_weights = jnp.log(jnp.stack([theta, 1.0 - theta]))
    numpyro.factor("log_mix", jnp.sum(logsumexp(log_weights + norm.logpdf(y[:, None], mu, sigma), axis=-1)))


def hmm(y):
    theta1 = numpyro.sample("theta1", flat(C.simplex, 2))
    theta2 = numpyro.sample("theta2", flat(C.simplex, 2))
    mu = numpyro.sample("mu", flat(C.positive_ordered_vector, 2))
    numpyro.factor("mu_prior", jnp.sum(norm.logpdf(mu, jnp.array([3.0, 10.0]), 1.0)))
    log_theta = jnp.log(jnp.stack([theta1, theta2]))
    log_emission = norm.logpdf(y[:, None], mu, 1.0)

    def forward(gamma, log_e):
        return logsumexp(gamma[:, None] + log_theta, axis=0) + log_e, None

    gamma, _ = jax.lax.scan(forward, log_emission[0], log_emission[1:])
    numpyro.factor("log_lik", logsumexp(gamma))


MODELS = {
    "eight_schools": ("eight_schools-eight_schools_noncentered", eight_schools),
    "kidiq": ("kidiq-kidscore_momiq", kidiq),
    "arK": ("arK-arK", arK),
    "kilpisjarvi": ("kilpisjarvi_mod-kilpisjarvi", kilpisjarvi),
    "mesquite": ("mesquite-logmesquite", mesquite),
    "blr": ("sblrc-blr", blr),
    "gauss_mix": ("low_dim_gauss_mix-low_dim_gauss_mix", gauss_mix),
    "hmm": ("hmm_example-hmm_example", hmm),
}
