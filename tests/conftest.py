import os
import sys

import arviz  # noqa: F401  (here, in the controller, before the xdist workers start: the first import of the
# day writes a stamp file through one fixed temporary name, and two workers importing at once race on it)
import pytest

from ppl.lm import weights
from testbed.data import SHARED_DATA

# tests import helpers (random_models) that live beside them
sys.path.insert(0, os.path.dirname(__file__))


# the suite's longest tests (a minute or more each on two cores): started first, so that the two xdist workers
# finish together instead of one of them running a long test alone at the end
LONGEST_FIRST = (
    "test_readme.py::", "test_examples.py::test_notebook_executes[07", "test_scaling.py::test_real_model_methods",
    "test_gfi_properties.py::",
    "test_examples.py::test_notebook_executes[0",
)


def _rank(item) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if prefix in item.nodeid), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    """The longest tests first; a fresh clone has no `../shared/data`: its readers are skipped there, saying so,
    not failed."""
    items.sort(key=_rank)  # stable: the rest keep their order
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the real data of {SHARED_DATA}, which is not beside this checkout")
    for item in items:
        if item.get_closest_marker("shared_data"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's OpenAI-compatible server on the same GGUF, in-process through the prebuilt `xllamacpp` wheel
    (a test dependency); yields its base URL."""
    import xllamacpp  # here, not above: only the tests against a real server need it

    params = xllamacpp.CommonParams()
    params.model.path = weights.default_path()
    params.hostnames, params.port = ["127.0.0.1"], 0  # loopback only, on a free port
    params.n_ctx, params.n_parallel, params.cpuparams.n_threads = 2048, 4, 2
    params.verbosity = 1  # errors only: the default (3) logs every request
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as e:
        raise RuntimeError(f"llama.cpp's server (xllamacpp {xllamacpp.__version__}) did not start on "
                           f"{params.model.path}: see its errors in the captured stderr") from e
    yield server.listening_address
    del server  # xllamacpp has no stop method: its destructor ends the server's loop and frees the model
