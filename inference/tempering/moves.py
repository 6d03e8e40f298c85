"""How a tempering stage moves its particles after resampling.

A move is one step of an `inference.mcmc` kernel applied to every particle under the stage's target. A stage
either keeps only the last state of each chain (the usual SMC sampler) or every state (waste-free SMC, Dau &
Chopin 2022: M = N / P particles resampled, each moved P - 1 times, all N states kept).

The default move is HMC on the unconstrained space of the moved choices, tuned from the particles themselves
(Buchholz, Chopin & Jacob 2021): the diagonal inverse mass matrix is the particles' variance at the stage's
start, the step size follows a target acceptance rate from move to move, within and across stages
(log ε += ā - a*, ā the particles' mean acceptance probability at the last move; each particle's step is drawn
in [ε/2, 3ε/2], so that 10 leapfrog steps are not a fixed multiple of some direction's period), and a stage moves
until the particles' mean squared jump from their start, in units of their variance, reaches `min_jump` in
every coordinate: for draws from a stationary chain E[(u_m - u_0)²] = 2 var (1 - ρ_m), so `min_jump` = 1.8 stops
once every coordinate's autocorrelation with the stage's start is below 0.1, and the copies that resampling made
of one particle are nearly independent again. Weaker criteria cost log Ẑ its precision (docs/smc.md).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl

from ..mcmc import kernels
from ..mcmc.kernels import Kernel
from ..mcmc.target import target

__all__ = ["AdaptiveHMC", "KernelMoves", "MoveReport", "positions"]


class MoveReport(NamedTuple):
    """What a stage's moves did."""

    acceptance: jax.Array
    """The mean acceptance probability over particles and moves."""
    n_moves: jax.Array
    """Moves each particle made."""
    jump: jax.Array
    """The particles' mean squared jump from the stage's start, in units of their variance, in the coordinate that
    moved least (2 for independent draws; NaN for a user's kernel, whose choices may not be continuous)."""
    step_size: jax.Array
    """The HMC step size at the stage's end, adapted move by move (NaN for a user's kernel)."""


def positions(gen_fn: ppl.GenFn, traces: ppl.Trace, selection: ppl.Selection, args: tuple) -> jax.Array:
    """Each particle's selected choices on the unconstrained space, flattened: shape (N, d)."""
    return jax.vmap(lambda trace: target(gen_fn, trace, selection, args).position)(traces)


def _kernel_step(kernel: Kernel, key, gen_fn, traces, args) -> tuple[ppl.Trace, jax.Array]:
    """One step of `kernel` on every particle: (the traces, the mean acceptance probability)."""
    n = jax.tree.leaves(traces)[0].shape[0]
    moved, info = jax.vmap(lambda k, trace: kernel.step(k, kernel.init(trace), gen_fn, args))(
        jax.random.split(key, n), traces)
    return moved, jnp.mean(info.accept_prob)


def _fixed_moves(step, key, state, n_moves: int, keep_all: bool):
    """`n_moves` of `step(key, (traces, step size)) -> ((traces, step size), acceptance)`: (the final state, or with
    `keep_all` the M chains' states after 0..n_moves steps, all kept (waste-free: N = M (n_moves + 1)); the mean
    acceptance probability)."""

    def one(state, k):
        state, acceptance = step(k, state)
        return state, (state[0] if keep_all else None, acceptance)

    final, (states, acceptance) = jax.lax.scan(one, state, jax.random.split(key, n_moves))
    if keep_all:
        every = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]).reshape(-1, *first.shape[1:]),
                             state[0], states)
        final = (every, final[1])
    return final, jnp.mean(acceptance)


