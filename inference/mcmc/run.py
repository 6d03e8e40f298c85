"""Many chains of any kernel, in one compiled program, with a progress bar."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl import unconstrained

from .kernels import Kernel
from .progress import progress, progress_callback
from .result import MCMCResult
from .target import latents

__all__ = ["initial_traces", "run"]

def initial_traces(key, model: ppl.GenFn, args: tuple, observations: dict, num_chains: int, init: Any):
    """One trace per chain: `init` is "prior", "uniform" (on the unconstrained space, radius 2) or a choice map."""
    keys = jax.random.split(key, num_chains)
    if isinstance(init, str) and init == "prior":
        return jax.vmap(lambda k: model.generate(k, observations, *args)[0])(keys)
    if isinstance(init, str) and init == "uniform":
        return jax.vmap(lambda k: unconstrained.init_uniform(k, model, args, observations))(keys)
    if isinstance(init, dict):
        constraints = ppl.choicemap.merge(init, observations)
        return jax.vmap(lambda k: model.generate(k, constraints, *args)[0])(keys)
    raise ValueError(f'init must be "prior", "uniform" or a choice map of initial values, got {init!r}')


@eqx.filter_jit
def _program(key, kernel: Kernel, model, args, observations, traces, cfg):
    num_samples, num_warmup, thin, show_progress = cfg
    total = num_warmup + num_samples
    tick = progress_callback(total) if show_progress else None

    def transition(key, trace):
        for k in jax.random.split(key, thin):
            trace, info = kernel.step(k, trace, model, args)
        return trace, info

    def body(traces, inputs):
        i, key = inputs
        traces, info = jax.vmap(transition)(jax.random.split(key, traces.score.shape[0]), traces)
        if tick is not None:
            tick(i)
        return traces, (latents(traces.choices, observations), info._asdict())

    _, (draws, stats) = jax.lax.scan(body, traces, (jnp.arange(total), jax.random.split(key, total)))
    # (iteration, chain, ...) -> (chain, draw, ...), warm-up dropped
    return jax.tree.map(lambda x: jnp.swapaxes(x[num_warmup:], 0, 1), (draws, stats))


def run(
    key: jax.Array,
    kernel: Kernel,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    num_samples: int,
    num_chains: int = 4,
    num_warmup: int = 0,
    thin: int = 1,
    init: Any = "prior",
    progress_bar: bool = True,
) -> MCMCResult:
    """Run `num_chains` chains of `kernel` (vectorised with `vmap`) and keep every `thin`-th state.

    Args:
        key: a PRNG key.
        kernel: an `mcmc.kernels` kernel (or a `cycle`/`mixture` of them).
        model: the model (a generative function).
        args: its arguments.
        observations: a choice map of observed values; the posterior is p(latents | observations).
        num_samples: draws kept per chain (after thinning).
        num_warmup: draws discarded first (kernels here do not adapt; see `mcmc.nuts` for that).
        thin: kernel steps per kept draw.
        init: "prior", "uniform" (uniform in (-2, 2) on the unconstrained space) or a choice map.
        progress_bar: a tqdm bar advanced from inside the compiled program.
    """
    for name, v in (("num_samples", num_samples), ("num_chains", num_chains), ("thin", thin)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    args, observations = tuple(args), ppl.choicemap.normalize(observations)
    k_init, k_run = jax.random.split(key)
    traces = initial_traces(k_init, model, args, observations, num_chains, init)
    traces = kernel.init(traces)
    cfg = (num_samples, num_warmup, thin, progress_bar)
    with progress(progress_bar, num_warmup + num_samples, "mcmc"):
        draws, stats = _program(k_run, kernel, model, args, observations, traces, cfg)
        jax.block_until_ready(draws)
    return MCMCResult(draws, stats)
