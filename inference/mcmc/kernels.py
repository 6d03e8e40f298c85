"""MCMC kernels on a selection of a trace, as pure `init`/`step` pairs.

    kernel = kernels.nuts(ppl.sel("mu") | ppl.sel("tau"), step_size=0.3)
    state = kernel.init(trace)
    state, info = kernel.step(key, state, model, args)

A kernel's state is the trace it moves; `step` leaves the model's posterior
(the trace's observations held fixed) invariant. The model and its arguments
are given at each step, so one kernel serves every particle and time step of
SMC rejuvenation and particle Gibbs.

Each kernel's `init` and `step` are equinox modules, not closures: a kernel
built again with equal settings is equal to the first (selections compare by
value, settings that shape the program are static fields, numbers are leaves:
static when Python numbers, traced when arrays), so a compiled program that
takes it is reused. Kernels:

- `mh`: Metropolis-Hastings proposing the selection from the prior (`regenerate`).
- `mh_proposal`: MH with a custom proposal, itself a generative function;
  forward and backward proposal densities come from the GFI.
- `gibbs`: enumerative Gibbs for one discrete address with finite support.
- `mala`, `hmc`, `nuts`: gradient-based, on the unconstrained space of the
  selection (numpyro bijections, Jacobian included). HMC and NUTS use
  numpyro's velocity Verlet integrator and NUTS tree builder.
- `cycle`, `mixture`: compositions (Gibbs-within-MH blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import build_tree, euclidean_kinetic_energy, velocity_verlet

import ppl

from .target import target

__all__ = ["Info", "Kernel", "cycle", "gibbs", "hmc", "mala", "mh", "mh_proposal", "mixture", "nuts"]


class Info(NamedTuple):
    """What one step did."""

    accept_prob: jax.Array
    """The MH acceptance probability (for NUTS, the mean over the tree)."""
    accepted: jax.Array
    """Whether the state changed (NUTS: whether the proposal differs from the start)."""
    diverging: jax.Array
    num_steps: jax.Array
    """Leapfrog steps (gradient evaluations) taken; 0 for gradient-free kernels."""


class Kernel(NamedTuple):
    """A transition kernel: `init(trace) -> state`, `step(key, state, gen_fn, args) -> (state, Info)`."""

    init: Callable[[ppl.Trace], ppl.Trace]
    step: Callable[[jax.Array, ppl.Trace, ppl.GenFn, tuple], tuple[ppl.Trace, Info]]


def identity(trace):
    """The `init` of a kernel whose state is the trace itself."""
    return trace


def _info(accept_prob, accepted, diverging=False, num_steps=0) -> Info:
    return Info(jnp.asarray(accept_prob, jnp.float32), jnp.asarray(accepted), jnp.asarray(diverging),
                jnp.asarray(num_steps, jnp.int32))


def _accept(key, log_alpha, new, old):
    """Metropolis-Hastings: keep `new` with probability min(1, exp(log_alpha)); NaN is a rejection."""
    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    accept = jnp.log(jax.random.uniform(key)) < log_alpha
    state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)
    return state, _info(jnp.minimum(1.0, jnp.exp(log_alpha)), accept)


def mh(selection: ppl.Selection) -> Kernel:
    """MH proposing `selection` afresh from the prior (the weight of `regenerate`)."""
    return Kernel(identity, _MH(selection))


class _MH(eqx.Module):
    """`mh`'s step."""

    selection: ppl.Selection = eqx.field(static=True)

    def __call__(self, key, trace, gen_fn, args):
        k_prop, k_acc = jax.random.split(key)
        new, log_alpha = gen_fn.regenerate(k_prop, trace, self.selection, *args)
        return _accept(k_acc, log_alpha, new, trace)


def mh_proposal(proposal: ppl.GenFn) -> Kernel:
    """MH with a custom proposal `proposal(choices, *args)`: a generative function of the current choices.

    Its choices are the model addresses it proposes new values for. The
    acceptance ratio is p(new) q(old | new) / (p(old) q(new | old)); the
    backward density assesses the discarded old values under the proposal run
    from the new trace, so the proposal must be able to propose them (same
    addresses whatever the current state).
    """
    return Kernel(identity, _MHProposal(proposal))


class _MHProposal(eqx.Module):
    """`mh_proposal`'s step."""

    proposal: ppl.GenFn

    def __call__(self, key, trace, gen_fn, args):
        k_prop, k_upd, k_acc = jax.random.split(key, 3)
        forward = self.proposal.simulate(k_prop, trace.choices, *args)
        new, log_w, discard = gen_fn.update(k_upd, trace, forward.choices, *args)
        log_q_back, _ = self.proposal.assess(discard, new.choices, *args)
        return _accept(k_acc, log_w + log_q_back - forward.score, new, trace)


