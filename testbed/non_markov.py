"""Two models whose step carry holds the past, with exact posteriors: where ancestor and backward sampling must
rescore the whole future, not one step.

* A running sum (Gaussian conditioning gives the posterior)::

      x_t ~ N(0, SUM_Q),  s_t = s_{t-1} + x_t,  y_t ~ N(s_t, SUM_R),  t = 0 .. T-1,  s_{-1} = 0

  The trajectory is x; the carry s_t is the sum of every x so far.

* A toy language model over `V` tokens (enumeration gives the posterior): the carry is the context, the
  tokens so far; a token's logits are a bigram on the last token plus `ALPHA` per earlier copy of it (negative:
  the model avoids repeating itself), and each token is observed through y_t ~ N(x_t, SIGMA).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from scipy import stats

import ppl
from ppl import dist

SUM_Q, SUM_R = 1.0, 0.25


@ppl.gen
def sum_step(s_prev, _position):
    x = dist.Normal(0.0, jnp.sqrt(SUM_Q)) @ "x"
    s = s_prev + x
    dist.Normal(s, jnp.sqrt(SUM_R)) @ "y"
    return s


@ppl.gen
def running_sum(positions):
    """`positions = jnp.arange(T)`; observations `{"steps": {"y": ys}}`."""
    return ppl.scan(sum_step, in_axes=(0,))(0.0, positions) @ "steps"


def running_sum_posterior(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior of x given y: (mean, covariance), float64."""
    T = len(ys)
    cumulative = np.tril(np.ones((T, T)))  # s = cumulative @ x
    precision = np.eye(T) / SUM_Q + cumulative.T @ cumulative / SUM_R
    covariance = np.linalg.inv(precision)
    return covariance @ cumulative.T @ np.asarray(ys, np.float64) / SUM_R, covariance


V, T_LM, ALPHA, SIGMA = 3, 4, -1.5, 0.8
BIGRAM = np.array([[0.5, -0.5, 0.0], [0.0, 0.8, -0.8], [-0.6, 0.0, 0.6]], np.float32)


def token_logits(context, position):
    """Unnormalised log p(next token | context), for the `position` tokens of `context` so far."""
    seen = (context[:, None] == jnp.arange(V)) & (jnp.arange(context.shape[0]) < position)[:, None]
    last = context[jnp.maximum(position - 1, 0)]
    return jnp.where(position > 0, jnp.asarray(BIGRAM)[last], 0.0) + ALPHA * jnp.sum(seen, axis=0)


@ppl.gen
def token_step(context, position):
    x = dist.Categorical(logits=token_logits(context, position)) @ "x"
    dist.Normal(x.astype(jnp.float32), SIGMA) @ "y"
    return context.at[position].set(x)


@ppl.gen
def toy_lm(positions):
    """`positions = jnp.arange(T_LM)`; observations `{"steps": {"y": ys}}`."""
    context = jnp.full(positions.shape[0], -1, jnp.int32)
    return ppl.scan(token_step, in_axes=(0,))(context, positions) @ "steps"


def toy_lm_posterior(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every token sequence (V^T, T) and its exact posterior probability, by enumeration in float64."""
    sequences = np.array(list(itertools.product(range(V), repeat=len(ys))))
    log_p = np.zeros(len(sequences))
    for n, sequence in enumerate(sequences):
        context = np.full(len(ys), -1)
        for t, token in enumerate(sequence):
            logits = np.asarray(token_logits(jnp.asarray(context), t), np.float64)
            log_p[n] += logits[token] - np.logaddexp.reduce(logits) + stats.norm.logpdf(ys[t], token, SIGMA)
            context[t] = token
    return sequences, np.exp(log_p - np.logaddexp.reduce(log_p))
