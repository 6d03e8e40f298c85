"""Variational inference: time per optimisation step of `vi.fit` against NumPyro's SVI and a hand-written ELBO.

Model: Bayesian linear regression with N observations and D coefficients,

    beta_d ~ N(0, 1),  log_sigma ~ N(0, 1),  y_n ~ N(x_n . beta, exp(log_sigma)),

data simulated with a fixed seed. Guide: mean-field normal over (beta, log_sigma),
reparameterised, one sample per step, Adam (learning rate 0.01). Three implementations
of the same steps, each one compiled program of `--steps` steps:

- ours: `vi.fit(key, vi.elbo(model, guide), ...)` with `chunk = steps` (one lax.scan);
- NumPyro: `SVI(model, guide, Adam(0.01), Trace_ELBO())`: `svi.init` and a `lax.scan` of
  `svi.update`, jitted once (`SVI.run` itself compiles again on every call);
- hand-written JAX: the ELBO written with `jax.scipy.stats.norm.logpdf`, `jax.grad` and
  optax Adam in a `lax.scan`.

    python benchmarks/bench_vi.py [--N 1000] [--D 10] [--steps 2000] [--repeats 5]

Prints the median microseconds per step over `--repeats` runs (compilation excluded:
each implementation is run once first; they take turns), the ratios ours / NumPyro
(goal <= 1.0) and ours / hand-written (goal <= 1.1), the compile seconds of each, and
the final ELBO estimate of each as a sanity check that they solve the same problem.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import optax
from jax.scipy.stats import norm
from numpyro.infer import SVI, Trace_ELBO

import ppl
from inference import vi
from ppl import dist

LR = 0.01


def data(n: int, d: int):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    beta = rng.normal(size=d).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(x @ beta + 0.5 * rng.normal(size=n).astype(np.float32))


def init_params(d: int) -> dict:
    return {"beta_loc": jnp.zeros(d), "beta_log_scale": jnp.full(d, -1.0), "ls_loc": jnp.zeros(()),
            "ls_log_scale": jnp.full((), -1.0)}


# --- ours ----------------------------------------------------------------------------------------------------


@ppl.gen
def model(x):
    beta = dist.Normal(0.0, 1.0).expand((x.shape[1],)) @ "beta"
    log_sigma = dist.Normal(0.0, 1.0) @ "log_sigma"
    dist.Normal(x @ beta, jnp.exp(log_sigma)) @ "y"


@ppl.gen
def guide(params, x):
    dist.Normal(params["beta_loc"], jnp.exp(params["beta_log_scale"])) @ "beta"
    dist.Normal(params["ls_loc"], jnp.exp(params["ls_log_scale"])) @ "log_sigma"


def ours(x, y, steps):
    # built once, as a user holds them: fit's program is then reused (the baselines make them inside theirs)
    objective, optimizer, params = vi.elbo(model, guide), optax.adam(LR), init_params(x.shape[1])

    def run(key):
        return vi.fit(key, objective, params, {"y": y}, x, optimizer=optimizer, steps=steps,
                      chunk=steps, progress_bar=False).values

    return run


# --- NumPyro -------------------------------------------------------------------------------------------------


def np_model(x, y):
    beta = numpyro.sample("beta", nd.Normal(0.0, 1.0).expand((x.shape[1],)).to_event(1))
    log_sigma = numpyro.sample("log_sigma", nd.Normal(0.0, 1.0))
    numpyro.sample("y", nd.Normal(x @ beta, jnp.exp(log_sigma)).to_event(1), obs=y)


def np_guide(x, y):
    p = init_params(x.shape[1])
    beta_loc = numpyro.param("beta_loc", p["beta_loc"])
    beta_log_scale = numpyro.param("beta_log_scale", p["beta_log_scale"])
    ls_loc = numpyro.param("ls_loc", p["ls_loc"])
    ls_log_scale = numpyro.param("ls_log_scale", p["ls_log_scale"])
    numpyro.sample("beta", nd.Normal(beta_loc, jnp.exp(beta_log_scale)).to_event(1))
    numpyro.sample("log_sigma", nd.Normal(ls_loc, jnp.exp(ls_log_scale)))


def numpyro_svi(x, y, steps):
    svi = SVI(np_model, np_guide, numpyro.optim.Adam(LR), Trace_ELBO())

    @jax.jit  # svi.init and a scan of svi.update, compiled once (SVI.run would compile on every call)
    def run(key):
        state = svi.init(key, x, y)
        return -jax.lax.scan(lambda s, _: svi.update(s, x, y), state, None, length=steps)[1]

    return run


# --- hand-written JAX ----------------------------------------------------------------------------------------


def hand(x, y, steps):
    optimizer = optax.adam(LR)

    def elbo(params, key):
        k_beta, k_ls = jax.random.split(key)
        beta = params["beta_loc"] + jnp.exp(params["beta_log_scale"]) * jax.random.normal(k_beta, params["beta_loc"].shape)
        ls = params["ls_loc"] + jnp.exp(params["ls_log_scale"]) * jax.random.normal(k_ls)
        log_p = (jnp.sum(norm.logpdf(beta)) + norm.logpdf(ls) + jnp.sum(norm.logpdf(y, x @ beta, jnp.exp(ls))))
        log_q = (jnp.sum(norm.logpdf(beta, params["beta_loc"], jnp.exp(params["beta_log_scale"])))
                 + norm.logpdf(ls, params["ls_loc"], jnp.exp(params["ls_log_scale"])))
        return log_p - log_q

    @jax.jit
    def run(key):
        def step(carry, i):
            params, opt_state = carry
            value, grads = jax.value_and_grad(elbo)(params, jax.random.fold_in(key, i))
            updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        params = init_params(x.shape[1])
        return jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))[1]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=1000)
    parser.add_argument("--D", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    x, y = data(opts.N, opts.D)
    impls = {"ours (vi.fit)": ours(x, y, opts.steps), "NumPyro SVI": numpyro_svi(x, y, opts.steps),
             "hand-written JAX": hand(x, y, opts.steps)}
    compile_s, times, final = {}, {name: [] for name in impls}, {}
    for name, run in impls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(0)))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(1)))
        compile_s[name] = first - (time.perf_counter() - t0)
    for r in range(opts.repeats):
        for name, run in impls.items():
            t0 = time.perf_counter()
            values = jax.block_until_ready(run(jax.random.key(2 + r)))
            times[name].append(time.perf_counter() - t0)
            final[name] = float(np.mean(np.asarray(values)[-200:]))
    per_step = {name: 1e6 * float(np.median(t)) / opts.steps for name, t in times.items()}
    print(f"linear regression N={opts.N}, D={opts.D}, {opts.steps} steps, 1 sample, Adam; jax {jax.__version__}, "
          f"numpyro {numpyro.__version__}; median of {opts.repeats} runs\n")
    header = f"{'implementation':<20}{'us/step':>10}{'compile s':>11}{'final ELBO':>13}"
    print(header + "\n" + "-" * len(header))
    for name in impls:
        print(f"{name:<20}{per_step[name]:>10.1f}{compile_s[name]:>11.2f}{final[name]:>13.2f}")
    ours_t = per_step["ours (vi.fit)"]
    print(f"\nours / NumPyro SVI:      {ours_t / per_step['NumPyro SVI']:.2f}  (goal <= 1.0)")
    print(f"ours / hand-written JAX: {ours_t / per_step['hand-written JAX']:.2f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
