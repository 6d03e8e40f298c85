"""Particle Gibbs for state-space models, and maximum likelihood by conditional SMC.

A model with static parameters θ before its `ppl.scan` and a latent trajectory
x_{0:T-1} in it has the posterior p(θ, x | y). Particle Gibbs (Andrieu, Doucet &
Holenstein 2010) alternates

    x ~ CSMC(· | x, θ)        conditional SMC with the current trajectory as reference
    θ ~ K(· | θ, x)           any MCMC kernel on the parameters (NUTS, HMC, MH, ...)

Both leave p(θ, x | y) invariant, so the cycle does. With few particles, plain
CSMC rarely changes the early part of the trajectory (every particle's lineage
collapses onto the reference); ancestor sampling (Lindsten, Jordan & Schön 2014)
or backward sampling (Whiteley 2010) fixes this, and `update_rate` measures it.

    res = pgibbs.run(key, model, args, obs, n_particles=20, num_samples=1000,
                     parameter_kernel=kernels.nuts(ppl.sel("sigma"), 0.2))
    res.samples["sigma"], res.samples["steps"]["x"]     # (chain, draw, ...)
    pgibbs.update_rate(res.samples["steps"])             # (T,)

`learn` maximises log p(y | θ) for parameters passed as the model's first
argument, by Markov score climbing (Gu & Kong 1998; Naesseth, Lindsten & Blei
2020): each iteration runs CSMC at the current θ, estimates the score by Fisher's
identity ∇ log p(y | θ) = E[∇ log p(x, y | θ) | y], with the expectation taken
over the CSMC's weighted lineages, and takes an optax step; `method="ppg"` takes
the expectation by conditional PaRIS instead.

`ppg` (PaRIS particle Gibbs, from `inference.ppg`) estimates smoothed additive
functionals by a chain of conditional PaRIS sweeps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import ppl
from ppl.display import tabulated, tree_rows

from . import inputs, resampling, smc
from .mcmc import kernels
from .mcmc import run as mcmc_run
from .mcmc.kernels import Kernel
from .mcmc.result import MCMCResult
from .ppg import PPGResult, ppg, score_sweep
from .progress import progress, progress_callback, shown

__all__ = ["LearnResult", "PPGResult", "learn", "ppg", "run", "update_rate"]


def run(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    num_samples: int,
    parameter_kernel: Kernel | None = None,
    num_chains: int = 4,
    num_warmup: int = 0,
    ancestor_sampling: bool | str = True,
    backward_sampling: bool = False,
    proposal: ppl.GenFn | None = None,
    init: Any = "prior",
    progress_bar: bool = True,
    check_convergence: bool = True,
    mesh: jax.sharding.Mesh | int | None = None,
) -> MCMCResult:
    """Particle Gibbs: `num_chains` chains (vectorised) of CSMC sweeps cycled with `parameter_kernel`.

    Args:
        key: a PRNG key.
        model: a `@ppl.gen` model with one top-level `ppl.scan` (the trajectory).
        args: its arguments.
        observations: a choice map of observed values.
        n_particles: particles per CSMC sweep (the reference included).
        num_samples: draws kept per chain.
        parameter_kernel: an `inference.mcmc.kernels` kernel on the static parameters
            (the choices before the scan), or None when there are none to move. For exact
            Gibbs give the full conditional as a generative function to
            `kernels.mh_proposal`: an exact conditional is always accepted.
        num_warmup: draws discarded first.
        ancestor_sampling: redraw the reference's ancestor at each step: True (an exact draw from N
            densities), "metropolis" (one Metropolis-Hastings step, two densities) or False (see `smc.csmc`).
        backward_sampling: draw the new trajectory by backward simulation instead of a lineage.
        proposal: the CSMC proposal of a step's latent choices; None for the step's prior.
        init: the initial trace: "prior" or a choice map (see `mcmc.run`).
        progress_bar: a tqdm bar advanced from inside the compiled program.
        check_convergence: warn (`mcmc.ConvergenceWarning`) when R-hat, bulk ESS or divergences fail
            Stan's thresholds, or a chain never moved (see `mcmc.convergence`).
        mesh: the chains split across devices (see `mcmc.run`); each chain's sweep stays on its device.

    Returns:
        An `MCMCResult` with every latent address, trajectory included, shaped (chain, draw, ...).
    """
    sweep = smc.csmc_kernel(observations, n_particles, ancestor_sampling, backward_sampling, proposal)
    kernel = sweep if parameter_kernel is None else kernels.cycle(sweep, parameter_kernel)
    return mcmc_run(key, kernel, model, args, observations, num_samples, num_chains, num_warmup, init=init,
                    progress_bar=progress_bar, check_convergence=check_convergence, mesh=mesh)


def update_rate(trajectory: Any) -> jax.Array:
    """The fraction of successive draws in which each time step of the trajectory changed: shape (T,).

    `trajectory` is the scan block of `MCMCResult.samples` (leaves (chain, draw, T, ...));
    a step counts as changed when any of its choices did. Near 1 means the sweep
    renews that step at every iteration; near 0, the chain is stuck there.
    """
    changed = [
        jnp.any((x[:, 1:] != x[:, :-1]).reshape(x.shape[0], x.shape[1] - 1, x.shape[2], -1), axis=-1)
        for x in jax.tree.leaves(trajectory)
    ]
    return jnp.mean(jnp.any(jnp.stack(changed), axis=0), axis=(0, 1))


@tabulated
class LearnResult(NamedTuple):
    """The outcome of `learn`."""

    params: Any
    """The estimate: the average of the iterates over the last `average` fraction (Polyak–Ruppert)."""
    trace: Any
    """The parameters after every iteration, leaves (num_steps, ...)."""
    log_marginal: jax.Array
    """Each iteration's conditional-SMC log Ẑ (a noisy, upward-biased log-likelihood monitor)."""

    def _tables(self) -> list:
        title = f"LearnResult: {self.log_marginal.shape[0]} iterations, last log Ẑ {float(self.log_marginal[-1]):.5g}"
        return [(title, ["parameter", "estimate"], tree_rows(self.params))]


