import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ppl.lm import weights

# tests import helpers (random_models) that live beside them
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server], a test dependency) on the same GGUF."""
    log_path = tmp_path_factory.mktemp("llama_cpp") / "server.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", weights.default_path(), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT)  # a file: a full pipe would block the server
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start: " + log_path.read_text()[-2000:])
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
