"""Inference-time scaling methods over one reasoning model, with one budget account.

Every method takes the same inputs (a step generative function, a potential, the prompt's state)
and returns `Candidates`: final sequences with selection weights, and what they cost:

    particle_filter      SMC over steps (`inference.smc.run`), resampling every step or when ESS/N < threshold
    importance_sampling  N independent trajectories weighted by their rewards (best-of-N, majority and
                         weighted vote all choose among these)
    beam_search          step-level beam search: keep the best `beam_width` prefixes, expand each equally
    particle_gibbs       conditional SMC sweeps with ancestor sampling (`smc.csmc_kernel`)

Each runs as one compiled program per problem shape: no Python per step or per particle.
Budget: N particles × T steps, tokens generated (end-of-sequence tokens not counted) and
reward calls (live particle-steps, each scored once).
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from inference import smc
from inference.resampling import SchemeName

from .model import reasoning_model

__all__ = ["Candidates", "beam_search", "importance_sampling", "particle_filter", "particle_gibbs"]


class Candidates(eqx.Module):
    """Final sequences of one run and what they cost."""

    states: Any
    """The final states, batched over candidates (for the language model: `LMState`, tokens with the prompt)."""
    log_weights: jax.Array
    """(K,) selection weights: SMC or importance weights, beam scores, or equal for particle Gibbs samples."""
    tokens_generated: jax.Array
    reward_calls: jax.Array
    log_marginal: jax.Array
    """log Ẑ of the reward-tilted target (nan where the method gives none)."""


def _step_counts(step_choices: Any, eos: int, batch_ndim: int) -> tuple[jax.Array, jax.Array]:
    """(tokens generated, live steps) from steps' tokens padded with `eos`, after `batch_ndim` batch axes."""
    steps = jnp.concatenate([x.reshape(x.shape[:batch_ndim] + (-1,)) for x in jax.tree.leaves(step_choices)], -1)
    generated = jnp.sum(steps != eos, axis=-1)
    return jnp.sum(generated), jnp.sum(generated > 0)


def particle_filter(key: jax.Array, step: ppl.GenFn, potential: Any, state0: Any, n_particles: int, n_steps: int,
                    temperature: float = 1.0, reward: str = "emission", ess_threshold: float = 1.0,
                    resampling_scheme: SchemeName = "systematic", eos: int | None = None) -> Candidates:
    """Particle filtering over reasoning steps (Puri et al. 2025): extend every particle by one step, weight
    by the potential, resample (every step with `ess_threshold=1`, or when ESS/N falls below it).

    `eos` (the end-of-sequence id that pads a step's tokens) enables the token count; default `step.eos`.
    """
    model = reasoning_model(n_steps, float(temperature), reward)
    result = smc.run(key, model, (step, as_module(potential), state0), {}, n_particles, resampling_scheme=resampling_scheme,
                     ess_threshold=ess_threshold, return_traces="history")
    tokens, calls = _step_counts(result.history.choices["x"], _eos(step, eos), 2)
    return Candidates(result.carries.state, result.log_weights, tokens, calls, result.log_marginal)


def importance_sampling(key: jax.Array, step: ppl.GenFn, potential: Any, state0: Any, n_particles: int, n_steps: int,
                        temperature: float = 1.0, reward: str = "emission", eos: int | None = None) -> Candidates:
    """N independent trajectories from the language model, weighted by Π r^(1/τ) (or r_T^(1/τ) for a twist)."""
    return particle_filter(key, step, potential, state0, n_particles, n_steps, temperature, reward,
                           ess_threshold=0.0, eos=eos)


