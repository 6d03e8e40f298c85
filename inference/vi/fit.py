"""Fitting: maximise an objective with an optax optimizer, in compiled chunks of steps.

    result = vi.fit(key, objective, params, observations, optimizer=optax.adam(1e-2), steps=2000)
    result.params, result.values        # the fitted parameters, the objective estimate at every step

Steps run inside `lax.scan`, `chunk` at a time (one compiled program, reused); between
chunks a tqdm bar shows the objective, a checkpoint can be written, and a non-finite
objective or gradient stops the fit with an error that names the parameter whose
gradient blew up (the checkpoint, if any, then holds the last finite step).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.display import tabulated

from .. import sharding
from ..progress import tqdm
from .program import Objective

__all__ = ["FitResult", "fit"]

WINDOWS = 8  # the objective's curve, shown as its mean over this many stretches of steps


@tabulated
class FitResult(NamedTuple):
    """What `fit` returns."""

    params: Any
    """The fitted parameters."""
    values: jax.Array
    """The objective's estimate at every step, shape (steps,)."""
    opt_state: Any
    """The optimizer's final state."""

    def _tables(self) -> list:
        values = np.asarray(self.values)
        edges = np.linspace(0, len(values), min(WINDOWS, len(values)) + 1).astype(int)
        rows = [(f"{a}–{b - 1}", values[a:b].mean(), values[a:b].std()) for a, b in itertools.pairwise(edges)]
        end = values[-max(1, len(values) // WINDOWS):].mean()
        title = f"vi.fit: {len(values)} steps, objective {end:.5g} at the end"
        return [(title, ["steps", "mean objective", "sd"], rows)]


class _State(NamedTuple):
    params: Any
    opt_state: Any
    baseline: jax.Array
    """The exponential moving average of the objective (reinforce baseline "ema")."""
    step: jax.Array


class _Settings(NamedTuple):
    """`fit`'s static settings: Python values, so equal settings reuse the compiled chunk."""

    num_samples: int
    baseline: Any
    """None, a number, "loo" or "ema" (see `fit`)."""
    decay: float
    """The decay of the "ema" baseline."""
    mesh: Any
    """The one-axis mesh the samples are split across, or None."""


def _initial_state(optimizer, params) -> _State:
    return _State(params, optimizer.init(params), jnp.zeros(()), jnp.zeros((), jnp.int32))


@eqx.filter_jit
def _chunk(objective: Objective, optimizer, state: _State | Any, key, args, steps: jax.Array, settings: _Settings,
           careful: bool, first: bool = False):
    """Run `steps`. Fast mode returns the values and whether every value and parameter is finite (one
    scalar: a call's outputs each cost time to hand back); careful mode (a rerun after a non-finite value or parameter) returns per-parameter gradient
    finiteness instead and leaves the state at the last finite step. With `first`, `state` holds the initial
    parameters and the optimizer's state is made here (in the same compiled call)."""
    num_samples, baseline, decay, mesh = settings
    if first:
        state = _initial_state(optimizer, state)

    def one(state: _State, i):
        state = sharding.replicate(mesh, state)  # every device steps the same parameters with the all-reduced gradient
        if baseline == "ema":  # bias-corrected, so the first steps are not pulled towards zero
            b = jnp.where(state.step > 0, state.baseline / (1.0 - decay ** jnp.maximum(state.step, 1)), 0.0)
        else:
            b = baseline
        value, grads = objective.value_and_grad(jax.random.fold_in(key, i), state.params, *args,
                                                num_samples=num_samples, baseline=b, mesh=mesh)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), state.opt_state, state.params)
        ema = decay * state.baseline + (1.0 - decay) * value if baseline == "ema" else state.baseline
        new = _State(optax.apply_updates(state.params, updates), opt_state, ema, state.step + 1)
        if not careful:  # a non-finite gradient makes the parameters non-finite: checked once per chunk
            return new, value
        finite = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        ok = jnp.isfinite(value) & jnp.all(finite)
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state), (value, finite)

    final, outputs = jax.lax.scan(one, sharding.replicate(mesh, state), steps)
    if careful:
        return final, outputs
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in [outputs, *jax.tree.leaves(final.params)]]))
    return final, outputs, finite


def _save(path, state: _State, values: np.ndarray) -> None:
    with open(path, "wb") as f:  # the state, then the values so far
        eqx.tree_serialise_leaves(f, state)
        np.save(f, values)


