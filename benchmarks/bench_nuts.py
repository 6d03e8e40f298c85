"""NUTS: this project's `inference.mcmc.nuts` against NumPyro's `MCMC(NUTS(...))` on the same models.

Models (data from ../shared/data/posteriordb): eight schools (non-centered), the kidiq
linear regression and AR(5); each written once with `ppl` (testbed/posteriordb.py) and
once natively in NumPyro with the same distributions. Both samplers: 4 chains
vectorised with vmap, 1,000 warm-up, 1,000 draws, diagonal mass matrix, target
acceptance 0.8, uniform initialisation in (-2, 2) on the unconstrained space.

    python benchmarks/bench_nuts.py [--repeats 3] [--models eight_schools,kidiq,arK]

Compilation is measured, not guessed: JAX reports the duration of every trace,
lowering and XLA compilation (`jax.monitoring`), and a call's compile seconds are
their sum. NumPyro's vectorised `MCMC.run` traces and compiles on every call (even
with `jit_model_args=True`); ours compiles once per model, shapes and settings.

Per model and sampler it prints, as the median over `--repeats` seeds after one
first call (the samplers take turns, seed by seed): the seconds of a call with its
compilation subtracted, the minimum bulk ESS over parameters (ArviZ), that ESS per
second, gradient evaluations (leapfrog steps of all chains) per second, the compile
seconds of the first call and of a later call, and the wall seconds of a later call
(what a user waits for when re-running). Ratios: ours / NumPyro for ESS/s and
gradients/s (goal >= 1.0), NumPyro / ours for first-call compile and later-call wall.
"""

from __future__ import annotations

import argparse
import os
import time

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from numpyro.infer import MCMC, NUTS

from inference import mcmc
from testbed import posteriordb

WARMUP, SAMPLES, CHAINS = 1000, 1000, 4
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]


def _on_event(name, seconds, **_):
    if name in _COMPILE_EVENTS:
        _compile_seconds[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


def timed(fn, *args):
    """(wall seconds, compile seconds within them, result) of fn(*args)."""
    before = _compile_seconds[0]
    t0 = time.perf_counter()
    out = fn(*args)
    wall = time.perf_counter() - t0
    return wall, _compile_seconds[0] - before, out


def np_eight_schools(sigma, y=None):
    theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0).expand(sigma.shape))
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    numpyro.sample("y", nd.Normal(theta_trans * tau + mu, sigma), obs=y)


def np_kidiq(mom_iq, kid_score=None):
    beta = numpyro.sample("beta", nd.ImproperUniform(nd.constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
    numpyro.sample("kid_score", nd.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


def np_arK(lags, y=None):
    alpha = numpyro.sample("alpha", nd.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", nd.Normal(0.0, 10.0).expand((lags.shape[1],)))
    sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
    numpyro.sample("y", nd.Normal(alpha + jnp.sum(lags * beta, axis=-1), sigma), obs=y)


MODELS = {
    "eight_schools": ("eight_schools-eight_schools_noncentered", np_eight_schools),
    "kidiq": ("kidiq-kidscore_momiq", np_kidiq),
    "arK": ("arK-arK", np_arK),
}


def min_bulk_ess(samples: dict) -> float:
    """Minimum over every scalar parameter of ArviZ's bulk ESS; leaves shaped (chain, draw, ...)."""
    out = []
    for v in samples.values():
        v = np.asarray(v).reshape(v.shape[0], v.shape[1], -1)
        out.extend(float(az.ess(v[:, :, i])) for i in range(v.shape[2]))
    return min(out)


def run_ours(post, seed):
    """(samples, total leapfrog steps) of one run of inference.mcmc.nuts."""
    res = mcmc.nuts(jax.random.key(seed), post.model, post.args, post.observations, num_chains=CHAINS,
                    num_warmup=WARMUP, num_samples=SAMPLES, progress_bar=False)
    return res.samples, float(np.sum(res.stats["num_steps"]))


class NumPyroRunner:
    def __init__(self, model):
        self.mcmc = MCMC(NUTS(model), num_warmup=WARMUP, num_samples=SAMPLES, num_chains=CHAINS,
                         chain_method="vectorized", progress_bar=False, jit_model_args=True)

    def __call__(self, post, seed):
        """(samples, total leapfrog steps) of one run of NumPyro's MCMC."""
        self.mcmc.run(jax.random.key(seed), *post.args, **post.observations, extra_fields=("num_steps",))
        samples = jax.block_until_ready(self.mcmc.get_samples(group_by_chain=True))
        return samples, float(np.sum(self.mcmc.get_extra_fields(group_by_chain=True)["num_steps"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    print(f"NUTS, {CHAINS} chains (vmap), {WARMUP} warm-up + {SAMPLES} draws; jax {jax.__version__}, "
          f"numpyro {numpyro.__version__}, {os.cpu_count()} cores; median of {args.repeats} seeds, compile excluded")
    header = (f"{'model':<15}{'sampler':<9}{'run (s)':>8}{'min ESS':>9}{'ESS/s':>8}{'grad/s':>10}"
              f"{'compile 1st (s)':>16}{'compile later (s)':>18}{'wall later (s)':>15}"
              f"{'ESS/s ratio':>12}{'grad/s ratio':>13}{'compile ratio':>14}{'wall ratio':>11}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        folder, np_model = MODELS[name]
        post = posteriordb.load(folder)
        runners = {"ours": run_ours, "numpyro": NumPyroRunner(np_model)}
        first = {k: timed(r, post, 0)[1] for k, r in runners.items()}
        rows = {k: [] for k in runners}
        for seed in range(1, args.repeats + 1):
            for k, r in runners.items():
                wall, comp, (samples, steps) = timed(r, post, seed)
                run = wall - comp
                ess = min_bulk_ess(samples)
                rows[k].append((run, ess, ess / run, steps / run, comp, wall))
        med = {k: np.median(np.asarray(v), axis=0) for k, v in rows.items()}
        for k, (run, ess, ess_s, grad_s, comp, wall) in med.items():
            ratios = ""
            if k == "ours":
                o, n = med["ours"], med["numpyro"]
                ratios = f"{o[2] / n[2]:>12.2f}{o[3] / n[3]:>13.2f}{first['numpyro'] / first['ours']:>14.2f}{n[5] / o[5]:>11.1f}"
            print(f"{name:<15}{k:<9}{run:>8.2f}{ess:>9.0f}{ess_s:>8.0f}{grad_s:>10.3g}{first[k]:>16.2f}{comp:>18.2f}"
                  f"{wall:>15.2f}{ratios}")


if __name__ == "__main__":
    main()
