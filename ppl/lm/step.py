"""One reasoning step of a language model as a generative function.

    state = lm.prompt_state([{"role": "user", "content": question}])     # prefilled once
    step = lm.step_fn(budget=48, delimiter="\\n", temperature=0.8)

    @ppl.gen
    def reasoning(state):
        return step(state) @ "x"          # the choice: the step's tokens; the return value: the new state

The choice at the step's address is an int32 array of `budget` token ids: the step's tokens,
then end-of-sequence ids as padding. A step ends after the first token whose text contains
the delimiter, at end-of-sequence, or at the budget. Its log density is the exact sum of the
log-probabilities of its tokens under the sampling distribution actually used (temperature,
top-k, top-p), and `assess` recomputes it by teacher forcing (one forward pass over the step).
A finished sequence (`state.done`) makes steps of padding only, with log density 0.

`LMState` is a pytree (tokens, the prompt's cache and the continuation's, length, next-token logits and the
hidden state they come from, done flag), so particles are a batch of states under `jax.vmap`. A step reads the
prompt's keys and values and never writes them (`state.prompt` comes out as it went in), so particles that
continue one prompt can share one copy of them: `inference.smc` keeps such a carry leaf once, and resampling
gathers only the continuations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import streams
from ..core import GenFn
from ..distribution import ChoiceTrace
from ..errors import ModelError
from .sampling import Sampler, log_probs, sample
from .transformer import Cache, Transformer

__all__ = ["LMState", "StepFn", "StepTrace"]


class LMState(eqx.Module):
    """One sequence: its tokens so far, their keys and values, and what comes next."""

    tokens: jax.Array
    """(slots,) int32: the sequence, prompt first; slots past `length` are padding."""
    prompt: Cache
    """Keys and values of the prompt (batch of one), written by prefill and only read after it."""
    prompt_length: jax.Array
    """P, the number of the prompt's tokens (the valid slots of `prompt`)."""
    cache: Cache
    """Keys and values of the tokens after the prompt (batch of one): slot s holds token P + s."""
    length: jax.Array
    """The number of tokens so far (the next token's slot)."""
    next_logits: jax.Array
    """(vocab,) the logits of the next token."""
    hidden: jax.Array
    """(d,) the final-layer hidden state (after the final norm) that `next_logits` were read from: the model's
    summary of the sequence so far, free for a reward model to read."""
    done: jax.Array
    """Whether the sequence has ended (end-of-sequence produced, or the cache is full)."""

    @property
    def room(self) -> jax.Array:
        """How many more tokens the continuation's cache holds."""
        return self.cache.k.shape[2] - (self.length - self.prompt_length)

    def read(self, transformer: Transformer, tokens: jax.Array) -> tuple[jax.Array, Cache]:
        """The final-layer hidden states (T, d) of `tokens` (T,) placed after the sequence, and the continuation's
        cache with their keys and values written in (the state itself is unchanged)."""
        hidden, cache = transformer.hidden_states(tokens[None], self.length - self.prompt_length,
                                                  jnp.zeros(1, jnp.int32), self.cache, (self.prompt, self.prompt_length))
        return hidden[0], cache


class StepTrace(ChoiceTrace):
    """A step's tokens (one choice), their log density, and the state before and after."""

    new_state: LMState
    state: LMState

    @property
    def retval(self):
        return self.new_state

    @property
    def args(self) -> tuple:
        return (self.state,)


