"""A step function iterated over a scan's T steps in one `lax.scan`, keeping the record its caller asks for."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

import ppl

from .config import Record
from .state import History, SMCState, StepInfo, Target

__all__ = ["iterate"]


def _record(target: Target, state: SMCState, info: StepInfo, t, record: Record) -> History | None:
    """What the run keeps of step `t`."""
    if record == "none":
        return None
    if record == "lineage":  # the latent choices only: the observed ones are the same for every particle
        observed = ppl.choicemap.drop_masked(target.observed(t))
        return History(info.ancestors, ppl.choicemap.latents(info.choices, observed), None, None)
    carries = state.particles.carry if record == "full" else None
    return History(info.ancestors, info.choices, carries, state.log_weights)


def iterate(step: Callable, key: jax.Array, state: SMCState,
            record: Record) -> tuple[SMCState, StepInfo, History | None]:
    """`step(key_t, state, t)` for t = 0..T-1: (the final state, the steps' infos stacked over time, the record)."""
    target = state.target

    def body(carry, inputs):
        k, t = inputs
        new, info = step(k, dataclasses.replace(carry, target=target), t)
        kept = _record(target, new, info, t, record)
        return dataclasses.replace(new, target=None), (info._replace(ancestors=None, choices=None), kept)

    T = target.space.length
    final, (infos, history) = jax.lax.scan(body, dataclasses.replace(state, target=None),
                                           (jax.random.split(key, T), jnp.arange(T)))
    return dataclasses.replace(final, target=target), infos, history
