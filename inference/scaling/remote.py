"""The same methods over a language model behind an OpenAI-compatible server (`ppl.lm.HTTPEngine`).

    reasoner = RemoteReasoner(ppl.lm.HTTPEngine("http://127.0.0.1:8080"), ppl.lm.load().tokenizer)
    reasoner.solve(seed=0, question=problem.question, method="pf", budget=8)

For models too large for the compiled program: each step is one batch of concurrent
`/v1/completions` requests (one per live particle, stopping at a newline), scored by the
same arithmetic verifier on the step's text, then weighted, resampled (`inference.resampling`)
or pruned exactly as the in-JAX methods do, on the host. The tokenizer only renders the chat
template and feeds the verifier, so it should be the served model's.

Particle filtering, importance sampling (best-of-N, majority, weighted vote) and beam search
run here; particle Gibbs does not, since it must score a fixed reference step under the
model (teacher forcing), which the completions API does not offer in general.

A step ends at a newline, at the token budget, or at end-of-sequence: the server reports
"stop" for both a stop string and end-of-sequence, and llama.cpp's server returns the stop
string's token among the logprobs tokens, which tells them apart (a "stop" without a newline
token is taken as end-of-sequence).
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np

from inference import resampling
from ppl.lm import HTTPEngine, Tokenizer

from .data import extract_answer
from .solve import RULE_OF, Solution, chat, select_answer
from .verifier import ArithmeticVerifier

__all__ = ["RemoteReasoner"]

REMOTE_METHODS = ("pf", "bon", "majority", "weighted", "beam")


class RemoteReasoner:
    """Reasoning with a served model; the settings mean what they mean for `Reasoner`."""

    def __init__(self, engine: HTTPEngine, tokenizer: Tokenizer, n_steps: int = 4, step_tokens: int = 32,
                 lm_temperature: float = 0.7, reward_temperature: float = 1.0, log_penalty: float = -3.0):
        self.engine, self.tokenizer = engine, tokenizer
        self.verifier = ArithmeticVerifier.from_tokenizer(tokenizer)
        self.n_steps, self.step_tokens, self.lm_temperature = n_steps, step_tokens, lm_temperature
        self.reward_temperature, self.log_penalty = reward_temperature, log_penalty

    def solve(self, seed: int, question: str, method: str = "pf", budget: int = 4) -> Solution:
        """Answer `question` with `method` at `budget`, one batch of requests per step."""
        if method not in REMOTE_METHODS:
            raise ValueError(f"over an HTTP engine, method must be one of {REMOTE_METHODS}, got {method!r} "
                             "(particle Gibbs needs teacher-forced scoring, which the completions API lacks)")
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive int, got {budget!r}")
        start = time.perf_counter()
        prompt = self.tokenizer.apply_chat_template(chat(question))
        key = jax.random.key(seed)
        width = math.isqrt(budget) if method == "beam" and math.isqrt(budget) ** 2 == budget else budget
        texts, done = [""] * budget, np.zeros(budget, bool)
        log_w, tokens, calls = np.zeros(budget), 0, 0
        for t in range(self.n_steps):
            key, k_res = jax.random.split(key)
            if method == "pf" and t > 0:
                keep = np.asarray(resampling.systematic(k_res, log_w, budget))
                texts, done, log_w = [texts[i] for i in keep], done[keep], np.zeros(budget)
            live = np.flatnonzero(~done)
            if live.size == 0:
                break
            outs = self.engine.complete([prompt + texts[i] for i in live], max_tokens=self.step_tokens,
                                        temperature=self.lm_temperature, stop=["\n"], seed=seed * 1000 + t * budget)
            for i, out in zip(live, outs):
                newline = any("\n" in piece for piece in out.tokens)
                step = out.text + ("\n" if newline else "")
                texts[i] += step
                done[i] = out.finish_reason == "stop" and not newline
                wrong = self.verifier.check_text(self.tokenizer, step, closed=out.finish_reason != "length")[1]
                log_w[i] += self.log_penalty * wrong / self.reward_temperature
                tokens += len(out.tokens)
            calls += live.size
            if method == "beam":  # keep the best `width` prefixes, each with budget / width children
                best = np.repeat(np.argsort(-log_w, kind="stable")[:width], budget // width)
                texts, done, log_w = [texts[i] for i in best], done[best], log_w[best]
        if method == "beam":
            texts, log_w = texts[:: budget // width], log_w[:: budget // width]
        answers = [extract_answer(text) for text in texts]
        rule = RULE_OF[method]
        answer = select_answer(answers, log_w, rule, np.random.default_rng(seed))
        weights = np.exp(log_w - log_w.max())
        return Solution(answer, answers, weights / weights.sum(), texts, tokens, calls, time.perf_counter() - start)
