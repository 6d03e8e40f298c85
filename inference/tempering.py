"""SMC samplers for static models: tempering, and a sequence of targets (data annealing).

Tempering (Neal 2001; Del Moral, Doucet & Jasra 2006) moves particles from the
prior to the posterior through γ_β(x) = p(x) L(x)^β, 0 = β_0 < ... < β_K = 1,
where L(x) is the likelihood of the observations (with all factors). Each
stage picks β_{k+1} by bisection so that the ESS of the incremental weights
(β_{k+1} - β_k) log L(x) is `target_ess`·N (Jasra et al. 2011), resamples, and
rejuvenates with `inference.mcmc.kernels` moves (Metropolis-Hastings proposing
from the prior) on `ppl.Tempered(model, β_{k+1}, observed)`, the generative function
whose density is γ_{β_{k+1}}, so that they leave it invariant.
Then log Ẑ = Σ_k log mean_i exp((β_{k+1} - β_k) log L(x_i)).

A sequence of targets (`anneal`) is the same model under a sequence of argument
values, args_0, ..., args_K (stacked along a leading axis): for data annealing,
a mask that lets in more observations at each stage (`dist.X(...).mask(m) @ "y"`);
for a user-chosen temperature schedule, a β argument. The incremental weight
is the `update` weight from args_k to args_{k+1}.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from . import inputs, resampling
from .mcmc import kernels
from .mcmc.kernels import Kernel

__all__ = ["TemperingResult", "anneal", "temper"]


class TemperingResult(eqx.Module):
    """Equally weighted particles from the final target, and the evidence estimate."""

    traces: ppl.Trace
    log_marginal: jax.Array
    schedule: jax.Array
    """The temperatures (tempering) or stage indices reached, padded with the last value."""
    n_stages: jax.Array
    acceptance: jax.Array
    """The fraction of MCMC steps accepted at each stage (`Info.accepted`, over particles and steps)."""
    failed: jax.Array

    def log_marginal_likelihood(self) -> jax.Array:
        return self.log_marginal

    @property
    def choices(self) -> Any:
        return self.traces.choices


def _next_beta(beta, log_lik, target_ess, n_bisect: int = 40):
    """The largest β' ≤ 1 whose incremental weights keep ESS/N ≥ target (bisection)."""
    log_lik = jnp.where(jnp.isfinite(log_lik), log_lik, -jnp.inf)

    def ess_at(b):
        return resampling.ess((b - beta) * log_lik) / log_lik.shape[0]

    def bisect(bounds, _):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = ess_at(mid) >= target_ess
        return (jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)), None

    (lo, _), _ = jax.lax.scan(bisect, (beta, jnp.ones(())), None, length=n_bisect)
    return jnp.where(ess_at(1.0) >= target_ess, 1.0, jnp.maximum(lo, beta + 1e-6))


def _moves(key, kernel: Kernel, gen_fn: ppl.GenFn, traces, args, n_steps):
    """`n_steps` of `kernel` on every particle (vmapped) under `gen_fn`, and the fraction of steps accepted."""

    def chain(key, trace):
        def one(trace, key):
            trace, info = kernel.step(key, trace, gen_fn, args)
            return trace, info.accepted

        trace, accepted = jax.lax.scan(one, kernel.init(trace), jax.random.split(key, n_steps))
        return trace, jnp.mean(accepted)

    keys = jax.random.split(key, jax.tree.leaves(traces)[0].shape[0])
    traces, acc = jax.vmap(chain)(keys, traces)
    return traces, jnp.mean(acc)


@eqx.filter_jit
def _temper(key, model, args, observations, n, target_ess, n_mcmc, max_stages, scheme, kernel):
    obs_selection = ppl.sel.of(observations)

    def log_lik_of(tr):
        return model.project(tr, obs_selection)

    k_init, k_stages = jax.random.split(key)
    traces, log_lik = jax.vmap(lambda i: model.generate(ppl.Streams(k_init, i), observations, *args))(jnp.arange(n))

    def stage(state, key):
        traces, log_lik, beta, log_z, failed = state
        k_res, k_mcmc = jax.random.split(key)
        done = beta >= 1.0
        new_beta = jnp.where(done, beta, _next_beta(beta, log_lik, target_ess))
        inc = (new_beta - beta) * log_lik
        step_z = logsumexp(inc) - jnp.log(n)
        failed = failed | ~jnp.isfinite(step_z)
        log_z = jnp.where(done, log_z, log_z + step_z)
        ancestors = resampling.get(scheme)(k_res, inc, n)
        moved, acc = _moves(k_mcmc, kernel, ppl.Tempered(model, new_beta, obs_selection),
                            jax.tree.map(lambda x: x[ancestors], traces), args, n_mcmc)
        traces = jax.tree.map(lambda a, b: jnp.where(done, a, b), traces, moved)
        log_lik = jax.vmap(log_lik_of)(traces)
        return (traces, log_lik, new_beta, log_z, failed), (new_beta, jnp.where(done, 0.0, acc))

    init = (traces, log_lik, jnp.zeros(()), jnp.zeros(()), jnp.zeros((), bool))
    (traces, _, beta, log_z, failed), (betas, acc) = jax.lax.scan(stage, init, jax.random.split(k_stages, max_stages))
    n_stages = jnp.sum(jnp.concatenate([jnp.ones(1, bool), betas[:-1] < 1.0]) & (betas > 0))
    failed = failed | (beta < 1.0)
    return TemperingResult(traces, jnp.where(failed, -jnp.inf, log_z), betas, n_stages, acc, failed)


