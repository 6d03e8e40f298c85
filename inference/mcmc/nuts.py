"""Whole-model NUTS with Stan-style warm-up: the entry point NumPyro and Stan users expect.

    res = inference.mcmc.nuts(key, model, args, observations, num_chains=4, num_warmup=1000, num_samples=1000)
    res.samples["mu"].shape          # (4, 1000)
    res.diagnostics(); res.to_arviz()

The sampler is numpyro's functional HMC API (`numpyro.infer.hmc.hmc` with
`algo="NUTS"`): its multinomial NUTS tree builder, dual-averaging step size and
windowed diagonal (or dense) mass matrix adaptation, driven by the potential
this project derives from the model (`-log p` of the unconstrained latents,
Jacobians included, from `assess` on `ppl.Unconstrained` leaves). Using
numpyro's kernel rather than blackjax's keeps the algorithm identical to the
NumPyro baseline we benchmark against, and adds no dependency.

Warm-up and sampling of every chain (chains vectorised with `vmap`) run as one
compiled program; it is cached, so a second call with the same model, shapes
and settings does not compile again (NumPyro's `MCMC.run` recompiles each time).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc

import ppl
from ppl import unconstrained
from ppl.choicemap import flatten, latents

from .. import inputs, sharding
from ..draws import Posterior
from ..progress import tqdm, tracing
from . import checks
from .checks import Start
from .convergence import warn_if_not_converged
from .result import MCMCResult
from .run import start_traces

__all__ = ["nuts"]


def _log_density(model, args, observations):
    """log p of the unconstrained latents (a choice map), Jacobians included."""

    def log_density(u):
        return model.assess(ppl.choicemap.merge(unconstrained.wrap(u), observations), *args)[0]

    return log_density


@eqx.filter_jit
def _start(model, args, observations, traces) -> Start:
    """Each chain's initial point on the unconstrained space, its log density and gradient."""
    u0 = jax.vmap(lambda tr: latents(unconstrained.unconstrain(model, args, tr.choices), observations))(traces)
    log_density, gradient = jax.vmap(jax.value_and_grad(_log_density(model, args, observations)))(u0)
    return Start(u0, log_density, gradient)


CHUNKS = 20
"""The iterations run as this many compiled calls, the progress bar moving between them: a program with a host
callback compiled in ran at half speed on some calls (docs/performance.md)."""


def _hmc(model, args, observations, u0, cfg):
    """numpyro's NUTS `(init_kernel, sample_kernel)` on the potential of the flattened unconstrained latents, one
    chain's `unravel`, and the chains' flat initial positions."""
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], u0))
    z0 = jax.vmap(lambda u: ravel_pytree(u)[0])(u0)
    log_density = _log_density(model, args, observations)
    init_kernel, sample_kernel = hmc(potential_fn=lambda z: -log_density(unravel(z)), algo="NUTS")
    num_warmup, _, target_accept_prob, max_tree_depth, dense_mass = cfg

    def init_one(z, k):
        return init_kernel(z, num_warmup, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                           dense_mass=dense_mass, rng_key=k)

    return init_one, sample_kernel, unravel, z0


@eqx.filter_jit
def _init(key, model, args, observations, u0, cfg, mesh):
    init_one, _, _, z0 = _hmc(model, args, observations, u0, cfg)
    z0 = sharding.shard(mesh, z0, z0.shape[0])
    return sharding.shard(mesh, jax.vmap(init_one)(z0, jax.random.split(key, z0.shape[0])), z0.shape[0])


def _draw(states) -> tuple:
    stats = {"accept_prob": states.accept_prob, "diverging": states.diverging, "num_steps": states.num_steps,
             "energy": states.energy, "potential_energy": states.potential_energy}
    return states.z, stats


@eqx.filter_jit
def _iterate(states, n, model, args, observations, u0, cfg, size: int, mesh):
    """`n` (traced, at most `size`) NUTS iterations of every chain: the states, and each iteration's draw in the
    first `n` rows of (size, chain, ...) buffers."""
    init_one, sample_kernel, _, z0 = _hmc(model, args, observations, u0, cfg)
    # numpyro's sample_kernel reads settings its init_kernel stores: set them, computing nothing
    jax.eval_shape(jax.vmap(init_one), z0, jax.random.split(jax.random.key(0), z0.shape[0]))

    def body(i, carry):
        states, record = carry
        states = sharding.blockwise(mesh, jax.vmap(sample_kernel))(states)
        return states, jax.tree.map(lambda buffer, x: buffer.at[i].set(x), record, _draw(states))

    record = jax.tree.map(lambda x: jnp.zeros((size, *x.shape), x.dtype), _draw(states))
    return jax.lax.fori_loop(0, n, body, (sharding.shard(mesh, states, z0.shape[0]), record))


