"""PaRIS particle Gibbs against PaRIS: the bias and variance of smoothed additive functionals at small N, and
parameter learning by PPG's score against Markov score climbing for the same compute.

Model: the linear-Gaussian state-space model `testbed.lgssm` (x_t = 0.9 x_{t-1} + N(0, 0.5), y_t = x_t + N(0, 1)),
data simulated with a fixed seed; exact answers by Gaussian conditioning and the Kalman likelihood.

Smoothing. The functionals Σ_t x_t, Σ_t x_t² and Σ_t x_{t-1} x_t (`testbed.lgssm.smoothing_moments`), each
estimated `--reps` times with independent keys by
- PaRIS with N particles (`smc.paris`), one sweep;
- PaRIS with N × k particles, the same particle-steps as PPG's k sweeps;
- PPG with N particles, k iterations, the first k0 left out of the average (`pgibbs.ppg`).
All draw their K = 2 backward indices by accept-reject (`log_density_bound`), so a sweep costs O(N K) step
densities and the middle row costs what PPG costs. Printed: the bias of each functional (mean over replications
minus the exact value) with its standard error, the standard deviation and RMSE of Σ x_t², and seconds an
estimate (the replications run as one vmapped program, compilation excluded).

Learning. `pgibbs.learn` on (a, log q, log r) from T = 200 observations, by Markov score climbing (CSMC's weighted
lineages, N = 20) and by PPG (conditional PaRIS with exact backward draws, N = 10), each given the same wall
time: iterations = budget / the method's measured seconds an iteration. Printed: the error of the averaged iterate
from the Kalman MLE in units of the MLE's standard error (RMS over `--seeds` seeds and the three parameters)
and the log-likelihood below the maximum.

    python benchmarks/bench_ppg.py [--T 50] [--particles 4,8,16] [--iterations 20] [--burn-in 5] [--reps 200]
                                   [--budget 6] [--seeds 6] [--json benchmarks/results/ppg.json]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
import optax

from inference import pgibbs, smc
from testbed import oracles
from testbed.lgssm import (
    M0,
    P0,
    A,
    C,
    Q,
    R,
    kalman_mle,
    lgssm,
    lgssm_params,
    log_density_bound,
    simulated,
    smoothing_moments,
)

DATA_SEED = 1


def timed(fn, key):
    """(the second call's value, its seconds): the first call compiles."""
    jax.block_until_ready(fn(key))
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(jax.random.fold_in(key, 1)))
    return out, time.perf_counter() - t0


def smoothing_rows(T: int, particles: list[int], k: int, k0: int, reps: int) -> list[dict]:
    ys, args, obs = simulated(T, DATA_SEED)
    exact = oracles.lgssm_smoothed_moments(ys, A, C, Q, R, M0, P0)

    def paris(n):
        return lambda key: smc.paris(key, lgssm, args, obs, smoothing_moments, n, 2,
                                     log_density_bound=log_density_bound).estimate

    def ppg(n):
        return lambda key: pgibbs.ppg(key, lgssm, args, obs, smoothing_moments, n, 2, num_iterations=k, burn_in=k0,
                                      log_density_bound=log_density_bound).estimate

    rows = []
    for n in particles:
        for method, fn, sweeps, size in (("PaRIS", paris(n), 1, n), ("PaRIS", paris(n * k), 1, n * k),
                                         ("PPG", ppg(n), k, n)):
            batched = jax.jit(lambda key, fn=fn: jax.vmap(fn)(jax.random.split(key, reps)))
            estimates, seconds = timed(batched, jax.random.key(n))
            row = {"method": method, "N": size, "sweeps": sweeps, "s_per_estimate": seconds / reps}
            for name, value in exact.items():
                values = np.asarray(estimates[name], np.float64)
                row[name] = {"bias": values.mean() - value, "se": values.std(ddof=1) / np.sqrt(reps),
                             "sd": values.std(ddof=1), "rmse": float(np.sqrt(np.mean((values - value) ** 2)))}
            rows.append(row)
    return rows


def learning_rows(budget: float, seeds: int) -> list[dict]:
    ys, args, obs = simulated(200, DATA_SEED)
    nll, ml, se = kalman_mle(ys)
    start = {"a": 0.5, "log_q": 0.0, "log_r": 0.0}

    def learn(method, n, steps, seed):
        res = pgibbs.learn(jax.random.key(seed), lgssm_params, start, args, obs, n, steps, optax.adam(1e-2),
                           progress_bar=False, method=method)
        return np.array([res.params["a"], res.params["log_q"], res.params["log_r"]], np.float64)

    rows = []
    for method, n in (("msc", 20), ("ppg", 10)):
        learn(method, n, 200, 0)  # compiles the 200-iteration program
        t0 = time.perf_counter()
        learn(method, n, 200, 1)
        per_iteration = (time.perf_counter() - t0) / 200
        steps = max(20, int(budget / per_iteration))
        learn(method, n, steps, 0)  # compiles the budget's program
        t0 = time.perf_counter()
        estimates = np.array([learn(method, n, steps, 100 + s) for s in range(seeds)])
        seconds = (time.perf_counter() - t0) / seeds
        z = (estimates - ml) / se
        rows.append({"method": method, "N": n, "iterations": steps, "s_per_fit": seconds,
                     "rms_error_in_se": float(np.sqrt(np.mean(z**2))),
                     "max_error_in_se": float(np.abs(z).max()),
                     "nll_gap": float(np.mean([nll(e) - nll(ml) for e in estimates]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--particles", default="4,8,16", help="comma-separated N values")
    parser.add_argument("--iterations", type=int, default=20, help="PPG's k")
    parser.add_argument("--burn-in", type=int, default=5, help="PPG's k0")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of learning per fit")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--json", default="", help="write the rows here")
    a = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, T = {a.T}, k = {a.iterations}, "
          f"k0 = {a.burn_in}, {a.reps} replications")

    smoothing = smoothing_rows(a.T, [int(n) for n in a.particles.split(",")], a.iterations, a.burn_in, a.reps)
    print("\n| method | N | sweeps | ms / estimate | bias Σx (± se) | bias Σx² (± se) | bias Σx_{t-1}x_t (± se) "
          "| sd Σx² | RMSE Σx² |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in smoothing:
        cells = " | ".join(f"{r[f]['bias']:+.3f} ± {r[f]['se']:.3f}" for f in ("sum", "square", "lag"))
        print(f"| {r['method']} | {r['N']} | {r['sweeps']} | {1e3 * r['s_per_estimate']:.2f} | {cells} | "
              f"{r['square']['sd']:.3f} | {r['square']['rmse']:.3f} |")

    learning = learning_rows(a.budget, a.seeds)
    print(f"\nlearning (T = 200, {a.budget:g} s a fit, {a.seeds} seeds): error from the Kalman MLE in its standard "
          "errors")
    print("| method | N | iterations | s / fit | RMS error (se) | max error (se) | log-lik. below max |")
    print("|---|---|---|---|---|---|---|")
    for r in learning:
        print(f"| {r['method']} | {r['N']} | {r['iterations']} | {r['s_per_fit']:.2f} | {r['rms_error_in_se']:.3f} "
              f"| {r['max_error_in_se']:.3f} | {r['nll_gap']:.4f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"jax": jax.__version__, "settings": vars(a), "smoothing": smoothing, "learning": learning}, f,
                      indent=1)


if __name__ == "__main__":
    main()
