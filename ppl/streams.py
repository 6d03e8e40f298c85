"""Random streams for a batch of executions that share one key.

A particle filter runs a step's generative function once per particle, under
`jax.vmap`. Handing each particle its own key costs hashes per particle before
anything is drawn: the split that makes the keys, then one `fold_in` per random
choice. A filter written by hand draws every particle's noise with one
`jax.random.normal(key, (N,))` instead: one Threefry block per value, no
per-particle key at all.

`Streams(key, index)` gives the same cost through the GFI. The key is shared by
the whole batch (unbatched under the `vmap`) and `index` names this execution's
stream. Deriving keys for the random choices (`fold_in`, `split`) acts on the
shared key only, so it is computed once for the batch. Where a leaf draws, the
pair becomes a key (`as_key`) of a Threefry variant whose random bits for stream
`s` are the counters `(s, 0), (s, 1), ...` of the shared key: the same one hash
per 32-bit value as the hand-written filter. Splitting or folding such a key
first hashes `(key, s)` at counter `(s, 2^32 - 1)`, which no draw reaches, then
proceeds as plain Threefry, so every stream is an independent Threefry key.

Only Threefry keys (JAX's default) get the stream variant; keys of other
implementations fall back to `fold_in(key, index)`, one hash per execution.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl, threefry2x32_p, threefry_prng_impl

__all__ = ["Streams", "as_key", "as_threefry_key", "fold_in", "is_key", "split", "stream", "unused_key"]

_UINT = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}
_NO_DRAW = np.uint32(2**32 - 1)  # the counter a draw never reaches (draws hold < 2^32 values)


def _as_threefry(key: jax.Array) -> jax.Array:
    """(k0, k1, s) -> a plain Threefry key, hashed so that it is independent of stream s's draws."""
    k0, k1 = threefry2x32_p.bind(key[0], key[1], key[2], _NO_DRAW)
    return jnp.stack([k0, k1])


def _with_stream0(keys: jax.Array) -> jax.Array:
    return jnp.concatenate([keys, jnp.zeros(keys.shape[:-1] + (1,), jnp.uint32)], axis=-1)


def _seed(seed):
    return _with_stream0(threefry_prng_impl.seed(seed))


def _split(key, shape):
    return _with_stream0(threefry_prng_impl.split(_as_threefry(key), shape))


def _fold_in(key, data):
    return _with_stream0(threefry_prng_impl.fold_in(_as_threefry(key), data))


@jax.custom_batching.custom_vmap
def _hash(key, lo):
    """Threefry of counters (stream, lo) under the key (k0, k1) of `key` = (k0, k1, stream)."""
    return threefry2x32_p.bind(key[0], key[1], jnp.broadcast_to(key[2], lo.shape), lo)


@_hash.def_vmap
def _hash_batched(axis_size, in_batched, key, lo):
    # keys that share (k0, k1), as one Streams key's streams do, hash with scalar key words (docs/performance.md)
    key_batched, lo_batched = in_batched
    key = key if key_batched else jnp.broadcast_to(key, (axis_size,) + key.shape)
    lo = lo if lo_batched else jnp.broadcast_to(lo, (axis_size,) + lo.shape)
    streams = jnp.broadcast_to(key[:, 2].reshape((-1,) + (1,) * (lo.ndim - 1)), lo.shape)

    def by_row():
        words = [jnp.broadcast_to(w.reshape(streams.shape[:1] + (1,) * (lo.ndim - 1)), lo.shape) for w in key[:, :2].T]
        return threefry2x32_p.bind(*words, streams, lo)

    if axis_size == 0:
        return list(by_row()), [True, True]
    shared = jnp.all(key[:, :2] == key[:1, :2])
    bits = jax.lax.cond(shared, lambda: threefry2x32_p.bind(key[0, 0], key[0, 1], streams, lo), by_row)
    return list(bits), [True, True]


