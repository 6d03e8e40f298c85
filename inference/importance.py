"""Importance sampling and sampling importance resampling, through the GFI.

With the prior as proposal, each particle is `model.generate(key, observations, *args)`
and its log weight is log p(observations | latents) (plus factors). With a custom
proposal q, a generative function over the model's latent addresses called as
`proposal(*proposal_args)`, each particle samples q, then constrains the model to
q's choices and the observations:

    log w = log p(latents, observations) - log q(latents).

The estimate of the log marginal likelihood is log Ẑ = logsumexp(log w) - log N
(Ẑ is unbiased; log Ẑ is biased low by about Var(Ẑ/Z)/2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl

from . import inputs, resampling, sharding
from ._jit import jit
from .draws import Posterior
from .progress import advance, progress, tracing
from .weighted import WeightedParticles

__all__ = ["ImportanceResult", "run", "sample_importance_resampling"]


class ImportanceResult(WeightedParticles):
    """Weighted particles from importance sampling: the model's traces, batched along a leading particle axis,
    and their unnormalised log importance weights, shape (N,)."""

    def log_marginal_likelihood(self) -> jax.Array:
        """log Ẑ = logsumexp(log w) - log N; -inf when every weight is zero."""
        return logsumexp(self.log_weights) - jnp.log(self.log_weights.shape[0])


def _particles(key, model, args, observations, proposal, proposal_args, n_particles: int, progress_bar: bool, mesh):
    """Every particle's trace and log weight: one `vmap` over the particles, or, with the bar, chunks of them in a
    loop with a callback after each (each particle draws from its own stream, so the numbers are the same). Under a
    mesh each device computes its own block of particles (its chunks of them, with the bar)."""

    def one(i):
        stream = ppl.Streams(key, i)  # all particles share the key, each draws from its own stream
        if proposal is None:
            return model.generate(stream, observations, *args)
        k_q, k_p = ppl.streams.fold_in(stream, 0), ppl.streams.fold_in(stream, 1)
        q = proposal.simulate(k_q, *proposal_args)
        tr, w = model.generate(k_p, ppl.choicemap.merge(q.choices, observations), *args)
        return tr, w - q.score

    if not progress_bar:
        return sharding.shard(mesh, jax.vmap(one)(sharding.shard(mesh, jnp.arange(n_particles), n_particles)),
                              n_particles)
    d = sharding.size(mesh)
    per_device = n_particles // d
    size = -(-per_device // 100)  # about 100 chunks, so about 100 updates of the bar
    n_chunks = -(-per_device // size)  # the last one padded with particles that are dropped

    def chunk(c):
        ids = sharding.shard(mesh, jnp.arange(d)[:, None] * per_device + c * size + jnp.arange(size), d)
        out = jax.vmap(jax.vmap(one))(ids)
        advance(jnp.minimum((c + 1) * size, per_device) * d, n_particles)
        return out

    chunks = jax.lax.map(chunk, jnp.arange(n_chunks))  # (chunk, device, particle, ...)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape(d, n_chunks * size, *x.shape[3:])[:, :per_device]
                        .reshape(n_particles, *x.shape[3:]), chunks)


_compiled_particles = jit(_particles)


def run(
    key: jax.Array,
    model: ppl.GenFn,
    args: tuple,
    observations: dict,
    n_particles: int,
    proposal: ppl.GenFn | None = None,
    proposal_args: tuple = (),
    progress_bar: bool = False,
    mesh: jax.sharding.Mesh | int | None = None,
) -> ImportanceResult:
    """Importance sampling with `n_particles` particles (see the module docstring).

    `mesh` splits the particles across devices (`inference.sharding`: a one-axis `jax.sharding.Mesh` or a device
    count; `n_particles` a multiple of it): each device computes its own, with no communication, and the result's
    traces and weights stay sharded. They are one device's numbers where XLA compiles a device's batch of particles
    as it compiles all N (the bar's chunks it may vectorise otherwise: then to float32 rounding); log Ẑ, a sum over
    particles, to float32 rounding.

    `progress_bar` shows a tqdm bar of the particles: they are then computed in about 100 chunks, one
    `vmap` each, with the bar advanced from inside the compiled program after each chunk (the same
    numbers as without the bar, which computes them in one `vmap`; none under a caller's `jit` or `vmap`).
    """
    args, observations = inputs.model_args(args), inputs.observations(observations)
    n_particles = inputs.count("n_particles", n_particles)
    mesh = sharding.mesh_of(mesh)
    sharding.check_size(mesh, n_particles, "n_particles")
    progress_bar = bool(progress_bar) and not tracing(key, args, observations, proposal_args)
    with progress(progress_bar, n_particles, "importance", unit="particle"):
        traces, log_w = _compiled_particles(key, model, args, observations, proposal, proposal_args, n_particles,
                                            progress_bar, mesh)
        if progress_bar:
            jax.block_until_ready(log_w)
    return ImportanceResult(traces, log_w, posterior=Posterior(model, args, observations))


def sample_importance_resampling(
    key: jax.Array, result: ImportanceResult, n_samples: int, scheme: str = "systematic"
) -> ppl.Trace:
    """Draw `n_samples` traces (equally weighted) from weighted particles."""
    ancestors = resampling.get(scheme)(key, result.log_weights, n_samples)
    return jax.tree.map(lambda x: x[ancestors], result.traces)
