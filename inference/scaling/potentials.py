"""Potentials: how a reasoning step is scored. A potential is any pytree callable

    potential(state_before, state_after) -> log r      (a float32 scalar, traced)

so a process reward model written in JAX plugs in as an equinox module. Two come with the library:
`ProcessVerifier` (exact arithmetic checking of the step's equations) and `LMJudge` (the language
model asked whether the reasoning so far is correct).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl.lm import LanguageModel, LMState, Transformer

from .verifier import ArithmeticVerifier

__all__ = ["LMJudge", "ProcessVerifier", "step_tokens"]


def step_tokens(before: LMState, after: LMState, budget: int, eos: int) -> jax.Array:
    """The tokens a step added, (budget,) int32, padded with `eos`."""
    index = before.length + jnp.arange(budget)
    tokens = after.tokens[jnp.minimum(index, after.tokens.shape[0] - 1)]
    return jnp.where(index < after.length, tokens, eos)


class ProcessVerifier(eqx.Module):
    """log r = log_penalty × (number of wrong equations "a op b = c" in the step).

    A step without equations, or with only correct ones, has r = 1; each arithmetic slip
    multiplies the step's reward by exp(log_penalty). A step cut off at its token budget does not
    count an equation whose result it did not finish; an equation split across two steps is not
    checked.
    """

    verifier: ArithmeticVerifier
    budget: int = eqx.field(static=True)
    eos: int = eqx.field(static=True)
    log_penalty: float = eqx.field(static=True, default=-3.0)

    @classmethod
    def for_lm(cls, lm: LanguageModel, budget: int, log_penalty: float = -3.0) -> ProcessVerifier:
        """The verifier for steps of `lm.step_fn(budget=budget)`."""
        return cls(ArithmeticVerifier.from_tokenizer(lm.tokenizer), budget, lm.eos_id, log_penalty)

    def __call__(self, before: LMState, after: LMState) -> jax.Array:
        # a step that filled its budget was cut off: its last number may be incomplete
        closed = after.length - before.length < self.budget
        _, wrong = self.verifier.check(step_tokens(before, after, self.budget, self.eos), closed)
        return self.log_penalty * wrong.astype(jnp.float32)


class LMJudge(eqx.Module):
    """log r = log P(" yes" | text so far + question) among {" yes", " no"}, from the model itself.

    The question is read on a copy of the sequence's cache (the sequence itself is unchanged),
    so the cache needs room for it: make `prompt_state(..., max_tokens=)` cover the steps and
    the question. Use it with `reward="twist"`: it scores the whole prefix.
    """

    transformer: Transformer
    question: jax.Array
    yes: int = eqx.field(static=True)
    no: int = eqx.field(static=True)

    @classmethod
    def from_lm(cls, lm: LanguageModel, question: str = "\nIs every calculation above correct? Answer yes or no:",
                yes: str = " yes", no: str = " no") -> LMJudge:
        ids = [lm.tokenizer.encode(word) for word in (yes, no)]
        if any(len(i) != 1 for i in ids):
            raise ValueError(f"the verdicts {yes!r} and {no!r} must be one token each, got ids {ids}")
        return cls(lm.transformer, jnp.asarray(lm.tokenizer.encode(question), jnp.int32), ids[0][0], ids[1][0])

    def __call__(self, before: LMState, after: LMState) -> jax.Array:
        hidden, _ = after.read(self.transformer, self.question)
        verdict = jax.nn.log_softmax(self.transformer.logits(hidden[-1])[jnp.array([self.yes, self.no])])
        return verdict[0]
