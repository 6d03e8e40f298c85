"""Sequential Monte Carlo over the time steps of a model's `ppl.scan`.

The model is cut at its scan (`ppl.sequential.state_space`): the choices before
the scan (static parameters) are drawn once per particle by `generate`, then each
time step t runs, for every particle,

    resample (when ESS/N < threshold)  ->  extend with the step's GFI  ->  rejuvenate (optional)

where extension is `step.generate(key, proposal choices ∪ observations_t, carry, *args_t)`
and the incremental log weight is that generate weight minus the proposal's
score (the bootstrap proposal is the step's own prior). The running estimate

    log Ẑ = Σ_t [logsumexp(log w_{t-1} + Δ_t) - logsumexp(log w_{t-1})]

stays unbiased (for Ẑ) with adaptive resampling because resampled weights reset
to equal (Del Moral, Doucet & Jasra 2012). Everything runs in one `lax.scan`.

Conditional SMC (Andrieu, Doucet & Holenstein 2010) keeps a reference trajectory
among the particles (in a slot drawn with the resampling; slot 0 of the result);
with ancestor sampling (Lindsten, Jordan & Schön 2014) the reference's ancestor
is redrawn with weights w_{t-1}^i p(x_t^ref, y_t | carry_{t-1}^i), which
is exact when a step's carry is determined by its own choices (the usual
state-space case). `backward_sample` draws trajectories from the stored
filtering distributions (Godsill, Doucet & West 2004).

A step whose weights are all zero (an impossible observation) sets the
result's `failed` flag and gives log Ẑ = -inf; no NaN escapes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.extend.core
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl
from ppl.sequential import StateSpace, state_space

from . import inputs, resampling
from ._jit import jit
from .mcmc import kernels
from .mcmc.kernels import Kernel
from .mcmc.target import latents

__all__ = ["SMCResult", "StepInfo", "backward_sample", "csmc", "csmc_kernel", "mh_rejuvenation", "run"]



class Particles(NamedTuple):
    """Per-particle state between steps (every leaf has a leading particle axis)."""

    prefix: dict
    """Choices made before the scan."""
    scan_args: dict
    """{leaf index: value} for the leaves of the scan's arguments that differ between particles."""
    carry: Any
    """The carry entering the next step."""


class ScanArgs(NamedTuple):
    """The arguments the model passed to its scan (init carry, *args), split by particle dependence.

    Leaves that do not depend on the prefix's random choices (data, time flags,
    a prompt) are the same for every particle: they are stored once, not N
    times, and are not gathered when the particles are resampled.
    """

    treedef: Any
    shared: dict
    """{leaf index: value} for the leaves common to all particles."""

    def of(self, particle: Particles) -> tuple:
        """One particle's scan arguments."""
        leaves = {**self.shared, **particle.scan_args}
        return jax.tree.unflatten(self.treedef, [leaves[i] for i in range(len(leaves))])


