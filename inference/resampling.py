"""Resampling schemes for sequential Monte Carlo.

Given unnormalised log weights `log_weights` of N particles, with normalised
weights `w_i = exp(log_weights_i - logsumexp(log_weights))`, a resampling scheme
draws `n` ancestor indices `a_1..a_n` in `[0, N)` such that the offspring counts
`c_i = #{k : a_k = i}` are unbiased, `E[c_i] = n w_i`. The schemes differ only in
how they place `n` points `u_k` in `[0, 1)`; the ancestor of `u_k` is the `i` with
`W_{i-1} <= u_k < W_i`, where `W_i = w_1 + ... + w_i` (an inverse-CDF lookup).

- `multinomial`: `u_k` i.i.d. U(0, 1); `Var c_i = n w_i (1 - w_i)`.
- `stratified`: one uniform in each stratum, `u_k = (k + U_k) / n`.
- `systematic`: a single shared uniform, `u_k = (k + U) / n`.
- `residual`: `floor(n w_i)` deterministic copies of particle `i`, and the
  remaining `R = n - sum_i floor(n w_i)` ancestors drawn multinomially from the
  residual weights `(n w_i - floor(n w_i)) / R`.

Stratified and residual resampling never have a larger offspring-count variance
than multinomial resampling; systematic resampling usually has the smallest but
has no such guarantee (R. Douc and O. Cappé, "Comparison of resampling schemes
for particle filtering", ISPA 2005).

Conditional SMC uses `conditional_systematic` (systematic resampling given the
reference's ancestor, with the reference's slot drawn too), and its ancestor-sampling
variants `ancestor_sampled_systematic` and `metropolis_ancestor_systematic`; they
return `(ancestors, the reference's slot)`.

Every scheme has the signature `scheme(key, log_weights, n=None) -> ancestors`,
where `log_weights` has shape `(N,)`, `n` is a Python int (static under `jit`,
default N), and `ancestors` is an int32 array of shape `(n,)` in nondecreasing
order. They cost O((n + N) log(n + N)) time and O(n + N) memory (sorted uniforms
and `jnp.searchsorted` on the cumulative weights; never an n x N matrix) and are
pure, so they compose with `jit` and `vmap`.

Entries of `log_weights` may be `-inf`; such particles are never selected. If
*all* entries are `-inf` there is nothing to resample from: the schemes still
return indices in `[0, N)`, but they are meaningless, so callers must check
`jnp.isfinite(jax.nn.logsumexp(log_weights))` themselves (`ess` and `normalize`
return NaN in that case).
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol

import jax
import jax.numpy as jnp

__all__ = [
    "SCHEMES",
    "Scheme",
    "SchemeName",
    "ancestor_sampled_systematic",
    "categorical",
    "conditional_systematic",
    "ess",
    "get",
    "max_of",
    "metropolis_ancestor_systematic",
    "multinomial",
    "normalize",
    "prefix_sum",
    "residual",
    "stratified",
    "systematic",
    "weights",
]


class Scheme(Protocol):
    """The signature shared by every resampling scheme."""

    def __call__(self, key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array: ...


SchemeName = Literal["multinomial", "stratified", "systematic", "residual"]
"""The names `get` accepts (the keys of `SCHEMES`); `get` checks a name at run time and lists these if it is unknown."""


def normalize(log_weights: jax.Array) -> jax.Array:
    """Log weights shifted to sum to one in probability space: `log_weights - logsumexp(log_weights)`."""
    return log_weights - jax.nn.logsumexp(log_weights)


def weights(log_weights: jax.Array) -> jax.Array:
    """Normalised weights in probability space; all zeros (never NaN) when every weight is zero."""
    total = jax.nn.logsumexp(log_weights)
    finite = jnp.isfinite(total)
    return jnp.where(finite, jnp.exp(log_weights - jnp.where(finite, total, 0.0)), 0.0)


def ess(log_weights: jax.Array, log_total: jax.Array | None = None) -> jax.Array:
    """Effective sample size `1 / sum_i w_i^2` of unnormalised log weights: between 1 and N, 0 if all are -inf.

    `log_total`, when the caller has it, is `logsumexp(log_weights)` (saves a pass over the weights).
    """
    if log_total is None:
        log_total = jax.nn.logsumexp(log_weights)
    finite = jnp.isfinite(log_total)
    value = 1.0 / jnp.sum(jnp.square(jnp.exp(log_weights - jnp.where(finite, log_total, 0.0))))
    return jnp.where(finite, value, 0.0)


def max_of(x: jax.Array) -> jax.Array:
    """`jnp.max` of a float array, as the largest of its bit patterns read as sortable integers below 4,096
    entries (faster there on a CPU: docs/performance.md). Floats order as their bits do once a negative one's
    magnitude bits are flipped. A positive NaN is the largest.
    """
    x = jnp.asarray(x)  # a NumPy float64 array is float32 here unless x64 is enabled
    ints = {4: jnp.int32, 8: jnp.int64}.get(x.dtype.itemsize)
    if ints is None or x.size >= 4096:
        return jnp.max(x)
    flip = jnp.iinfo(ints).max
    bits = jax.lax.bitcast_convert_type(x, ints)
    top = jnp.max(jnp.where(bits < 0, bits ^ flip, bits))
    return jax.lax.bitcast_convert_type(jnp.where(top < 0, top ^ flip, top), x.dtype)


def _maxes(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """The maximum of each of several same-shape (N,) float arrays, as one variadic reduction, which XLA keeps
    fused with the computation of its inputs (docs/performance.md). A NaN propagates."""
    initial = tuple(jnp.array(-jnp.inf, x.dtype) for x in arrays)
    return jax.lax.reduce(arrays, initial, lambda a, b: tuple(map(jnp.maximum, a, b)), (0,))


def _rescaled(log_weights: jax.Array) -> jax.Array:
    """`exp(log_weights - max)`: proportional to the weights, largest 1; all zeros (not NaN) if all are -inf."""
    return _shifted_exp(log_weights, max_of(log_weights))


def _rescaled_each(*log_weights: jax.Array) -> tuple[jax.Array, ...]:
    """`_rescaled` of each array, their maxima found in one pass (`_maxes`)."""
    return tuple(map(_shifted_exp, log_weights, _maxes(*log_weights)))


def _shifted_exp(log_weights: jax.Array, top: jax.Array) -> jax.Array:
    return jnp.exp(log_weights - jnp.where(jnp.isfinite(top), top, 0.0))


_BLOCK = 32


def prefix_sum(x: jax.Array) -> jax.Array:
    """`jnp.cumsum` along the last axis of a float array; on a CPU from 512 entries on, as blocks of 32 summed by
    one triangular matrix product plus a cumsum of the block totals (same rounding error; faster there:
    docs/performance.md). Other platforms keep `jnp.cumsum` (a GPU or TPU matmul may round its inputs).
    """
    n = x.shape[-1]
    if n < 512:
        return jnp.cumsum(x, axis=-1)

    def blocked(x):
        blocks = -(-n // _BLOCK)
        padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, blocks * _BLOCK - n)])
        within = padded.reshape(*x.shape[:-1], blocks, _BLOCK) @ jnp.triu(jnp.ones((_BLOCK, _BLOCK), x.dtype))
        totals = within[..., -1]
        offsets = jnp.cumsum(totals, axis=-1) - totals
        return (within + offsets[..., None]).reshape(*x.shape[:-1], -1)[..., :n]

    return jax.lax.platform_dependent(x, cpu=blocked, default=lambda x: jnp.cumsum(x, axis=-1))


def _search(weights: jax.Array, u: jax.Array, cdf: jax.Array | None = None) -> jax.Array:
    """Inverse-CDF lookup on nonnegative unnormalised `weights`: for each `u_k` in [0, 1), the `i`
    with `W_{i-1} <= u_k < W_i`, where `W` is the normalised CDF; never a zero-weight `i`.
    `cdf`, when the caller has it, is `cumsum(weights)`."""
    n = weights.shape[0]
    cdf = prefix_sum(weights) if cdf is None else cdf
    # Rounding can put u * total at or past the last CDF value; those points go to the last particle.
    idx = jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), n - 1)
    # A parallel prefix sum (XLA's cumsum) may round so that a zero weight gets a sliver of the CDF,
    # or a trailing zero weight gets the points that rounded past the end: such draws (probability
    # of order 1e-7) go to the last particle with positive weight instead, so an impossible particle
    # is never chosen. The fix-up runs only when a draw needs it.
    return jax.lax.cond(
        jnp.all(weights[idx] > 0), lambda: idx,
        lambda: jnp.where(weights[idx] > 0, idx, jnp.max(jnp.where(weights > 0, jnp.arange(n), 0))),
    ).astype(jnp.int32)


def _sorted_uniforms(key: jax.Array, n: int, count: jax.Array | int | None = None) -> jax.Array:
    """The first `count` (default n) entries are the order statistics of `count` i.i.d. U(0, 1).

    Renyi's representation: if E_0..E_n are i.i.d. Exp(1) and S_k = E_0 + ... + E_k, then
    (S_0, ..., S_{m-1}) / S_m is distributed as m sorted uniforms. O(n), unlike sorting.
    Entries from `count` on are meaningless.
    """
    partial_sums = prefix_sum(jax.random.exponential(key, (n + 1,)))
    return partial_sums[:n] / partial_sums[n if count is None else count]


def _size(log_weights: jax.Array, n: int | None) -> int:
    if log_weights.ndim != 1:
        raise ValueError(f"log_weights must have shape (N,), got {log_weights.shape}; vmap over batches")
    return log_weights.shape[0] if n is None else n


def categorical(key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array:
    """`n` i.i.d. draws from the categorical distribution, in the order drawn (not sorted).

    One uniform and one binary search per draw: O(N + n log N), against N Gumbel
    variates per draw for `jax.random.categorical`; a single draw is one pass over the
    CDF. For single draws (picking a particle, backward sampling) and for conditional
    resampling, where the free slots must be i.i.d.
    """
    n = _size(log_weights, n)
    weights, u = _rescaled(log_weights), jax.random.uniform(key, (n,))
    if n == 1:  # one fused pass over the CDF, not a binary-search loop (docs/performance.md)
        return _draw_one(weights, prefix_sum(weights), u[0])[None]
    return _search(weights, u)


def multinomial(key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array:
    """`n` i.i.d. draws from the categorical distribution with the given unnormalised log weights."""
    n = _size(log_weights, n)
    return _search(_rescaled(log_weights), _sorted_uniforms(key, n))


def stratified(key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array:
    """Stratified resampling: one uniform in each of the `n` strata `[k/n, (k+1)/n)`."""
    n = _size(log_weights, n)
    u = (jnp.arange(n) + jax.random.uniform(key, (n,))) / n
    return _search(_rescaled(log_weights), u)


def systematic(key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array:
    """Systematic resampling: the `n` evenly spaced points `(k + U) / n` with a single uniform `U`."""
    n = _size(log_weights, n)
    u = (jnp.arange(n) + jax.random.uniform(key)) / n
    return _search(_rescaled(log_weights), u)


def conditional_systematic(key: jax.Array, log_weights: jax.Array, ancestor: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Systematic resampling given that some slot draws `ancestor`: `(ancestors, that slot)`.

    The conditional resampling of conditional SMC (Chopin & Singh 2015). The slot `k`
    held by the reference is uniform a priori, so given that it draws particle `a`,
    `(k, U)` is uniform on the pairs whose point `(k + U) / n` falls in `a`'s stretch
    `[W_{a-1}, W_a)` of the CDF: `k + U` is uniform on `n [W_{a-1}, W_a)`. The other
    slots then take the systematic points of that `U`, with the law of a systematic
    draw given `A_k = a`, which keeps the CSMC kernel exact. One uniform and ordered
    searches, as for `systematic`, against N of each for a conditional multinomial draw.
    """
    _size(log_weights, None)
    weights = _rescaled(log_weights)
    return _conditional_systematic(jax.random.uniform(key), weights, prefix_sum(weights), ancestor)


