"""The SMC samplers `temper` (adaptive tempering) and `anneal` (a sequence of targets), on the moves of `moves`."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from .. import inputs, resampling, sharding
from ..draws import Posterior, with_posterior
from ..mcmc.kernels import Kernel
from ..progress import advance, progress, progress_callback, shown
from ..sharded_resampling import resample
from .moves import AdaptiveHMC, KernelMoves, MoveReport
from .result import POOR_ACCEPTANCE, TemperingResult, warn_on_poor_moves

__all__ = ["anneal", "temper"]


class _Settings(NamedTuple):
    n_particles: int
    resampled: int
    """Particles resampled a stage: N, or M = N / P for waste-free SMC."""
    scheme: str
    target_ess: float = 0.5
    max_stages: int = 0
    """Advance the current `inference.progress` bar from inside the program (β for `temper`, stages for `anneal`)."""
    mesh: jax.sharding.Mesh | None = None
    """The devices the particles are split across (`inference.sharding`)."""


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


def _resample_and_move(key, settings: _Settings, move, gen_fn, traces, log_w, args, step_size):
    """Resample by `log_w` (N, or M for waste-free) and move under `gen_fn`: (traces, report, next step size)."""
    k_res, k_move = jax.random.split(key)
    resampled = resample(k_res, log_w, traces, settings.scheme, settings.mesh, settings.resampled).tree
    traces, report, step_size = move(k_move, gen_fn, resampled, args, step_size,
                                     settings.resampled < settings.n_particles)
    return sharding.shard(settings.mesh, traces, settings.n_particles), report, step_size


def _initial(key, model, observations, args, settings: _Settings):
    """The particles from the prior (the first target), each from its own stream of `key`: (traces, log weights)."""
    n = settings.n_particles
    ids = sharding.shard(settings.mesh, jnp.arange(n), n)
    return sharding.shard(settings.mesh, jax.vmap(lambda i: model.generate(ppl.Streams(key, i), observations,
                                                                            *args))(ids), n)


def _stuck(report: MoveReport, move) -> jax.Array:
    """A stage whose moves accepted under 10%, or whose particles jumped less than the move asked for."""
    min_jump = move.min_jump if isinstance(move, AdaptiveHMC) and move.n_moves is None else 0.0
    return (report.acceptance < POOR_ACCEPTANCE) | (report.jump < min_jump)


def _idle_value(x: jax.Array) -> jax.Array:
    """A stage record's entry for a stage that did not run: NaN for a float, 0 or False otherwise."""
    return jnp.full((), jnp.nan, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else jnp.zeros((), x.dtype)


def _result(traces, log_z, failed, schedule, n_stages, report: MoveReport, stuck) -> TemperingResult:
    return TemperingResult(traces, jnp.where(failed, -jnp.inf, log_z), schedule, n_stages, report.acceptance, failed,
                           report.n_moves, report.jump, report.step_size, stuck)


@eqx.filter_jit
def _temper(key, model, args, observations, settings: _Settings, move, show):
    obs_selection = ppl.sel.of(observations)
    n = settings.n_particles

    def log_lik_of(tr):
        return model.project(tr, obs_selection)

    k_init, k_stages = jax.random.split(key)
    traces, log_lik = _initial(k_init, model, observations, args, settings)

    def more(state):
        i, _, _, beta, _, failed, _, _, _ = state
        return (i < settings.max_stages) & (beta < 1.0) & ~failed

    def stage(state):
        i, traces, log_lik, beta, log_z, _, step_size, record, key = state
        key, k_stage = jax.random.split(key)
        new_beta = _next_beta(beta, log_lik, settings.target_ess)
        inc = (new_beta - beta) * log_lik
        step_z = logsumexp(inc) - jnp.log(n)
        traces, report, step_size = _resample_and_move(k_stage, settings, move,
                                                       ppl.Tempered(model, new_beta, obs_selection), traces, inc, args,
                                                       step_size)
        record = jax.tree.map(lambda r, x: r.at[i].set(x), record, (new_beta, report, _stuck(report, move)))
        # one update a stage (max_stages at most): the bar shows β and the stage
        jax.lax.cond(show, lambda: advance(new_beta, stage=i + 1), lambda: None)
        return (i + 1, traces, jax.vmap(log_lik_of)(traces), new_beta, log_z + step_z, ~jnp.isfinite(step_z),
                step_size, record, key)

    empty = (jnp.zeros(()), MoveReport(jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(())),
             jnp.zeros((), bool))
    record = jax.tree.map(lambda x: jnp.broadcast_to(_idle_value(x), (settings.max_stages,)), empty)
    init = (jnp.zeros((), jnp.int32), traces, log_lik, jnp.zeros(()), jnp.zeros(()), jnp.zeros((), bool),
            move.initial_step_size(model, traces, args), record, k_stages)
    n_stages, traces, _, beta, log_z, failed, _, (betas, report, stuck), _ = jax.lax.while_loop(more, stage, init)
    schedule = jnp.where(jnp.arange(settings.max_stages) < n_stages, betas, beta)  # padded with the last value
    return _result(traces, log_z, failed | (beta < 1.0), schedule, n_stages, report, stuck)


def _move(observations, selection, kernel, n_mcmc, max_moves, chain_length):
    """The stage's move from the drivers' arguments: the adaptive HMC default or the user's kernel."""
    n_moves = None if n_mcmc is None else inputs.count("n_mcmc", n_mcmc, 0)
    if chain_length is not None:
        n_moves = inputs.count("waste_free", chain_length, 2) - 1
    if kernel is None:
        selection = ~ppl.sel.of(observations) if selection is None else selection
        return AdaptiveHMC(selection, n_moves=n_moves, max_moves=inputs.count("max_moves", max_moves))
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel is an inference.mcmc.kernels kernel (mh, mala, hmc, nuts, cycle, ...) or None for "
                        f"adaptive HMC, got {type(kernel).__name__}")
    if selection is not None:
        raise ValueError("selection chooses what the default HMC moves; a kernel of your own has its selection: "
                         "pass one or the other")
    return KernelMoves(kernel, 5 if n_moves is None else n_moves)


