"""Reasoning trajectories sampled from the language model, with what a process reward model learns from.

    batch = sample(reasoner, keys, questions, n_rollouts=8)   # one key per question
    batch.hidden            # (Q, K, T, d) the final-layer hidden state at the end of each step
    batch.live              # (Q, K, T) whether step t ran (the sequence had not finished before it)
    batch.texts[q][k]       # the generated text, prompt excluded

Each trajectory is a draw from the Reasoner's own prior (its prompt, step generative function and number
of steps, no reward), so a reward model trained on them scores the prefixes the Reasoner will meet.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

__all__ = ["Rollouts", "sample"]


class Rollouts(NamedTuple):
    """Trajectories of a batch of questions, K per question, as numpy arrays."""

    hidden: np.ndarray
    """(Q, K, T, d) float16, the hidden state the step's last token produced (what `LMState.hidden` holds)."""
    live: np.ndarray
    """(Q, K, T) bool, whether step t ran."""
    log_prob: np.ndarray
    """(Q, K, T) float32, the language model's log density of step t."""
    tokens: np.ndarray
    """(Q, K) int32, tokens generated."""
    finished: np.ndarray
    """(Q, K) bool, whether the sequence ended (end-of-sequence) within the steps."""
    texts: list
    """[Q][K] str, the generated text."""


@eqx.filter_jit
def _trajectories(key, step, state0, n_rollouts: int, n_steps: int):
    def one(key):
        def body(state, k):
            trace = step.simulate(k, state)
            return trace.retval, (trace.retval.hidden, ~state.done, trace.score)

        return jax.lax.scan(body, state0, jax.random.split(key, n_steps))

    return jax.vmap(one)(jax.random.split(key, n_rollouts))


def sample(reasoner, keys: jax.Array, questions: list[str], n_rollouts: int) -> Rollouts:
    """`n_rollouts` trajectories for each question (one key each; the questions run side by side)."""
    states, prompts = reasoner.prompt_states(questions)
    finals, (hidden, live, log_prob) = jax.vmap(
        lambda k, s: _trajectories(k, reasoner.step, s, n_rollouts, reasoner.n_steps))(keys, states)
    tokens, lengths = np.asarray(finals.tokens), np.asarray(finals.length)
    decode = reasoner.lm.tokenizer.decode
    texts = [[decode(tokens[q, k, prompts[q]:lengths[q, k]]) for k in range(n_rollouts)] for q in range(len(prompts))]
    return Rollouts(np.asarray(hidden, np.float16), np.asarray(live), np.asarray(log_prob, np.float32),
                    (lengths - np.asarray(prompts)[:, None]).astype(np.int32), np.asarray(finals.done), texts)
