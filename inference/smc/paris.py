"""PaRIS, the particle-based rapid incremental smoother (Olsson & Westerborn 2017), on a filter's steps.

It estimates the smoothed expectation of an additive functional E[Σ_t h_t(carry_{t-1}, carry_t) | y]
online: each particle i carries a statistic τ_t^i ≈ E[Σ_{s≤t} h_s | its state at t], updated by
K draws J^{i,1..K} from the backward kernel Λ_t(i, j) ∝ w_{t-1}^j p(x_t^i, y_t | carry_{t-1}^j),

    τ_t^i = K⁻¹ Σ_k [τ_{t-1}^{J^{i,k}} + h_t(carry_{t-1}^{J^{i,k}}, carry_t^i)],

and the estimate is Σ_i w_T^i τ_T^i / Σ_i w_T^i. The transition density is the step's own
(`assess` through the generative function interface). Backward indices are drawn exactly from
each new particle's N densities (O(N²) a step), or, given an upper bound of the step's density
over carries (which a generic step does not give, so the user does), by accept-reject as in the
paper (O(N K) expected a step). The first backward draw of each particle, kept
per step, traces a trajectory back from a final particle: a draw from the backward-simulation
smoother, which is how PaRIS particle Gibbs (`pgibbs.ppg`) renews its reference.

The filter's step is `smc.step` (PaRIS) or `smc.conditional_step` (conditional PaRIS, the sweep
of PaRIS particle Gibbs, Cardoso, Janati, Le Corff, Moulines & Olsson 2023). The backward kernel
is the smoothing one only when the step's carry forgets the past, which is checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl.display import tabulated, tree_rows

from .. import inputs, resampling
from .._jit import jit
from .conditional import conditional_init, conditional_step
from .config import SMCConfig
from .extend import gather
from .filtering import start, step
from .future import carry_forgets_past
from .loop import over_steps
from .state import SMCState, Target

__all__ = ["Additive", "Backward", "PaRISResult", "PaRISState", "backward_draws", "backward_settings", "check_bound",
           "conditional_paris", "exact_backward_draws", "functional_increment", "paris", "paris_init", "paris_step",
           "sweep", "trace_back"]

Additive = Callable[[Any, Any, Any, Any], Any]
"""h_t as PaRIS calls it: `increment(prev_carry, choices_t, carry_t, t)` returns a pytree."""


class PaRISState(eqx.Module):
    """A filter's state and each particle's statistic τ_t^i (leaves (N, ...))."""

    filter: SMCState
    statistics: Any
    bound_exceeded: jax.Array
    """True once a step density exceeded the accept-reject bound (`Backward.log_bound`): the draws are off."""


@tabulated
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
    bound_exceeded: jax.Array
    """True when a step density exceeded `log_density_bound` (the drivers raise on it)."""

    def _tables(self) -> list:
        title = (f"PaRISResult: {self.log_weights.shape[-1]} particles, log Ẑ {float(self.log_marginal):.5g}"
                 + (" (failed)" if bool(self.failed) else ""))
        return [(title, ["functional", "smoothed expectation"], tree_rows(self.estimate))]


def _check_markov(target: Target, particles, choices_t) -> None:
    """Refuse what the backward kernel cannot smooth: a carry that holds the past, or per-particle parameters."""
    n_carry = target.carry.treedef.num_leaves
    if any(i >= n_carry for i in particles.scan_args):
        raise ValueError("PaRIS needs the scan's arguments other than its initial carry to be the same for every "
                         "particle: pass the model's parameters as arguments or observe them")
    if not carry_forgets_past(target.space, target.scan_args.of(gather(particles, 0)), choices_t,
                              target.carry_of(gather(particles, 0))):
        raise ValueError("PaRIS needs a step whose carry is decided by its own choices (a state-space model); this "
                         "model's carry holds the past, so the backward kernel is not the smoothing one")


def paris_init(filter_state: SMCState, increment: Additive) -> PaRISState:
    """A filter's state before its first step, each particle's statistic zero (shaped as `increment`'s value)."""
    target = filter_state.target
    particles = filter_state.particles
    one = gather(particles, 0)
    choices_0 = jax.eval_shape(lambda: target.space.step.simulate(jax.random.key(0), *target.step_args(one, 0))
                               ).choices
    carry = target.carry_of(one)
    shape = jax.eval_shape(lambda c: increment(carry, c, carry, 0),
                           jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), choices_0))
    n = target.config.n_particles
    return PaRISState(filter_state, jax.tree.map(lambda s: jnp.zeros((n, *s.shape), s.dtype), shape),
                      jnp.zeros((), bool))


