"""Scale-out: `smc.run` and `mcmc.nuts` with `mesh=` over 1, 2, 4 and 8 devices, in strong and weak scaling.

    python benchmarks/bench_scale_out.py [--devices 1,2,4,8] [--repeats 3] [--rounds 1] [--particles 1000000]

Workloads (reads ../shared/data for NUTS):

- `smc.run`: the bootstrap particle filter of benchmarks/bench_smc.py on the scalar linear-Gaussian state-space model
  (`testbed.lgssm`, T = 100, systematic resampling at ESS/N < 0.5), `return_traces=False`, particles split across
  the devices (resampling gathers particles across them);
- `mcmc.nuts`: eight schools (non-centred, posteriordb), chains split across the devices (they never
  communicate), `--warmup` and `--draws` iterations.

Strong scaling keeps the total fixed (N = `--particles`, `--chains` chains) at every device count D: speed-up
t(1) / t(D), efficiency speed-up / D (ideal: D and 1). Weak scaling keeps the work per device fixed (N / 8 particles
and chains / 8 chains a device, so the largest D runs the strong totals): speed-up D t(1) / t(D) in work per second,
efficiency t(1) / t(D) (ideal: D and 1). D = 1 runs the plain program (`mesh=None`), the baseline.

JAX reads XLA_FLAGS once, when it starts, so each device count runs in a process of its own (`--worker D`), with
XLA_FLAGS=--xla_force_host_platform_device_count=D; the device counts take turns, `--rounds` times. A process times
each workload `--repeats` times with fresh keys after one compiling call; figures are medians, compilation excluded.

On a CPU the D devices are virtual: they share the machine's cores, so there the table shows the cost of
partitioning and of the cross-device collectives (overhead only, no speed-up to expect). On a machine with several
GPUs, or a TPU slice, the same command puts each block on its own chip, and the table shows the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

T = 100
WORKLOADS = ("smc strong", "smc weak", "nuts strong", "nuts weak")


def sizes(opts, devices: int) -> dict:
    """{workload: (driver, total particles or chains)} at `devices` devices."""
    widest = max(opts.devices)
    return {"smc strong": ("smc", opts.particles), "smc weak": ("smc", opts.particles // widest * devices),
            "nuts strong": ("nuts", opts.chains), "nuts weak": ("nuts", opts.chains // widest * devices)}


def worker(opts, devices: int) -> None:
    """Print one JSON line: {workload: [seconds per call]} on `devices` devices."""
    import jax

    from inference import mcmc, sharding, smc
    from testbed import lgssm, posteriordb

    if jax.device_count() < devices:
        raise SystemExit(f"JAX sees {jax.device_count()} devices, fewer than {devices}")
    mesh = None if devices == 1 else sharding.mesh_of(devices)
    _, args, obs = lgssm.simulated(T, seed=0)
    post = posteriordb.load("eight_schools-eight_schools_noncentered")
    drivers = {
        "smc": lambda key, n: smc.run(key, lgssm.lgssm, args, obs, n, return_traces=False,
                                      mesh=mesh).log_marginal_likelihood(),
        "nuts": lambda key, n: mcmc.nuts(key, post.model, post.args, post.observations, num_chains=n,
                                         num_warmup=opts.warmup, num_samples=opts.draws, progress_bar=False,
                                         check_convergence=False, mesh=mesh).samples,
    }
    seconds, seen = {}, {}
    for workload, (driver, n) in sizes(opts, devices).items():
        if (driver, n) not in seen:  # weak and strong coincide at the widest mesh
            jax.block_until_ready(drivers[driver](jax.random.key(0), n))  # compiles
            seen[(driver, n)] = []
            for seed in range(1, opts.repeats + 1):
                start = time.perf_counter()
                jax.block_until_ready(drivers[driver](jax.random.key(seed), n))
                seen[(driver, n)].append(time.perf_counter() - start)
        seconds[workload] = seen[(driver, n)]
    print(json.dumps(seconds), flush=True)


def measure(devices: int, argv: list[str]) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run([sys.executable, __file__, *argv, "--worker", str(devices)], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"the worker on {devices} devices failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def table(opts, times: dict) -> str:
    """Seconds, speed-up and efficiency against one device, per workload and device count."""
    header = f"{'workload':<13}{'D':>3}{'size':>10}{'s/call':>10}{'speed-up':>10}{'efficiency':>12}"
    lines = [header, "-" * len(header)]
    for workload in WORKLOADS:
        base = times[1][workload]
        for d in opts.devices:
            t = times[d][workload]
            speed_up = base / t * (d if "weak" in workload else 1)  # weak: work per second
            lines.append(f"{workload:<13}{d:>3}{sizes(opts, d)[workload][1]:>10}{t:>10.3f}{speed_up:>10.2f}"
                         f"{speed_up / d:>12.2f}")
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] != 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated device counts starting with 1, got {text!r}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=_counts, default=[1, 2, 4, 8], help="device counts, 1 among them")
    parser.add_argument("--particles", type=int, default=1_000_000, help="strong scaling's N")
    parser.add_argument("--chains", type=int, default=64, help="strong scaling's NUTS chains")
    parser.add_argument("--warmup", type=int, default=200, help="NUTS warm-up iterations")
    parser.add_argument("--draws", type=int, default=200, help="NUTS draws kept")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per workload and process")
    parser.add_argument("--rounds", type=int, default=1, help="processes per device count, taking turns")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    widest = max(opts.devices)
    if opts.particles % widest or opts.chains % widest:
        parser.error(f"--particles ({opts.particles}) and --chains ({opts.chains}) must be multiples of {widest}, "
                     "the most devices, so that the weak scaling's blocks are equal")
    if opts.worker:
        return worker(opts, opts.worker)

    import jax

    print(f"smc.run (scalar LGSSM, T = {T}) and mcmc.nuts (eight schools, {opts.warmup} warm-up + {opts.draws} "
          f"draws); jax {jax.__version__} on {jax.devices()[0].device_kind} ({len(os.sched_getaffinity(0))} cores); "
          f"each device count in its own process, {opts.rounds} round(s) x {opts.repeats} calls, medians, compile "
          "excluded")
    calls: dict = {d: {w: [] for w in WORKLOADS} for d in opts.devices}
    for _ in range(opts.rounds):
        for d in opts.devices:
            for workload, seconds in measure(d, sys.argv[1:]).items():
                calls[d][workload].extend(seconds)
    print(table(opts, {d: {w: float(np.median(s)) for w, s in by.items()} for d, by in calls.items()}))
    if jax.devices()[0].platform == "cpu":
        print("CPU devices are virtual (XLA_FLAGS) and share the cores: this shows the overhead of sharding, "
              "not a speed-up")


if __name__ == "__main__":
    main()