def _key_dependent(fn, key) -> list[bool]:
    """For each output leaf of `fn(key)`, whether it depends on `key` (a conservative dataflow walk)."""
    closed = jax.make_jaxpr(fn)(key)
    dependent = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(isinstance(v, jax.extend.core.Var) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return [isinstance(v, jax.extend.core.Var) and v in dependent for v in closed.jaxpr.outvars]


class StepInfo(NamedTuple):
    """What happened at each step (stacked over time by `run`)."""

    ess: jax.Array
    """ESS of the weights after extension."""
    resampled: jax.Array
    """Whether the particles were resampled before this step."""
    log_marginal_likelihood: jax.Array
    """The running estimate log Ẑ_{0:t}."""
    acceptance: jax.Array
    """Mean acceptance of the rejuvenation move (nan-free; 0 without rejuvenation)."""


class History(NamedTuple):
    """Per-step particle records, shape (T, N, ...), used for lineages and smoothing."""

    ancestors: jax.Array
    choices: Any
    carries: Any
    """The carries after each step (None under `return_traces="history"`)."""
    log_weights: jax.Array


class SMCResult(eqx.Module):
    """The outcome of `run`/`csmc`."""

    traces: ppl.Trace | None
    """Final particles as the model's traces, batched (None unless `return_traces=True`)."""
    carries: Any
    """Final particles' carries (what the scan's last step returned), batched; always kept."""
    log_weights: jax.Array
    """Final unnormalised log weights, shape (N,)."""
    log_marginal: jax.Array
    info: StepInfo
    history: History | None
    failed: jax.Array
    """True when some step gave every particle zero weight."""

    def log_marginal_likelihood(self) -> jax.Array:
        """log Ẑ (-inf when the run failed)."""
        return self.log_marginal

    def normalized_weights(self) -> jax.Array:
        """Final weights summing to one (all zero when the run failed)."""
        return resampling.weights(self.log_weights)

    def ess(self) -> jax.Array:
        """ESS of the final weights (0 when the run failed)."""
        return resampling.ess(self.log_weights)

    @property
    def choices(self) -> Any:
        return None if self.traces is None else self.traces.choices


def _gather(tree, idx):
    return jax.tree.map(lambda x: x[idx], tree)


def _set_slot(tree, slot, value):
    # a select fuses with the computation of `tree`; an in-place update of one slot made XLA copy every leaf
    def put(x, v):
        here = (jnp.arange(x.shape[0]) == slot).reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.where(here, v, x)

    return jax.tree.map(put, tree, value)


def _with_reference_carry(particles: Particles, slot, carry) -> Particles:
    """The particles with the reference's carry in its slot."""
    return particles._replace(carry=_set_slot(particles.carry, slot, carry))


def mh_rejuvenation(selection: ppl.Selection, n_steps: int = 1) -> Kernel:
    """`n_steps` Metropolis-Hastings moves on `selection` of a step, proposing from the prior (`regenerate`).

    Any `inference.mcmc.kernels` kernel (MALA, HMC, NUTS, Gibbs, their cycles) works as
    rejuvenation too; this is the gradient-free default.
    """
    return kernels.cycle(*[kernels.mh(selection)] * n_steps)


class _Config(NamedTuple):
    ss: StateSpace
    n: int
    proposal: ppl.GenFn | None
    scheme: str
    threshold: float
    rejuvenation: Kernel | None
    keep_history: bool | str
    ancestor_sampling: bool | str
    mesh: Any
    args: ScanArgs | None = None

    def step_args(self, particle: Particles, t) -> tuple:
        """The arguments of step `t` for one particle."""
        return self.ss.step_args(self.args.of(particle), t, particle.carry)


def _constrain(cfg: _Config, tree):
    """Keep particle-axis arrays sharded across the mesh (when one is given)."""
    if cfg.mesh is None:
        return tree
    spec = jax.sharding.NamedSharding(cfg.mesh, jax.sharding.PartitionSpec(cfg.mesh.axis_names[0]))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, spec) if x.ndim and x.shape[0] == cfg.n else x, tree)


def _replicated(cfg: _Config, x):
    """A full copy on every device: resampling decisions then match one device bit for bit."""
    if cfg.mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(cfg.mesh, jax.sharding.PartitionSpec()))


def _extend_one(cfg: _Config, key, particle: Particles, obs_t, t):
    """One particle, one step: (step trace, incremental log weight)."""
    step = cfg.ss.step
    args = cfg.step_args(particle, t)
    if cfg.proposal is None:
        return step.generate(key, obs_t, *args)
    k_q, k_p = ppl.streams.fold_in(key, 0), ppl.streams.fold_in(key, 1)
    q = cfg.proposal.simulate(k_q, obs_t, *args)
    tr, w = step.generate(k_p, ppl.choicemap.merge(q.choices, obs_t), *args)
    return tr, w - q.score


def _reference_step(cfg: _Config, key, particle: Particles, ref_t, obs_t, t):
    """The reference's step t from `particle`'s carry: (its trace, log p(x_t^ref, y_t | carry), its weight as if
    proposed, p / q). Ancestor sampling draws the reference's ancestor ∝ w_{t-1}^i times the second."""
    step = cfg.ss.step
    args = cfg.step_args(particle, t)
    tr, log_joint = step.generate(key, ref_t, *args)
    weighed = log_joint
    if _has_masked(obs_t):  # a masked-out observation is latent: weighed as the particles weigh it, not at all
        _, weighed = step.generate(key, ppl.choicemap.merge(latents(ref_t, obs_t), obs_t), *args)
    if cfg.proposal is None:  # bootstrap: q is the step's prior over its latent choices (project adds factors)
        return tr, log_joint, weighed - (step.project(tr, ~ppl.sel.of(obs_t)) - step.project(tr, ppl.sel.none()))
    log_q, _ = cfg.proposal.assess(latents(ref_t, obs_t), obs_t, *args)
    return tr, log_joint, weighed - log_q


