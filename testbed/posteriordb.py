"""The eight posteriordb reference posteriors of `../shared/data/posteriordb`, written with ppl.

    from testbed.posteriordb import NAMES, load
    post = load("eight_schools-eight_schools_noncentered")
    logp, _ = post.model.assess({**latents, **post.observations}, *post.args)
    post.stan_draws(samples)       # {"theta[1]": (chain, draw), ..., "mu": ..., "tau": ...}

Each model mirrors its `model.stan`. Latent addresses carry the Stan parameter
names (`"beta"` holds the whole vector `beta[1..D]`); observed addresses carry the
Stan data names and are fixed by `Posterior.observations`. Stan's flat priors
(parameters with no `~`) are `dist.ImproperUniform` (log density 0, cannot be
sampled: use `assess`/`generate` with every latent given, never `simulate`).
Marginalised mixtures, the HMM forward algorithm and priors on constrained
vectors (`ordered`, `positive_ordered`) are `ppl.factor` terms.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl
from ppl import dist
from testbed.data import SHARED_DATA

DATA = SHARED_DATA / "posteriordb"

constraints = dist.constraints


def flat(*event_shape: int, support=constraints.real) -> ppl.Distribution:
    """Stan's implicit flat prior on a parameter with no `~` statement: log density 0 on `support`."""
    return dist.ImproperUniform(support, (), tuple(event_shape))


def f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


# --- the posteriors: each model beside the function that turns data.json into (model, args, observations) ---


class _Spec(NamedTuple):
    build: Callable[[dict], tuple]  # data.json -> (model, args, observations)
    transformed: Callable[[dict], dict] | None  # {address: draws} -> {stan transformed parameter: draws}


_SPECS: dict[str, _Spec] = {}


def _posterior(name: str, transformed: Callable[[dict], dict] | None = None):
    def register(build):
        _SPECS[name] = _Spec(build, transformed)
        return build

    return register


@ppl.gen
def eight_schools_noncentered(sigma):
    theta_trans = dist.Normal(0.0, 1.0).expand(sigma.shape) @ "theta_trans"
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    dist.Normal(theta_trans * tau + mu, sigma) @ "y"


@_posterior(
    "eight_schools-eight_schools_noncentered",
    transformed=lambda s: {"theta": s["theta_trans"] * s["tau"][..., None] + s["mu"][..., None]},
)
def _eight_schools(d):
    return eight_schools_noncentered, (f32(d["sigma"]),), {"y": f32(d["y"])}


@ppl.gen
def kidscore_momiq(mom_iq):
    beta = flat(2) @ "beta"
    sigma = dist.HalfCauchy(2.5) @ "sigma"
    dist.Normal(beta[0] + beta[1] * mom_iq, sigma) @ "kid_score"


@_posterior("kidiq-kidscore_momiq")
def _kidiq(d):
    return kidscore_momiq, (f32(d["mom_iq"]),), {"kid_score": f32(d["kid_score"])}


@ppl.gen
def kilpisjarvi(x, prior):
    alpha = dist.Normal(prior["pmualpha"], prior["psalpha"]) @ "alpha"
    beta = dist.Normal(prior["pmubeta"], prior["psbeta"]) @ "beta"
    sigma = flat(support=constraints.positive) @ "sigma"
    dist.Normal(alpha + beta * x, sigma) @ "y"


