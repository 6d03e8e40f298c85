"""PaRIS, the particle-based rapid incremental smoother (Olsson & Westerborn 2017), on a filter's steps.

It estimates the smoothed expectation of an additive functional E[Σ_t h_t(carry_{t-1}, carry_t) | y]
online: each particle i carries a statistic τ_t^i ≈ E[Σ_{s≤t} h_s | its state at t], updated by
K draws J^{i,1..K} from the backward kernel Λ_t(i, j) ∝ w_{t-1}^j p(x_t^i, y_t | carry_{t-1}^j),

    τ_t^i = K⁻¹ Σ_k [τ_{t-1}^{J^{i,k}} + h_t(carry_{t-1}^{J^{i,k}}, carry_t^i)],

and the estimate is Σ_i w_T^i τ_T^i / Σ_i w_T^i. The transition density is the step's own
(`assess` through the generative function interface), its N × N values computed at every step
for exact draws (O(N²) a step; the accept-reject draws of the paper need a bound on the
density, which a generic step does not give). The first backward draw of each particle, kept
per step, traces a trajectory back from a final particle: a draw from the backward-simulation
smoother, which is how PaRIS particle Gibbs (`pgibbs.ppg`) renews its reference.

The filter's step is `smc.step` (PaRIS) or `smc.conditional_step` (conditional PaRIS, the sweep
of PaRIS particle Gibbs, Cardoso, Janati, Le Corff, Moulines & Olsson 2023). The backward kernel
is the smoothing one only when the step's carry forgets the past, which is checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl

from .. import inputs, resampling
from .._jit import jit
from .config import SMCConfig
from .extend import gather
from .conditional import conditional_init, conditional_step
from .filtering import start, step
from .future import carry_forgets_past
from .loop import over_steps
from .state import SMCState, Target

__all__ = ["Additive", "PaRISResult", "PaRISState", "check_functional", "conditional_paris", "functional_increment",
           "paris", "paris_init", "paris_step", "sweep", "trace_back"]

Additive = Callable[[Any, Any, Any, Any], Any]
"""h_t as PaRIS calls it: `increment(prev_carry, choices_t, carry_t, t)` returns a pytree."""


class PaRISState(eqx.Module):
    """A filter's state and each particle's statistic τ_t^i (leaves (N, ...))."""

    filter: SMCState
    statistics: Any


class PaRISResult(NamedTuple):
    """The outcome of `paris`."""

    estimate: Any
    """Σ_i w_T^i τ_T^i / Σ_i w_T^i, the smoothed expectation of the additive functional (NaN where `failed`)."""
    statistics: Any
    """τ_T^i, each final particle's statistic, leaves (N, ...)."""
    log_weights: jax.Array
    """The final particles' unnormalised log weights."""
    log_marginal: jax.Array
    """The filter's log Ẑ."""
    failed: jax.Array
    """True when some step gave every particle zero weight."""


def _check_markov(target: Target, particles, choices_t) -> None:
    """Refuse what the backward kernel cannot smooth: a carry that holds the past, or per-particle parameters."""
    n_carry = len(jax.tree.leaves(particles.carry))
    if any(i >= n_carry for i in particles.scan_args):
        raise ValueError("PaRIS needs the scan's arguments other than its initial carry to be the same for every "
                         "particle: pass the model's parameters as arguments or observe them")
    if not carry_forgets_past(target.space, target.scan_args.of(gather(particles, 0)), choices_t,
                              gather(particles.carry, 0)):
        raise ValueError("PaRIS needs a step whose carry is decided by its own choices (a state-space model); this "
                         "model's carry holds the past, so the backward kernel is not the smoothing one")


def paris_init(filter_state: SMCState, increment: Additive) -> PaRISState:
    """A filter's state before its first step, each particle's statistic zero (shaped as `increment`'s value)."""
    target = filter_state.target
    particles = filter_state.particles
    one = gather(particles, 0)
    choices_0 = jax.eval_shape(lambda: target.space.step.simulate(jax.random.key(0), *target.step_args(one, 0))
                               ).choices
    shape = jax.eval_shape(lambda c: increment(one.carry, c, one.carry, 0),
                           jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), choices_0))
    n = target.config.n_particles
    return PaRISState(filter_state, jax.tree.map(lambda s: jnp.zeros((n, *s.shape), s.dtype), shape))


