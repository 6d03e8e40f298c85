"""NUTS: this project's `inference.mcmc.nuts` against NumPyro's `MCMC(NUTS(...))` and blackjax's NUTS.

Every posterior of ../shared/data/posteriordb: each written once with `ppl` (testbed/posteriordb.py) and once
natively in NumPyro with the same distributions (benchmarks/numpyro_posteriordb.py). blackjax samples our
model's unconstrained log density (the one `mcmc.nuts` differentiates), so its column compares the samplers
alone. All three: 4 chains vectorised with vmap, 1,000 warm-up, 1,000 draws, diagonal mass matrix adapted in
Stan's windows, target acceptance 0.8, maximum tree depth 10, uniform initialisation in (-2, 2) on the
unconstrained space.

    python benchmarks/bench_nuts.py [--repeats 3] [--rounds 2] [--models eight_schools,kidiq,...]

Each sampler runs in a process of its own (`--worker`): one first call (compilation), then `--repeats` seeds.
In one process, NumPyro's recompiling runs (its vectorised `MCMC.run` traces and compiles on every call) and
ours shared the allocator and thread pool, and a warm `mcmc.nuts` call on kidiq took 1.2–1.5 s between them
against 0.75 s alone. The samplers take turns process by process, `--rounds` times, so they see the same
machine load; each figure is the median over every seed of every round.

Compilation is measured, not guessed: JAX reports the duration of every trace, lowering and XLA compilation
(`jax.monitoring`), and a call's compile seconds are their sum, subtracted from its wall time. ESS is the
minimum over scalar parameters of ArviZ's bulk ESS of the constrained draws. Ratios: ours / NumPyro and
ours / blackjax of ESS per second (goals >= 1.2 and >= 1.0) and of gradient evaluations (leapfrog steps of
all chains) per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from numpyro_posteriordb import MODELS

WARMUP, SAMPLES, CHAINS = 1000, 1000, 4
SAMPLERS = ("ours", "numpyro", "blackjax")
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def min_bulk_ess(samples: dict) -> float:
    """Minimum over every scalar parameter of ArviZ's bulk ESS; leaves shaped (chain, draw, ...)."""
    import arviz as az

    out = []
    for v in samples.values():
        v = np.asarray(v).reshape(v.shape[0], v.shape[1], -1)
        out.extend(float(az.ess(v[:, :, i])) for i in range(v.shape[2]))
    return min(out)


# --- the samplers: each a function (post, seed) -> (constrained samples, total leapfrog steps) ----------------


def ours_sampler(post, np_model):
    from inference import mcmc

    def run(seed):
        res = mcmc.nuts(mcmc_key(seed), post.model, post.args, post.observations, num_chains=CHAINS,
                        num_warmup=WARMUP, num_samples=SAMPLES, progress_bar=False, check_convergence=False)
        return res.samples, res.stats["num_steps"]

    return run


def numpyro_sampler(post, np_model):
    from numpyro.infer import MCMC, NUTS

    sampler = MCMC(NUTS(np_model), num_warmup=WARMUP, num_samples=SAMPLES, num_chains=CHAINS,
                   chain_method="vectorized", progress_bar=False, jit_model_args=True)

    def run(seed):
        sampler.run(mcmc_key(seed), *post.args, **post.observations, extra_fields=("num_steps",))
        return sampler.get_samples(group_by_chain=True), sampler.get_extra_fields(group_by_chain=True)["num_steps"]

    return run


def blackjax_sampler(post, np_model):
    import blackjax
    import jax
    from jax.flatten_util import ravel_pytree

    import ppl
    from ppl import unconstrained

    trace = unconstrained.init_uniform(jax.random.key(0), post.model, post.args, post.observations)
    u0 = ppl.choicemap.latents(unconstrained.unconstrain(post.model, post.args, trace.choices), post.observations)
    _, unravel = ravel_pytree(u0)

    def logdensity(z):
        return post.model.assess(ppl.choicemap.merge(unconstrained.wrap(unravel(z)), post.observations), *post.args)[0]

    def constrained(z):
        return ppl.choicemap.latents(unconstrained.constrain(post.model, post.args, unravel(z), post.observations),
                                     post.observations)

    def chain(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        init = unconstrained.init_uniform(k_init, post.model, post.args, post.observations)
        z0, _ = ravel_pytree(ppl.choicemap.latents(unconstrained.unconstrain(post.model, post.args, init.choices),
                                                   post.observations))
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=0.8)
        (state, params), _ = warmup.run(k_warm, z0, num_steps=WARMUP)
        kernel = blackjax.nuts(logdensity, **params)

        def one(state, k):
            state, info = kernel.step(k, state)
            return state, (state.position, info.num_integration_steps)

        _, (zs, steps) = jax.lax.scan(one, state, jax.random.split(k_draw, SAMPLES))
        return jax.vmap(constrained)(zs), steps

    program = jax.jit(jax.vmap(chain))

    def run(seed):
        return program(jax.random.split(mcmc_key(seed), CHAINS))

    return run