def _step(cfg: _Config, observations, reference):
    """The body of the time loop."""

    def body(state, inputs):
        # lse_w, ess_w: of log_w, from the last step; ref_slot, ref_carry: the reference's slot and carry under CSMC
        particles, log_w, lse_w, ess_w, log_z, failed, ref_slot, ref_carry = state
        keys, t = inputs
        if reference is not None:  # the reference's carry from the last step takes its slot here (see below)
            particles = _with_reference_carry(particles, ref_slot, ref_carry)
        k_res, k_ext, k_rej = keys
        n = cfg.n
        # step t's slices are taken here, once, not inside the branches below: XLA's CPU runtime runs a branch's
        # kernels one after another only while every buffer they touch is at most 512 bytes, and as a task graph
        # otherwise; reading a whole (T,) array there cost ancestor sampling 0.6 us a step at N = 10, T = 200
        obs_t = cfg.ss.step_constraints(observations, t)
        ref_t = None if reference is None else jax.tree.map(lambda x: x[t], reference)

        # resample (never before the first step; always under CSMC)
        log_w = _replicated(cfg, log_w)
        if reference is not None or cfg.threshold >= 1.0:
            do_resample = t > 0
        else:
            do_resample = (t > 0) & (ess_w < cfg.threshold * n)

        def reference_steps(particles):
            """`_reference_step` from each of `particles`."""
            return jax.vmap(lambda p: _reference_step(cfg, k_ext, p, ref_t, obs_t, t))(particles)

        def with_reference(particles, *rest, ref_step=None):
            # the reference's step is weighted inside the branches: at N <= 128 their buffers are small enough
            # for that sequential execution, which the loop's body, writing the (T, N) history, never gets
            slot = rest[-1]
            if reference is not None and ref_step is None:
                ref_tr, _, ref_inc = _reference_step(cfg, k_ext, _gather(particles, slot), ref_t, obs_t, t)
                ref_step = ref_tr, ref_inc
            return particles, *rest, ref_step

        def resample(particles):
            slot, ref_step = ref_slot, None
            if reference is None:
                ancestors = resampling.get(cfg.scheme)(k_res, log_w, n)
            elif cfg.ancestor_sampling == "metropolis":  # conditional systematic: the reference's slot is drawn
                ancestors, slot = resampling.metropolis_ancestor_systematic(        # with the others' ancestors
                    k_res, log_w, ref_slot, lambda i: reference_steps(_gather(particles, i))[1])
            elif cfg.ancestor_sampling:  # the drawn ancestor's step comes with the N densities of the draw
                ref_trs, log_joints, ref_incs = reference_steps(particles)
                ancestors, slot = resampling.ancestor_sampled_systematic(k_res, log_w, log_w + log_joints)
                ref_step = _gather(ref_trs, ancestors[slot]), ref_incs[ancestors[slot]]
            else:
                ancestors, slot = resampling.conditional_systematic(k_res, log_w, ref_slot)
            kept = ancestors if cfg.keep_history else None  # a filter that keeps no history writes none
            return with_reference(_constrain(cfg, _gather(particles, ancestors)), kept, jnp.zeros(n),
                                  jnp.log(n).astype(lse_w.dtype), slot, ref_step=ref_step)

        def keep(particles):
            return with_reference(particles, jnp.arange(n) if cfg.keep_history else None, log_w, lse_w, ref_slot)

        # lax.cond skips the O(N log N) search and the gather on steps that do not resample
        particles, ancestors, log_w, lse_w, ref_slot, ref_step = jax.lax.cond(do_resample, resample, keep, particles)

        # extend: the particles share k_ext, each drawing from its own stream of it (see ppl.streams)
        traces, inc = jax.vmap(lambda i, p: _extend_one(cfg, ppl.Streams(k_ext, i), p, obs_t, t))(
            jnp.arange(n), particles)

        # rejuvenate: an MCMC move that leaves the step's target invariant keeps the weights proper
        acceptance = jnp.zeros(())
        if cfg.rejuvenation is not None:
            def move(k, tr, p):
                kernel = cfg.rejuvenation
                moved, info = kernel.step(k, kernel.init(tr), cfg.ss.step, cfg.step_args(p, t))
                return moved, info.accept_prob

            traces, accepted = jax.vmap(move)(jax.random.split(k_rej, n), traces, particles)
            acceptance = jnp.mean(accepted)

        choices = traces.choices
        carry = jax.vmap(lambda tr: cfg.ss.next_carry(tr.retval))(traces)
        if reference is not None:
            # the reference's step takes its slot in the choices and weights; in the carry only at the next step,
            # so the extension's carry is written as it is: XLA recomputed an unwritten one (the model's random
            # draws included) inside each fusion that read it, 3 to 4 times, 2.6 us a step at N = 1000
            ref_tr, ref_inc = ref_step
            ref_carry = cfg.ss.next_carry(ref_tr.retval)
            choices, inc = _set_slot((choices, inc), ref_slot, (ref_tr.choices, ref_inc))

        # a failed run stays failed (Ẑ = 0); the where fuses with the sum, where this step's failure (weights
        # that are NaN, not -inf) would cost a pass of its own: those are cleared by the next step or by _run
        new_log_w = jnp.where(failed, -jnp.inf, log_w + inc)
        total_new = logsumexp(new_log_w)
        if reference is None:
            step_failed = ~jnp.isfinite(total_new)
        else:  # the reference's weight is finite unless the reference is impossible, so a CSMC kernel, which
            # keeps no log Ẑ, needs no log-sum-exp: no weight may be NaN or +inf, nor the reference's -inf
            step_failed = ~(jnp.all(new_log_w < jnp.inf) & (new_log_w[ref_slot] > -jnp.inf))
        failed = failed | step_failed
        log_z = jnp.where(failed, -jnp.inf, log_z + jnp.where(step_failed, 0.0, total_new - lse_w))
        total_new = jnp.where(failed, -jnp.inf, total_new)
        new_ess = resampling.ess(new_log_w, total_new)
        particles = _constrain(cfg, particles._replace(carry=carry))
        info = StepInfo(new_ess, do_resample, log_z, acceptance)
        # "history" keeps no carries: they can be large (a language model's cache); "lineage" keeps no weights,
        # nor the observed values, which are the same for every particle (a (T, N) record fewer to write)
        kept_carry = None
        if cfg.keep_history is True:
            kept_carry = carry if reference is None else _set_slot(carry, ref_slot, ref_carry)
        if cfg.keep_history == "lineage":
            choices = latents(choices, _unmasked(obs_t))
        record = None if not cfg.keep_history else History(
            ancestors, choices, kept_carry,
            None if cfg.keep_history == "lineage" else jnp.where(failed, -jnp.inf, new_log_w))
        return (particles, new_log_w, total_new, new_ess, log_z, failed, ref_slot, ref_carry), (info, record)

    return body