@_posterior("kilpisjarvi_mod-kilpisjarvi")
def _kilpisjarvi(d):
    prior = {k: f32(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta")}
    return kilpisjarvi, (f32(d["x"]), prior), {"y": f32(d["y"])}


@ppl.gen
def logmesquite(X):
    """X: (N, 7), columns [1, log diam1, log diam2, log canopy_height, log total_height, log density, group]."""
    beta = flat(X.shape[1]) @ "beta"
    sigma = flat(support=constraints.positive) @ "sigma"
    dist.Normal(jnp.sum(X * beta, axis=-1), sigma) @ "log_weight"


@_posterior("mesquite-logmesquite")
def _mesquite(d):
    logs = [np.log(d[k]) for k in ("diam1", "diam2", "canopy_height", "total_height", "density")]
    X = np.stack([np.ones(d["N"]), *logs, d["group"]], axis=1)
    return logmesquite, (f32(X),), {"log_weight": f32(np.log(d["weight"]))}


@ppl.gen
def blr(X):
    """Stan writes these priors as `target += normal_lpdf(...)`; as distributions, sigma > 0 makes
    normal(0, 10) a HalfNormal(10): the same posterior, log density higher by log 2."""
    beta = dist.Normal(0.0, 10.0).expand((X.shape[1],)) @ "beta"
    sigma = dist.HalfNormal(10.0) @ "sigma"
    dist.Normal(jnp.sum(X * beta, axis=-1), sigma) @ "y"


@_posterior("sblrc-blr")
def _sblrc(d):
    return blr, (f32(d["X"]),), {"y": f32(d["y"])}


@ppl.gen
def arK(lags):
    """lags[i, k] = y[K + i - k - 1] (0-based): the K values before the observed y[K + i]."""
    alpha = dist.Normal(0.0, 10.0) @ "alpha"
    beta = dist.Normal(0.0, 10.0).expand((lags.shape[1],)) @ "beta"
    sigma = dist.HalfCauchy(2.5) @ "sigma"
    dist.Normal(alpha + jnp.sum(lags * beta, axis=-1), sigma) @ "y"


@_posterior("arK-arK")
def _arK(d):
    y, K, T = np.asarray(d["y"]), d["K"], d["T"]
    lags = np.stack([y[K - k : T - k] for k in range(1, K + 1)], axis=1)
    return arK, (f32(lags),), {"y": f32(y[K:])}


@ppl.gen
def low_dim_gauss_mix(y):
    mu = flat(2, support=constraints.ordered_vector) @ "mu"
    ppl.factor(jnp.sum(norm.logpdf(mu, 0.0, 2.0)))  # mu ~ normal(0, 2) on the ordered vector
    sigma = dist.HalfNormal(2.0).expand((2,)) @ "sigma"
    theta = dist.Beta(5.0, 5.0) @ "theta"
    log_weights = jnp.log(jnp.stack([theta, 1.0 - theta]))
    ppl.factor(jnp.sum(logsumexp(log_weights + norm.logpdf(y[:, None], mu, sigma), axis=-1)))  # log_mix


@_posterior("low_dim_gauss_mix-low_dim_gauss_mix")
def _gauss_mix(d):
    return low_dim_gauss_mix, (f32(d["y"]),), {}


@ppl.gen
def hmm_example(y):
    theta1 = flat(2, support=constraints.simplex) @ "theta1"
    theta2 = flat(2, support=constraints.simplex) @ "theta2"
    mu = flat(2, support=constraints.positive_ordered_vector) @ "mu"
    ppl.factor(jnp.sum(norm.logpdf(mu, jnp.array([3.0, 10.0]), 1.0)))
    log_theta = jnp.log(jnp.stack([theta1, theta2]))  # [j, k]: from state j to state k
    log_emission = norm.logpdf(y[:, None], mu, 1.0)  # [t, k]

    def forward(gamma, log_e):  # gamma[k] = log p(y[:t], z[t] = k)
        return logsumexp(gamma[:, None] + log_theta, axis=0) + log_e, None

    gamma, _ = jax.lax.scan(forward, log_emission[0], log_emission[1:])
    ppl.factor(logsumexp(gamma))


@_posterior("hmm_example-hmm_example")
def _hmm(d):
    return hmm_example, (f32(d["y"]),), {}


NAMES: list[str] = list(_SPECS)


def _stan_names(name: str, draws: np.ndarray) -> dict[str, np.ndarray]:
    """Split draws shaped (chain, draw, *shape) into Stan's 1-based scalar names: x, x[1], x[1,2], ..."""
    shape = draws.shape[2:]
    if not shape:
        return {name: draws}
    return {f"{name}[{','.join(str(i + 1) for i in idx)}]": draws[(..., *idx)] for idx in np.ndindex(*shape)}


class Posterior(NamedTuple):
    name: str  # the posteriordb folder name
    model: ppl.GenFn
    args: tuple
    observations: dict  # choice map of the observed addresses
    reference: dict  # reference_summary.json: {stan name: {"mean", "sd", "ess_bulk", "mcse_mean", ...}}

    def stan_draws(self, samples: dict) -> dict[str, np.ndarray]:
        """{address: (chain, draw, *shape)} -> {stan name: (chain, draw)} for every reference parameter."""
        draws = {k: np.asarray(v) for k, v in samples.items() if k not in self.observations}
        transformed = _SPECS[self.name].transformed
        if transformed is not None:
            draws.update(transformed(draws))
        flat_draws = {}
        for address, value in draws.items():
            flat_draws.update(_stan_names(address, value))
        missing = [k for k in self.reference if k not in flat_draws]
        if missing:
            raise KeyError(f"{self.name}: no draws for {missing}; samples has addresses {sorted(samples)}")
        return {k: flat_draws[k] for k in self.reference}


def load(name: str) -> Posterior:
    folder = DATA / name
    data = json.loads((folder / "data.json").read_text())
    reference = json.loads((folder / "reference_summary.json").read_text())
    model, args, observations = _SPECS[name].build(data)
    return Posterior(name, model, args, observations, reference)
