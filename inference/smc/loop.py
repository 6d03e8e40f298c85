"""A step function iterated over a scan's T steps in one `lax.scan`, keeping the record its caller asks for."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import ppl

from ..progress import progress_callback
from .config import Record
from .state import History, SMCState, StepInfo, Target

__all__ = ["iterate", "over_steps"]


def _record(target: Target, state: SMCState, info: StepInfo, t, record: Record) -> History | None:
    """What the run keeps of step `t`."""
    if record == "none":
        return None
    # the latent choices only: the observed ones are the same for every particle, and in the observations
    choices = ppl.choicemap.latents(info.choices, ppl.choicemap.drop_masked(target.observed(t)))
    carries = jax.vmap(target.carry_of)(state.particles) if record == "full" else None
    return History(info.ancestors, choices, carries, None if record == "lineage" else state.log_weights)


def _without_target(state: SMCState) -> SMCState:
    return dataclasses.replace(state, target=None)


def _with_target(state: SMCState, target: Target) -> SMCState:
    return dataclasses.replace(state, target=target)


def over_steps(step: Callable, key: jax.Array, state: Any, target: Target,
               without_target: Callable = _without_target, with_target: Callable = _with_target) -> tuple[Any, Any]:
    """`step(key_t, state, t) -> (state, out)` for t = 0..T-1 in one `lax.scan`: (the final state, the outs
    stacked over time). The target is held apart from the loop's state (it is the same at every step);
    `without_target` and `with_target` take it out of a state and put it back."""

    def body(carry, inputs):
        k, t = inputs
        new, out = step(k, with_target(carry, target), t)
        return without_target(new), out

    T = target.space.length
    final, outs = jax.lax.scan(body, without_target(state), (jax.random.split(key, T), jnp.arange(T)))
    return with_target(final, target), outs


def iterate(step: Callable, key: jax.Array, state: SMCState,
            record: Record) -> tuple[SMCState, StepInfo, History | None]:
    """`step(key_t, state, t)` for t = 0..T-1: (the final state, the steps' infos stacked over time, the record).
    With the config's `progress_bar`, each step advances the current `inference.progress` bar (T steps)."""
    target = state.target
    tick = progress_callback(target.space.length, True) if target.config.progress_bar else None

    def kept_step(k, state, t):
        new, info = step(k, state, t)
        if tick is not None:
            tick(t)
        return new, (info._replace(ancestors=None, choices=None), _record(target, new, info, t, record))

    final, (infos, history) = over_steps(kept_step, key, state, target)
    return final, infos, history