@eqx.filter_jit
def beam_search(key: jax.Array, step: ppl.GenFn, potential: Any, state0: Any, n_particles: int, n_steps: int,
                beam_width: int, reward: str = "emission", eos: int | None = None) -> Candidates:
    """Step-level beam search: N = beam_width × expansions sequences; after each step keep the `beam_width`
    highest scores, and give each kept prefix N / beam_width children for the next step. A prefix's score is
    its cumulative log reward Σ_t log r_t for an emission, its latest log r_t for a twist (which scores the
    prefix itself)."""
    if n_particles % beam_width:
        raise ValueError(f"n_particles ({n_particles}) must be a multiple of beam_width ({beam_width})")
    eos = _eos(step, eos)
    children = n_particles // beam_width
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n_particles,) + x.shape), state0)

    def one_step(carry, k):
        states, scores = carry
        traces = jax.vmap(lambda kk, s: step.simulate(kk, s))(jax.random.split(k, n_particles), states)
        new = traces.retval
        live = ~states.done
        log_r = jax.vmap(potential)(states, new)
        scores = jnp.where(live, log_r if reward == "twist" else scores + log_r, scores)
        best = jax.lax.top_k(scores, beam_width)[1]
        keep = jnp.repeat(best, children)
        return (jax.tree.map(lambda x: x[keep], new), scores[keep]), _step_counts(traces.choices, eos, 1)

    (states, scores), (tokens, calls) = jax.lax.scan(one_step, (states, jnp.zeros(n_particles)),
                                                     jax.random.split(key, n_steps))
    first = jnp.arange(0, n_particles, children)  # one copy of each kept beam
    return Candidates(jax.tree.map(lambda x: x[first], states), scores[first], jnp.sum(tokens), jnp.sum(calls),
                      jnp.full((), jnp.nan))


@eqx.filter_jit
def particle_gibbs(key: jax.Array, step: ppl.GenFn, potential: Any, state0: Any, n_particles: int, n_sweeps: int,
                   n_steps: int, temperature: float = 1.0, reward: str = "emission",
                   ancestor_sampling: bool = True, eos: int | None = None) -> Candidates:
    """Particle Gibbs over reasoning trajectories: a first trajectory from the language model, then
    `n_sweeps` conditional SMC sweeps (the current trajectory kept as the reference, with ancestor
    sampling), each drawing the next trajectory from its particles. The candidates are the sweeps'
    trajectories (samples from the tilted target as the chain mixes), with equal weights.

    Ancestor sampling is exact here: the state is the text so far, so each candidate ancestor has the
    reference's remaining steps teacher-forced from its context and their potentials recomputed (one
    step's forward pass per remaining step, batched over the candidates).

    Tokens: the first trajectory's, plus each sweep's N - 1 new particles, counted as N - 1 times the
    new trajectory's step lengths (the kernel keeps no per-particle record; the rescored tokens, which
    are scored and not generated, are not counted).
    """
    model = reasoning_model(n_steps, float(temperature), reward)
    args = (step, as_module(potential), state0)
    kernel = smc.csmc_kernel({}, n_particles, ancestor_sampling=ancestor_sampling)
    eos = _eos(step, eos)
    k_init, k_sweeps = jax.random.split(key)
    trace = model.simulate(k_init, *args)

    def sweep(trace, k):
        new, _ = kernel.step(k, kernel.init(trace), model, args)
        tokens, calls = _step_counts(new.choices["steps"]["x"], eos, 1)
        return new, (new.retval.state, (n_particles - 1) * tokens, (n_particles - 1) * calls)

    first = _step_counts(trace.choices["steps"]["x"], eos, 1)
    _, (states, tokens, calls) = jax.lax.scan(sweep, trace, jax.random.split(k_sweeps, n_sweeps))
    return Candidates(states, jnp.zeros(n_sweeps), first[0] + jnp.sum(tokens), first[1] + jnp.sum(calls),
                      jnp.full((), jnp.nan))


class _Function(eqx.Module):
    fn: Callable = eqx.field(static=True)

    def __call__(self, *args):
        return self.fn(*args)


def as_module(potential) -> eqx.Module:
    """A potential as a pytree whose leaves are arrays (a plain function becomes a static field), so it can be
    an argument of the compiled program."""
    if isinstance(potential, eqx.Module):
        return potential
    if not callable(potential):
        raise TypeError(f"a potential is callable as potential(state_before, state_after); got {type(potential).__name__}")
    return _Function(potential)


def _eos(step, eos):
    if eos is not None:
        return eos
    if not hasattr(step, "eos"):
        raise ValueError("give eos= (the id that pads a step's tokens): this step has no `eos` attribute")
    return step.eos
