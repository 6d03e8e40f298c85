"""Engines: where completions come from. The in-JAX model, or an OpenAI-compatible HTTP server.

    engine = ppl.lm.JaxEngine(ppl.lm.load())                        # in the compiled program's process
    engine = ppl.lm.HTTPEngine("http://127.0.0.1:8080", model="smollm2")   # vLLM, llama.cpp's server, ...
    outs = engine.complete(["The capital of France is"], max_tokens=8, temperature=0.0)
    outs[0].text, outs[0].token_logprobs

Both return `Completion`s with per-token log-probabilities. The HTTP engine sends one
`/v1/completions` request per prompt, concurrently (a batch per call), with a timeout, and
retries connection failures, timeouts, 429 and 5xx answers with exponential backoff; any
other failure raises `EngineError` with the server's message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import numpy as np

__all__ = ["Completion", "EngineError", "HTTPEngine", "JaxEngine"]


class Completion(NamedTuple):
    """One completion: its text, tokens and their log-probabilities, and why it stopped."""

    text: str
    tokens: list[str]
    token_logprobs: list[float]
    finish_reason: str
    """"stop" (a stop string, which is not part of `text`), "eos" (end-of-sequence) or "length" (the token
    budget). A server that does not mark end-of-sequence apart (the OpenAI API calls both "stop") gives "stop"."""


class EngineError(RuntimeError):
    """A request to a language-model server failed for good."""


class HTTPEngine:
    """A client of an OpenAI-compatible completions endpoint (`POST {base_url}/v1/completions`)."""

    def __init__(self, base_url: str, model: str = "default", timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.5, max_concurrency: int = 8, api_key: str | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.timeout, self.retries, self.backoff, self.max_concurrency = timeout, retries, backoff, max_concurrency
        self.api_key = api_key

    def complete(self, prompts: list[str], max_tokens: int = 64, temperature: float = 1.0, stop: list[str] | None = None,
                 top_p: float = 1.0, seed: int | None = None) -> list[Completion]:
        """Complete each prompt (plain text); requests run concurrently."""
        if isinstance(prompts, str):
            raise TypeError("give a list of prompts, not one string")

        def one(i_prompt):
            i, prompt = i_prompt
            body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                    "top_p": top_p, "logprobs": 1}
            if stop:
                body["stop"] = list(stop)
            if seed is not None:
                body["seed"] = seed + i
            return _completion(self._post("/v1/completions", body)["choices"][0])

        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(prompts)))) as pool:
            return list(pool.map(one, enumerate(prompts)))

    def _post(self, path: str, body: dict) -> dict:
        return post_json(self.base_url + path, body, self.timeout, self.retries, self.backoff, self.api_key)


def post_json(url: str, body: dict, timeout: float = 60.0, retries: int = 3, backoff: float = 0.5,
              api_key: str | None = None) -> dict:
    """POST `body` as JSON and return the JSON answer, retrying (with exponential backoff) on a connection
    failure, a timeout, HTTP 429 or 5xx; any other HTTP error, or the last failure, raises `EngineError`."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            message = e.read().decode(errors="replace")[:500]
            if e.code == 429 or e.code >= 500:
                last = f"HTTP {e.code}: {message}"
                continue
            raise EngineError(f"{url} answered HTTP {e.code}: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    raise EngineError(f"{url} failed {retries + 1} times (last: {last}); check that the server is running "
                      f"and reachable, or raise timeout={timeout} / retries={retries}")


def _completion(choice: dict) -> Completion:
    logprobs = choice.get("logprobs") or {}
    reason = choice.get("finish_reason") or "stop"
    if "content" in logprobs:  # llama.cpp's server: one {"token", "logprob", ...} object per token
        entries = logprobs["content"] or []
        if reason == "stop" and entries and entries[-1].get("token") == "":
            # it ends an end-of-sequence stop with that token, whose text is empty (a stop string's is left out)
            entries, reason = entries[:-1], "eos"
        tokens, raw = [e.get("token", "") for e in entries], [e.get("logprob") for e in entries]
    else:  # the legacy OpenAI format (vLLM, OpenAI, llama-cpp-python): parallel lists
        tokens, raw = list(logprobs.get("tokens") or []), logprobs.get("token_logprobs") or []
    values = [float("nan") if v is None else float(v) for v in raw]
    return Completion(choice.get("text", ""), tokens, values, reason)


class JaxEngine:
    """The same interface over the in-JAX model (`ppl.lm.load()`): one batched, compiled decoding loop."""

    def __init__(self, lm, seed: int = 0):
        self.lm, self.key = lm, jax.random.key(seed)

    def complete(self, prompts: list[str], max_tokens: int = 64, temperature: float = 1.0, stop: list[str] | None = None,
                 top_p: float = 1.0, seed: int | None = None) -> list[Completion]:
        key = jax.random.key(seed) if seed is not None else self._next_key()
        tokens, logps = self.lm.sample_tokens(key, prompts, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        out = []
        for row, lps in zip(tokens, logps):
            ids, reason = [], "length"
            for t in row:
                if t == self.lm.eos_id:
                    reason = "eos"
                    break
                ids.append(int(t))
            pieces = [self.lm.tokenizer.decode([i]) for i in ids]
            text = "".join(pieces)
            if stop:
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                if cut >= 0:
                    kept, length = [], 0
                    for piece in pieces:
                        if length >= cut:
                            break
                        kept.append(piece)
                        length += len(piece)
                    pieces, text, reason = kept, text[:cut], "stop"
            out.append(Completion(text, pieces, [float(v) for v in np.asarray(lps)[: len(pieces)]], reason))
        return out

    def _next_key(self):
        self.key, key = jax.random.split(self.key)
        return key