def _run(key, cfg: _Config, args: tuple, observations, reference_prefix, reference_steps):
    cfg.ss.check_observations(observations)  # each step slices its block: a wrong length would go unseen
    k_init, k_steps = jax.random.split(key)
    # a reference's observed values are the observations themselves: given once
    reference_prefix = None if reference_prefix is None else latents(reference_prefix, observations)
    prefix_constraints = ppl.choicemap.merge(_outside(observations, cfg.ss.path), reference_prefix)

    def prefix_of(k):
        return cfg.ss.generate_prefix(k, prefix_constraints, args)

    prefix = jax.vmap(prefix_of)(jax.random.split(k_init, cfg.n))
    leaves, treedef = jax.tree.flatten(prefix.scan_args)
    per_particle = _key_dependent(lambda k: jax.tree.leaves(prefix_of(k).scan_args), k_init)
    cfg = cfg._replace(args=ScanArgs(treedef, {i: x[0] for i, x in enumerate(leaves) if not per_particle[i]}))
    batched_args = {i: x for i, x in enumerate(leaves) if per_particle[i]}
    particles = _constrain(cfg, Particles(prefix.choices, batched_args, prefix.scan_args[0]))
    log_w = prefix.weight
    lse_w = logsumexp(log_w)
    log_z0 = lse_w - jnp.log(cfg.n)
    failed = ~jnp.isfinite(log_z0)
    ref_slot = jnp.zeros((), jnp.int32)  # the first particles are i.i.d.: the reference may start anywhere
    state = (particles, log_w, lse_w, resampling.ess(log_w, lse_w), jnp.where(failed, -jnp.inf, log_z0), failed,
             ref_slot, None if reference_steps is None else _gather(particles.carry, 0))
    T = cfg.ss.length
    body = _step(cfg, observations, reference_steps)
    (particles, log_w, _, _, log_z, failed, ref_slot, ref_carry), (info, history) = jax.lax.scan(
        # every step's three keys in one vectorised hash (a split inside the loop is a loop of its own per step)
        body, state, (jax.random.split(k_steps, (T, 3)), jnp.arange(T))
    )
    if reference_steps is not None:
        particles = _with_reference_carry(particles, ref_slot, ref_carry)
    return particles, jnp.where(failed, -jnp.inf, log_w), log_z, failed, info, history, ref_slot


