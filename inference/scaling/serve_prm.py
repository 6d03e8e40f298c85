"""The process reward model behind an HTTP endpoint, for `RemoteReasoner`.

    python -m inference.scaling.serve_prm --port 8091            # the shipped head on the embedded model
    curl -d '{"texts": ["<prompt and reasoning so far>"]}' http://127.0.0.1:8091/score
    # {"log_values": [-2.91]}

POST /score takes a batch of texts (each the rendered prompt followed by the reasoning so far, as
`RemoteReasoner` sends them) and answers log V for each: the embedded language model reads them in one
batched prefill, and the head scores the final hidden state, the same feature the in-JAX Reasoner
scores. Batches are padded to powers of two (rows and tokens), so a few compiled programs serve all.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl.lm import LanguageModel, cache_slots

from .prm import ProcessRewardModel

__all__ = ["PRMScorer", "serve"]


@eqx.filter_jit
def _log_values(transformer, prm: ProcessRewardModel, ids, pad):
    hidden, _ = transformer.hidden_states(ids, jnp.int32(0), pad, transformer.empty_cache(*ids.shape))
    return jax.vmap(prm.log_value)(hidden[:, -1])


class PRMScorer:
    """log V of texts: the language model's final hidden state on each, scored by the head."""

    def __init__(self, lm: LanguageModel, prm: ProcessRewardModel):
        self.lm, self.prm = lm, prm.check(lm)
        self._lock = threading.Lock()  # one batch at a time (docs/performance.md)

    def score(self, texts: list[str]) -> np.ndarray:
        ids = [self.lm.tokenizer.encode(text) for text in texts]
        if not ids or any(not i for i in ids):
            raise ValueError("give at least one text, each of at least one token")
        rows, width = cache_slots(len(ids)), cache_slots(max(len(i) for i in ids))
        if width > self.lm.transformer.config.context:
            raise ValueError(f"a text has {max(len(i) for i in ids)} tokens, more than the model's context "
                             f"({self.lm.transformer.config.context})")
        tokens = np.full((rows, width), self.lm.eos_id, np.int32)
        pad = np.full(rows, width - 1, np.int32)  # rows past the batch read one token
        for row, i in enumerate(ids):
            tokens[row, width - len(i):] = i
            pad[row] = width - len(i)
        with self._lock:
            values = _log_values(self.lm.transformer, self.prm, jnp.asarray(tokens), jnp.asarray(pad))
        return np.asarray(values)[: len(ids)]


def _handler(scorer: PRMScorer):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path != "/score":
                return self._reply(404, {"error": f"no endpoint {self.path}; POST /score"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                texts = body["texts"]
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise TypeError("'texts' must be a list of strings")
                values = scorer.score(texts)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                return self._reply(400, {"error": f"expected {{\"texts\": [str, ...]}}: {error}"})
            self._reply(200, {"log_values": [float(v) for v in values]})

        def _reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: one line per request would flood a solve's output
            pass

    return Handler


def serve(scorer: PRMScorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `scorer` (port 0: a free one; `server.server_address` tells); run `serve_forever()`."""
    return ThreadingHTTPServer((host, port), _handler(scorer))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.scaling.serve_prm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--prm", default=None, help="a head written by train_prm (default: the one shipped)")
    parser.add_argument("--model", default=None, help="the language model the head reads (default: SmolLM2-135M)")
    opts = parser.parse_args(argv)

    import ppl

    server = serve(PRMScorer(ppl.lm.load(opts.model), ProcessRewardModel.load(opts.prm)), opts.host, opts.port)
    print(f"serving the process reward model at http://{opts.host}:{server.server_address[1]}/score")
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