@eqx.filter_jit
def _finish(model, args, observations, u0, cfg, states, zs, stats, mesh):
    """The draws after warm-up, constrained, as an `MCMCResult`."""
    _, _, unravel, _ = _hmc(model, args, observations, u0, cfg)
    zs, stats = jax.tree.map(lambda x: jnp.swapaxes(x[cfg[0]:], 0, 1), (zs, stats))

    def constrained(z):
        return latents(unconstrained.constrain(model, args, unravel(z), observations), observations)

    samples = sharding.shard(mesh, jax.vmap(jax.vmap(constrained))(zs), zs.shape[0])
    adapt = states.adapt_state
    samples, stats, step_size, inverse_mass_matrix = sharding.readable(
        mesh, (samples, stats, adapt.step_size, adapt.inverse_mass_matrix))
    return MCMCResult(samples, stats, Posterior(model, args, observations), step_size, inverse_mass_matrix)


def _program(key, model, args, observations, u0, cfg, progress_bar: bool, mesh) -> MCMCResult:
    """Warm-up and sampling of every chain in `CHUNKS` compiled calls of one program, with a tqdm bar between
    them when `progress_bar`; the draws are the same either way."""
    total = cfg[0] + cfg[1]
    size = -(-total // CHUNKS)
    states = _init(key, model, args, observations, u0, cfg, mesh)
    bar = tqdm(total=total, desc="nuts") if progress_bar else None
    records = []
    for begin in range(0, total, size):
        n = min(size, total - begin)
        states, record = _iterate(states, jnp.int32(n), model, args, observations, u0, cfg, size, mesh)
        records.append(jax.tree.map(lambda x, n=n: x[:n], record))
        if bar is not None:
            jax.block_until_ready(states)  # the bar shows iterations done, not queued
            bar.update(n)
    if bar is not None:
        bar.close()
    zs, stats = jax.tree.map(lambda *xs: jnp.concatenate(xs), *records)
    return _finish(model, args, observations, u0, cfg, states, zs, stats, mesh)


def nuts(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    init: Any = "uniform",
    progress_bar: bool = True,
    check_convergence: bool = True,
    mesh: jax.sharding.Mesh | int | None = None,
) -> MCMCResult:
    """NUTS on every unobserved (continuous) address of `model`, with warm-up adaptation.

    Args:
        key: a PRNG key.
        model: the model (a generative function).
        args: its arguments.
        observations: a choice map of observed values; the posterior is p(latents | observations).
        num_chains: chains, run together with `vmap`.
        num_warmup: adaptation steps (step size by dual averaging, mass matrix in
            Stan's windows); their draws are discarded.
        num_samples: draws kept per chain.
        target_accept_prob: the dual-averaging target.
        max_tree_depth: NUTS's tree depth limit (2^depth leapfrog steps).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        init: "uniform" (Stan's and numpyro's default: uniform in (-2, 2) on the
            unconstrained space), "prior", or a choice map of initial values.
        progress_bar: a tqdm bar, moved between the compiled calls that run the iterations (`CHUNKS`).
        check_convergence: warn (`mcmc.ConvergenceWarning`) when, as Stan checks, some parameter's
            R-hat exceeds 1.01, its bulk ESS is under 100 per chain, a chain never moved, or a
            transition diverged (see `mcmc.convergence`).
        mesh: the chains split across devices: a one-axis `jax.sharding.Mesh`, a device count, or None
            (`inference.sharding`); `num_chains` must be a multiple of the device count. Chains never
            communicate; with `num_warmup=0` the draws equal one device's bit for bit, while warm-up's
            adaptation can round differently in the partitioned program (docs/scale_out.md).

    Returns:
        An `MCMCResult`: `samples` (nested dict, leaves (chain, draw, ...)), per-draw
        `stats` (accept_prob, diverging, num_steps, energy), `to_arviz()`, `diagnostics()`.

    Raises:
        ppl.ModelError: when the model has no latent choice or a discrete one, when some chain's
            initial log density or its gradient is -inf or NaN (the message names the addresses), or
            when warm-up drove the step size to zero (the density is not finite near the start).
    """
    num_chains, num_samples, max_tree_depth = (inputs.count(n, v) for n, v in (
        ("num_chains", num_chains), ("num_samples", num_samples), ("max_tree_depth", max_tree_depth)))
    num_warmup = inputs.count("num_warmup", num_warmup, minimum=0)
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    mesh = sharding.mesh_of(mesh)
    sharding.check_size(mesh, num_chains, "num_chains")
    args, observations = inputs.model_args(args), inputs.observations(observations)
    k_init, k_run = jax.random.split(key)
    traces = start_traces("mcmc.nuts", k_init, model, args, observations, num_chains, init)
    _check_continuous(traces, observations)
    start = _start(model, args, observations, traces)
    checks.check_start("mcmc.nuts", traces, observations, init, start)
    cfg = (num_warmup, num_samples, float(target_accept_prob), max_tree_depth, dense_mass)
    show = bool(progress_bar) and not tracing(key, args, observations)
    result = jax.block_until_ready(_program(k_run, model, args, observations, start.position, cfg, show, mesh))
    checks.check_step_size(result.step_size)
    if check_convergence:
        warn_if_not_converged(result)
    return result


def _check_continuous(traces, observations) -> None:
    for path, x in flatten(latents(traces.choices, observations)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ppl.ModelError(
                f"nuts moves continuous choices only, but {'/'.join(map(str, path))!r} is discrete; marginalise it "
                "out (ppl.factor with logsumexp), observe it, or combine mcmc.kernels.gibbs with mcmc.kernels.nuts "
                "in mcmc.run"
            )