def _settings(n_particles, chain_length, scheme, mesh, **rest) -> _Settings:
    n = inputs.count("n_particles", n_particles)
    resampling.get(scheme)
    mesh = sharding.mesh_of(mesh)
    sharding.check_size(mesh, n, "n_particles")
    if chain_length is None:
        return _Settings(n, n, scheme, mesh=mesh, **rest)
    if n % chain_length:
        raise ValueError(f"waste-free SMC keeps M chains of waste_free = P states, N = M P: n_particles ({n}) must "
                         f"be a multiple of waste_free ({chain_length})")
    sharding.check_size(mesh, n // chain_length, "n_particles / waste_free")
    return _Settings(n, n // chain_length, scheme, mesh=mesh, **rest)


def temper(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    target_ess: float = 0.5,
    n_mcmc: int | None = None,
    max_stages: int = 100,
    resampling_scheme: resampling.SchemeName = "systematic",
    selection: ppl.Selection | None = None,
    kernel: Kernel | None = None,
    max_moves: int = 50,
    waste_free: int | None = None,
    progress_bar: bool = True,
    mesh: jax.sharding.Mesh | int | None = None,
) -> TemperingResult:
    """Adaptive tempering SMC from the prior to the posterior (see `inference.tempering`).

    Args:
        key: a PRNG key.
        model: a `@ppl.gen` model.
        args: its arguments.
        observations: a choice map; their density (and every `ppl.factor`) is the likelihood L that is tempered.
        n_particles: N.
        target_ess: each stage's temperature keeps the ESS of its incremental weights at this fraction of N.
        n_mcmc: moves a stage. None: the default move runs until every coordinate of the particles has
            decorrelated from the stage's start (`max_moves` at most); a `kernel` of your own runs 5.
        max_stages: stages at most; `failed` is set if β has not reached 1 by then.
        resampling_scheme: "systematic", "stratified", "multinomial" or "residual".
        selection: the choices the default HMC moves (default: every unobserved one; they must be continuous).
        kernel: any `inference.mcmc.kernels` kernel (MH, MALA, HMC, NUTS, a cycle), stepped on the stage's
            target p(x) L(x)^β (`ppl.Tempered`); None for HMC tuned per stage from the particles.
        max_moves: the default move's most moves a stage.
        waste_free: P, for waste-free SMC: N / P particles resampled a stage, each moved P - 1 times, every state kept.
        progress_bar: a tqdm bar of the temperature β from 0 to 1 (and the stage), advanced from inside the
            compiled program at every stage; none under a caller's `jit` or `vmap`.
        mesh: the devices to split the particles across (`inference.sharding`: a one-axis `jax.sharding.Mesh` or a
            device count; N, and N / P for waste-free SMC, multiples of it). Each device moves its own particles;
            resampling draws across all of them by collectives (`inference.sharded_resampling`), and the stage's
            statistics (the ESS that sets β, the particles' variance and acceptance that tune the default HMC) are
            sums across devices. These sums differ from one device's in float32 rounding, and so, through β and
            the step size, do the particles: the run matches one device's to rounding, not bit for bit.

    Returns:
        A `TemperingResult`; a `TemperingWarning` names the stages whose moves accepted under 10% or left the
        particles near their start.
    """
    if not 0.0 < target_ess < 1.0:
        raise ValueError(f"target_ess is a fraction of N in (0, 1), got {target_ess!r}")
    observations = inputs.observations(observations)
    move = _move(observations, selection, kernel, n_mcmc, max_moves, waste_free)
    args = inputs.model_args(args)
    show = shown(progress_bar, key, args, observations)
    settings = _settings(n_particles, waste_free, resampling_scheme, mesh, target_ess=float(target_ess),
                         max_stages=inputs.count("max_stages", max_stages))
    with progress(bool(show), 1.0, "temper β"):
        result = _temper(key, model, args, observations, settings, move, show)
    warn_on_poor_moves(result)
    return with_posterior(result, Posterior(model, args, observations))


@eqx.filter_jit
def _anneal(key, model, args_sequence, observations, settings: _Settings, move, show):
    n = settings.n_particles
    n_targets = jax.tree.leaves(args_sequence)[0].shape[0]

    def args_at(k):
        return jax.tree.map(lambda x: x[k], args_sequence)

    k_init, k_stages, k_last = jax.random.split(key, 3)
    traces, log_w = _initial(k_init, model, observations, args_at(0), settings)
    log_z0 = logsumexp(log_w) - jnp.log(n)

    def stage(state, inputs):
        traces, log_w, log_z, failed, step_size = state
        key, k = inputs
        k_move, k_update = jax.random.split(key)
        # resample and move under target k - 1, then weigh by target k over target k - 1
        traces, report, step_size = _resample_and_move(k_move, settings, move, model, traces, log_w, args_at(k - 1),
                                                       step_size)
        traces, inc, _ = jax.vmap(lambda kk, tr: model.update(kk, tr, None, *args_at(k)))(
            jax.random.split(k_update, n), traces)
        step_z = logsumexp(inc) - jnp.log(n)
        failed = failed | ~jnp.isfinite(step_z)
        tick(k - 1)
        return (traces, inc, log_z + step_z, failed, step_size), (report, _stuck(report, move))

    init = (traces, log_w, log_z0, ~jnp.isfinite(log_z0), move.initial_step_size(model, traces, args_at(0)))
    keys = jax.random.split(k_stages, n_targets - 1)
    tick = progress_callback(n_targets - 1, show)
    (traces, log_w, log_z, failed, _), (report, stuck) = jax.lax.scan(stage, init, (keys, jnp.arange(1, n_targets)))
    traces = resample(k_last, log_w, traces, settings.scheme, settings.mesh).tree
    return _result(traces, log_z, failed, jnp.arange(1, n_targets), n_targets - 1, report, stuck)


def anneal(
    key: jax.Array,
    model: ppl.GenFn,
    args_sequence: tuple,
    observations: dict,
    n_particles: int,
    n_mcmc: int | None = None,
    resampling_scheme: resampling.SchemeName = "systematic",
    selection: ppl.Selection | None = None,
    kernel: Kernel | None = None,
    max_moves: int = 50,
    waste_free: int | None = None,
    progress_bar: bool = True,
    mesh: jax.sharding.Mesh | int | None = None,
) -> TemperingResult:
    """SMC through the targets `model(*args_k)`, k = 0..K (arrays in `args_sequence` stacked on axis 0).

    Each stage resamples, moves the particles under target k - 1 (the moves, `kernel`, `n_mcmc`, `max_moves`,
    `selection` and `waste_free` as in `temper`), and weighs them by target k over target k - 1 (the `update`
    weight); the final particles are resampled to equal weight. `progress_bar` shows a tqdm bar of the K stages,
    advanced from inside the compiled program (none under a caller's `jit` or `vmap`). `mesh` splits the particles
    across devices, as in `temper`.
    """
    leaves = jax.tree.leaves(args_sequence)
    if not leaves or len({leaf.shape[0] for leaf in leaves}) != 1:
        raise ValueError("args_sequence must hold arrays with one shared leading axis: the stage index")
    observations = inputs.observations(observations)
    move = _move(observations, selection, kernel, n_mcmc, max_moves, waste_free)
    args_sequence = inputs.model_args(args_sequence)
    show = shown(progress_bar, key, args_sequence, observations)
    settings = _settings(n_particles, waste_free, resampling_scheme, mesh)
    with progress(bool(show), leaves[0].shape[0] - 1, "anneal", unit="stage"):
        result = _anneal(key, model, args_sequence, observations, settings, move, show)
    warn_on_poor_moves(result)
    final = jax.tree.map(lambda x: x[-1], args_sequence)  # the last target's arguments
    return with_posterior(result, Posterior(model, final, observations))
