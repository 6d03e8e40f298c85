"""The same methods over a language model behind an OpenAI-compatible server (`ppl.lm.HTTPEngine`).

    reasoner = RemoteReasoner(ppl.lm.HTTPEngine("http://127.0.0.1:8080"), ppl.lm.load().tokenizer)
    reasoner.solve(seed=0, question=problem.question, method="pf", budget=8)

For models too large for the compiled program: each step is one batch of concurrent
`/v1/completions` requests (one per live particle, stopping at a newline), scored by a reward
on the step's text, then weighted, resampled (`inference.resampling`) or pruned exactly as the
in-JAX methods do, on the host, at the sizes the same budget policy gives (`budget.plan`). The
reward is the arithmetic verifier by default, or any Python callable `reward(text_so_far, step,
complete) -> log r`, or a process reward model behind its own endpoint (`HTTPRewardModel`, below).
The tokenizer renders the chat template and feeds the verifier, so it should be the served model's.

Particle Gibbs is `methods.particle_gibbs` without ancestor sampling: a first trajectory, then
conditional SMC sweeps with the bootstrap proposal (the reference's weight is its reward alone),
resampled at every step by `resampling.conditional_systematic` as `smc.csmc` resamples, each sweep
drawing the next reference by final weight. Ancestor sampling is not offered here, since it must
score the reference's next step under every particle's prefix (teacher forcing), which the
completions API does not offer in general.

A process reward model behind its own endpoint (`HTTPRewardModel`, e.g. `python -m
inference.scaling.serve_prm`) scores prefixes rather than steps: it enters as a twist (the weight of a
step is V(prefix after) / V(prefix before), as `reward="twist"` in `reasoning_model`), and each step's
live prefixes go to it as one request.

A step ends at a newline (the stop string), at the token budget, or at end-of-sequence, which the
engine reports as "eos" where the server marks it apart (llama.cpp's server does); behind a server
that calls both "stop", a finished particle keeps taking (empty) steps until the last.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from inference import resampling
from ppl.lm import EngineError, HTTPEngine, Tokenizer, post_json

from .budget import Plan, plan
from .data import extract_answer
from .solve import METHODS, RULE_OF, Solution, chat, normalized, select_answer
from .verifier import ArithmeticVerifier

__all__ = ["HTTPRewardModel", "RemoteReasoner"]


class HTTPRewardModel:
    """A process reward model behind an HTTP endpoint: POST {"texts": [...]} answers {"log_values": [...]},
    log V of each text (the rendered prompt and the reasoning so far), as `serve_prm` does. Requests are
    retried as `HTTPEngine`'s are."""

    def __init__(self, url: str, timeout: float = 120.0, retries: int = 3):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/score") else "/score")
        self.timeout, self.retries = timeout, retries

    def score(self, texts: list[str]) -> np.ndarray:
        try:
            body = post_json(self.url, {"texts": texts}, self.timeout, self.retries)
        except EngineError as error:
            raise EngineError(f"{error} (a reward model is served by `python -m inference.scaling.serve_prm`)") from None
        values = np.asarray(body.get("log_values", []), np.float64)
        if values.shape != (len(texts),) or np.isnan(values).any():
            raise EngineError(f"the reward model at {self.url} answered {body!r} for {len(texts)} texts; expected "
                              "'log_values', one number per text")
        return values


class _Particles:
    """Host-side particles: each one's steps so far, whether it ended, its log weight."""

    def __init__(self, n: int):
        self.steps: list[list[str]] = [[] for _ in range(n)]
        self.log_r = np.zeros(n)
        """The last log reward of each prefix (a twist's weights are its increments)."""
        self.complete: list[list[bool]] = [[] for _ in range(n)]
        """Per step: whether it ended at a newline or end-of-sequence (not cut off by the token budget)."""
        self.done = np.zeros(n, bool)
        self.log_w = np.zeros(n)

    def take(self, index) -> None:
        self.steps = [list(self.steps[i]) for i in index]
        self.complete = [list(self.complete[i]) for i in index]
        self.done, self.log_w, self.log_r = self.done[index], self.log_w[index], self.log_r[index]

    def texts(self) -> list[str]:
        return ["".join(s) for s in self.steps]


class _Run:
    """One `solve`: the prompt, the seed of its requests, and what it has cost so far."""

    def __init__(self, prompt: str, seed: int):
        self.prompt, self.seed, self.tokens, self.calls = prompt, seed, 0, 0