def _reference_first(particles: Particles, log_w, history: History, slot):
    """The final particles relabelled so that the reference's is slot 0 (their order is free: nothing follows)."""
    order = jnp.arange(log_w.shape[0]).at[0].set(slot).at[slot].set(0)
    history = jax.tree.map(lambda x: x.at[-1].set(x[-1][order]), history)
    return _gather(particles, order), log_w[order], history


def _outside(observations, path):
    """The observations that are not inside the scan's block."""
    observations = ppl.choicemap.normalize(observations)
    if len(path) == 1:
        return {k: v for k, v in observations.items() if k != path[0]}
    return observations


def _is_masked(x) -> bool:
    return isinstance(x, ppl.choicemap.Masked)


def _has_masked(observations) -> bool:
    """Whether some observation is `Masked` (latent where it is masked out)."""
    return any(map(_is_masked, jax.tree.leaves(observations, is_leaf=_is_masked)))


def _unmasked(observations):
    """The observations without their `Masked` leaves: the values observed at every step."""
    if isinstance(observations, dict):
        kept = {k: _unmasked(v) for k, v in observations.items()}
        return {k: v for k, v in kept.items() if v is not None}
    return None if _is_masked(observations) else observations


def _lineage(history: History, b) -> Any:
    """The step choices of final particle `b`, traced back through its ancestors: (T, ...)."""

    def back(b, record):
        ancestors, choices = record
        return ancestors[b], _gather(choices, b)

    _, steps = jax.lax.scan(back, b, (history.ancestors, history.choices), reverse=True)
    return steps


def _lineages(history: History):
    """Every final particle's lineage: (N, T, ...)."""
    return jax.vmap(lambda b: _lineage(history, b))(jnp.arange(history.ancestors.shape[1]))


def _final_traces(key, cfg: _Config, model, args, particles: Particles, history: History):
    steps = _lineages(history)
    full = jax.vmap(lambda p, s: cfg.ss.full_choices(p, s))(particles.prefix, steps)
    traces, _ = jax.vmap(lambda k, c: model.generate(k, c, *args))(jax.random.split(key, cfg.n), full)
    return traces


@jit
def _run_compiled(key, model, args, observations, reference, cfg_static):
    ss = state_space(model, args)
    cfg = _Config(ss, *cfg_static)
    ref_prefix, ref_steps = (None, None) if reference is None else reference
    particles, log_w, log_z, failed, info, history, ref_slot = _run(key, cfg, args, observations, ref_prefix,
                                                                    ref_steps)
    if reference is not None:
        particles, log_w, history = _reference_first(particles, log_w, history, ref_slot)
    traces = None
    if cfg.keep_history is True:
        traces = _constrain(cfg, _final_traces(jax.random.fold_in(key, 1), cfg, model, args, particles, history))
    return SMCResult(traces, particles.carry, log_w, log_z, info, history if cfg.keep_history else None, failed)


def run(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    proposal: ppl.GenFn | None = None,
    resampling_scheme: str = "systematic",
    ess_threshold: float = 0.5,
    rejuvenation: Kernel | None = None,
    return_traces: bool | str = True,
    mesh: jax.sharding.Mesh | None = None,
) -> SMCResult:
    """Sequential Monte Carlo over the steps of `model`'s `ppl.scan` (see the module docstring).

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
        mesh: a one-axis `jax.sharding.Mesh` to shard the particles across devices.
    """
    n_particles = _check_run_args(n_particles, ess_threshold, resampling_scheme, mesh)
    if return_traces not in (True, False, "history"):
        raise ValueError(f"return_traces is True, False or 'history', got {return_traces!r}")
    cfg = (n_particles, proposal, resampling_scheme, float(ess_threshold), rejuvenation, return_traces, False, mesh)
    return _run_compiled(key, model, inputs.model_args(args), inputs.observations(observations), None, cfg)


