"""The distribution a token is actually drawn from: temperature, then top-k, then top-p (nucleus).

`log_probs` returns that distribution's normalised log-probabilities, so the log density
of a sampled token (and of a whole reasoning step, their sum) is exact for the sampler used.
Temperature 0 is greedy decoding: a point mass on the argmax.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Sampler", "log_probs", "sample"]


class Sampler(NamedTuple):
    """Static settings of the token sampler."""

    temperature: float = 1.0
    top_k: int = 0
    """Keep the k most likely tokens (0: all)."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probability reaches p (1: all)."""

    def check(self) -> Sampler:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative int (0 keeps every token), got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        return Sampler(float(self.temperature), int(self.top_k), float(self.top_p))


def log_probs(logits: jax.Array, sampler: Sampler) -> jax.Array:
    """Normalised log-probabilities (..., V) of the sampling distribution; -inf outside its support."""
    if sampler.temperature == 0.0:
        greedy = jnp.argmax(logits, axis=-1)
        return jnp.where(jnp.arange(logits.shape[-1]) == greedy[..., None], 0.0, -jnp.inf)
    scaled = logits / sampler.temperature
    if sampler.top_k:
        kth = jax.lax.top_k(scaled, sampler.top_k)[0][..., -1:]
        scaled = jnp.where(scaled >= kth, scaled, -jnp.inf)
    if sampler.top_p < 1.0:
        order = jnp.argsort(-scaled, axis=-1)
        sorted_logp = jax.nn.log_softmax(jnp.take_along_axis(scaled, order, axis=-1), axis=-1)
        before = jnp.cumsum(jnp.exp(sorted_logp), axis=-1) - jnp.exp(sorted_logp)  # mass of the tokens ranked above
        keep_sorted = before < sampler.top_p
        keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)  # back to vocabulary order
        scaled = jnp.where(keep, scaled, -jnp.inf)
    return jax.nn.log_softmax(scaled, axis=-1)


def sample(key: jax.Array, logits: jax.Array, sampler: Sampler) -> tuple[jax.Array, jax.Array]:
    """(token, its log-probability under the sampling distribution) for logits (..., V)."""
    lp = log_probs(logits, sampler)
    token = jax.random.categorical(key, lp, axis=-1)
    return token, jnp.take_along_axis(lp, token[..., None], axis=-1)[..., 0]
