"""Engines: the HTTP client against servers on loopback (a scripted one for failures and retries, and
llama.cpp's real OpenAI-compatible server on the same GGUF file), and the in-JAX engine."""

import http.server
import json
import socket
import threading
import time
import urllib.request

import pytest

import ppl

ANSWER = {"choices": [{"text": " Paris.", "finish_reason": "stop",
                       "logprobs": {"tokens": [" Paris", "."], "token_logprobs": [-0.25, -0.4]}}]}


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers from a script of status codes (then 200 with ANSWER); records the requests."""

    script: list = []
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.seen.append(body)
        code = Scripted.script.pop(0) if Scripted.script else 200
        payload = json.dumps(ANSWER if code == 200 else {"error": f"scripted {code}"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Scripted.script, Scripted.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_engine_parses_completions_and_sends_one_request_per_prompt(scripted):
    engine = ppl.lm.HTTPEngine(scripted, model="m", backoff=0.01)
    out = engine.complete(["a", "b", "c"], max_tokens=5, temperature=0.0, stop=["\n"])
    assert [c.text for c in out] == [" Paris."] * 3 and out[0].token_logprobs == [-0.25, -0.4]
    assert sorted(b["prompt"] for b in Scripted.seen) == ["a", "b", "c"]
    assert all(b["max_tokens"] == 5 and b["stop"] == ["\n"] and b["logprobs"] == 1 for b in Scripted.seen)


def test_http_engine_retries_server_errors_with_backoff(scripted):
    Scripted.script = [503, 429]
    t0 = time.perf_counter()
    out = ppl.lm.HTTPEngine(scripted, backoff=0.05, retries=3).complete(["a"])
    assert out[0].text == " Paris." and len(Scripted.seen) == 3
    assert time.perf_counter() - t0 >= 0.05 + 0.1  # waited 0.05, then 0.1


def test_http_engine_errors_are_named(scripted):
    Scripted.script = [400]
    with pytest.raises(ppl.lm.EngineError, match="HTTP 400: .*scripted 400"):
        ppl.lm.HTTPEngine(scripted, backoff=0.01).complete(["a"])
    Scripted.script = [500] * 5
    with pytest.raises(ppl.lm.EngineError, match="failed 3 times .*HTTP 500"):
        ppl.lm.HTTPEngine(scripted, backoff=0.01, retries=2).complete(["a"])
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ppl.lm.EngineError, match="server is running"):
        ppl.lm.HTTPEngine(f"http://127.0.0.1:{port}", backoff=0.01, retries=1, timeout=2).complete(["a"])
    with pytest.raises(ValueError, match="http"):
        ppl.lm.HTTPEngine("localhost:8080")


def test_jax_engine_completes_with_model_log_probabilities():
    lm = ppl.lm.load()
    out = ppl.lm.JaxEngine(lm).complete(["The capital of France is", "1, 2, 3,"], max_tokens=6, temperature=0.0,
                                        stop=["\n"])
    assert out[0].text == " Paris." and out[0].finish_reason == "stop"
    assert abs(sum(out[0].token_logprobs[:1]) - float(lm.logprob("The capital of France is", " Paris"))) < 1e-3
    assert out[1].finish_reason == "length" and out[1].text.startswith(" 4")


def test_http_engine_against_llama_cpp_server(llama_cpp_server):
    """The same GGUF behind a real server: the same greedy answer, and token log-probabilities close to the
    JAX model's (llama.cpp computes with quantised matrix products, so not to float32 precision)."""
    engine = ppl.lm.HTTPEngine(llama_cpp_server, model="smollm2", timeout=120)
    out = engine.complete(["The capital of France is", "1, 2, 3,"], max_tokens=8, temperature=0.0, stop=["\n"])
    lm = ppl.lm.load()
    ours = ppl.lm.JaxEngine(lm).complete(["The capital of France is", "1, 2, 3,"], max_tokens=8, temperature=0.0,
                                         stop=["\n"])
    assert out[0].text.startswith(" Paris") and out[1].text.startswith(" 4")
    assert [c.text for c in out] == [c.text for c in ours]
    assert out[0].tokens[0] == " Paris"
    assert abs(out[0].token_logprobs[0] - ours[0].token_logprobs[0]) < 0.15, (out[0].token_logprobs, ours[0].token_logprobs)
