"""Particle Gibbs sweeps against one SMC run of the same size.

Model: the linear-Gaussian state-space model of bench_smc.py (x_t = 0.9 x_{t-1} + N(0, 0.5),
y_t = x_t + N(0, 1)), data simulated with a fixed seed. A sweep is one CSMC move of the
trajectory (`smc.csmc_kernel(...).step`: resample every step with the reference kept,
extend, pick the new trajectory, rebuild the trace), jitted alone. The baseline is the
bootstrap filter `smc.run` with the same N and T, resampling at every step as CSMC does,
jitted alone too.

    python benchmarks/bench_pgibbs.py [--particles 10,100,1000] [--T 50,200] [--repeats 5]

Prints, for each (N, T), sweeps per second (median of `--repeats` timed runs, compilation
excluded, implementations taking turns) of CSMC with ancestor sampling (the default: an
exact draw from N densities per step), with its Metropolis-Hastings variant (two densities
per step), without it, and with backward sampling, then the ratio of a sweep's time to one
`smc.run(return_traces=False)` (goal <= 1.2 for the default sweep) and to
`smc.run(return_traces=True)` (which, like a sweep, keeps the per-step history), and
the compile seconds of the sweep and of the filter.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import oracles
from bench_smc import A, C, DATA_SEED, M0, P0, Q, R, lgssm, time_round_robin

from inference import smc


def implementations(n: int, T: int) -> dict:
    _, ys = oracles.lgssm_simulate(np.random.default_rng(DATA_SEED), T, A, C, Q, R, M0, P0)
    flags, obs = jnp.arange(T) == 0, {"steps": {"y": jnp.asarray(ys, jnp.float32)}}
    args = (flags,)
    trace, _ = lgssm.generate(jax.random.key(0), obs, *args)

    def sweep(**kwargs):
        kernel = smc.csmc_kernel(obs, n, **kwargs)
        return jax.jit(lambda key: kernel.step(key, trace, lgssm, args)[0])

    def filter_(return_traces):
        return jax.jit(lambda key: smc.run(key, lgssm, args, obs, n, ess_threshold=1.0,
                                           return_traces=return_traces).log_weights)

    return {
        "sweep (ancestor sampling)": sweep(),
        "sweep (metropolis ancestor)": sweep(ancestor_sampling="metropolis"),
        "sweep (plain CSMC)": sweep(ancestor_sampling=False),
        "sweep (backward sampling)": sweep(ancestor_sampling=False, backward_sampling=True),
        "smc.run (return_traces=False)": filter_(False),
        "smc.run (return_traces=True)": filter_(True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", default="10,100,1000", help="comma-separated N values")
    parser.add_argument("--T", default="50,200", help="comma-separated numbers of time steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-run-s", type=float, default=0.3, help="length of one timed run")
    opts = parser.parse_args()
    keys = iter(jax.random.split(jax.random.key(1), 1_000_000))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; median of {opts.repeats} runs\n")
    header = f"{'N':>5} {'T':>4}  {'implementation':<30} {'per s':>9} {'/ smc(F)':>9} {'/ smc(T)':>9} {'compile s':>9}"
    print(header + "\n" + "-" * len(header))
    for n, T in itertools.product(map(int, opts.particles.split(",")), map(int, opts.T.split(","))):
        compile_s, seconds, _ = time_round_robin(implementations(n, T), keys, opts.repeats, opts.min_run_s)
        base_f, base_t = seconds["smc.run (return_traces=False)"], seconds["smc.run (return_traces=True)"]
        for name, s in seconds.items():
            print(f"{n:>5} {T:>4}  {name:<30} {1 / s:>9.1f} {s / base_f:>9.2f} {s / base_t:>9.2f} {compile_s[name]:>9.2f}")
        print()
    print("per s: sweeps (or filter runs) per second. / smc(F), / smc(T): seconds per call over one smc.run with\n"
          "return_traces False / True (goal for the ancestor-sampling sweep: <= 1.2 against smc(F)).")


if __name__ == "__main__":
    main()
