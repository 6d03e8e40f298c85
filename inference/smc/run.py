"""`run` and `csmc`: a filter's whole loop as one compiled program, and what it returns."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import ppl

from .. import inputs, sharding
from .._jit import jit
from ..draws import Posterior, with_posterior
from ..mcmc import kernels
from ..mcmc.kernels import Kernel
from ..progress import progress, tracing
from ..resampling import SchemeName
from ..sharded_resampling import CumulativeWeights, Scope
from ..weighted import WeightedParticles
from .conditional import conditional_init, conditional_step
from .config import AncestorSampling, SMCConfig, ancestor_sampling_mode, record_mode
from .extend import set_slot
from .filtering import start, step
from .lineage import final_traces
from .loop import iterate
from .state import History, StepInfo

__all__ = ["SMCResult", "csmc", "mh_rejuvenation", "run"]

STEPS_SHOWN = 12  # steps a displayed result lists, evenly spaced, the last included


class SMCResult(WeightedParticles):
    """The outcome of `run`/`csmc`: `traces` are the final particles as the model's traces (None unless
    `return_traces=True`), `log_weights` their final unnormalised log weights."""

    carries: Any
    """Final particles' carries (what the scan's last step returned), batched; always kept."""
    log_marginal: jax.Array
    info: StepInfo
    """Each step's ESS, resampling flag, running log Ẑ and rejuvenation acceptance, stacked over time."""
    history: History | None
    failed: jax.Array
    """True when some step gave every particle zero weight."""

    def log_marginal_likelihood(self) -> jax.Array:
        """log Ẑ (-inf when the run failed)."""
        return self.log_marginal

    def _tables(self) -> list:
        title, rows = self._summary()
        steps = self.info.ess.shape[0]
        rows = [("steps", steps), *rows, ("resampled at", f"{int(np.sum(self.info.resampled))} steps"),
                ("failed", bool(self.failed))]
        shown = np.unique(np.linspace(0, steps - 1, min(steps, STEPS_SHOWN)).astype(int))
        n = self.log_weights.shape[-1]
        per_step = [(t, float(self.info.ess[t]) / n, bool(self.info.resampled[t]),
                     float(self.info.log_marginal_likelihood[t])) for t in shown]
        return [(title, ["", "value"], rows), ("over steps", ["step", "ESS / N", "resampled", "log Ẑ so far"], per_step)]


def mh_rejuvenation(selection: ppl.Selection, n_steps: int = 1) -> Kernel:
    """`n_steps` Metropolis-Hastings moves on `selection` of a step, proposing from the prior (`regenerate`).

    Any `inference.mcmc.kernels` kernel (MALA, HMC, NUTS, Gibbs, their cycles) works as
    rejuvenation too; this is the gradient-free default.
    """
    return kernels.cycle(*[kernels.mh(selection)] * n_steps)


def _result(key, state, infos, history: History | None, args) -> SMCResult:
    target = state.target
    config = target.config
    traces = None
    if config.record == "full":
        traces = sharding.shard(config.mesh, final_traces(key, target.space, args, state.particles, history,
                                                          target.observations), config.n_particles)
    return SMCResult(traces, state.log_weights, jax.vmap(target.carry_of)(state.particles), state.log_marginal, infos,
                     None if config.record == "none" else history, state.failed)


@jit
def _run_program(key, model, args, observations, config: SMCConfig) -> SMCResult:
    k_init, k_steps, k_traces = jax.random.split(key, 3)
    state = start(k_init, model, args, observations, config)
    state, infos, history = iterate(step, k_steps, state, config.record)
    return _result(k_traces, state, infos, history, args)


@jit
def _csmc_program(key, model, args, observations, reference, config: SMCConfig) -> SMCResult:
    k_init, k_steps, k_traces = jax.random.split(key, 3)
    state = conditional_init(k_init, model, args, observations, reference, config)
    state, infos, history = iterate(conditional_step, k_steps, state, config.record)
    # the reference's particle moves to slot 0 (the final particles' order is free: nothing follows)
    slot = state.reference_slot
    last = _swap(config.mesh, jax.tree.map(lambda x: x[-1], history), slot)
    history = jax.tree.map(lambda x, y: x.at[-1].set(y), history, last)
    particles, log_weights = _swap(config.mesh, (state.particles, state.log_weights), slot)
    state = dataclasses.replace(state, particles=particles, log_weights=log_weights)
    return _result(k_traces, state, infos, history, args)


def _swap(mesh, tree, slot):
    """`tree` with its entries 0 and `slot` swapped (two entries move, whichever devices hold them)."""
    both = sharding.take(mesh, tree, jnp.stack([jnp.zeros_like(slot), slot]))
    first, other = jax.tree.map(lambda x: x[0], both), jax.tree.map(lambda x: x[1], both)
    return set_slot(set_slot(tree, slot, first), 0, other)


