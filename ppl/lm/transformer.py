"""A Llama-family decoder in equinox: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU,
with a key-value cache.

The layers' weights are stacked (a leading layer axis) and the forward pass scans over them,
so the compiled program holds one layer, not thirty. The cache holds keys and values at
slots 0..S-1 of a left-padded batch: sequence b's tokens start at slot `pad[b]`, its
rotary position at slot s is s - pad[b], and a query at slot q attends to the slots
pad[b] <= s <= q (a padding slot to itself only). A forward pass may also read a prefix: a
cache of one sequence (a prompt) that every row continues and that is read, never written,
so many continuations of one prompt keep one copy of its keys and values.

Weight matrices are float32 or kept quantised in memory (`Int8`: per-row scales; `Q4_1`: GGML's 4-bit blocks),
dequantised inside the matrix products that read them.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .weights import Blocks, Config

__all__ = ["Q4_1", "QUANTIZATIONS", "Cache", "Int8", "Transformer"]

QUANTIZATIONS = (None, "int8", "q4_1")

_LAYER_NAMES = ("attn_norm", "q", "k", "v", "o", "mlp_norm", "gate", "up", "down")
_MATRICES = ("q", "k", "v", "o", "gate", "up", "down")
_BIASES = ("q_bias", "k_bias", "v_bias")


class Cache(NamedTuple):
    """Keys and values of every layer: (layers, batch, slots, kv_heads, head_dim) each."""

    k: jax.Array
    v: jax.Array


class Int8(eqx.Module):
    """A weight matrix (..., out, in) kept as int8 with one float scale per output row, dequantised inside the
    matrix product: a quarter of float32's bytes to read per decoded token, where batch-1 decoding is bound by
    memory bandwidth. The rounding error of a row is at most half its scale (max |w| / 254)."""

    values: jax.Array
    scale: jax.Array

    @classmethod
    def quantize(cls, w: jax.Array) -> Int8:
        scale = jnp.max(jnp.abs(w), axis=-1) / 127.0
        scale = jnp.where(scale > 0, scale, 1.0)  # an all-zero row stays zero
        return cls(jnp.round(w / scale[..., None]).astype(jnp.int8), scale.astype(jnp.float32))

    def rows(self, index: jax.Array) -> jax.Array:
        """Rows `index` dequantised (an embedding lookup)."""
        return self.values[index].astype(jnp.float32) * self.scale[index][..., None]


class Q4_1(eqx.Module):
    """A weight matrix (..., out, in) in GGML's Q4_1 format, kept 4-bit in memory: each block of 32 consecutive
    weights of a row is w = scale * q + minimum with q in 0..15, two q per byte (weights i and i + 16 of a block
    share byte i, low nibble first), scale and minimum float16: 0.625 bytes a weight, as the GGUF stores it.
    Dequantised inside the matrix product. Quantising a float block rounds each weight to the nearest of its
    16 levels: an error of at most half a scale step, (max - min) / 30 (and float16's rounding of both)."""

    nibbles: jax.Array  # uint8 (..., out, in / 32, 16)
    scale: jax.Array  # float16 (..., out, in / 32)
    minimum: jax.Array  # float16 (..., out, in / 32)

    @classmethod
    def from_blocks(cls, blocks: np.ndarray) -> Q4_1:
        """From GGML's Q4_1 blocks as a GGUF stores them: uint8 (..., out, in / 32 * 20), each block 2 bytes of
        float16 scale, 2 of float16 minimum, then 16 bytes of nibbles."""
        b = np.ascontiguousarray(blocks).reshape(*blocks.shape[:-1], -1, 20)
        scale, minimum = (np.ascontiguousarray(b[..., i:i + 2]).view(np.float16)[..., 0] for i in (0, 2))
        return cls(jnp.asarray(b[..., 4:]), jnp.asarray(scale), jnp.asarray(minimum))

    @classmethod
    def quantize(cls, w: jax.Array) -> Q4_1:
        blocks = w.reshape(*w.shape[:-1], -1, 32)
        lo, hi = jnp.min(blocks, axis=-1), jnp.max(blocks, axis=-1)
        scale, minimum = ((hi - lo) / 15).astype(jnp.float16), lo.astype(jnp.float16)
        # levels from the stored (float16) scale and minimum, so the rounding is to what is dequantised
        step = jnp.where(scale > 0, scale, 1).astype(jnp.float32)[..., None]
        q = jnp.clip(jnp.round((blocks - minimum.astype(jnp.float32)[..., None]) / step), 0, 15).astype(jnp.uint8)
        return cls(q[..., :16] | (q[..., 16:] << 4), scale, minimum)

    def dequantize(self) -> jax.Array:
        """The float32 matrix (..., out, in)."""
        q = jnp.concatenate([self.nibbles & 15, self.nibbles >> 4], axis=-1).astype(jnp.float32)
        w = q * self.scale.astype(jnp.float32)[..., None] + self.minimum.astype(jnp.float32)[..., None]
        return w.reshape(*w.shape[:-2], -1)

    def rows(self, index: jax.Array) -> jax.Array:
        """Rows `index` dequantised (an embedding lookup)."""
        return Q4_1(self.nibbles[index], self.scale[index], self.minimum[index]).dequantize()


class Transformer(eqx.Module):
    """The decoder: token ids in, next-token logits out."""

    config: Config = eqx.field(static=True)
    embed: jax.Array | Int8 | Q4_1
    norm: jax.Array
    output: jax.Array | Int8 | Q4_1 | None
    layers: dict

    @classmethod
    def from_weights(cls, config: Config, weights: dict[str, np.ndarray | Blocks]) -> Transformer:
        names = _LAYER_NAMES + (_BIASES if config.attention_bias else ())
        layers = {n: _matrix([weights[f"layers.{i}.{n}"] for i in range(config.layers)]) for n in names}
        output = None if config.tied_output else _matrix(weights["output"])
        return cls(config, _matrix(weights["embed"]), jnp.asarray(weights["norm"]), output, layers)

    def quantize(self, kind: str | None) -> Transformer:
        """This transformer with its matrices stored as `kind`: "int8" (per-row scales), "q4_1" (GGML's 4-bit
        blocks; matrices already Q4_1, as read from a GGUF, are kept) or None (unchanged). The embedding, which
        is also the output head when tied, is int8 in both (GGUF files keep it at 8 bits too: 4-bit rounding of
        the head moves every logit); norms and biases stay float32."""
        if kind not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {kind!r}")
        if kind is None:
            return self
        matrix = Int8 if kind == "int8" else Q4_1
        layers = {n: _quantized(w, matrix) if n in _MATRICES else w for n, w in self.layers.items()}
        output = None if self.output is None else _quantized(self.output, Int8)
        return Transformer(self.config, _quantized(self.embed, Int8), self.norm, output, layers)

    def empty_cache(self, batch: int, slots: int) -> Cache:
        c = self.config
        shape = (c.layers, batch, slots, c.kv_heads, c.head_dim)
        return Cache(jnp.zeros(shape, self.norm.dtype), jnp.zeros(shape, self.norm.dtype))

    def __call__(self, tokens: jax.Array, start: jax.Array, pad: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        """Logits (B, T, V) for `tokens` (B, T) written at slots start..start+T-1, and the updated cache."""
        hidden, cache = self.hidden_states(tokens, start, pad, cache)
        return self.logits(hidden), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Next-token logits (..., V) from final-layer hidden states (..., d)."""
        return _project(hidden, self.embed if self.output is None else self.output)

    def hidden_states(self, tokens: jax.Array, start: jax.Array, pad: jax.Array, cache: Cache,
                      prefix: tuple[Cache, jax.Array] | None = None) -> tuple[jax.Array, Cache]:
        """The final-layer hidden states (B, T, d), after the final norm (what the output head reads), for
        `tokens` (B, T) written at slots start..start+T-1, and the updated cache.

        With `prefix` = (a cache of batch one, its length P), the cache continues the prefix: its slot s holds
        position P + s - pad, and every query also attends to the prefix's first P slots."""
        c = self.config
        B, T = tokens.shape
        slots = start + jnp.arange(T)
        offset = 0 if prefix is None else prefix[1]
        positions = offset + slots[None, :] - pad[:, None]  # (B, T)
        key_slots = jnp.arange(cache.k.shape[2])
        causal = key_slots[None, None, :] <= slots[None, :, None]
        # a padding slot attends to itself only, so its (unused) state stays finite: no 0 * NaN downstream
        mask = causal & ((key_slots[None, None, :] >= pad[:, None, None]) | (key_slots[None, None, :] == slots[None, :, None]))
        cos, sin = _rope_angles(positions, c.head_dim, c.rope_base)
        if prefix is not None:
            prefix_mask = jnp.arange(prefix[0].k.shape[2]) < prefix[1]

        def layer(carry, xs):
            # the cache rides in the carry and each layer writes only its new slots: a cache passed as scan
            # inputs and outputs would be copied whole at every call (every decoded token)
            w, prefix_kv = xs
            x, k_all, v_all, i = carry
            h = _rms_norm(x, w["attn_norm"], c.norm_eps)
            q = _project(h, w["q"], w.get("q_bias")).reshape(B, T, c.heads, c.head_dim)
            k = _project(h, w["k"], w.get("k_bias")).reshape(B, T, c.kv_heads, c.head_dim)
            v = _project(h, w["v"], w.get("v_bias")).reshape(B, T, c.kv_heads, c.head_dim)
            q, k = _rope(q, cos, sin, c.rope_interleaved), _rope(k, cos, sin, c.rope_interleaved)
            k_all = jax.lax.dynamic_update_slice(k_all, k[None].astype(k_all.dtype), (i, 0, start, 0, 0))
            v_all = jax.lax.dynamic_update_slice(v_all, v[None].astype(v_all.dtype), (i, 0, start, 0, 0))
            k_cache = jax.lax.dynamic_index_in_dim(k_all, i, keepdims=False)
            v_cache = jax.lax.dynamic_index_in_dim(v_all, i, keepdims=False)
            parts = [(k_cache, v_cache, mask)]
            if prefix is not None:  # one sequence's keys and values, read by every row
                parts.insert(0, (prefix_kv.k[0], prefix_kv.v[0], prefix_mask))
            x = x + _project(_attention(q, parts), w["o"])
            h = _rms_norm(x, w["mlp_norm"], c.norm_eps)
            x = x + _project(jax.nn.silu(_project(h, w["gate"])) * _project(h, w["up"]), w["down"])
            return (x, k_all, v_all, i + 1), None

        x = self.embed[tokens] if isinstance(self.embed, jax.Array) else self.embed.rows(tokens)
        (x, k, v, _), _ = jax.lax.scan(layer, (x, cache.k, cache.v, jnp.int32(0)),
                                       (self.layers, None if prefix is None else prefix[0]))
        return _rms_norm(x, self.norm, c.norm_eps), Cache(k, v)


def _matrix(arrays):
    """A weight as read (a list: one per layer, stacked): float32, or Q4_1 where the GGUF's blocks were kept."""
    stack = isinstance(arrays, list)
    parts = arrays if stack else [arrays]
    if not isinstance(parts[0], Blocks):
        return jnp.asarray(np.stack(parts) if stack else arrays)
    if parts[0].kind != "Q4_1":
        raise ValueError(f"GGUF blocks of type {parts[0].kind} cannot be kept quantised (Q4_1 can)")
    return Q4_1.from_blocks(np.stack([p.data for p in parts]) if stack else arrays.data)


def _quantized(w, kind):
    """`w` as `kind` (Int8 or Q4_1), unless it is already."""
    if isinstance(w, kind):
        return w
    return kind.quantize(w if isinstance(w, jax.Array) else w.dequantize())


def _project(x, weight, bias=None):
    if isinstance(weight, Int8):
        y = (x @ weight.values.T.astype(x.dtype)) * weight.scale  # the scale is per output: apply it after
    elif isinstance(weight, Q4_1):
        y = x @ weight.dequantize().T  # XLA fuses the unpacking into the product's loop: no float32 copy
    else:
        y = x @ weight.T  # weights are laid out (out, in)
    return y if bias is None else y + bias


def _rms_norm(x, weight, eps):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope_angles(positions, head_dim, base):
    inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)  # (hd/2,)
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # (B, T, hd/2)
    return jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]