def _random_bits(key, bit_width, shape):
    size = math.prod(shape)
    if size >= _NO_DRAW:
        raise ValueError(f"a stream key draws fewer than 2^32 values at once, asked for {size}; split the key first")
    bits1, bits2 = _hash(key, jax.lax.iota(jnp.uint32, size).reshape(shape))
    if bit_width == 64:
        return (bits1.astype(jnp.uint64) << 32) | bits2.astype(jnp.uint64)
    return (bits1 ^ bits2).astype(_UINT[bit_width])


_STREAM_IMPL = define_prng_impl(
    key_shape=(3,), seed=_seed, split=_split, random_bits=_random_bits, fold_in=_fold_in,
    name="threefry_stream", tag="fs",
)


class Streams(eqx.Module):
    """One stream (`index`) of a `key` shared by a batch of executions; usable wherever the GFI takes a key.

    Map over the indices, not the key, so the key stays shared:

        jax.vmap(lambda i, x: step.generate(ppl.Streams(key, i), obs, x))(jnp.arange(n), xs)

    gives n independent executions, each drawing from its own stream.
    """

    key: jax.Array
    index: jax.Array

    def __init__(self, key: jax.Array, index):
        self.key = key
        self.index = jnp.asarray(index, jnp.uint32)


def is_key(x) -> bool:
    """Whether `x` is something the GFI accepts as a key: a JAX PRNG key (typed or raw) or `Streams`."""
    if isinstance(x, Streams):
        return True
    return isinstance(x, jax.Array) and (
        jnp.issubdtype(x.dtype, jax.dtypes.prng_key) or (x.dtype == jnp.uint32 and x.shape[-1:] == (2,))
    )


def fold_in(key, data):
    """`jax.random.fold_in` that keeps a `Streams` stream (hashing only the shared key)."""
    if isinstance(key, Streams):
        return Streams(jax.random.fold_in(key.key, data), key.index)
    return jax.random.fold_in(key, data)


def stream(key, n: int):
    """The key of the n-th (n >= 1) random choice drawn directly with `key`: its stream n, made without a hash.

    Stream n's counters (n, j) differ from the counters (0, m) that `fold_in(key, m)` hashes, so
    the choices' draws and the keys handed on with `fold_in` never coincide. Within a `Streams`
    batch the stream is already taken by the batch index: the choice then folds n into the shared key.
    """
    if isinstance(key, Streams):
        return fold_in(key, n)
    return Streams(key, n)


def split(key, n: int):
    """`jax.random.split(key, n)`; for `Streams`, n streams with the same index (a leading axis of n)."""
    if isinstance(key, Streams):
        return Streams(jax.random.split(key.key, n), jnp.broadcast_to(key.index, (n,)))
    return jax.random.split(key, n)


def as_threefry_key(key) -> jax.Array:
    """A plain Threefry key for `key`, for the samplers that take no other (`jax.random.poisson`).

    For a `Streams`, the stream's key hashed once, as splitting it would (independent of its draws).
    """
    key = as_key(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and jax.random.key_impl(key) == _STREAM_IMPL:
        return jax.random.wrap_key_data(_as_threefry(jax.random.key_data(key)), impl="threefry2x32")
    return key


def as_key(key) -> jax.Array:
    """A JAX key to draw with: a plain key as it is, a `Streams` as its stream's key."""
    if not isinstance(key, Streams):
        return key
    base = key.key
    if jnp.issubdtype(base.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(base) != "threefry2x32":
            return jax.random.fold_in(base, key.index)
        base = jax.random.key_data(base)
    return jax.random.wrap_key_data(jnp.concatenate([base, key.index[None]]), impl=_STREAM_IMPL)


@functools.cache
def unused_key() -> jax.Array:
    """A key for a call whose every address is given, which never draws from it. Made on first use: made at import,
    it would start JAX's backend, 50 ms of `import ppl`."""
    with jax.ensure_compile_time_eval():  # a first use inside a trace must cache a value, not that trace's tracer
        return jax.random.key(0)