class KernelMoves(eqx.Module):
    """A user's kernel, `n_moves` steps a stage (or a waste-free stage's chains of `n_moves` + 1 states)."""

    kernel: Kernel
    n_moves: int = eqx.field(static=True)

    def initial_step_size(self, gen_fn, traces, args) -> jax.Array:
        return jnp.full((), jnp.nan)

    def __call__(self, key, gen_fn, traces, args, step_size, keep_all: bool):
        def step(k, state):
            moved, acceptance = _kernel_step(self.kernel, k, gen_fn, state[0], args)
            return (moved, state[1]), acceptance

        (traces, _), acceptance = _fixed_moves(step, key, (traces, step_size), self.n_moves, keep_all)
        report = MoveReport(acceptance, jnp.asarray(self.n_moves), jnp.full((), jnp.nan), step_size)
        return traces, report, step_size


class AdaptiveHMC(eqx.Module):
    """The default move: HMC tuned per stage from the particles (see the module docstring)."""

    selection: ppl.Selection = eqx.field(static=True)
    n_leapfrog: int = eqx.field(static=True, default=10)
    target_acceptance: float = eqx.field(static=True, default=0.65)
    min_jump: float = eqx.field(static=True, default=1.8)
    max_moves: int = eqx.field(static=True, default=50)
    n_moves: int | None = eqx.field(static=True, default=None)
    """A fixed number of moves a stage instead of the jump criterion (a waste-free stage's chain length - 1)."""

    def initial_step_size(self, gen_fn, traces, args) -> jax.Array:
        """ε_0 = d^(-1/4): the step at which HMC's energy error stays O(1) in d standardised dimensions."""
        d = positions(gen_fn, jax.tree.map(lambda x: x[:1], traces), self.selection, args).shape[1]
        return jnp.asarray(d, jnp.float32) ** -0.25

    def __call__(self, key, gen_fn, traces, args, step_size, keep_all: bool):
        start = positions(gen_fn, traces, self.selection, args)
        variance = jnp.var(start, axis=0) + 1e-12  # the inverse mass matrix: the stage's spread per coordinate

        def step(k, state):
            """One move of every particle, and the step size for the next (log ε += a - a*)."""
            traces, eps = state
            k_jitter, k_move = jax.random.split(k)
            n = jax.tree.leaves(traces)[0].shape[0]
            # each particle's step drawn in [ε/2, 3ε/2]: a trajectory length that is not a fixed multiple of a
            # direction's period (where HMC returns near its start whatever the acceptance)
            jittered = eps * jax.random.uniform(k_jitter, (n,), minval=0.5, maxval=1.5)

            def one(key, trace, eps_i):
                kernel = kernels.hmc(self.selection, eps_i, self.n_leapfrog, variance)
                return kernel.step(key, kernel.init(trace), gen_fn, args)

            traces, info = jax.vmap(one)(jax.random.split(k_move, n), traces, jittered)
            acceptance = jnp.mean(info.accept_prob)
            return (traces, eps * jnp.exp(acceptance - self.target_acceptance)), acceptance

        def jump(traces):  # the worst-mixed coordinate decides
            return jnp.min(jnp.mean((positions(gen_fn, traces, self.selection, args) - start) ** 2, axis=0)
                           / variance)

        if self.n_moves is not None:
            (traces, new_step), acceptance = _fixed_moves(step, key, (traces, step_size), self.n_moves, keep_all)
            n_moves, moved = jnp.asarray(self.n_moves), jnp.full((), jnp.nan) if keep_all else jump(traces)
        else:
            def more(state):
                i, _, _, _, moved = state
                return (i < 1) | ((moved < self.min_jump) & (i < self.max_moves))

            def one(state):
                i, moving, total, key, _ = state
                key, k = jax.random.split(key)
                moving, acceptance = step(k, moving)
                return i + 1, moving, total + acceptance, key, jump(moving[0])

            n_moves, (traces, new_step), total, _, moved = jax.lax.while_loop(
                more, one, (jnp.zeros((), jnp.int32), (traces, step_size), jnp.zeros(()), key, jnp.zeros(())))
            acceptance = total / n_moves
        return traces, MoveReport(acceptance, n_moves, moved, new_step), new_step