def fit(
    key: jax.Array,
    objective: Objective,
    params: Any,
    *args: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
    num_samples: int = 1,
    baseline: Any = None,
    baseline_decay: float = 0.9,
    chunk: int = 100,
    progress_bar: bool = True,
    checkpoint: str | os.PathLike | None = None,
    mesh: jax.sharding.Mesh | int | None = None,
) -> FitResult:
    """Maximise `objective` over `params` by stochastic gradient ascent.

    Args:
        key: a PRNG key; step i uses `fold_in(key, i)`, so a resumed fit repeats the same steps.
        objective: a `vi.objective` (e.g. `vi.elbo(model, guide)`).
        params: a pytree of arrays (an equinox module works).
        *args: the objective's arguments after the parameters (e.g. the observations).
        optimizer: an optax optimizer (it minimises the negated objective).
        steps: optimisation steps in all.
        num_samples: independent runs of the program per gradient estimate.
        baseline: the reinforce baseline: None, a number, "loo" (leave-one-out across the
            `num_samples` runs) or "ema" (moving average of the objective, decay `baseline_decay`).
        chunk: steps per compiled chunk; the bar, the checks and checkpoints happen between chunks.
        progress_bar: a tqdm bar showing the objective's mean over the last chunk.
        checkpoint: a file: the state is saved there after every chunk (equinox serialisation),
            and a fit started with an existing checkpoint resumes from it.
        mesh: a one-axis `jax.sharding.Mesh` or a device count D (see `inference.sharding`): each step's
            `num_samples` runs (a multiple of D) are split in D blocks, one per device, while the parameters
            and the optimizer's state are replicated. The gradient, a mean over the runs, is then a sum across
            devices: each run is the one device's bit for bit, but the sum adds them in another order, so the
            fit equals one device's up to float32 rounding (which the steps then carry on).

    Raises:
        FloatingPointError: the objective or a gradient became non-finite; the message names
            the first parameter whose gradient did and the step, and the checkpoint (if any)
            holds the state of the last finite step.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    mesh = sharding.mesh_of(mesh)  # a Mesh, not a count, in the static settings
    settings = _Settings(num_samples=num_samples, baseline="ema" if baseline == "ema" else baseline,
                         decay=float(baseline_decay), mesh=mesh)
    state, first = params, True  # the first chunk makes the optimizer's state
    done = []  # the values of the steps run, as arrays (a single-chunk fit hands its own back)
    start = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        with open(checkpoint, "rb") as f:  # the state, then the values so far
            state, first = eqx.tree_deserialise_leaves(f, _initial_state(optimizer, params)), False
            done = [np.load(f)[:steps]]
        start = int(state.step)
    # no bar object at all when it is off: a disabled one still costs time (docs/performance.md)
    bar = tqdm(total=steps, initial=start, desc="vi.fit") if progress_bar else None
    with bar or contextlib.nullcontext():
        while start < steps:
            stop = min(start + chunk, steps)  # a shorter last chunk compiles once more
            index = np.arange(start, stop)
            new_state, chunk_values, finite = _chunk(objective, optimizer, state, key, args, index, settings, False,
                                                     first)
            if not bool(finite):  # rerun the chunk carefully: which step, which parameter
                state, (_, grads_finite) = _chunk(objective, optimizer, state, key, args, index, settings, True, first)
                ok = np.isfinite(np.asarray(chunk_values)) & np.asarray(grads_finite).all(axis=1)
                i = int(np.argmin(ok))
                names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
                leaves = [names[j] for j in np.flatnonzero(~np.asarray(grads_finite)[i])] or ["(the objective value)"]
                if checkpoint is not None:
                    _save(checkpoint, state, np.concatenate([*done, np.asarray(chunk_values)[:i]]))
                raise FloatingPointError(
                    f"vi.fit stopped at step {start + i}: the objective was {chunk_values[i]} and the gradient of "
                    f"params{leaves[0]} was not finite; lower the learning rate, bound the guide's scales, or check "
                    "the model's log density there"
                )
            state, first, start = new_state, False, stop
            done.append(chunk_values)
            if checkpoint is not None:
                done = [np.concatenate(done)]
                _save(checkpoint, state, done[0])
            if bar is not None:
                bar.set_postfix(objective=f"{np.mean(chunk_values):.4g}")
                bar.update(len(index))
    return FitResult(state.params, jnp.concatenate(done) if len(done) > 1 else jnp.asarray(done[0]), state.opt_state)