class Backward(NamedTuple):
    """How PaRIS draws its backward indices: `n_draws` (K) a particle; exactly from the N densities of each new
    particle (O(N²) a step), or, given `log_bound(choices_t, t)` ≥ log p(x_t, y_t | carry) for every carry,
    by accept-reject with candidates drawn by weight (O(N K) expected), `n_proposals` tries a draw before the
    exact draw takes over (which keeps the law exact)."""

    n_draws: int
    log_bound: Callable | None = None
    n_proposals: int = 16


def _step_log_density(target: Target, choice_i: Any, particle, t) -> jax.Array:
    """log p(x_t^i, y_t | carry_{t-1}^j): new particle i's step choices under particle j's carry."""
    return target.space.step.assess(choice_i, *target.step_args(particle, t))[0]


def _backward_logits(target: Target, previous: SMCState, choice_i: Any, t) -> jax.Array:
    """log Λ_t(i, ·) up to a constant: w_{t-1}^j p(x_t^i, y_t | carry_{t-1}^j) for every previous particle j."""
    return previous.log_weights + jax.vmap(lambda p: _step_log_density(target, choice_i, p, t))(previous.particles)


def exact_backward_draws(key: jax.Array, target: Target, previous: SMCState, choices: Any, n_draws: int,
                         t) -> jax.Array:
    """K draws from Λ_t(i, ·) ∝ w_{t-1}^j p(x_t^i, y_t | carry_{t-1}^j) for each new particle i: shape (N, K)."""

    n = target.config.n_particles
    rows = jax.vmap(lambda choice_i: _backward_logits(target, previous, choice_i, t))(choices)
    draw = lambda i, row: resampling.categorical(ppl.streams.as_key(ppl.Streams(key, i)), row, n_draws)
    return jax.vmap(draw)(jnp.arange(n), rows)


def backward_draws(key: jax.Array, target: Target, previous: SMCState, choices: Any, backward: Backward,
                   t) -> tuple[jax.Array, jax.Array]:
    """The backward draws of step `t`, shape (N, K), and whether a density exceeded `backward.log_bound`."""
    k_propose, k_accept, k_exact = jax.random.split(key, 3)
    if backward.log_bound is None:
        return exact_backward_draws(k_exact, target, previous, choices, backward.n_draws, t), jnp.zeros((), bool)
    n, k, m = target.config.n_particles, backward.n_draws, backward.n_proposals
    candidates = resampling.categorical(k_propose, previous.log_weights, n * k * m).reshape(n, k, m)
    log_p = jax.vmap(lambda c, js: jax.vmap(jax.vmap(
        lambda j: _step_log_density(target, c, gather(previous.particles, j), t)))(js))(choices, candidates)
    log_ratio = log_p - jax.vmap(lambda c: backward.log_bound(c, t))(choices)[:, None, None]
    accepted = jnp.log(jax.random.uniform(k_accept, (n, k, m))) < log_ratio
    drawn = jnp.take_along_axis(candidates, jnp.argmax(accepted, axis=-1)[..., None], axis=-1)[..., 0]
    draws = _draw_rejected_exactly(k_exact, target, previous, choices, drawn, jnp.any(accepted, axis=-1), t)
    return draws, jnp.any(log_ratio > 1e-3)