class _LearnSettings(NamedTuple):
    n_particles: int
    num_steps: int
    ancestor_sampling: bool | str
    method: str
    n_backward: int


def _msc_score(key, model, params, args, observations, reference, settings: _LearnSettings):
    """Markov score climbing's step: CSMC's weighted lineages average ∇_θ log p(x, y | θ); the next reference is
    a lineage drawn by weight."""
    k_csmc, k_pick = jax.random.split(key)
    res = smc.csmc(k_csmc, model, (params, *args), observations, reference, settings.n_particles,
                   ancestor_sampling=settings.ancestor_sampling)
    w = resampling.weights(res.log_weights)
    scores = jax.vmap(jax.grad(lambda p, c: model.assess(c, p, *args)[0]), in_axes=(None, 0))(
        params, res.traces.choices)
    score = jax.tree.map(lambda s: jnp.tensordot(w, s, axes=1), scores)
    reference = ppl.choicemap.index(res.traces.choices, jax.random.categorical(k_pick, res.log_weights))
    return score, reference, res.log_marginal


def _ppg_score(key, model, params, args, observations, reference, settings: _LearnSettings):
    """PaRIS particle Gibbs' step (`ppg.score_sweep`)."""
    return score_sweep(key, model, params, args, observations, reference, settings.n_particles, settings.n_backward)