def backward_draws(key: jax.Array, target: Target, previous: SMCState, choices: Any, n_backward: int,
                   t) -> jax.Array:
    """K draws from Λ_t(i, ·) ∝ w_{t-1}^j p(x_t^i, y_t | carry_{t-1}^j) for each new particle i: shape (N, K)."""

    def logits(choice_i):
        def from_j(particle):
            return target.space.step.assess(choice_i, *target.step_args(particle, t))[0]

        return previous.log_weights + jax.vmap(from_j)(previous.particles)

    n = target.config.n_particles
    rows = jax.vmap(logits)(choices)
    draw = lambda i, row: resampling.categorical(ppl.streams.as_key(ppl.Streams(key, i)), row, n_backward)  # noqa: E731
    return jax.vmap(draw)(jnp.arange(n), rows)


def paris_step(filter_step: Callable, increment: Additive, n_backward: int) -> Callable:
    """The PaRIS step over `filter_step` (`smc.step` or `smc.conditional_step`):
    `(key, state, t) -> (state, (the step's choices, each particle's first backward draw))`."""

    def one_step(key: jax.Array, state: PaRISState, t) -> tuple[PaRISState, tuple]:
        k_filter, k_back = jax.random.split(key)
        previous = state.filter
        target = previous.target
        new, info = filter_step(k_filter, previous, t)
        _check_markov(target, previous.particles, gather(info.choices, 0))
        draws = backward_draws(k_back, target, previous, info.choices, n_backward, t)

        def statistic(j, choice_i, carry_i):
            prev_carry = gather(previous.particles.carry, j)
            return jax.tree.map(jnp.add, gather(state.statistics, j), increment(prev_carry, choice_i, carry_i, t))

        per_draw = jax.vmap(lambda js, c, x: jax.vmap(lambda j: statistic(j, c, x))(js))(
            draws, info.choices, new.particles.carry)
        statistics = jax.tree.map(lambda s: jnp.mean(s, axis=1), per_draw)
        return PaRISState(new, statistics), (info.choices, draws[:, 0])

    return one_step


def _without_target(state: PaRISState) -> PaRISState:
    return PaRISState(dataclasses.replace(state.filter, target=None), state.statistics)


def _with_target(state: PaRISState, target: Target) -> PaRISState:
    return PaRISState(dataclasses.replace(state.filter, target=target), state.statistics)


def sweep(filter_step: Callable, key: jax.Array, filter_state: SMCState, increment: Additive,
          n_backward: int) -> tuple[PaRISState, tuple]:
    """PaRIS over every step of `filter_state`'s scan: (the final state, each step's choices and each particle's
    first backward draw, time first)."""
    one_step = paris_step(filter_step, increment, n_backward)
    return over_steps(one_step, key, paris_init(filter_state, increment), filter_state.target, _without_target,
                      _with_target)


def estimate(state: PaRISState) -> Any:
    """Σ_i w_T^i τ_T^i / Σ_i w_T^i (NaN once the filter failed, which its `failed` flag says)."""
    w = resampling.weights(state.filter.log_weights)
    value = jax.tree.map(lambda s: jnp.tensordot(w, s, axes=1), state.statistics)
    return jax.tree.map(lambda v: jnp.where(state.filter.failed, jnp.nan, v), value)


def trace_back(key: jax.Array, log_weights: jax.Array, choices: Any, first_draws: jax.Array) -> tuple[Any, jax.Array]:
    """A trajectory traced back through each step's first backward draw from a final particle drawn by weight:
    (its step choices, time first; the index of its particle before the first step)."""
    last = resampling.categorical(key, log_weights, 1)[0]

    def back(b, record):
        step_choices, draws = record
        return draws[b], gather(step_choices, b)

    first, steps = jax.lax.scan(back, last, (choices, first_draws), reverse=True)
    return steps, first


