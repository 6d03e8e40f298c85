"""Resampling particles split across the devices of a mesh, by collectives inside `jax.shard_map`.

`resample(key, log_weights, tree, scheme, mesh)` is what the drivers call: without a mesh it is the scheme of
`inference.resampling` followed by a gather. Under a mesh the N particles are split in D blocks of n = N / D, block d
on device d, and the drawn particles travel to the slots that drew them around the ring of devices (`ring.gather`:
O(n) particles of memory a device, R ring steps each way, R the farthest a drawn particle travels: one or two when
every device holds a fair share of the weight, D - 1 when one device holds it all, which costs what an `all_gather` of
the particles costs). The ancestors are found in one of two ways (`cumulative_weights`):

"prefix_sum" (the default), O(n) memory and O(D) values exchanged:

1. the weights: exp(log w - max) with the largest log weight found by a `pmax`, so each device's weights are one
   device's, bit for bit;
2. the cumulative weights W_i by a cross-device prefix sum: the cumulative sum of the device's own weights, plus the
   exclusive scan of the D block totals (an `all_gather` of D scalars, summed in the same order on every device, so
   that all devices agree bit for bit on each block's stretch of the total). The local sums are kept flat across zero
   weights, so that no particle of zero weight is ever drawn;
3. the scheme's points u_k W for this device's output slots k: systematic (k + U) / N with the shared uniform U;
   stratified (k + U_k) / N with the N uniforms one device draws, drawn sharded (JAX's partitionable Threefry gives
   every device its own slice of the same numbers); multinomial the sorted uniforms of `resampling`, partial sums of
   exponentials by the same cross-device prefix sum. Each point falls in one block's stretch (a search among D
   values);
4. each point's particle within its block: the blocks' cumulative weights (n floats each) travel the ring and each
   device searches those its points fall in.

The points are one device's, but W is summed in another order (one device sums all N weights its own way: blocks of
32 and a scan of their totals on a CPU), so its entries differ in their last bits (about 1e-7 relative), and a point
that falls within that of a particle's boundary draws the neighbouring particle: about 3e-8 N² of the N ancestors
differ, a resampling. Measured on 4 and 8 CPU devices, 60 resamplings each: none differed at N = 256; 1 to 3 at
1,024 (one ancestor each); a third at 4,096 (one or two ancestors); all at 16,384 (about 8 ancestors each). One
different ancestor makes the rest of a filter's run differ. Residual resampling, whose deterministic copies would need a sort
across devices, always uses the other way.

"gathered", N floats a device: every device gathers the N log weights (`all_gather`) and draws all N ancestors as one
device does, keeping its own slots': exactly one device's draws from the same weights, for O(N) memory and O(N log N)
work a device. The particles still move around the ring.

Island resampling (`scope="island"`; Vergé, Dubarry, Del Moral & Moulines 2015, "On parallel implementation of
sequential Monte Carlo methods: the island particle model") keeps each device's particles an island: when a step
resamples, each device resamples its own n particles by its own weights, with no communication but a D-float
`all_gather`, and the island's particles all take the island's mean weight W_d / n. The weighted particles then
still approximate what global resampling's do, and Ẑ = Π_t Σ_i w_{t-1}^i G_t^i / Σ_i w_{t-1}^i stays unbiased,
because local resampling is unbiased given the weights, island by island (the α-SMC of Whiteley, Lee & Heine 2016,
"On the role of interaction in sequential Monte Carlo algorithms", with a block-diagonal α chosen adaptively). What
it costs is variance: the islands' weights drift apart as their particles do, and once the islands' ESS (of the D
island weights) falls under `ess_threshold` D the step resamples globally instead (an exchange, as above). Fewer
exchanges, less communication; more independent islands, a larger variance of Ẑ and a bias of the filter's estimates
of order 1/n (the island's size) rather than 1/N (Vergé et al.).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.sharding import Mesh, PartitionSpec

from . import resampling, ring, sharding
from .resampling import max_of, prefix_sum

__all__ = ["CumulativeWeights", "Resampled", "Scope", "resample"]

CumulativeWeights = Literal["prefix_sum", "gathered"]
"""How each device finds the cumulative weights of all N particles: by a prefix sum across devices (O(D) values
exchanged), or from all N weights gathered on every device (one device's draws, bit for bit)."""

Scope = Literal["global", "island"]
"""Where resampling draws from: all N particles ("global"), or each device's own ("island", global when the islands'
ESS is low)."""


class Resampled(NamedTuple):
    """Resampled particles and their weights."""

    tree: Any
    """The drawn particles (leading axis: the new particles)."""
    ancestors: jax.Array
    """Each new particle's index among the old ones."""
    log_weights: jax.Array
    """The new particles' log weights: zeros, or under island resampling each island's log mean weight."""
    log_total: jax.Array
    """logsumexp of `log_weights`."""


def resample(key: jax.Array, log_weights: jax.Array, tree: Any, scheme: resampling.SchemeName, mesh: Mesh | None,
             n: int | None = None, scope: Scope = "global", ess_threshold: float = 0.5,
             cumulative_weights: CumulativeWeights = "prefix_sum") -> Resampled:
    """`n` particles (default N) drawn from the N of `tree` (leading axis) by `scheme` (see the module docstring).

    `cumulative_weights` says how each device finds the cumulative weights under a mesh; `scope` and `ess_threshold`
    are island resampling's (its exchanges happen when the islands' ESS is below `ess_threshold` times D), and
    "island" needs a mesh and `n` = N.
    """
    resampling.get(scheme)  # names the valid schemes
    n = log_weights.shape[0] if n is None else n
    if scope == "island" and n != log_weights.shape[0]:
        raise ValueError(f"island resampling keeps each device's particles: it draws N = {log_weights.shape[0]}, "
                         f"not n = {n}")
    if mesh is None:
        ancestors = resampling.get(scheme)(key, log_weights, n)
        return Resampled(jax.tree.map(lambda x: x[ancestors], tree), ancestors, jnp.zeros(n),
                         jnp.log(n).astype(log_weights.dtype))
    axis = sharding.axis(mesh)
    # residual resampling's copies would need a sort across devices
    if cumulative_weights == "gathered" or scheme == "residual":
        per_slot, shared = None, None
        program = functools.partial(_gathered, scheme=scheme, n=n, axis=axis)
    else:
        per_slot, shared = _randomness(key, scheme, n, mesh)
        program = functools.partial(_prefix_summed, scheme=scheme, n=n, axis=axis)
    if scope == "island":
        program = functools.partial(_islands, exchange=program, scheme=scheme, ess_threshold=ess_threshold, axis=axis)
    blocks, whole = PartitionSpec(axis), PartitionSpec()
    tree, ancestors, log_w, log_total = jax.shard_map(
        program, mesh=mesh, in_specs=(whole, blocks, blocks, blocks, whole),
        out_specs=(blocks, blocks, blocks, whole))(key, log_weights, tree, per_slot, shared)
    return Resampled(tree, ancestors, log_w, log_total)


def _equal_weights(tree, ancestors, n: int, dtype, axis: str):
    """What global resampling returns on a device: its new particles (moved around the ring), their ancestors, and
    equal weights."""
    return (ring.gather(tree, ancestors, axis), ancestors, jnp.zeros(ancestors.shape, dtype),
            jnp.log(n).astype(dtype))


def _gathered(key, log_weights, tree, per_slot, shared, *, scheme: str, n: int, axis: str):
    """Global resampling from all N weights, gathered: every device draws all `n` ancestors as one device does and
    keeps its own slots'."""
    del per_slot, shared  # the scheme draws its own random numbers, as on one device
    m = n // jax.lax.axis_size(axis)
    ancestors = resampling.get(scheme)(key, jax.lax.all_gather(log_weights, axis, tiled=True), n)
    mine = jax.lax.dynamic_slice(ancestors, (jax.lax.axis_index(axis) * m,), (m,))
    return _equal_weights(tree, mine, n, log_weights.dtype, axis)


def _randomness(key: jax.Array, scheme: str, n: int, mesh: Mesh) -> tuple[Any, Any]:
    """The scheme's random numbers, as one device draws them: (one per output slot, sharded; one shared)."""
    if scheme == "systematic":
        return None, jax.random.uniform(key)
    if scheme == "stratified":
        return sharding.shard(mesh, jax.random.uniform(key, (n,)), n), None
    exponentials = jax.random.exponential(key, (n + 1,))  # multinomial: `resampling._sorted_uniforms`'s n + 1
    return sharding.shard(mesh, exponentials[:n], n), exponentials[n]


def _prefix_across(x: jax.Array, axis: str) -> tuple[jax.Array, jax.Array]:
    """The cumulative sums of nonnegative `x` split across devices, at this device's entries (flat across zeros), and
    each block's upper end (D values, the same bits on every device as each block's last entry)."""
    local = jax.lax.cummax(jnp.where(x > 0, prefix_sum(x), 0.0))
    totals = jax.lax.all_gather(local[-1], axis)
    # in order, as one scan: block d's upper end is then block d + 1's offset, bit for bit
    zero = jax.lax.pcast(jnp.zeros((), x.dtype), axis, to="varying")  # typed as the gathered totals are
    _, offsets = jax.lax.scan(lambda below, total: (below + total, below), zero, totals)
    return offsets[jax.lax.axis_index(axis)] + local, offsets + totals


def _points(scheme: str, slots: jax.Array, n: int, per_slot: Any, shared: Any, axis: str) -> jax.Array:
    """The scheme's points u_k in [0, 1) for output slots `slots` (this device's)."""
    if scheme == "systematic":
        return (slots + shared) / n
    if scheme == "stratified":
        return (slots + per_slot) / n
    sums, ends = _prefix_across(per_slot, axis)
    return sums / (ends[-1] + shared)


def _prefix_summed(key, log_weights, tree, per_slot, shared, *, scheme: str, n: int, axis: str):
    """Global resampling by a prefix sum across devices (steps 1-4 of the module docstring, then the ring)."""
    del key  # the scheme's random numbers were drawn outside, as one device draws them
    d, me = jax.lax.axis_size(axis), jax.lax.axis_index(axis)
    block_size, m = log_weights.shape[0], n // d
    top = jax.lax.pmax(max_of(log_weights), axis)
    weights = jnp.exp(log_weights - jnp.where(jnp.isfinite(top), top, 0.0))
    cdf, ends = _prefix_across(weights, axis)
    points = _points(scheme, me * m + jnp.arange(m), n, per_slot, shared, axis) * ends[-1]
    origins = jnp.searchsorted(ends, points, side="right")
    # rounding put the point at or past the total: the last particle of positive weight takes it, as on one device
    beyond = origins >= d
    last = jnp.maximum(jax.lax.pmax(jnp.max(jnp.where(weights > 0, me * block_size + jnp.arange(block_size), -1)),
                                    axis), 0)
    origins = jnp.where(beyond, me, origins)

    def search(found, visiting_cdf, origin):
        within = jnp.minimum(jnp.searchsorted(visiting_cdf, points, side="right"), block_size - 1)
        return jnp.where(origins == origin, origin * block_size + within, found)

    ancestors = ring.visit(cdf, origins, search, jnp.zeros(m, jnp.int32), axis)
    return _equal_weights(tree, jnp.where(beyond, last, ancestors).astype(jnp.int32), n, log_weights.dtype, axis)


def _islands(key, log_weights, tree, per_slot, shared, *, exchange, scheme: str, ess_threshold: float, axis: str):
    """Island resampling on one device's block: its own particles by its own weights, or all of them (`exchange`,
    global resampling) when the islands' ESS is below `ess_threshold` D."""
    d, me = jax.lax.axis_size(axis), jax.lax.axis_index(axis)
    block_size = log_weights.shape[0]
    island_totals = jax.lax.all_gather(logsumexp(log_weights), axis)
    # the same on every device (from the same gathered totals); the pmax says so to the collectives in the branches
    degenerate = jax.lax.pmax((resampling.ess(island_totals) < ess_threshold * d).astype(jnp.int32), axis) > 0

    def local(key, log_weights, tree, per_slot, shared):
        drawn = resampling.get(scheme)(jax.random.fold_in(key, me), log_weights)
        log_mean = island_totals[me] - jnp.log(block_size).astype(log_weights.dtype)
        return jax.tree.map(lambda x: x[drawn], tree), me * block_size + drawn, jnp.full(block_size, log_mean)

    def globally(*args):
        tree, ancestors, log_w, _ = exchange(*args)
        return tree, ancestors, jax.lax.pcast(log_w, axis, to="varying")  # typed as the islands' weights

    tree, ancestors, log_w = jax.lax.cond(degenerate, globally, local, key, log_weights, tree, per_slot, shared)
    # the total weight is kept: an island's particles share its total (the pmax: the same value on every device)
    log_total = jnp.where(degenerate, jnp.log(block_size * d).astype(log_weights.dtype), logsumexp(island_totals))
    return tree, ancestors, log_w, jax.lax.pmax(log_total, axis)