@eqx.filter_jit
def _learn_program(key, model, params, args, observations, trace, optimizer, settings: _LearnSettings, show):
    tick = progress_callback(settings.num_steps, show)
    score_of = _ppg_score if settings.method == "ppg" else _msc_score

    def body(state, inputs):
        params, opt_state, reference = state
        i, key = inputs
        score, reference, log_marginal = score_of(key, model, params, args, observations, reference, settings)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, score), opt_state, params)
        params = optax.apply_updates(params, updates)
        tick(i)
        return (params, opt_state, reference), (params, log_marginal)

    n = settings.num_steps
    state = (params, optimizer.init(params), trace.choices)
    _, (trace, log_marginal) = jax.lax.scan(body, state, (jnp.arange(n), jax.random.split(key, n)))
    return trace, log_marginal


def learn(
    key: jax.Array,
    model: ppl.GenFn,
    params: Any,
    args: tuple,
    observations: dict,
    n_particles: int,
    num_steps: int,
    optimizer: optax.GradientTransformation | None = None,
    ancestor_sampling: bool | str = True,
    average: float = 0.5,
    progress_bar: bool = True,
    method: str = "msc",
    n_backward: int = 2,
) -> LearnResult:
    """Maximum-likelihood parameters of a state-space model by Markov score climbing with CSMC.

    The model is called as `model(params, *args)`: `params` is a pytree of
    floating arrays on an unconstrained scale (use log σ, not σ). Each of
    `num_steps` iterations runs one CSMC sweep with the current trajectory as
    reference, averages ∇_θ log p(x, y | θ) (from the model's `assess`) over the
    sweep's weighted particle lineages, and applies one `optimizer` step
    (default `optax.adam(1e-2)`). The iterates form a stochastic-approximation
    chain whose fixed point is a zero of the score; the returned estimate averages
    the last `average` fraction of them.

    `method="ppg"` estimates the score by PaRIS particle Gibbs instead (Cardoso et al.
    2023): each iteration runs conditional PaRIS with `n_backward` backward draws per
    particle on the additive functional Σ_t ∇_θ log p_θ(x_t, y_t | x_{t-1}) (`ppg.step_score`),
    whose estimate has the variance of a smoother rather than of one lineage set, at
    O(N²) step densities a step (exact backward draws). It needs a state-space model
    whose carry is its step's latent choices.
    """
    num_steps = inputs.count("num_steps", num_steps, 2)
    n_particles = inputs.count("n_particles", n_particles)
    n_backward = inputs.count("n_backward", n_backward)
    if method not in ("msc", "ppg"):
        raise ValueError(f'method is "msc" (Markov score climbing) or "ppg" (PaRIS particle Gibbs), got {method!r}')
    if not 0.0 < average <= 1.0:
        raise ValueError(f"average is the fraction of iterates to average, in (0, 1]; got {average!r}")
    leaves = jax.tree.leaves(params)
    if not leaves or not all(jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in leaves):
        raise ValueError("params must be a pytree of floating-point arrays (the model's first argument)")
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    params = jax.tree.map(jnp.asarray, params)
    args, observations = inputs.model_args(args), inputs.observations(observations)
    k_init, k_run = jax.random.split(key)
    trace, _ = model.generate(k_init, observations, params, *args)
    settings = _LearnSettings(n_particles, num_steps, ancestor_sampling, method, n_backward)
    show = shown(progress_bar, key, params, args, observations)
    with progress(bool(show), num_steps, "learn"):
        trace, log_marginal = _learn_program(k_run, model, params, args, observations, trace, optimizer, settings,
                                             show)
        jax.block_until_ready(trace)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim))) for x in jax.tree.leaves(trace)]),
                     axis=0)
    if not bool(jnp.all(finite)):
        first = int(jnp.argmin(finite))
        raise FloatingPointError(
            f"the parameters became non-finite at iteration {first}: lower the optimizer's learning rate, or "
            "check that the model's log density is finite and differentiable at the initial parameters"
        )
    start = num_steps - max(1, int(average * num_steps))
    return LearnResult(jax.tree.map(lambda x: jnp.mean(x[start:], axis=0), trace), trace, log_marginal)