class StepFn(GenFn):
    """The generative function `step(state) -> new state` whose one choice is the step's tokens."""

    transformer: Transformer
    stop_tokens: jax.Array
    """(vocab,) bool: tokens that end a step (their text contains the delimiter)."""
    budget: int = eqx.field(static=True)
    sampler: Sampler = eqx.field(static=True)
    eos: int = eqx.field(static=True)

    def _ends(self, token):
        return (token == self.eos) | self.stop_tokens[token]

    def _live(self, state: LMState) -> jax.Array:
        """Whether a step can run: the sequence has not ended and its cache holds a whole step more."""
        return ~state.done & (self.budget <= state.room)

    def _simulate(self, key, args):
        (state,) = args

        def body(carry, k):
            # Keys and values are always written at slot `length`; a token that is not part of the step
            # leaves `length` where it is, so the next real token overwrites that slot (and causality
            # hides it until then).
            state, active, logp = carry
            state = dataclasses.replace(state, prompt=prompt)
            token, token_logp = sample(k, state.next_logits, self.sampler)
            token = jnp.where(active, token, self.eos)
            hidden, cache = state.read(self.transformer, token[None])
            new = LMState(jnp.where(active, state.tokens.at[state.length].set(token), state.tokens), None,
                          state.prompt_length, cache, state.length + active.astype(jnp.int32),
                          jnp.where(active, self.transformer.logits(hidden[0]), state.next_logits),
                          jnp.where(active, hidden[0], state.hidden), state.done | (active & (token == self.eos)))
            return (new, active & ~self._ends(token), logp + jnp.where(active, token_logp, 0.0)), token

        # the prompt's cache is read by every token, not carried: the new state holds the very array it was given
        prompt = state.prompt
        (new_state, _, logp), tokens = jax.lax.scan(
            body, (dataclasses.replace(state, prompt=None), self._live(state), jnp.zeros(())),
            jax.random.split(streams.as_key(key), self.budget))
        return StepTrace(tokens, logp, self._finish(dataclasses.replace(new_state, prompt=prompt)), state)

    def _finish(self, state: LMState) -> LMState:
        """A sequence whose cache cannot hold another whole step has ended."""
        return eqx.tree_at(lambda s: s.done, state, state.done | (self.budget > state.room))

    def _assess(self, choices, args):
        trace = self._teacher_forced(self._checked(choices), args[0])
        return trace.log_density, trace.new_state

    def _teacher_forced(self, tokens, state: LMState) -> StepTrace:
        """Score given step tokens in one forward pass; the new state is what sampling them would leave."""
        ends = self._ends(tokens)
        # token i is part of the step when no earlier token ended it (and the step could run at all)
        before = jnp.concatenate([jnp.zeros(1, bool), jnp.cumsum(ends)[:-1] > 0])
        live = self._live(state) & ~before
        n = jnp.sum(live.astype(jnp.int32))
        hidden, cache = state.read(self.transformer, tokens)
        logits = self.transformer.logits(hidden)
        previous = jnp.concatenate([state.next_logits[None], logits[:-1]])  # what each token was drawn from
        lp = jnp.take_along_axis(log_probs(previous, self.sampler), tokens[:, None], axis=-1)[:, 0]
        position = state.length + jnp.arange(self.budget)
        runs = self._live(state)  # without room the forward pass wrote over earlier slots: keep the old cache
        new = LMState(
            state.tokens.at[position].set(jnp.where(live, tokens, state.tokens[jnp.minimum(
                position, state.tokens.shape[0] - 1)]), mode="drop"),
            state.prompt, state.prompt_length,
            jax.tree.map(lambda a, b: jnp.where(runs, a, b), cache, state.cache),
            state.length + n,
            jnp.where(n > 0, logits[jnp.maximum(n - 1, 0)], state.next_logits),
            jnp.where(n > 0, hidden[jnp.maximum(n - 1, 0)], state.hidden),
            state.done | jnp.any(live & (tokens == self.eos)),
        )
        return StepTrace(jnp.where(live, tokens, self.eos), jnp.sum(jnp.where(live, lp, 0.0)), self._finish(new), state)

    def _generate(self, key, constraints, args):
        if constraints is None:
            return self._simulate(key, args), jnp.zeros(())
        trace = self._teacher_forced(self._checked(constraints), args[0])
        return trace, trace.log_density

    def _update(self, key, trace, constraints, args):
        tokens = trace.value if constraints is None else self._checked(constraints)
        new = self._teacher_forced(tokens, args[0])
        return new, new.log_density - trace.log_density, None if constraints is None else trace.value

    def _regenerate(self, key, trace, selection, args):
        if selection.selects_here():
            return self._simulate(key, args), jnp.zeros(())
        new = self._teacher_forced(trace.value, args[0])
        return new, new.log_density - trace.log_density

    def _checked(self, value) -> jax.Array:
        value = jnp.asarray(value)
        if value.shape != (self.budget,) or not jnp.issubdtype(value.dtype, jnp.integer):
            raise ModelError(f"a language-model step's value is {self.budget} int32 token ids (the step, then "
                             f"end-of-sequence padding); got shape {value.shape} and dtype {value.dtype}")
        return value.astype(jnp.int32)


def stop_mask(tokenizer, delimiter: str | None) -> Any:
    """(vocab,) bool: the tokens whose text contains `delimiter` (none when it is None)."""
    import numpy as np

    mask = np.zeros(tokenizer.vocab_size, bool)
    if delimiter:
        for i in range(tokenizer.vocab_size):
            if delimiter in tokenizer.decode([i], skip_special=False):
                mask[i] = True
    return jnp.asarray(mask)