def _rope(x, cos, sin, interleaved: bool):
    """Rotate pairs of features by position: (x_{2i}, x_{2i+1}) if interleaved, else (x_i, x_{i+d/2})."""
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(x.shape)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def _attention(q, parts):
    """Grouped-query attention of q (B, T, H, d) over the slots of every part: (k, v, mask) with k, v (B, S, KV, d)
    and mask (B, T, S), or k, v (S, KV, d) and mask (S,) for slots that every row and query reads alike."""
    B, T, H, d = q.shape
    kv = parts[0][0].shape[-2]
    q = q.reshape(B, T, kv, H // kv, d)
    scores = []
    for k, _, mask in parts:
        shared = k.ndim == 3
        s = jnp.einsum("btkgd,skd->bkgts" if shared else "btkgd,bskd->bkgts", q, k) / jnp.sqrt(jnp.float32(d))
        scores.append(jnp.where(mask if shared else mask[:, None, None, :, :], s, -jnp.inf))
    probs = jnp.split(jax.nn.softmax(jnp.concatenate(scores, axis=-1), axis=-1),
                      np.cumsum([k.shape[-3] for k, _, _ in parts[:-1]]), axis=-1)
    out = None
    for p, (_, v, _) in zip(probs, parts):
        part = jnp.einsum("bkgts,skd->btkgd" if v.ndim == 3 else "bkgts,bskd->btkgd", p, v)
        out = part if out is None else out + part
    return out.reshape(B, T, H * d)
