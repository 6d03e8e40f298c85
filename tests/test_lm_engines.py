"""Engines: the HTTP client against servers on loopback (a scripted one for failures and retries, and
llama.cpp's real OpenAI-compatible server on the same GGUF file), and the in-JAX engine."""

import http.server
import json
import math
import socket
import threading
import time

import pytest

import ppl


def legacy(logprobs):
    """An answer in the legacy OpenAI format (vLLM, OpenAI): parallel lists of tokens and log-probabilities."""
    return {"choices": [{"text": " Paris.", "finish_reason": "stop",
                         "logprobs": {"tokens": [" Paris", "."], "token_logprobs": logprobs}}]}


def content(logprobs):
    """The same answer in llama.cpp's server's format: one object per token, with its top alternatives."""
    entries = [{"id": i, "token": t, "bytes": list(t.encode()), "logprob": v} for i, t, v in
               zip([7042, 30], [" Paris", "."], logprobs)]
    return {"choices": [{"text": " Paris.", "finish_reason": "stop", "index": 0,
                         "logprobs": {"content": [dict(e, top_logprobs=[e]) for e in entries]}}]}


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers from a script of status codes (then 200 with `answer`); records the requests."""

    script: list = []
    seen: list = []
    answer: dict | None = None  # set by the `scripted` fixture and by tests

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.seen.append(body)
        code = Scripted.script.pop(0) if Scripted.script else 200
        payload = json.dumps(Scripted.answer if code == 200 else {"error": f"scripted {code}"}).encode()
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
    Scripted.script, Scripted.seen, Scripted.answer = [], [], legacy([-0.25, -0.4])
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("answer", [legacy, content])
def test_http_engine_parses_completions_and_sends_one_request_per_prompt(scripted, answer):
    Scripted.answer = answer([-0.25, -0.4])
    engine = ppl.lm.HTTPEngine(scripted, model="m", backoff=0.01)
    out = engine.complete(["a", "b", "c"], max_tokens=5, temperature=0.0, stop=["\n"])
    assert [c.text for c in out] == [" Paris."] * 3 and out[0].tokens == [" Paris", "."]
    assert out[0].token_logprobs == [-0.25, -0.4] and out[0].finish_reason == "stop"
    assert sorted(b["prompt"] for b in Scripted.seen) == ["a", "b", "c"]
    assert all(b["max_tokens"] == 5 and b["stop"] == ["\n"] and b["logprobs"] == 1 for b in Scripted.seen)
    Scripted.answer = answer([-0.25, None])  # a server may give no log-probability for a token
    assert math.isnan(engine.complete(["a"])[0].token_logprobs[1])


def test_llama_cpp_end_of_sequence_is_told_from_a_stop_string(scripted):
    """llama.cpp's server calls both "stop", leaves a stop string out, and ends at end-of-sequence with that
    token, whose text is empty: the engine reports "eos" and drops the token (it is not generated text)."""
    answer = content([-0.25, -0.4])
    eos = {"id": 2, "token": "", "bytes": [], "logprob": -0.1, "top_logprobs": []}
    answer["choices"][0]["logprobs"]["content"].append(eos)
    Scripted.answer = answer
    out = ppl.lm.HTTPEngine(scripted, backoff=0.01).complete(["a"], stop=["\n"])[0]
    assert out.finish_reason == "eos" and out.tokens == [" Paris", "."] and out.token_logprobs == [-0.25, -0.4]


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


def test_http_engine_against_llama_server(llama_server):
    """The same GGUF behind a real server: the same greedy answer, and token log-probabilities close to the
    JAX model's (llama.cpp computes with quantised matrix products, so not to float32 precision)."""
    engine = ppl.lm.HTTPEngine(llama_server, model="smollm2", timeout=120)
    lm = ppl.lm.load()
    chat = lm.tokenizer.prompt_ids([{"role": "user", "content": "Say hello."}])
    hello = lm.tokenizer.decode(chat, skip_special=False)  # ends where the assistant's turn begins
    prompts = ["The capital of France is", "1, 2, 3,", hello]
    out = engine.complete(prompts, max_tokens=24, temperature=0.0, stop=["\n"])
    ours = ppl.lm.JaxEngine(lm).complete(prompts, max_tokens=24, temperature=0.0, stop=["\n"])
    assert out[0].text.startswith(" Paris") and out[1].text.startswith(" 4")
    assert [c.text for c in out[:2]] == [c.text for c in ours[:2]]  # (the chat's long answer may part ways)
    assert [c.finish_reason for c in out] == ["stop", "length", "eos"] and out[2].text.startswith("Hello")
    assert out[0].tokens[0] == " Paris"
    assert abs(out[0].token_logprobs[0] - ours[0].token_logprobs[0]) < 0.15, (out[0].token_logprobs, ours[0].token_logprobs)
