"""Reasoning as a state-space model: the latent state is the text so far, a step is a reasoning step.

    model = reasoning_model(n_steps=6, temperature=0.5, reward="emission")
    model(step, potential, state0)        # step = lm.step_fn(...), state0 = lm.prompt_state(question)

Step t draws x_t ~ step(state_{t-1}) (the choice at `("steps", "x")`) and scores the new state
with a potential, log r_t = potential(state_{t-1}, state_t). The potential enters the model's
density through `ppl.factor`, so every inference algorithm of the library sees the target

    emission:  p_LM(x_1:T) · Π_t r_t^(1/τ)          (a reward per step, e.g. a process verifier)
    twist:     p_LM(x_1:T) · r_T^(1/τ)             (a reward of the prefix so far, e.g. a judge)

The twist's incremental factors (log r_t − log r_{t−1}) / τ telescope to log r_T / τ, so the
intermediate targets p_LM · r_t^(1/τ) guide resampling while the final target only counts the
last reward. A finished sequence (`state.done`) adds nothing more. The step and the potential are
arguments (pytrees whose arrays are traced, not constants), so one compiled program serves
every prompt of the same shape.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import ppl

__all__ = ["Carry", "reasoning_model"]

REWARDS = ("emission", "twist")


class Carry(NamedTuple):
    """What passes from one reasoning step to the next."""

    state: Any
    """The sequence so far (a `ppl.lm.LMState`, or any pytree with a boolean `done`)."""
    log_reward: jax.Array
    """The potential's last value log r_t (the twist subtracts it at the next step)."""


class StepOutput(NamedTuple):
    """A step's record in the trace, small enough to keep for every step."""

    log_reward: jax.Array
    live: jax.Array


@functools.lru_cache(maxsize=None)
def reasoning_model(n_steps: int, temperature: float = 1.0, reward: str = "emission") -> ppl.GenFn:
    """The generative function `model(step, potential, state0)` of `n_steps` reasoning steps.

    Cached, so equal settings give the same object and a compiled program is reused.

    Args:
        n_steps: the number of steps T (a finished sequence stays finished).
        temperature: τ; the potential counts as r^(1/τ) (small τ: a sharper target).
        reward: "emission" (log r_t is the step's own reward) or "twist" (log r_t scores the prefix).
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")

    @ppl.gen
    def reasoning_step(carry: Carry, step, potential):
        new = step(carry.state) @ "x"
        log_r = jnp.asarray(potential(carry.state, new), jnp.float32)
        live = ~carry.state.done
        if reward == "emission":
            increment = log_r / temperature
        else:  # a particle already at zero weight stays there (no -inf - -inf)
            increment = jnp.where(carry.log_reward == -jnp.inf, 0.0, (log_r - carry.log_reward) / temperature)
        ppl.factor(jnp.where(live, increment, 0.0))
        return Carry(new, jnp.where(live, log_r, carry.log_reward)), StepOutput(log_r, live)

    @ppl.gen
    def model(step, potential, state0):
        scan = ppl.scan(reasoning_step, length=n_steps, with_outputs=True)
        final, _ = scan(Carry(state0, jnp.zeros((), jnp.float32)), step, potential) @ "steps"
        return final

    return model
