"""What resampling costs particle filtering over language-model reasoning: tokens per second of
`inference.scaling.methods.particle_filter` (resampling before every step) against `importance_sampling`
(the same `smc.run` with `ess_threshold=0`: best-of-N's N independent trajectories).

Both run on the same SVAMP problems shipped with the package, with the same key per problem, the same
language model (SmolLM2-135M, `ppl.lm.load()`), the same steps (T steps of up to L tokens, a newline ends a
step) and the same potential: the process reward model shipped with the package (`ProcessRewardModel.load()`,
a twist), which reads the hidden state the language model computes anyway (a small MLP: it costs next to
nothing beside decoding). The problems' prompts are prefilled together (`Reasoner.prompt_states`), so every
call has one shape and each method compiles once.

Each method is one `jax.jit` of the whole call (the weights passed as arguments), called once per problem to
compile (excluded), then
`--repeats` times, the two taking turns (the order alternating), and a repeat's seconds summed over the
problems; the median over repeats is kept. Tokens generated (end-of-sequence padding not counted) are the
methods' own counts; they differ between the methods (resampling keeps some trajectories and drops others,
and a finished one stops generating), while the work decoded does not: both decode N x T x L positions,
a finished sequence's included. So two ratios are printed: of tokens per second (the goal: >= 0.9), and of
seconds per decoded position (IS / PF seconds, what resampling itself costs).

With `--copied-prompt`, both methods are also timed (in the same turns) from states laid out as before the
particles shared the prompt (`copied_prompt`: the prompt's keys and values at the head of each particle's own
cache, so every particle holds a copy and resampling gathers it), and the seconds of the shared layout over
the copied one are printed for each method.

    python benchmarks/bench_scaling_pf.py [--particles 4,16,64] [--problems 2] [--steps 3] [--step-tokens 16]
        [--repeats 3] [--copied-prompt]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp

from inference.scaling import methods
from inference.scaling.data import load_problems
from inference.scaling.solve import Reasoner


def timed(fn, *args) -> tuple[float, int]:
    """(seconds, tokens generated) of one call."""
    start = time.perf_counter()
    tokens = int(jax.block_until_ready(fn(*args)))
    return time.perf_counter() - start, tokens


def copied_prompt(state, transformer):
    """`state` with the prompt's keys and values moved to the head of the continuation's cache (which each
    particle holds) and an empty prompt in their place: what every particle carried before they shared it."""
    cache = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=2), state.prompt, state.cache)
    return dataclasses.replace(state, prompt=transformer.empty_cache(1, 1), prompt_length=jnp.int32(0), cache=cache)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", default="4,16,64", help="N, comma-separated")
    parser.add_argument("--problems", type=int, default=2, help="SVAMP problems, from --offset")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3, help="T")
    parser.add_argument("--step-tokens", type=int, default=16, help="L")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copied-prompt", action="store_true", help="also time the layout before the prompt was shared")
    opts = parser.parse_args(argv)
    sizes = [int(n) for n in opts.particles.split(",")]

    import ppl

    problems = load_problems("svamp", opts.problems, opts.offset)
    reasoner = Reasoner(ppl.lm.load(), "prm", n_steps=opts.steps, step_tokens=opts.step_tokens)
    states, _ = reasoner.prompt_states([p.question for p in problems])
    tilt = {"temperature": reasoner.reward_temperature, "reward": reasoner.reward_mode}
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores; {len(problems)} "
          f"problems, T = {opts.steps} steps of L = {opts.step_tokens} tokens, PRM twist; cache "
          f"{states.tokens.shape[-1]} slots; median of {opts.repeats} repeats after one compiling call")
    print(f"{'N':>4} {'PF tokens':>10} {'PF tok/s':>9} {'IS tokens':>10} {'IS tok/s':>9} {'tok/s PF/IS':>12} "
          f"{'s/position IS/PF':>17}")
    calls = [(jax.random.fold_in(jax.random.key(0), opts.offset + p), jax.tree.map(lambda x, p=p: x[p], states),
              reasoner.step, reasoner.potential) for p in range(len(problems))]
    copied = [(key, copied_prompt(state0, reasoner.lm.transformer), *rest) for key, state0, *rest in calls]
    for n in sizes:
        def run(method, n=n):  # the weights are arguments, not constants the compiler would fold
            return jax.jit(lambda key, state0, step, potential: method(key, step, potential, state0, n, opts.steps,
                                                                      **tilt).tokens_generated)

        variants = {"pf": (run(methods.particle_filter), calls), "is": (run(methods.importance_sampling), calls)}
        if opts.copied_prompt:
            variants.update({f"{name} copied": (fn, copied) for name, (fn, _) in variants.items()})
        for fn, inputs in variants.values():
            for call in inputs:
                timed(fn, *call)
        seconds: dict = {name: [] for name in variants}
        tokens: dict = {}
        for r in range(opts.repeats):
            for name in (variants if r % 2 == 0 else reversed(list(variants))):
                fn, inputs = variants[name]
                runs = [timed(fn, *call) for call in inputs]
                seconds[name].append(sum(s for s, _ in runs))
                tokens[name] = sum(t for _, t in runs)
        med = {name: statistics.median(ts) for name, ts in seconds.items()}
        rate = {name: tokens[name] / med[name] for name in variants}
        print(f"{n:>4} {tokens['pf']:>10} {rate['pf']:>9.1f} {tokens['is']:>10} {rate['is']:>9.1f} "
              f"{rate['pf'] / rate['is']:>12.3f} {med['is'] / med['pf']:>17.3f}   "
              f"(s: pf {[f'{t:.2f}' for t in seconds['pf']]}, is {[f'{t:.2f}' for t in seconds['is']]})", flush=True)
        if opts.copied_prompt:
            print(f"     copied prompt: tok/s PF/IS {rate['pf copied'] / rate['is copied']:.3f}; seconds shared / "
                  f"copied: PF {med['pf'] / med['pf copied']:.3f}, IS {med['is'] / med['is copied']:.3f}   (s: pf "
                  f"{[f'{t:.2f}' for t in seconds['pf copied']]}, is {[f'{t:.2f}' for t in seconds['is copied']]})",
                  flush=True)


if __name__ == "__main__":
    main()