def mcmc_key(seed: int):
    import jax

    return jax.random.key(seed)


def worker(sampler: str, name: str, seeds: list[int]) -> None:
    """Print one JSON line per call: the first (seed 0, compiling) and each of `seeds`."""
    import jax

    from testbed import posteriordb

    compile_s = [0.0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compile_s.__setitem__(0, compile_s[0] + seconds) if event in _COMPILE_EVENTS
        else None)
    folder, np_model = MODELS[name]
    post = posteriordb.load(folder)
    run = {"ours": ours_sampler, "numpyro": numpyro_sampler, "blackjax": blackjax_sampler}[sampler](post, np_model)
    for seed in [0, *seeds]:
        before = compile_s[0]
        t0 = time.perf_counter()
        samples, steps = jax.block_until_ready(run(seed))
        wall = time.perf_counter() - t0
        compiled = compile_s[0] - before
        print(json.dumps({"seed": seed, "wall": wall, "compile": compiled, "ess": min_bulk_ess(samples),
                          "steps": float(np.sum(steps))}), flush=True)


def measure(sampler: str, name: str, seeds: list[int]) -> list[dict]:
    out = subprocess.run([sys.executable, __file__, "--worker", sampler, "--models", name,
                          "--seeds", ",".join(map(str, seeds))], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{sampler} on {name} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per sampler, taking turns")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--worker", choices=SAMPLERS, help=argparse.SUPPRESS)
    parser.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.models, [int(s) for s in args.seeds.split(",") if s])

    import blackjax
    import jax
    import numpyro

    samplers = args.samplers.split(",")
    print(f"NUTS, {CHAINS} chains (vmap), {WARMUP} warm-up + {SAMPLES} draws; jax {jax.__version__}, numpyro "
          f"{numpyro.__version__}, blackjax {blackjax.__version__}, {len(os.sched_getaffinity(0))} cores; each sampler "
          f"in its own process, {args.rounds} rounds x {args.repeats} seeds, medians; compile excluded")
    header = (f"{'model':<15}{'sampler':<10}{'run (s)':>8}{'min ESS':>9}{'ESS/s':>8}{'grad/s':>10}{'compile (s)':>12}"
              f"{'ESS/s ratio':>12}{'grad/s ratio':>13}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        rows = {s: [] for s in samplers}
        for r in range(args.rounds):
            seeds = list(range(1 + r * args.repeats, 1 + (r + 1) * args.repeats))
            for s in samplers:
                calls = measure(s, name, seeds)
                rows[s].extend((c["wall"] - c["compile"], c["ess"], c["steps"], calls[0]["compile"]) for c in calls[1:])
        med = {}
        for s, calls in rows.items():
            run = np.asarray([c[0] for c in calls])
            med[s] = (np.median(run), np.median([c[1] for c in calls]), np.median([c[1] / c[0] for c in calls]),
                      np.median([c[2] / c[0] for c in calls]), np.median([c[3] for c in calls]))
        for s, (run, ess, ess_s, grad_s, comp) in med.items():
            ratios = ""
            if s != "ours" and "ours" in med:
                ratios = f"{med['ours'][2] / ess_s:>12.2f}{med['ours'][3] / grad_s:>13.2f}"
            print(f"{name:<15}{s:<10}{run:>8.2f}{ess:>9.0f}{ess_s:>8.0f}{grad_s:>10.3g}{comp:>12.2f}{ratios}",
                  flush=True)


if __name__ == "__main__":
    main()