def functional_increment(functional: Callable[[Any, Any], Any]) -> Additive:
    """h_t(carry_{t-1}, carry_t) as an increment of PaRIS (one that ignores the step's choices and t)."""
    return lambda prev_carry, choices_t, carry_t, t: functional(prev_carry, carry_t)


def result(state: PaRISState) -> PaRISResult:
    """What a PaRIS sweep returns of its final state."""
    filt = state.filter
    return PaRISResult(estimate(state), state.statistics, filt.log_weights, filt.log_marginal, filt.failed)


def conditional_paris(key: jax.Array, model: ppl.GenFn, args: tuple, observations: dict, reference: dict,
                      increment: Additive, n_backward: int, config: SMCConfig) -> tuple[PaRISResult, dict]:
    """One sweep of PaRIS particle Gibbs: conditional PaRIS with `reference` (a full choice map of the model) kept
    among the particles, and the next reference, a trajectory traced back through the sweep's first backward
    draws from a final particle drawn by weight (a backward-simulation draw: the sweep leaves the smoothing
    distribution invariant, as conditional SMC with backward sampling does). A failed sweep keeps `reference`.

    `config` is the filter's, with `ess_threshold` 1 (conditional SMC resamples at every step)."""
    k_init, k_steps, k_pick = jax.random.split(key, 3)
    state, (choices, first_draws) = sweep(
        conditional_step, k_steps, conditional_init(k_init, model, args, observations, reference, config),
        increment, n_backward)
    steps, _ = trace_back(k_pick, state.filter.log_weights, choices, first_draws)
    space = state.filter.target.space
    old = ppl.choicemap.subconstraint(ppl.choicemap.normalize(reference), space.path)
    steps = jax.tree.map(lambda new, kept: jnp.where(state.filter.failed, kept, new), steps, old)
    prefix = gather(state.filter.particles.prefix, 0)  # every particle holds the reference's prefix
    return result(state), space.full_choices(prefix, steps)


@jit
def _paris_program(key, model, args, observations, functional, n_backward, config: SMCConfig) -> PaRISResult:
    k_init, k_steps = jax.random.split(key)
    state, _ = sweep(step, k_steps, start(k_init, model, args, observations, config), functional_increment(functional),
                     n_backward)
    return result(state)


def check_functional(functional: Any) -> None:
    """Refuse a functional that is not a function."""
    if not callable(functional):
        raise TypeError(f"functional is a function (prev_carry, carry) -> pytree, got {type(functional).__name__}")


def paris(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    functional: Callable[[Any, Any], Any],
    n_particles: int,
    n_backward: int = 2,
    proposal: ppl.GenFn | None = None,
    resampling_scheme: str = "systematic",
    ess_threshold: float = 0.5,
) -> PaRISResult:
    """The PaRIS smoother of an additive functional Σ_t h(carry_{t-1}, carry_t) over `model`'s `ppl.scan`.

    Args:
        key: a PRNG key.
        model: a `@ppl.gen` model with one top-level `ppl.scan` whose carry is decided by the step's choices
            (a state-space model: the carry is the latent state). Scan arguments other than the initial
            carry must be the same for every particle.
        args: its arguments.
        observations: a choice map; the scan's block holds arrays with time first.
        functional: `functional(prev_carry, carry)` returns a pytree, h at one step (carry_{-1} is the scan's
            initial carry). E.g. `lambda x0, x1: x1` gives E[Σ_t x_t | y].
        n_particles: N.
        n_backward: K, backward draws per particle and step (2 is the usual choice: 1 degenerates).
        proposal, resampling_scheme, ess_threshold: the filter's, as in `smc.run`.

    Returns:
        A `PaRISResult`: `.estimate` (the smoothed expectation, a pytree like `functional`'s value), the final
        particles' statistics and weights, log Ẑ and the failure flag. Costs O(N² + N K) step densities a step.
    """
    n_backward = inputs.count("n_backward", n_backward)
    check_functional(functional)
    config = SMCConfig.of(n_particles, ess_threshold, resampling_scheme=resampling_scheme, record="none",
                          proposal=proposal)
    return _paris_program(key, model, inputs.model_args(args), inputs.observations(observations), functional,
                          n_backward, config)
