"""Bayesian linear regression on real data, by importance sampling with a custom proposal.

Data: the Kilpisjärvi summer temperatures (posteriordb `kilpisjarvi_mod-kilpisjarvi`):
y = alpha + beta * year + noise. The proposal is itself a generative function
over the model's latent addresses, built from a least-squares fit; the weights
come from the GFI: log w = generate weight - proposal score.

    python examples/regression.py          # prints estimates against posteriordb's reference
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

import ppl
from ppl import dist

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb" / "kilpisjarvi_mod-kilpisjarvi"


@ppl.gen
def temperature(x, alpha, beta, sigma):
    return dist.Normal(alpha + beta * x, sigma) @ "y"


@ppl.gen
def model(xs, prior):
    """The Stan program `kilpisjarvi.stan`, written with ppl."""
    alpha = dist.Normal(prior["pmualpha"], prior["psalpha"]) @ "alpha"
    beta = dist.Normal(prior["pmubeta"], prior["psbeta"]) @ "beta"
    # Stan's implicit flat prior on sigma > 0: log density 0, never sampled (the proposal gives sigma)
    sigma = dist.ImproperUniform(dist.constraints.positive, (), ()) @ "sigma"
    return ppl.vmap(temperature, in_axes=(0, None, None, None))(xs, alpha, beta, sigma) @ "obs"


@ppl.gen
def proposal(fit):
    """A Gaussian around the least-squares fit, widened: alpha, then beta given alpha, then sigma."""
    alpha = dist.Normal(fit["alpha"], fit["sd_alpha"]) @ "alpha"
    cond_mean = fit["beta"] + fit["slope_beta_on_alpha"] * (alpha - fit["alpha"])
    dist.Normal(cond_mean, fit["sd_beta_given_alpha"]) @ "beta"
    dist.LogNormal(jnp.log(fit["sigma"]), 0.15) @ "sigma"


def load_data(folder: pathlib.Path = DATA) -> tuple[jax.Array, jax.Array, dict]:
    raw = json.loads((folder / "data.json").read_text())
    prior = {k: jnp.float32(raw[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta")}
    return jnp.asarray(raw["x"], jnp.float32), jnp.asarray(raw["y"], jnp.float32), prior


def least_squares_fit(xs, ys, widen: float = 1.5) -> dict:
    """Least-squares estimates and their (widened) Gaussian uncertainty, in float64 numpy."""
    X = np.stack([np.ones(len(xs)), np.asarray(xs, np.float64)], axis=1)
    y = np.asarray(ys, np.float64)
    coef, residual, *_ = np.linalg.lstsq(X, y, rcond=None)
    sigma = np.sqrt(residual[0] / (len(y) - 2))
    cov = widen**2 * sigma**2 * np.linalg.inv(X.T @ X)
    slope = cov[0, 1] / cov[0, 0]
    return {
        "alpha": jnp.float32(coef[0]),
        "beta": jnp.float32(coef[1]),
        "sigma": jnp.float32(sigma),
        "sd_alpha": jnp.float32(np.sqrt(cov[0, 0])),
        "slope_beta_on_alpha": jnp.float32(slope),
        "sd_beta_given_alpha": jnp.float32(np.sqrt(cov[1, 1] - slope * cov[0, 1])),
    }


def importance_sampling(key, xs, ys, prior, fit, n_particles: int):
    """Weighted particles: (latent choices, normalised log weights, log marginal likelihood estimate)."""

    def one(key):
        k_q, k_p = jax.random.split(key)
        q = proposal.simulate(k_q, fit)
        _, log_w = model.generate(k_p, {**q.choices, "obs": {"y": ys}}, xs, prior)
        return q.choices, log_w - q.score

    choices, log_w = jax.jit(jax.vmap(one))(jax.random.split(key, n_particles))
    log_z = logsumexp(log_w) - jnp.log(n_particles)
    return choices, log_w - logsumexp(log_w), log_z


def summarize(choices, log_weights) -> dict:
    w = np.exp(np.asarray(log_weights, np.float64))
    out = {}
    for name in ("alpha", "beta", "sigma"):
        v = np.asarray(choices[name], np.float64)
        mean = float(np.sum(w * v))
        out[name] = {"mean": mean, "sd": float(np.sqrt(np.sum(w * (v - mean) ** 2)))}
    out["ess"] = float(1.0 / np.sum(w**2))
    return out


def main(n_particles: int = 100_000) -> dict:
    xs, ys, prior = load_data()
    fit = least_squares_fit(xs, ys)
    choices, log_w, log_z = importance_sampling(jax.random.key(0), xs, ys, prior, fit, n_particles)
    result = summarize(choices, log_w)
    reference = json.loads((DATA / "reference_summary.json").read_text())
    print(f"Kilpisjärvi regression: {len(xs)} years, {n_particles} particles, ESS {result['ess']:.0f}, log Z = {float(log_z):.2f}")
    print(f"{'parameter':<10}{'mean':>12}{'ref mean':>12}{'sd':>12}{'ref sd':>12}")
    for name in ("alpha", "beta", "sigma"):
        r, ref = result[name], reference[name]
        print(f"{name:<10}{r['mean']:>12.4g}{ref['mean']:>12.4g}{r['sd']:>12.4g}{ref['sd']:>12.4g}")
    return result


if __name__ == "__main__":
    main()