def _draw_rejected_exactly(key: jax.Array, target: Target, previous: SMCState, choices: Any, drawn: jax.Array,
                           done: jax.Array, t) -> jax.Array:
    """`drawn` (N, K) with an exact draw wherever every try was rejected (`~done`), a chunk of N K / 8 such draws a
    loop iteration (so a step whose every try failed costs about what exact draws cost): a loop, not a branch, so
    that under `vmap` the densities of the exact draws are not computed on every step."""
    n, k = done.shape
    chunk = max(1, n * k // 8)

    def exact_chunk(state):
        drawn, done, key = state
        key, k_draw = jax.random.split(key)
        pairs = jnp.nonzero(~done.ravel(), size=chunk, fill_value=0)[0]  # a filler repeats pair 0: still exact

        def draw(k_i, pair):
            choice_i = gather(choices, pair // k)
            return resampling.categorical(k_i, _backward_logits(target, previous, choice_i, t), 1)[0]

        new = jax.vmap(draw)(jax.random.split(k_draw, chunk), pairs)
        kept = jnp.where(done.ravel()[pairs], drawn.ravel()[pairs], new)
        return drawn.ravel().at[pairs].set(kept).reshape(n, k), done.ravel().at[pairs].set(True).reshape(n, k), key

    return jax.lax.while_loop(lambda state: ~jnp.all(state[1]), exact_chunk, (drawn, done, key))[0]


def paris_step(filter_step: Callable, increment: Additive, backward: Backward) -> Callable:
    """The PaRIS step over `filter_step` (`smc.step` or `smc.conditional_step`):
    `(key, state, t) -> (state, (the step's choices, each particle's first backward draw))`."""

    def one_step(key: jax.Array, state: PaRISState, t) -> tuple[PaRISState, tuple]:
        k_filter, k_back = jax.random.split(key)
        previous = state.filter
        target = previous.target
        new, info = filter_step(k_filter, previous, t)
        _check_markov(target, previous.particles, gather(info.choices, 0))
        draws, exceeded = backward_draws(k_back, target, previous, info.choices, backward, t)

        def statistic(j, choice_i, carry_i):
            prev_carry = target.carry_of(gather(previous.particles, j))
            return jax.tree.map(jnp.add, gather(state.statistics, j), increment(prev_carry, choice_i, carry_i, t))

        per_draw = jax.vmap(lambda js, c, x: jax.vmap(lambda j: statistic(j, c, x))(js))(
            draws, info.choices, jax.vmap(target.carry_of)(new.particles))
        statistics = jax.tree.map(lambda s: jnp.mean(s, axis=1), per_draw)
        return PaRISState(new, statistics, state.bound_exceeded | exceeded), (info.choices, draws[:, 0])

    return one_step


def _without_target(state: PaRISState) -> PaRISState:
    return dataclasses.replace(state, filter=dataclasses.replace(state.filter, target=None))


def _with_target(state: PaRISState, target: Target) -> PaRISState:
    return dataclasses.replace(state, filter=dataclasses.replace(state.filter, target=target))


def sweep(filter_step: Callable, key: jax.Array, filter_state: SMCState, increment: Additive,
          backward: Backward) -> tuple[PaRISState, tuple]:
    """PaRIS over every step of `filter_state`'s scan: (the final state, each step's choices and each particle's
    first backward draw, time first)."""
    one_step = paris_step(filter_step, increment, backward)
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
    return PaRISResult(estimate(state), state.statistics, filt.log_weights, filt.log_marginal, filt.failed,
                       state.bound_exceeded)


def conditional_paris(key: jax.Array, model: ppl.GenFn, args: tuple, observations: dict, reference: dict,
                      increment: Additive, backward: Backward, config: SMCConfig) -> tuple[PaRISResult, dict]:
    """One sweep of PaRIS particle Gibbs: conditional PaRIS with `reference` (a full choice map of the model) kept
    among the particles, and the next reference, a trajectory traced back through the sweep's first backward
    draws from a final particle drawn by weight (a backward-simulation draw: the sweep leaves the smoothing
    distribution invariant, as conditional SMC with backward sampling does). A failed sweep keeps `reference`.

    `config` is the filter's, with `ess_threshold` 1 (conditional SMC resamples at every step)."""
    k_init, k_steps, k_pick = jax.random.split(key, 3)
    state, (choices, first_draws) = sweep(
        conditional_step, k_steps, conditional_init(k_init, model, args, observations, reference, config),
        increment, backward)
    steps, _ = trace_back(k_pick, state.filter.log_weights, choices, first_draws)
    space = state.filter.target.space
    old = ppl.choicemap.subconstraint(ppl.choicemap.normalize(reference), space.path)
    steps = jax.tree.map(lambda new, kept: jnp.where(state.filter.failed, kept, new), steps, old)
    prefix = gather(state.filter.particles.prefix, 0)  # every particle holds the reference's prefix
    return result(state), space.full_choices(prefix, steps)


@jit
def _paris_program(key, model, args, observations, functional, backward: Backward,
                   config: SMCConfig) -> PaRISResult:
    k_init, k_steps = jax.random.split(key)
    state, _ = sweep(step, k_steps, start(k_init, model, args, observations, config), functional_increment(functional),
                     backward)
    return result(state)


def backward_settings(functional: Any, n_backward: Any, log_density_bound: Any, n_proposals: Any) -> Backward:
    """The drivers' backward settings, checked, with the functional: a bad one raises naming the argument."""
    if not callable(functional):
        raise TypeError(f"functional is a function (prev_carry, carry) -> pytree, got {type(functional).__name__}")
    if log_density_bound is not None and not callable(log_density_bound):
        raise TypeError("log_density_bound is a function (step choices, t) -> an upper bound of the step's log "
                        f"density over carries, or None; got {type(log_density_bound).__name__}")
    return Backward(inputs.count("n_backward", n_backward), log_density_bound,
                    inputs.count("n_proposals", n_proposals))


def check_bound(bound_exceeded: jax.Array) -> None:
    """Raise where a concrete run found a step density above `log_density_bound` (its draws are not exact)."""
    if not isinstance(bound_exceeded, jax.core.Tracer) and bool(bound_exceeded):
        raise ValueError("log_density_bound is below the step's log density p(x_t, y_t | carry) for some carry: "
                         "it must bound it from above for every carry (or pass None for exact backward draws)")


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
    log_density_bound: Callable[[Any, Any], jax.Array] | None = None,
    n_proposals: int = 16,
    mesh: jax.sharding.Mesh | int | None = None,
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
        proposal: the filter's proposal, as in `smc.run` (None for the step's prior).
        resampling_scheme: as in `smc.run`.
        ess_threshold: as in `smc.run`.
        log_density_bound: `log_density_bound(choices_t, t)`, an upper bound of log p(x_t, y_t | carry) over
            every carry for the step's choices (e.g. the transition's largest density plus the observation's
            log density): backward indices are then drawn by accept-reject, O(N K) expected a step, instead of
            from all N densities. None: exact draws, O(N²) a step.
        n_proposals: accept-reject tries of a draw before its exact draw takes over.
        mesh: the devices to split the particles across, as in `smc.run` (its filter and resampling are
            `smc.run`'s). Each device draws the backward indices of its own new particles; their densities need
            every previous particle, which XLA gathers on each device (N previous particles a device, as the
            O(N²) exact draws need anyway). The statistics and the weights are one device's (to the filter's
            agreement, see `smc.run`); the estimate, a sum over particles, to float32 rounding.

    Returns:
        A `PaRISResult`: `.estimate` (the smoothed expectation, a pytree like `functional`'s value), the final
        particles' statistics and weights, log Ẑ and the failure flag. Raises if a step density exceeded
        `log_density_bound`.
    """
    backward = backward_settings(functional, n_backward, log_density_bound, n_proposals)
    config = SMCConfig.of(n_particles, ess_threshold, resampling_scheme=resampling_scheme, record="none",
                          proposal=proposal, mesh=mesh)
    res = _paris_program(key, model, inputs.model_args(args), inputs.observations(observations), functional,
                         backward, config)
    check_bound(res.bound_exceeded)
    return res
