"""Many chains of any kernel, in one compiled program, with a progress bar."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl import unconstrained
from ppl.choicemap import latents

from .. import inputs, sharding
from ..draws import Posterior
from ..progress import progress, progress_callback, shown
from . import checks
from .convergence import warn_if_not_converged
from .kernels import Kernel
from .result import MCMCResult

__all__ = ["initial_traces", "run", "start_traces"]


def initial_traces(key, model: ppl.GenFn, args: tuple, observations: dict, num_chains: int, init: Any):
    """One trace per chain: `init` is "prior", "uniform" (on the unconstrained space, radius 2) or a choice map."""
    # every value traced (Python floats too): a bad observed or init value then gives a -inf/NaN density
    # that `checks.check_start` names, rather than numpyro's eager "invalid parameter" error downstream of it
    arrays = functools.partial(jax.tree.map, jnp.asarray)
    return _initial_traces(key, model, args, arrays(observations), num_chains,
                           arrays(init) if isinstance(init, dict) else init)


@eqx.filter_jit
def _initial_traces(key, model, args, observations, num_chains, init):
    keys = jax.random.split(key, num_chains)
    if isinstance(init, str) and init == "prior":
        return jax.vmap(lambda k: model.generate(k, observations, *args)[0])(keys)
    if isinstance(init, str) and init == "uniform":
        return jax.vmap(lambda k: unconstrained.init_uniform(k, model, args, observations))(keys)
    if isinstance(init, dict):
        constraints = ppl.choicemap.merge(init, observations)
        return jax.vmap(lambda k: model.generate(k, constraints, *args)[0])(keys)
    raise ValueError(f'init must be "prior", "uniform" or a choice map of initial values, got {init!r}')


def start_traces(who: str, key, model: ppl.GenFn, args: tuple, observations: dict, num_chains: int, init: Any):
    """`initial_traces`, checked: the model has latent choices, and every chain's initial log density is finite."""
    traces = initial_traces(key, model, args, observations, num_chains, init)
    checks.check_latents(who, traces, observations)
    checks.check_start(who, traces, observations, init)
    return traces


class _Settings(NamedTuple):
    """`run`'s static settings: Python values, so equal settings reuse the compiled program."""

    num_samples: int
    num_warmup: int
    thin: int


@eqx.filter_jit
def _program(key, kernel: Kernel, model, args, observations, traces, settings: _Settings, show: jax.Array, mesh):
    num_warmup = settings.num_warmup
    total = num_warmup + settings.num_samples
    tick = progress_callback(total, show)
    chains = traces.score.shape[0]

    def transition(key, trace):
        for k in jax.random.split(key, settings.thin):
            trace, info = kernel.step(k, trace, model, args)
        return trace, info

    def body(traces, inputs):
        i, key = inputs
        traces, info = sharding.blockwise(mesh, jax.vmap(transition))(jax.random.split(key, chains), traces)
        tick(i)
        return traces, (latents(traces.choices, observations), info._asdict())

    traces = sharding.shard(mesh, traces, chains)
    _, (draws, stats) = jax.lax.scan(body, traces, (jnp.arange(total), jax.random.split(key, total)))
    # (iteration, chain, ...) -> (chain, draw, ...), warm-up dropped
    kept = jax.tree.map(lambda x: jnp.swapaxes(x[num_warmup:], 0, 1), (draws, stats))
    return sharding.readable(mesh, sharding.shard(mesh, kept, chains))


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
    check_convergence: bool = True,
    mesh: jax.sharding.Mesh | int | None = None,
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
        check_convergence: warn (`mcmc.ConvergenceWarning`) when R-hat, bulk ESS or divergences
            fail Stan's thresholds, or a chain never moved (see `mcmc.convergence`).
        mesh: the chains split across devices: a one-axis `jax.sharding.Mesh`, a device count, or None
            (`inference.sharding`); `num_chains` must be a multiple of the device count. Chains never
            communicate, so the draws equal one device's for the same key.

    Raises:
        ppl.ModelError: when the model has no latent choice, or some chain's initial log density is
            -inf or NaN (the message names the addresses).
    """
    num_samples, num_chains, thin = (inputs.count(n, v) for n, v in
                                     (("num_samples", num_samples), ("num_chains", num_chains), ("thin", thin)))
    num_warmup = inputs.count("num_warmup", num_warmup, minimum=0)
    mesh = sharding.mesh_of(mesh)
    sharding.check_size(mesh, num_chains, "num_chains")
    args, observations = inputs.model_args(args), inputs.observations(observations)
    k_init, k_run = jax.random.split(key)
    traces = start_traces("mcmc.run", k_init, model, args, observations, num_chains, init)
    traces = kernel.init(traces)
    settings = _Settings(num_samples=num_samples, num_warmup=num_warmup, thin=thin)
    show = shown(progress_bar, key, args, observations)
    with progress(bool(show), num_warmup + num_samples, "mcmc"):
        draws, stats = _program(k_run, kernel, model, args, observations, traces, settings, show, mesh)
        jax.block_until_ready(draws)
    result = MCMCResult(draws, stats, Posterior(model, args, observations))
    if check_convergence:
        warn_if_not_converged(result)
    return result