def ancestor_sampled_systematic(key: jax.Array, log_weights: jax.Array,
                                ancestor_log_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`conditional_systematic` given an ancestor drawn with probabilities ∝ exp(`ancestor_log_weights`).

    Ancestor sampling's draw (Lindsten, Jordan & Schön 2014): one inverse-CDF draw of
    the ancestor, then the conditional systematic draw. Returns `(ancestors, the slot
    that drew the sampled ancestor)`.
    """
    _size(log_weights, None)
    u_ancestor, u_slot = jax.random.uniform(key, (2,))
    weights, ancestor_weights = _rescaled_each(log_weights, ancestor_log_weights)
    ancestor = _draw_one(ancestor_weights, prefix_sum(ancestor_weights), u_ancestor)
    return _conditional_systematic(u_slot, weights, prefix_sum(weights), ancestor)


def metropolis_ancestor_systematic(key: jax.Array, log_weights: jax.Array, current: jax.Array,
                                   log_likelihood: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """`conditional_systematic` given an ancestor moved by one Metropolis-Hastings step from `current`.

    The move targets the ancestor-sampling law, ∝ w_i exp(log_likelihood(i)), with an
    independent proposal i' ~ w, so it accepts with probability
    min(1, exp(log_likelihood(i') - log_likelihood(current))). `log_likelihood` maps an
    array of indices to their values and is called on two, not N: an MCMC step that
    leaves the ancestor's law invariant keeps conditional SMC exact, without the N
    likelihoods of an exact draw.
    """
    _size(log_weights, None)
    u_proposal, u_accept, u_slot = jax.random.uniform(key, (3,))
    weights = _rescaled(log_weights)
    cdf = prefix_sum(weights)
    proposal = _draw_one(weights, cdf, u_proposal)
    log_l = log_likelihood(jnp.stack([proposal, current]))
    ancestor = jnp.where(jnp.log(u_accept) < log_l[0] - log_l[1], proposal, current)
    return _conditional_systematic(u_slot, weights, cdf, ancestor)


def _draw_one(weights, cdf, u):
    """One inverse-CDF draw: the first positive weight whose CDF passes `u * total`, as one fused pass
    (docs/performance.md); a point that rounding puts past the end goes to the last positive weight."""
    n = weights.shape[0]
    i = jax.lax.iota(jnp.int32, n)
    positive = weights > 0
    # both in one variadic reduction, as in _maxes (docs/performance.md)
    first, last = jax.lax.reduce((jnp.where(positive & (cdf > u * cdf[-1]), i, n), jnp.where(positive, i, -1)),
                                 (jnp.int32(n), jnp.int32(-1)), lambda a, b: (jnp.minimum(a[0], b[0]),
                                                                              jnp.maximum(a[1], b[1])), (0,))
    return jnp.where(first < n, first, jnp.maximum(last, 0))


def _conditional_systematic(uniform, weights, cdf, ancestor):
    n = weights.shape[0]
    lower = jnp.where(ancestor > 0, cdf[jnp.maximum(ancestor - 1, 0)], 0.0)
    position = n * (lower + uniform * (cdf[ancestor] - lower)) / cdf[-1]
    slot = jnp.clip(jnp.floor(position), 0, n - 1).astype(jnp.int32)
    u = jnp.clip(position - slot, 0.0, jnp.nextafter(jnp.float32(1.0), 0.0))
    ancestors = _search(weights, (jnp.arange(n) + u) / n, cdf)
    # rounding may put the slot's own point just outside a's stretch: the slot holds a exactly
    return jnp.where(jnp.arange(n) == slot, ancestor, ancestors).astype(jnp.int32), slot


def residual(key: jax.Array, log_weights: jax.Array, n: int | None = None) -> jax.Array:
    """Residual resampling: `floor(n w_i)` copies of particle `i`, the rest multinomial on the remainders."""
    n = _size(log_weights, n)
    rescaled = _rescaled(log_weights)
    total = jnp.sum(rescaled)
    scaled = n * rescaled / jnp.where(total > 0, total, 1.0)  # n w_i
    copies = jnp.floor(scaled)
    # Expand the counts into indices with static shapes: slot k belongs to particle i when
    # sum_{j<i} copies_j <= k < sum_{j<=i} copies_j.
    ends = jnp.cumsum(copies.astype(jnp.int32))
    slots = jnp.arange(n)
    deterministic = jnp.searchsorted(ends, slots, side="right").astype(jnp.int32)
    # Rounding can make the copies sum to slightly more than n: then every slot is deterministic.
    n_copies = ends[-1]
    n_left = jnp.clip(n - n_copies, 0, n)
    drawn = _search(scaled - copies, _sorted_uniforms(key, n, n_left))
    # The first n_copies slots are the copies, the other n_left slots the first n_left draws.
    ancestors = jnp.where(slots < n_copies, deterministic, drawn[jnp.maximum(slots - n_copies, 0)])
    return jnp.sort(ancestors)


SCHEMES: dict[str, Scheme] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get(name: str) -> Scheme:
    """The resampling scheme called `name`; a ValueError naming the valid choices otherwise."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown resampling scheme {name!r}; choose one of {sorted(SCHEMES)}") from None