class RemoteReasoner:
    """Reasoning with a served model; the settings mean what they mean for `Reasoner`."""

    def __init__(self, engine: HTTPEngine, tokenizer: Tokenizer,
                 reward: Callable[[str, str, bool], float] | HTTPRewardModel | None = None,
                 n_steps: int = 4, step_tokens: int = 32, lm_temperature: float = 0.7, reward_temperature: float = 1.0,
                 log_penalty: float = -3.0):
        self.engine, self.tokenizer = engine, tokenizer
        self.verifier = ArithmeticVerifier.from_tokenizer(tokenizer)
        self.reward = reward or self._verified
        self.n_steps, self.step_tokens, self.lm_temperature = n_steps, step_tokens, lm_temperature
        self.reward_temperature, self.log_penalty = reward_temperature, log_penalty

    def _verified(self, text_so_far: str, step: str, complete: bool) -> float:
        """The default reward: log_penalty per wrong equation of the step (an unfinished last one not counted)."""
        return self.log_penalty * self.verifier.check_text(self.tokenizer, step, closed=complete)[1]

    def solve(self, seed: int, question: str, method: str = "pf", budget: int = 4) -> Solution:
        """Answer `question` with `method` at `budget`, one batch of requests per step."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        sizes = plan(method, budget)
        start = time.perf_counter()
        run = _Run(self.tokenizer.apply_chat_template(chat(question)), seed)
        key = jax.random.key(seed)
        if method == "pgibbs":
            texts = self._particle_gibbs(run, key, sizes)
            log_w = np.zeros(len(texts))
        else:
            texts, log_w = self._filter(run, key, method, sizes)
        answers = [extract_answer(text) for text in texts]
        answer = select_answer(answers, log_w, RULE_OF[method], np.random.default_rng(seed))
        return Solution(answer, answers, normalized(log_w), texts, run.tokens, run.calls, time.perf_counter() - start,
                        log_w)

    def _filter(self, run: _Run, key, method: str, sizes: Plan) -> tuple[list[str], np.ndarray]:
        """Particle filtering, importance sampling or beam search; the candidates and their log weights."""
        n, width = sizes.n_particles, sizes.beam_width
        p = _Particles(n)
        for t in range(self.n_steps):
            key, k_res = jax.random.split(key)
            if method == "pf" and t > 0:
                p.take(np.asarray(resampling.systematic(k_res, p.log_w, n)))
                p.log_w = np.zeros(n)
            if not self._extend(run, p, np.flatnonzero(~p.done)):
                break
            if method == "beam":  # keep the best `width` prefixes, each with n / width children
                p.take(np.repeat(np.argsort(-p.log_w, kind="stable")[:width], n // width))
        if method == "beam":
            p.take(np.arange(0, n, n // width))
        return p.texts(), p.log_w

    def _particle_gibbs(self, run: _Run, key, sizes: Plan) -> list[str]:
        """A first trajectory, then `sizes.n_sweeps` conditional SMC sweeps, each from the last sweep's draw;
        each sweep's drawn trajectory is a candidate."""
        first = _Particles(1)
        for _ in range(self.n_steps):
            if not self._extend(run, first, np.flatnonzero(~first.done)):
                break
        steps, complete, samples = first.steps[0], first.complete[0], []
        for k_sweep in jax.random.split(key, sizes.n_sweeps):
            k_run, k_pick = jax.random.split(k_sweep)
            p, _ = self._csmc(run, k_run, sizes.n_particles, steps, complete)
            b = int(resampling.categorical(k_pick, p.log_w, 1)[0])  # the lineage of one particle by final weight
            steps, complete = p.steps[b], p.complete[b]
            samples.append("".join(steps))
        return samples

    def _csmc(self, run: _Run, key, n: int, steps: list[str], complete: list[bool]) -> tuple[_Particles, int]:
        """One conditional SMC sweep of `n` particles given a reference trajectory (its `steps`, and whether each
        ended whole): the final particles and the reference's slot among them. After the first step every
        step resamples as `smc.csmc` does without ancestor sampling: conditional systematic, given that the
        reference's ancestor is its own last slot, which draws the slot the reference's step then takes."""
        p = _Particles(n)
        slot = 0  # the first particles are i.i.d.: the reference may start anywhere
        for t, k_res in enumerate(jax.random.split(key, self.n_steps)):
            if t > 0:
                ancestors, new_slot = resampling.conditional_systematic(k_res, p.log_w, slot)
                p.take(np.asarray(ancestors))
                p.log_w, slot = np.zeros(n), int(new_slot)
            if t < len(steps):  # the reference's step, weighted as if it had just been drawn
                self._weigh(run, p, [slot], [steps[t]], [complete[t]])
                p.steps[slot].append(steps[t])
                p.complete[slot].append(complete[t])
            p.done[slot] = t + 1 >= len(steps)
            others = np.flatnonzero(~p.done & (np.arange(n) != slot))
            if not self._extend(run, p, others) and p.done[slot]:
                break
        return p, slot

    def _extend(self, run: _Run, p: _Particles, live: np.ndarray) -> bool:
        """One step for the particles `live`: one batch of requests, then their rewards. False if none is live."""
        if live.size == 0:
            return False
        texts = p.texts()
        outs = self.engine.complete([run.prompt + texts[i] for i in live], max_tokens=self.step_tokens,
                                    temperature=self.lm_temperature, stop=["\n"], seed=run.seed * 100_000 + run.calls)
        # the stop string (finish "stop") is left out of the text
        steps = [out.text + ("\n" if out.finish_reason == "stop" else "") for out in outs]
        completes = [out.finish_reason != "length" for out in outs]
        self._weigh(run, p, live, steps, completes)
        for i, out, step, complete in zip(live, outs, steps, completes):
            p.steps[i].append(step)
            p.complete[i].append(complete)
            p.done[i] = out.finish_reason == "eos"
            run.tokens += len(out.tokens)
        return True

    def _weigh(self, run: _Run, p: _Particles, index, steps: list[str], completes: list[bool]) -> None:
        """Add the rewards of new steps (not yet appended) to the particles `index`: the step's own reward, or
        for a reward model over HTTP the twist increment log V(after) − log V(before), one request for all."""
        texts = p.texts()
        if isinstance(self.reward, HTTPRewardModel):
            log_r = self.reward.score([run.prompt + texts[i] + step for i, step in zip(index, steps)])
            for i, value in zip(index, log_r):
                p.log_w[i] += (value - p.log_r[i]) / self.reward_temperature
                p.log_r[i] = value
        else:
            for i, step, complete in zip(index, steps, completes):
                p.log_w[i] += self.reward(texts[i], step, complete) / self.reward_temperature
        run.calls += len(steps)