def gibbs(address, values) -> Kernel:
    """Enumerative Gibbs for one discrete `address`: draw it from its full conditional.

    `values` lists the candidate values of the whole address, one per row: `jnp.arange(K)`
    for a scalar with K states, shape (K, *value_shape) for an array value (enumerated
    jointly, so keep such blocks small). The conditional is computed by `update` of the
    trace at every candidate, so it is exact and costs one model evaluation per row.
    """
    path = ppl.address_path(address)
    return Kernel(identity, _Gibbs(path, jnp.asarray(values)))


class _Gibbs(eqx.Module):
    """`gibbs`'s step."""

    path: tuple = eqx.field(static=True)
    values: jax.Array

    def _constraint(self, v):
        node = v
        for k in reversed(self.path):
            node = {k: node}
        return node

    def __call__(self, key, trace, gen_fn, args):
        k_upd, k_draw = jax.random.split(key)
        current = trace[self.path]
        if self.values.shape[1:] != jnp.shape(current):
            raise ValueError(
                f"gibbs at {'/'.join(map(str, self.path))}: the address holds shape {jnp.shape(current)} but the "
                f"values have shape {self.values.shape[1:]}; give one value per row of `values`"
            )
        values = self.values.astype(jnp.asarray(current).dtype)
        traces, log_w, _ = jax.vmap(lambda v: gen_fn.update(k_upd, trace, self._constraint(v), *args))(values)
        i = jax.random.categorical(k_draw, log_w)
        new = jax.tree.map(lambda x: x[i], traces)
        return new, _info(1.0, jnp.any(values[i] != current))


def mala(selection: ppl.Selection, step_size: float) -> Kernel:
    """Metropolis-adjusted Langevin on the unconstrained space of `selection`.

    Proposal u' ~ N(u + ε ∇log p(u), 2ε I), corrected by MH with the reverse
    proposal density.
    """
    return Kernel(identity, _MALA(selection, step_size))


class _MALA(eqx.Module):
    """`mala`'s step."""

    selection: ppl.Selection = eqx.field(static=True)
    step_size: float | jax.Array

    def __call__(self, key, trace, gen_fn, args):
        k_noise, k_acc = jax.random.split(key)
        eps = self.step_size
        tgt = target(gen_fn, trace, self.selection, args)
        value_and_grad = jax.value_and_grad(tgt.log_density)

        def log_q(to, frm, grad_frm):  # log N(to | frm + ε grad, 2ε), up to a constant that cancels
            return -jnp.sum((to - frm - eps * grad_frm) ** 2) / (4.0 * eps)

        u = tgt.position
        logp, grad = value_and_grad(u)
        proposal = u + eps * grad + jnp.sqrt(2.0 * eps) * jax.random.normal(k_noise, u.shape)
        logp_new, grad_new = value_and_grad(proposal)
        log_alpha = logp_new - logp + log_q(u, proposal, grad_new) - log_q(proposal, u, grad)
        new_trace, info = _accept(k_acc, log_alpha, tgt.to_trace(proposal), trace)
        return new_trace, info._replace(num_steps=jnp.asarray(2, jnp.int32))


def _hamiltonian(tgt, inverse_mass_matrix):
    inv_mass = jnp.broadcast_to(jnp.asarray(inverse_mass_matrix, tgt.position.dtype), tgt.position.shape)

    def potential(u):
        return -tgt.log_density(u)

    init, update = velocity_verlet(potential, euclidean_kinetic_energy)
    return inv_mass, init, update


def _momentum(key, inv_mass):
    return jax.random.normal(key, inv_mass.shape) / jnp.sqrt(inv_mass)


def _start(key, trace, gen_fn, args, selection, inverse_mass_matrix):
    """A Hamiltonian trajectory's start: the target, the inverse mass, the integrator's update, and the
    integrator state at the trace's position with a fresh momentum."""
    tgt = target(gen_fn, trace, selection, args)
    inv_mass, init, update = _hamiltonian(tgt, inverse_mass_matrix)
    return tgt, inv_mass, update, init(tgt.position, _momentum(key, inv_mass))


def hmc(selection: ppl.Selection, step_size: float, num_steps: int, inverse_mass_matrix=1.0) -> Kernel:
    """Hamiltonian Monte Carlo on the unconstrained space of `selection` (numpyro's velocity Verlet).

    `inverse_mass_matrix` is diagonal: a scalar or a vector over the flattened
    unconstrained selection.
    """
    return Kernel(identity, _HMC(selection, step_size, inverse_mass_matrix, num_steps))