def csmc(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    reference: dict,
    n_particles: int,
    ancestor_sampling: bool | str = True,
    proposal: ppl.GenFn | None = None,
) -> SMCResult:
    """Conditional SMC: `reference` (a full choice map of the model) is kept as one of the particles.

    Every particle shares the reference's choices before the scan (static
    parameters are conditioned on, as in particle Gibbs). Resampling happens at
    every step, by conditional systematic resampling: the reference's slot and the
    shared uniform are drawn together given the reference's ancestor, which keeps
    the CSMC kernel exact (`resampling.conditional_systematic`; overwriting one slot
    of an ordinary systematic draw would not be). The reference's ancestor is its
    own past without ancestor sampling; with `ancestor_sampling=True` it is drawn
    ∝ w_{t-1}^i p(x_t^ref, y_t | carry_{t-1}^i) (N densities per step); with
    `"metropolis"` it takes one Metropolis-Hastings step towards that law
    (`resampling.metropolis_ancestor_systematic`: two densities per step, nearly the
    same mixing). The final traces' slot 0 is the reference (up to ancestor
    sampling rewriting its past).
    """
    n_particles = _check_run_args(n_particles, 1.0, "systematic", None)
    _check_ancestor_sampling(ancestor_sampling)
    args = inputs.model_args(args)
    ss = state_space(model, args)
    reference = ppl.choicemap.normalize(reference)
    steps = ppl.choicemap.subconstraint(reference, ss.path)
    prefix = _outside(reference, ss.path)
    cfg = (n_particles, proposal, "systematic", 1.0, None, True, ancestor_sampling, None)
    return _run_compiled(key, model, args, inputs.observations(observations), (prefix, steps), cfg)


def csmc_kernel(
    observations: dict,
    n_particles: int,
    ancestor_sampling: bool | str = True,
    backward_sampling: bool = False,
    proposal: ppl.GenFn | None = None,
) -> Kernel:
    """The conditional SMC move of particle Gibbs, as an `inference.mcmc` kernel on a model's trace.

    `step(key, trace, model, args)` runs CSMC with the trace's trajectory (its
    scan block) as the reference and the trace's other choices (static parameters)
    held fixed, then draws the new trajectory: the lineage of a particle chosen by
    its final weight, or, with `backward_sampling`, a backward-simulated path
    (Whiteley 2010). Either leaves p(trajectory | parameters, observations)
    invariant (Andrieu, Doucet & Holenstein 2010). `ancestor_sampling` is as in
    `csmc` (True, "metropolis" or False). `Info.accepted` says whether the
    trajectory changed. Cycle it with kernels on the parameters for particle Gibbs:

        kernels.cycle(smc.csmc_kernel(obs, 20), kernels.nuts(ppl.sel("sigma"), 0.2))
    """
    n_particles = _check_run_args(n_particles, 1.0, "systematic", None)
    _check_ancestor_sampling(ancestor_sampling)
    step = _CSMCStep(inputs.observations(observations), n_particles, ancestor_sampling, backward_sampling, proposal)
    return Kernel(kernels.identity, step)


class _CSMCStep(eqx.Module):
    """`csmc_kernel`'s step as a pytree: the observations are traced leaves and the settings compare by
    value, so a compiled program that takes the kernel is reused across calls (a closure would not be)."""

    observations: dict
    n_particles: int = eqx.field(static=True)
    ancestor_sampling: bool | str = eqx.field(static=True)
    backward_sampling: bool = eqx.field(static=True)
    proposal: Any = eqx.field(static=True)

    def __call__(self, key, trace, gen_fn, args):
        k_run, k_pick, k_gen = jax.random.split(key, 3)
        ss = state_space(gen_fn, args)
        # the lineage needs ancestors and choices only; backward sampling also needs every step's carries
        history = True if self.backward_sampling else "lineage"
        cfg = _Config(ss, self.n_particles, self.proposal, "systematic", 1.0, None, history, self.ancestor_sampling,
                      None)
        prefix = _outside(trace.choices, ss.path)
        reference = ppl.choicemap.subconstraint(trace.choices, ss.path)
        observed = _unmasked(ppl.choicemap.subconstraint(self.observations, ss.path))
        _, log_w, _, failed, _, history, _ = _run(k_run, cfg, args, self.observations, prefix, reference)
        if self.backward_sampling:
            steps = latents(_backward_one(k_pick, ss, ss.generate_prefix(k_gen, prefix, args).scan_args, history),
                            observed)
        else:  # the lineage record holds the latent choices only
            steps = _lineage(history, resampling.categorical(k_pick, log_w, 1)[0])
        # only an impossible reference fails: its path is kept (selecting the path, not the trace's every leaf)
        old = latents(reference, observed)
        steps = jax.tree.map(lambda a, b: jnp.where(failed, b, a), steps, old)
        new, _ = gen_fn.generate(k_gen, ss.full_choices(prefix, ppl.choicemap.merge(steps, observed)), *args)
        changed = jnp.any(jnp.stack([jnp.any(a != b) for a, b in zip(jax.tree.leaves(steps), jax.tree.leaves(old))]))
        return new, kernels.Info(jnp.ones(()), changed & ~failed, failed, jnp.zeros((), jnp.int32))  # NaN != NaN