def temper(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    target_ess: float = 0.5,
    n_mcmc: int = 5,
    max_stages: int = 100,
    resampling_scheme: resampling.SchemeName = "systematic",
    selection: ppl.Selection | None = None,
) -> TemperingResult:
    """Adaptive tempering SMC from prior to posterior (see the module docstring).

    `selection` picks the latent choices the MH moves resample (default: all
    that are not observed). `failed` is set if β did not reach 1 within
    `max_stages` or a stage's weights were all zero.
    """
    if not 0.0 < target_ess < 1.0:
        raise ValueError(f"target_ess is a fraction of N in (0, 1), got {target_ess!r}")
    resampling.get(resampling_scheme)
    n_particles, n_mcmc = inputs.count("n_particles", n_particles), inputs.count("n_mcmc", n_mcmc, 0)
    observations = inputs.observations(observations)
    return _temper(key, model, inputs.model_args(args), observations, n_particles, float(target_ess), n_mcmc,
                   inputs.count("max_stages", max_stages), resampling_scheme, _prior_mh(observations, selection))


def _prior_mh(observations, selection: ppl.Selection | None) -> Kernel:
    """MH proposing `selection` (by default every unobserved choice) from the prior."""
    return kernels.mh(~ppl.sel.of(observations) if selection is None else selection)


@eqx.filter_jit
def _anneal(key, model, args_sequence, observations, n, n_mcmc, scheme, kernel):
    n_targets = jax.tree.leaves(args_sequence)[0].shape[0]
    args_at = lambda k: jax.tree.map(lambda x: x[k], args_sequence)
    k_init, k_stages = jax.random.split(key)
    traces, log_w = jax.vmap(lambda i: model.generate(ppl.Streams(k_init, i), observations, *args_at(0)))(jnp.arange(n))
    log_z0 = logsumexp(log_w) - jnp.log(n)

    def stage(state, inputs):
        traces, log_w, log_z, failed = state
        key, k = inputs
        k_res, k_upd, k_mcmc = jax.random.split(key, 3)
        ancestors = resampling.get(scheme)(k_res, log_w, n)
        traces = jax.tree.map(lambda x: x[ancestors], traces)
        traces, inc, _ = jax.vmap(lambda kk, tr: model.update(kk, tr, None, *args_at(k)))(jax.random.split(k_upd, n),
                                                                                          traces)
        step_z = logsumexp(inc) - jnp.log(n)
        failed = failed | ~jnp.isfinite(step_z)
        log_z = log_z + step_z
        traces, acc = _moves(k_mcmc, kernel, model, traces, args_at(k), n_mcmc)
        return (traces, inc, log_z, failed), acc

    init = (traces, log_w, log_z0, ~jnp.isfinite(log_z0))
    keys = jax.random.split(k_stages, n_targets - 1)
    (traces, log_w, log_z, failed), acc = jax.lax.scan(stage, init, (keys, jnp.arange(1, n_targets)))
    ancestors = resampling.get(scheme)(jax.random.fold_in(key, 1), log_w, n)
    traces = jax.tree.map(lambda x: x[ancestors], traces)
    return TemperingResult(traces, jnp.where(failed, -jnp.inf, log_z), jnp.arange(1, n_targets), n_targets - 1, acc,
                           failed)


def anneal(
    key: jax.Array,
    model: ppl.GenFn,
    args_sequence: tuple,
    observations: dict,
    n_particles: int,
    n_mcmc: int = 5,
    resampling_scheme: resampling.SchemeName = "systematic",
    selection: ppl.Selection | None = None,
) -> TemperingResult:
    """SMC through the targets `model(*args_k)`, k = 0..K (arrays in `args_sequence` stacked on axis 0).

    Resamples before every stage; the final particles are resampled to equal weight.
    """
    leaves = jax.tree.leaves(args_sequence)
    if not leaves or len({leaf.shape[0] for leaf in leaves}) != 1:
        raise ValueError("args_sequence must hold arrays with one shared leading axis: the stage index")
    resampling.get(resampling_scheme)
    n_particles, n_mcmc = inputs.count("n_particles", n_particles), inputs.count("n_mcmc", n_mcmc, 0)
    observations = inputs.observations(observations)
    return _anneal(key, model, inputs.model_args(args_sequence), observations, n_particles, n_mcmc, resampling_scheme,
                   _prior_mh(observations, selection))
