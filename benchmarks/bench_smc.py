"""Bootstrap particle filter: `inference.smc.run` against the same filter hand-written in plain JAX.

Model: the scalar linear-Gaussian state-space model of tests/test_smc.py (`testbed.lgssm`),

    x_0 ~ N(0, 1),  x_t = 0.9 x_{t-1} + N(0, 0.5),  y_t = x_t + N(0, 1),  t = 0 .. T-1,

written with `ppl.scan` (the first step is selected by a scanned `is_first` flag),
T = 100, data simulated with a fixed seed. Both filters propose from the prior,
resample systematically when ESS/N < 0.5 and keep the running log marginal likelihood.

    python benchmarks/bench_smc.py [--particles 1000,10000,100000] [--repeats 5] [--T 100] [--breakdown]
    python benchmarks/bench_smc.py --memory 1000000      # peak memory of return_traces=True, T = 100

Prints, for each N, the seconds per run and particle-steps per second (N*T / seconds,
median of `--repeats` runs, compilation excluded; the implementations are timed
round-robin so they see the same machine load) of

- `smc.run(..., return_traces=False)`: log Z, final weights and per-step info only;
- `smc.run(..., return_traces=True)`: also the per-step history and the final traces;
- the hand-written filter (`jax.lax.scan` over time; log Z, final weights, per-step ESS,
  resampling flags and running log Z, as return_traces=False): it draws every particle's
  noise with one `jax.random.normal(key, (N,))`, resamples under `lax.cond` and carries
  logsumexp and ESS from one step to the next;
- the same hand-written filter recording every step's states and ancestors and tracing the
  final particles' lineages (N, T) back through them: what `return_traces=True` keeps
  beyond the bare filter (ours also keeps the weights and carries of every step and
  returns the final particles as the model's traces);

with the ratio ours / hand-written of throughput (goals >= 0.95 for return_traces=False
against the bare filter, >= 0.6 for return_traces=True against the one with lineages)
and compile time (first call minus a steady-state call). A sanity table then compares
every filter's log Z with the exact (Kalman filter) log likelihood. `--breakdown` also
times the hand-written filter with a key per particle (split, then a fold_in per choice,
as a vmapped GFI call over split keys does): the cost `smc.run` avoids by drawing every
particle from a stream of one shared key (`ppl.Streams`).

`--memory N` runs `smc.run(..., return_traces=True)` once at each N in a fresh process and
prints the bytes its result holds, the process's peak resident memory (`ru_maxrss`) and
its increase over the resident memory before the run, as a multiple of the result
(goal <= 2 at N = 1e6, T = 100).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from inference import smc
from testbed import oracles
from testbed.lgssm import M0, P0, A, C, Q, R, lgssm

THRESHOLD = 0.5
DATA_SEED = 0


# --- the same filter in plain JAX --------------------------------------------


def systematic_resample(key, log_w, n):
    """Ancestors by systematic resampling: searchsorted of (k + U) / n in the normalised CDF."""
    w = jnp.exp(log_w - jnp.max(log_w))
    cdf = jnp.cumsum(w)
    cdf = cdf / cdf[-1]
    u = (jnp.arange(n) + jax.random.uniform(key)) / n
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1)


def hand_filter(key, ys, first_flags, n, per_particle_keys=False, trajectories=False):
    """Bootstrap PF: (log Z, final log weights, per-step ESS, per-step resampled flag, running log Z), and with
    `trajectories` also what `return_traces=True` needs: every step's states and ancestors, and the final
    particles' lineages (N, T) traced back through them.

    `per_particle_keys` (off for the benchmark; for `--breakdown`) gives every particle a key
    of its own (split, then one fold_in per choice, as a vmapped GFI call over split keys
    does) instead of one `normal(key, (N,))` per step.
    """
    log_n = jnp.log(n)

    def step(state, inputs):
        x, log_w, lse_w, ess_prev = state  # lse_w = logsumexp(log_w), carried, not recomputed
        k, y, is_first, t = inputs
        k_res, k_x = jax.random.split(k)
        do_resample = (t > 0) & (ess_prev < THRESHOLD * n)

        def resample():
            ancestors = systematic_resample(k_res, log_w, n)
            return ancestors, x[ancestors], jnp.zeros_like(log_w), log_n

        ancestors, x, log_w, lse_w = jax.lax.cond(do_resample, resample,
                                                  lambda: (jnp.arange(n), x, log_w, lse_w))
        mean = jnp.where(is_first, M0, A * x)
        sd = jnp.where(is_first, math.sqrt(P0), math.sqrt(Q))
        if per_particle_keys:
            eps = jax.vmap(lambda kk: jax.random.normal(jax.random.fold_in(kk, 1)))(jax.random.split(k_x, n))
        else:
            eps = jax.random.normal(k_x, (n,))
        x = mean + sd * eps
        new_log_w = log_w + norm.logpdf(y, C * x, math.sqrt(R))
        new_lse = logsumexp(new_log_w)
        ess = 1.0 / jnp.sum(jnp.exp(2.0 * (new_log_w - new_lse)))
        record = (x, ancestors) if trajectories else ()
        return (x, new_log_w, new_lse, ess), (ess, do_resample, new_lse - lse_w, record)

    T = ys.shape[0]
    init = (jnp.zeros(n), jnp.zeros(n), log_n, jnp.asarray(float(n)))
    (_, log_w, _, _), (ess, resampled, dlog_z, record) = jax.lax.scan(
        step, init, (jax.random.split(key, T), ys, first_flags, jnp.arange(T))
    )
    log_z_path = jnp.cumsum(dlog_z)
    out = (log_z_path[-1], log_w, ess, resampled, log_z_path)
    if not trajectories:
        return out
    states, ancestors = record
    _, lineages = jax.lax.scan(lambda b, step: (step[1][b], step[0][b]), jnp.arange(n), (states, ancestors),
                               reverse=True)
    return out + (states, ancestors, lineages.T)


# --- timing --------------------------------------------------------------------


def time_round_robin(impls: dict, keys, repeats: int, min_run_s: float):
    """{name: fn(key)} -> ({name: compile s}, {name: median s per call}, {name: [outputs]}).

    A run repeats calls (fresh keys) until it lasts about `min_run_s`; the filters take
    turns run by run, so every one sees the same machine load.
    """
    compile_s, number, per_call, outputs = {}, {}, {}, {}
    for name, fn in impls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(next(keys)))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(fn(next(keys)))
        steady = time.perf_counter() - t0
        compile_s[name] = first - steady
        number[name] = max(1, math.ceil(min_run_s / steady))
        per_call[name], outputs[name] = [], []
    for _ in range(repeats):
        for name, fn in impls.items():
            run_keys = [next(keys) for _ in range(number[name])]
            t0 = time.perf_counter()
            outs = [fn(k) for k in run_keys]
            jax.block_until_ready(outs)
            per_call[name].append((time.perf_counter() - t0) / number[name])
            outputs[name].extend(outs)
    return compile_s, {name: float(np.median(v)) for name, v in per_call.items()}, outputs


def peak_memory(n: int, T: int) -> None:
    """One `smc.run(..., return_traces=True)` at N = n: the result's bytes and the process's peak memory."""
    _, ys_np = oracles.lgssm_simulate(np.random.default_rng(DATA_SEED), T, A, C, Q, R, M0, P0)
    obs = {"steps": {"y": jnp.asarray(ys_np, jnp.float32)}}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = jax.block_until_ready(smc.run(jax.random.key(0), lgssm, (jnp.arange(T) == 0,), obs, n))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    held = sum(x.nbytes for x in jax.tree.leaves(result))
    print(f"{n:>9}{T:>5}{held / 1e9:>12.2f}{peak / 1e9:>11.2f}{(peak - before) / held:>20.2f}{peak / held:>14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", default="1000,10000,100000", help="comma-separated N values")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--T", type=int, default=100, help="time steps")
    parser.add_argument("--min-run-s", type=float, default=0.05, help="a run repeats calls until it lasts this long")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the hand-written filter with smc.run's costs added one at a time")
    parser.add_argument("--memory", help="comma-separated N values: peak memory of return_traces=True instead")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ns = [int(float(s)) for s in args.particles.split(",")]
    T = args.T
    if args.memory_child:
        return peak_memory(args.memory_child, T)
    if args.memory:
        print(f"smc.run(..., return_traces=True), bootstrap PF on the scalar LGSSM; jax {jax.__version__}; "
              "each N in a fresh process")
        print(f"{'N':>9}{'T':>5}{'result (GB)':>12}{'peak (GB)':>11}{'(peak - before)/result':>20}{'peak/result':>14}")
        for n in [int(float(s)) for s in args.memory.split(",")]:
            subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--T", str(T)], check=True)
        return

    _, ys_np = oracles.lgssm_simulate(np.random.default_rng(DATA_SEED), T, A, C, Q, R, M0, P0)
    _, _, exact_log_z = oracles.kalman_filter(ys_np, A, C, Q, R, M0, P0)
    ys = jnp.asarray(ys_np, jnp.float32)
    flags = jnp.arange(T) == 0
    obs = {"steps": {"y": ys}}

    print(f"bootstrap PF on the scalar LGSSM (a={A}, q={Q}, r={R}), T={T}, systematic resampling at ESS/N < {THRESHOLD}")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores visible); "
          f"median of {args.repeats} runs; compile = first call - steady-state call")
    print("ratio ours/hand: throughput of smc.run / throughput of the hand-written filter that keeps the same "
          "(goals: >= 0.95 for return_traces=False against the bare filter, >= 0.6 for return_traces=True against "
          "the filter that records states and ancestors and traces the lineages back); compile ratio: ours / hand")
    header = (f"{'N':>8}  {'filter':<26}{'ms/run':>10}{'particle-steps/s':>18}{'ratio ours/hand':>17}"
              f"{'compile (s)':>13}{'compile ratio':>15}")
    print()
    print(header)
    print("-" * len(header))

    hand, hand_traj = "hand-written JAX", "hand-written + lineages"
    baseline = {"smc.run return_traces=F": hand, "smc.run return_traces=T": hand_traj}
    sanity, breakdowns = [], []
    for n in ns:
        impls = {
            "smc.run return_traces=F": lambda k, n=n: smc.run(k, lgssm, (flags,), obs, n, return_traces=False),
            "smc.run return_traces=T": lambda k, n=n: smc.run(k, lgssm, (flags,), obs, n, return_traces=True),
            hand: jax.jit(lambda k, n=n: hand_filter(k, ys, flags, n)),
            hand_traj: jax.jit(lambda k, n=n: hand_filter(k, ys, flags, n, trajectories=True)),
        }
        keys = iter(jax.random.split(jax.random.key(n), 100_000))
        compile_s, med, outputs = time_round_robin(impls, keys, args.repeats, args.min_run_s)
        for name in impls:
            base = baseline.get(name)
            ratio = "" if base is None else f"{med[base] / med[name]:.3f}"
            c_ratio = "" if base is None else f"{compile_s[name] / compile_s[base]:.2f}"
            print(f"{n:>8}  {name:<26}{med[name] * 1e3:>10.2f}{n * T / med[name]:>18.3e}{ratio:>17}"
                  f"{compile_s[name]:>13.3f}{c_ratio:>15}")
        print()
        log_zs = {name: [float(o.log_marginal_likelihood() if name in baseline else o[0]) for o in outs]
                  for name, outs in outputs.items()}
        sanity.append((n, log_zs))

        if args.breakdown:
            variants = {
                hand: impls[hand],
                "+ per-particle keys": jax.jit(lambda k, n=n: hand_filter(k, ys, flags, n, per_particle_keys=True)),
                "smc.run return_traces=F": impls["smc.run return_traces=F"],
            }
            _, bmed, _ = time_round_robin(variants, keys, args.repeats, args.min_run_s)
            breakdowns.append((n, bmed))

    print(f"log Z sanity: exact (Kalman filter) log likelihood = {exact_log_z:.4f}")
    print(f"{'N':>8}  {'filter':<26}{'runs':>6}{'mean log Z':>13}{'sd':>9}{'(mean-exact)/sd':>17}  ok")
    all_ok = True
    for n, log_zs in sanity:
        for name, vals in log_zs.items():
            v = np.asarray(vals, np.float64)
            sd = v.std(ddof=1) if len(v) > 1 else float("nan")
            z = (v.mean() - exact_log_z) / sd
            ok = bool(np.all(np.isfinite(v)) and abs(z) < 4.0)
            all_ok &= ok
            print(f"{n:>8}  {name:<26}{len(v):>6}{v.mean():>13.4f}{sd:>9.4f}{z:>17.2f}  {'yes' if ok else 'NO'}")
    print("every filter's mean log Z is within 4 sd (of one run) of the exact value" if all_ok
          else "SOME log Z estimates are off")

    if breakdowns:
        print("\nbreakdown: the hand-written filter with a key per particle (ms/run, ratio hand / variant)")
        for n, bmed in breakdowns:
            for name, m in bmed.items():
                print(f"{n:>8}  {name:<26}{m * 1e3:>10.2f}{bmed[hand] / m:>8.3f}")
            print()


if __name__ == "__main__":
    main()