def backward_sample(key: jax.Array, model: ppl.GenFn, args: tuple, result: SMCResult, n_samples: int = 1) -> Any:
    """Trajectories from the smoothing distribution by backward simulation.

    Returns the scan block's step choices, shape (n_samples, T, ...). Uses the
    stored per-step weighted particles; the prefix (static parameters) must be
    the same for all particles (as under `csmc`, or a model without prefix choices).
    """
    if result.history is None or result.history.carries is None:
        raise ValueError("backward_sample needs the per-step history with carries: run smc with return_traces=True")
    return _backward_compiled(key, model, tuple(args), result.history, result.traces, n_samples)


@jit
def _backward_compiled(key, model, args, history: History, traces, n_samples):
    ss = state_space(model, args)
    scan_args = _scan_args_of(ss, traces, args)
    return jax.vmap(lambda k: _backward_one(k, ss, scan_args, history))(jax.random.split(key, n_samples))


def _backward_one(key, ss: StateSpace, scan_args, history: History):
    """One trajectory of step choices (T, ...) by backward simulation through `history`."""
    T = history.log_weights.shape[0]
    keys = jax.random.split(key, T)
    last = resampling.categorical(keys[-1], history.log_weights[-1], 1)[0]
    x_last = _gather(_gather(history.choices, T - 1), last)

    def back(x_next, inputs):
        t, k = inputs  # choose x_t given x_{t+1}
        carries = _gather(history.carries, t)
        logits = history.log_weights[t] + jax.vmap(
            lambda c: ss.step.assess(x_next, *ss.step_args(scan_args, t + 1, c))[0]
        )(carries)
        x_t = _gather(_gather(history.choices, t), resampling.categorical(k, logits, 1)[0])
        return x_t, x_t

    _, xs = jax.lax.scan(back, x_last, (jnp.arange(T - 1), keys[:-1]), reverse=True)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), xs, x_last)


def _scan_args_of(ss: StateSpace, traces, args):
    """The scan's arguments (shared by all particles) from particle 0's trace."""
    first = jax.tree.map(lambda x: x[0], traces)
    prefix = ss.generate_prefix(jax.random.key(0), _outside(first.choices, ss.path), args)
    return prefix.scan_args


def _check_run_args(n_particles, ess_threshold, scheme, mesh) -> int:
    """The settings' errors, before anything is traced; returns N as a Python int."""
    n_particles = inputs.count("n_particles", n_particles)
    if not 0.0 <= float(ess_threshold) <= 1.0:
        raise ValueError(f"ess_threshold is a fraction of N in [0, 1], got {ess_threshold!r}")
    resampling.get(scheme)  # names the valid schemes if unknown
    if mesh is not None:
        if len(mesh.axis_names) != 1:
            raise ValueError("smc.run shards particles along a one-axis mesh; build jax.sharding.Mesh(devices, ('p',))")
        if n_particles % mesh.devices.size:
            raise ValueError(f"n_particles ({n_particles}) must be a multiple of the mesh size ({mesh.devices.size})")
    return n_particles


def _check_ancestor_sampling(ancestor_sampling) -> None:
    if ancestor_sampling not in (True, False, "metropolis"):
        raise ValueError(f'ancestor_sampling is True (an exact draw), "metropolis" (one Metropolis-Hastings step) or '
                         f"False, got {ancestor_sampling!r}")