class _HMC(eqx.Module):
    """`hmc`'s step; the number of leapfrog steps shapes the program, so it is static."""

    selection: ppl.Selection = eqx.field(static=True)
    step_size: float | jax.Array
    inverse_mass_matrix: float | jax.Array
    num_steps: int = eqx.field(static=True)

    def __call__(self, key, trace, gen_fn, args):
        k_mom, k_acc = jax.random.split(key)
        tgt, inv_mass, update, state = _start(k_mom, trace, gen_fn, args, self.selection, self.inverse_mass_matrix)
        energy0 = state.potential_energy + euclidean_kinetic_energy(inv_mass, state.r)
        end = jax.lax.fori_loop(0, self.num_steps, lambda _, s: update(self.step_size, inv_mass, s), state)
        energy1 = end.potential_energy + euclidean_kinetic_energy(inv_mass, end.r)
        new_trace, info = _accept(k_acc, energy0 - energy1, tgt.to_trace(end.z), trace)
        return new_trace, info._replace(diverging=~jnp.isfinite(energy1) | (energy1 - energy0 > 1000.0),
                                        num_steps=jnp.asarray(self.num_steps, jnp.int32))


def nuts(selection: ppl.Selection, step_size: float, inverse_mass_matrix=1.0, max_tree_depth: int = 10) -> Kernel:
    """The No-U-Turn sampler on the unconstrained space of `selection` (numpyro's tree builder).

    Step size and diagonal inverse mass matrix are fixed; `mcmc.nuts` adapts
    them during warm-up for whole-model runs.
    """
    return Kernel(identity, _NUTS(selection, step_size, inverse_mass_matrix, max_tree_depth))


class _NUTS(eqx.Module):
    """`nuts`'s step; the maximum tree depth shapes the program, so it is static."""

    selection: ppl.Selection = eqx.field(static=True)
    step_size: float | jax.Array
    inverse_mass_matrix: float | jax.Array
    max_tree_depth: int = eqx.field(static=True)

    def __call__(self, key, trace, gen_fn, args):
        k_mom, k_tree = jax.random.split(key)
        tgt, inv_mass, update, state = _start(k_mom, trace, gen_fn, args, self.selection, self.inverse_mass_matrix)
        tree = build_tree(update, euclidean_kinetic_energy, state, inv_mass, self.step_size, k_tree,
                          max_tree_depth=self.max_tree_depth)
        accept_prob = tree.sum_accept_probs / tree.num_proposals
        moved = jnp.any(tree.z_proposal != tgt.position)
        return tgt.to_trace(tree.z_proposal), _info(accept_prob, moved, tree.diverging, tree.num_proposals)


def cycle(*kernels: Kernel) -> Kernel:
    """Apply each kernel in turn (a systematic-scan Gibbs sweep of blocks)."""
    return Kernel(_InitEach(kernels), _CycleStep(kernels))


class _InitEach(eqx.Module):
    """The `init` of a composition: each kernel's `init` in turn."""

    kernels: tuple

    def __call__(self, trace):
        for k in self.kernels:
            trace = k.init(trace)
        return trace


class _CycleStep(eqx.Module):
    """`cycle`'s step."""

    kernels: tuple

    def __call__(self, key, trace, gen_fn, args):
        infos = []
        for k, kernel in zip(jax.random.split(key, len(self.kernels)), self.kernels):
            trace, info = kernel.step(k, trace, gen_fn, args)
            infos.append(info)
        return trace, _mean_info(infos)


def mixture(kernels: list[Kernel], probs: Any = None) -> Kernel:
    """Apply one kernel chosen at random (with `probs`, uniform by default): a random-scan sweep."""
    probs = jnp.full(len(kernels), 1.0 / len(kernels)) if probs is None else jnp.asarray(probs)
    return Kernel(_InitEach(tuple(kernels)), _MixtureStep(tuple(kernels), probs))


class _MixtureStep(eqx.Module):
    """`mixture`'s step."""

    kernels: tuple
    probs: jax.Array

    def __call__(self, key, trace, gen_fn, args):
        k_choose, k_step = jax.random.split(key)
        i = jax.random.categorical(k_choose, jnp.log(self.probs))
        branches = [lambda t, kernel=kernel: kernel.step(k_step, t, gen_fn, args) for kernel in self.kernels]
        return jax.lax.switch(i, branches, trace)


def _mean_info(infos: list[Info]) -> Info:
    return Info(
        jnp.mean(jnp.stack([i.accept_prob for i in infos])),
        jnp.any(jnp.stack([i.accepted for i in infos])),
        jnp.any(jnp.stack([i.diverging for i in infos])),
        sum(i.num_steps for i in infos),
    )
