"""Particle Gibbs sweeps against one SMC run of the same size.

Model: the linear-Gaussian state-space model of bench_smc.py (`testbed.lgssm`: x_t = 0.9 x_{t-1} + N(0, 0.5),
y_t = x_t + N(0, 1)), data simulated with a fixed seed. A sweep is one CSMC move of the
trajectory (`smc.csmc_kernel(...).step`: resample every step with the reference kept,
extend, pick the new trajectory, rebuild the trace). The baseline is one SMC run,
`smc.run(key, model, args, obs, N, ess_threshold=1.0, return_traces=False)` with the same
N and T, resampling at every step as CSMC does. A timed call runs K = 10 of either in one
compiled loop, as `pgibbs.run` runs its sweeps: each sweep starts from the last one's
trace, and everything a sweep or a run returns is kept (the new trace and the move's info;
log Ẑ, each step's ESS, the final weights and carries). Calling each one from Python
would add the cost of handing its result back, which `pgibbs.run` does not pay per sweep:
a jitted call that returns the model's trace takes 11 us longer than one that returns its
score (T = 50), 7% of an SMC run at N = 10.

    python benchmarks/bench_pgibbs.py [--particles 10,100,1000] [--T 50,200] [--repeats 5] [--all-cores]
                                      [--model lgssm|running-sum]

`--model running-sum` runs the same programs on `testbed.non_markov.running_sum`, whose carry holds
the past, so ancestor and backward sampling rescore the trajectory's future from each candidate.

Prints, for each (N, T), sweeps per second (median of `--repeats` timed calls, compilation
excluded, implementations taking turns) of CSMC with ancestor sampling (the default: an
exact draw from N densities per step), with its Metropolis-Hastings variant (two densities
per step), without it, and with backward sampling; then the ratio of a sweep's time to the
baseline's (goal <= 1.2 for the default sweep) and to a bare filter (`smc.run` inside a
caller's `jax.jit` that keeps only the final weights, so XLA drops log Ẑ, the ESS and the
per-step record: the baseline of earlier versions of this benchmark), and compile seconds.
`smc.run (return_traces=True)` is the default call, which also rebuilds the N final traces.

The process runs pinned to one core unless `--all-cores` is given. On the 2-core machine of
these notes, XLA's CPU runtime given both cores ran one `smc.run` (N = 1000, T = 200) in 4.8 ms
in one minute and 8.2 ms a few minutes later (pinned: 4.3-4.5 ms throughout), and two
back-to-back runs of this benchmark put the default sweep at 1.32-1.48 and at 0.94 of
`smc.run`: with both cores the ratio measures the machine's state more than the two programs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys


def pin_to_one_core() -> str:
    """Pins every thread of this process, and so the threads XLA starts later, to one core."""
    if not hasattr(os, "sched_setaffinity"):
        return "all cores (this system cannot pin a process)"
    core = min(os.sched_getaffinity(0))
    for thread in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(thread), {core})
    return f"pinned to core {core}"


# before jax starts: XLA sizes its thread pool and splits its kernels by the cores it sees then
CORES = pin_to_one_core() if __name__ == "__main__" and "--all-cores" not in sys.argv else "all cores"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench_smc import DATA_SEED, time_round_robin  # noqa: E402  (this script's folder is on sys.path)

from inference import smc  # noqa: E402
from testbed import oracles  # noqa: E402
from testbed.lgssm import A, C, M0, P0, Q, R, lgssm  # noqa: E402
from testbed.non_markov import SUM_Q, SUM_R, running_sum  # noqa: E402


def lgssm_case(T: int) -> tuple:
    """The linear-Gaussian model, its arguments and simulated observations."""
    _, ys = oracles.lgssm_simulate(np.random.default_rng(DATA_SEED), T, A, C, Q, R, M0, P0)
    return lgssm, (jnp.arange(T) == 0,), {"steps": {"y": jnp.asarray(ys, jnp.float32)}}


def running_sum_case(T: int) -> tuple:
    """`testbed.non_markov.running_sum`, whose carry holds the past: ancestor and backward sampling rescore the
    future (O(N T^2) a sweep)."""
    rng = np.random.default_rng(DATA_SEED)
    ys = np.cumsum(rng.normal(0, np.sqrt(SUM_Q), T)) + rng.normal(0, np.sqrt(SUM_R), T)
    return running_sum, (jnp.arange(T),), {"steps": {"y": jnp.asarray(ys, jnp.float32)}}


CASES = {"lgssm": lgssm_case, "running-sum": running_sum_case}


def implementations(n: int, T: int, case: str = "lgssm") -> dict:
    model, args, obs = CASES[case](T)
    trace, _ = model.generate(jax.random.key(0), obs, *args)

    # Every program below runs K sweeps (or K SMC runs) in one compiled loop, as `pgibbs.run` runs its sweeps,
    # and keeps all that each one returns; only one array goes back to the timer, so no sweep or run pays for
    # handing a result back to Python.
    def sweep(**kwargs):
        kernel = smc.csmc_kernel(obs, n, **kwargs)
        chain = jax.jit(lambda key: jax.lax.scan(lambda tr, k: kernel.step(k, tr, model, args), trace,
                                                 jax.random.split(key, K)))
        return lambda key: chain(key)[0].score

    def runs(return_traces, kept=lambda result: result):
        loop = jax.jit(lambda key: jax.lax.map(
            lambda k: kept(smc.run(k, model, args, obs, n, ess_threshold=1.0, return_traces=return_traces)),
            jax.random.split(key, K)))
        return lambda key: jax.tree.leaves(loop(key))[0]

    return {
        "sweep (ancestor sampling)": sweep(),
        "sweep (metropolis ancestor)": sweep(ancestor_sampling="metropolis"),
        "sweep (plain CSMC)": sweep(ancestor_sampling=False),
        "sweep (backward sampling)": sweep(ancestor_sampling=False, backward_sampling=True),
        BASELINE: runs(False),
        "smc.run (return_traces=True)": runs(True),
        BARE: runs(False, kept=lambda result: result.log_weights),  # XLA drops the rest of each run
    }


BASELINE, BARE = "smc.run", "filter (weights only)"
K = 10
"""Sweeps (or runs) per timed call."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", default="10,100,1000", help="comma-separated N values")
    parser.add_argument("--T", default="50,200", help="comma-separated numbers of time steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-run-s", type=float, default=0.3, help="length of one timed run")
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    parser.add_argument("--model", choices=list(CASES), default="lgssm")
    opts = parser.parse_args()
    keys = iter(jax.random.split(jax.random.key(1), 1_000_000))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {CORES}; {opts.model}; median of {opts.repeats} runs\n")
    header = f"{'N':>5} {'T':>4}  {'implementation':<30} {'per s':>9} {'/ smc.run':>9} {'/ filter':>9} {'compile s':>9}"
    print(header + "\n" + "-" * len(header))
    for n, T in itertools.product(map(int, opts.particles.split(",")), map(int, opts.T.split(","))):
        compile_s, seconds, _ = time_round_robin(implementations(n, T, opts.model), keys, opts.repeats, opts.min_run_s)
        base, bare = seconds[BASELINE], seconds[BARE]
        for name, s in seconds.items():
            print(f"{n:>5} {T:>4}  {name:<30} {K / s:>9.1f} {s / base:>9.2f} {s / bare:>9.2f} {compile_s[name]:>9.2f}")
        print()
    print("per s: sweeps (or runs) per second. / smc.run: time over one smc.run(..., return_traces=False)\n"
          "(goal for the ancestor-sampling sweep: <= 1.2). / filter: over a weights-only filter whose log Z and ESS\n"
          "XLA removes.")


if __name__ == "__main__":
    main()