def run(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    proposal: ppl.GenFn | None = None,
    resampling_scheme: SchemeName = "systematic",
    ess_threshold: float = 0.5,
    rejuvenation: Kernel | None = None,
    return_traces: bool | Literal["history"] = True,
    mesh: jax.sharding.Mesh | int | None = None,
    resampling_scope: Scope = "global",
    cumulative_weights: CumulativeWeights = "prefix_sum",
    progress_bar: bool = False,
) -> SMCResult:
    """Sequential Monte Carlo over the steps of `model`'s `ppl.scan` (`smc.init` and `smc.step`, looped).

    Args:
        key: a PRNG key.
        model: a `@ppl.gen` model that calls one `ppl.scan` at its top level.
        args: the model's arguments.
        observations: a choice map; the scan's block holds arrays with time first.
        n_particles: N.
        proposal: a generative function over a step's latent choices, called as
            `proposal(observations_t, carry, *args_t)`; None for the bootstrap (the step's prior).
        resampling_scheme: "systematic", "stratified", "multinomial" or "residual".
        ess_threshold: resample before a step when ESS/N is below this; 1.0 always, 0.0 never.
        rejuvenation: an `inference.mcmc.kernels` kernel applied to each step's trace after extension
            (e.g. `mh_rejuvenation(ppl.sel("x"))` or `kernels.mala(ppl.sel("x"), 0.1)`).
        return_traces: keep the per-step history and return the final particles as traces
            (False keeps only log Ẑ, weights, step info and final carries: a filter that stores nothing
            per step; "history" also keeps each step's choices, ancestors and weights, but no carries
            and no traces, which is what lineages and budget counts need when carries are large).
        mesh: the devices to split the particles across (`inference.sharding`): a one-axis `jax.sharding.Mesh`
            (under `jax.distributed`, over every process's devices) or a device count; N must be a multiple of
            their number. Each device extends its own particles, and resampling draws across all of them by
            collectives (`inference.sharded_resampling`); the results stay split the same way. A particle draws
            from its own stream of the key wherever it is, so a run is one device's but for float32 rounding:
            sums over particles (log Ẑ, the ESS) are summed in another order, and XLA may compile a device's loop
            over N / D particles otherwise than one over N (a density can differ in its last bit).
        resampling_scope: under a mesh, "global" resamples among all N particles; "island" resamples each device's
            particles among themselves, which moves no particle between devices, and resamples globally only when
            the devices' total weights have grown apart (their ESS below `ess_threshold` times the number of
            devices). Log Ẑ stays unbiased; its variance grows with fewer global exchanges (see
            `inference.sharded_resampling`).
        cumulative_weights: under a mesh, how resampling finds the cumulative weights of the N particles.
            "prefix_sum": each device sums its own and the devices exchange their D totals (O(D) values); the draws
            are one device's but where the rounding of sums made in another order moves a draw to a neighbouring
            particle, which becomes likely from a few thousand particles on, and one different draw makes the rest
            of the run differ. "gathered": every device gathers the N weights (N floats a device) and draws exactly
            what one device draws from them.
        progress_bar: a tqdm bar of the steps, advanced from inside the compiled program (about 100 updates
            at most; its total, the scan's length, appears with the first). Off by default because `run` is a
            building block that other loops call many times (particle Gibbs, inference-time scaling); under a
            caller's `jit` or `vmap` no bar is shown. A run with the bar off compiles no callback at all.
    """
    args, observations = inputs.model_args(args), inputs.observations(observations)
    progress_bar = bool(progress_bar) and not tracing(key, args, observations)
    config = SMCConfig.of(n_particles, ess_threshold, resampling_scheme=resampling_scheme,
                          record=record_mode(return_traces), mesh=mesh, proposal=proposal, rejuvenation=rejuvenation,
                          progress_bar=progress_bar, resampling_scope=resampling_scope,
                          cumulative_weights=cumulative_weights)
    if not progress_bar:
        result = _run_program(key, model, args, observations, config)
    else:
        with progress(True, None, "smc", unit="step"):
            result = jax.block_until_ready(_run_program(key, model, args, observations, config))
    return with_posterior(result, Posterior(model, args, observations))


def csmc(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    reference: dict,
    n_particles: int,
    ancestor_sampling: bool | AncestorSampling = True,
    proposal: ppl.GenFn | None = None,
    mesh: jax.sharding.Mesh | int | None = None,
) -> SMCResult:
    """Conditional SMC: `reference` (a full choice map of the model) is kept as one of the particles.

    Every particle shares the reference's choices before the scan (static parameters are
    conditioned on, as in particle Gibbs); resampling is conditional systematic at every step
    (see `smc.conditional_step`). `ancestor_sampling` is True (an exact draw among the N particles
    each step), "metropolis" (one Metropolis-Hastings step between two) or False (the reference keeps
    its own past); a candidate's weight is one step's density, or the reference's whole future
    rescored from it when the step's carry holds the past. The final traces' slot 0 is the reference (up to ancestor sampling rewriting its past).

    `mesh` splits the particles across devices as in `run`; the conditional draws are made from all N weights
    gathered on every device (N floats a device), so the ancestors are one device's, bit for bit.
    """
    config = SMCConfig.of(n_particles, 1.0, ancestor_sampling=ancestor_sampling_mode(ancestor_sampling),
                          proposal=proposal, mesh=mesh)
    args, observations = inputs.model_args(args), inputs.observations(observations)
    result = _csmc_program(key, model, args, observations, ppl.choicemap.normalize(reference), config)
    return with_posterior(result, Posterior(model, args, observations))
