"""What exact ancestor sampling costs particle Gibbs over language-model reasoning.

`inference.scaling.methods.particle_gibbs` runs `smc.csmc_kernel(..., ancestor_sampling=True)`. A language
model's carry is the whole text so far, so the reference's future depends on the ancestor: at each step
t = 1..T-1 (0-based) every one of the N candidate ancestors has the reference's steps t..T-1 teacher-forced
from its own context (one forward pass of L positions per step, batched over the N candidates). Without
ancestor sampling the reference's step t is scored once, from its own slot.

This script times `methods.particle_gibbs` with `ancestor_sampling=True` and `ancestor_sampling=False` on
SVAMP problems shipped with the package (`load_problems("svamp")`), set up as `python -m
inference.scaling.bench` does by default: SmolLM2-135M (`ppl.lm.load()`), the arithmetic verifier as an
emission, T = 4 steps of up to L = 32 tokens, N = 4 particles (`budget.plan("pgibbs", ·)`'s particle count).
Each variant is one `jax.jit` of the whole call (first trajectory and sweeps); it is called once to compile
(excluded), then `--repeats` times with fresh keys, the two variants taking turns, and the median is kept.
The first trajectory (`reasoning_model(T).simulate`, also jitted and timed the same way) is subtracted, so
seconds per sweep = (median call - median first trajectory) / sweeps.

    python benchmarks/bench_pgibbs_lm.py [--problems 1] [--sweeps 2] [--repeats 3]

Prints, per problem and variant, the median seconds per call and per sweep, the ratio with/without, the
forward-pass positions a sweep runs (counted from N, T and L, not measured), and the jax version and device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

from inference.scaling import methods
from inference.scaling.budget import GIBBS_PARTICLES
from inference.scaling.data import load_problems
from inference.scaling.model import reasoning_model
from inference.scaling.solve import Reasoner


def positions(n: int, t_steps: int, length: int) -> dict:
    """Forward-pass token positions of one conditional SMC sweep (the prompt's prefill excluded).

    sampled: N particles x T steps x L tokens, decoded one token at a time (both variants).
    reference: the reference's step t scored from its slot, t = 1..T-1 (without ancestor sampling).
    rescored: with ancestor sampling, at step t = 1..T-1 each of N candidates teacher-forces the reference's
        T - t remaining steps (step t included) of L tokens: N L sum_{t=1}^{T-1} (T - t) = N L T (T - 1) / 2.
    """
    rescored = n * length * t_steps * (t_steps - 1) // 2
    reference = (t_steps - 1) * length
    return {"sampled": n * t_steps * length, "reference": reference, "rescored": rescored,
            "extra": rescored - reference}


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1, help="SVAMP problems, from --offset")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--particles", type=int, default=GIBBS_PARTICLES)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="T (the bench's default)")
    parser.add_argument("--step-tokens", type=int, default=32, help="L (the bench's default)")
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args(argv)

    import ppl

    problems = load_problems("svamp", opts.problems, opts.offset)
    lm = ppl.lm.load()
    reasoner = Reasoner(lm, "verifier", n_steps=opts.steps, step_tokens=opts.step_tokens)
    n, sweeps, t_steps, length = opts.particles, opts.sweeps, opts.steps, opts.step_tokens
    tilt = dict(temperature=reasoner.reward_temperature, reward=reasoner.reward_mode)
    model = reasoning_model(t_steps, float(reasoner.reward_temperature), reasoner.reward_mode)
    potential = methods.as_module(reasoner.potential)

    def pgibbs(ancestor_sampling):
        return jax.jit(lambda key, state0: methods.particle_gibbs(
            key, reasoner.step, reasoner.potential, state0, n, sweeps, t_steps,
            ancestor_sampling=ancestor_sampling, **tilt))

    variants = {"with": pgibbs(True), "without": pgibbs(False),
                "first": jax.jit(lambda key, state0: model.simulate(key, reasoner.step, potential, state0).retval)}
    count = positions(n, t_steps, length)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores; N = {n}, "
          f"{sweeps} sweeps, T = {t_steps} steps of L = {length} tokens, verifier reward; "
          f"median of {opts.repeats} calls after one compiling call")
    print(f"positions a sweep runs: {count['sampled']} sampled (decoded one at a time, both variants); "
          f"{count['reference']} teacher-forced without ancestor sampling, {count['rescored']} with "
          f"(N L T(T-1)/2): {count['extra']} extra")
    ratios = []
    for p, problem in enumerate(problems):
        states, _ = reasoner.prompt_states([problem.question])
        state0 = jax.tree.map(lambda x: x[0], states)
        base = jax.random.fold_in(jax.random.key(0), opts.offset + p)
        compile_s = {name: timed(fn, base, state0) for name, fn in variants.items()}
        times: dict = {name: [] for name in variants}
        for r in range(opts.repeats):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                times[name].append(timed(variants[name], jax.random.fold_in(base, r + 1), state0))
        med = {name: statistics.median(ts) for name, ts in times.items()}
        per_sweep = {name: (med[name] - med["first"]) / sweeps for name in ("with", "without")}
        ratio = per_sweep["with"] / per_sweep["without"]
        ratios.append(ratio)
        print(f"\nproblem {opts.offset + p}: first call (compile included) " +
              ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items()))
        print(f"  first trajectory   median {med['first']:.2f} s  {['%.2f' % t for t in times['first']]}")
        for name in ("with", "without"):
            print(f"  {name:<7} ancestor sampling: median call {med[name]:.2f} s {['%.2f' % t for t in times[name]]}, "
                  f"{per_sweep[name]:.2f} s per sweep")
        print(f"  ratio with / without (per sweep): {ratio:.2f}; per call: {med['with'] / med['without']:.2f}")
    if len(ratios) > 1:
        print(f"\nratio per sweep over problems: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
