"""The examples run, and the regression example agrees with posteriordb's reference."""

import json
import pathlib
import sys

import jax
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


READS_SHARED_DATA = {"01_regression_importance_sampling.ipynb", "03_eight_schools_nuts.ipynb"}  # posteriordb


@pytest.mark.parametrize("notebook", [
    pytest.param(p, marks=[pytest.mark.shared_data] if p.name in READS_SHARED_DATA else [])
    for p in sorted(EXAMPLES.glob("*.ipynb"))], ids=lambda p: p.name)
def test_notebook_executes(notebook):
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()


@pytest.mark.shared_data
def test_regression_importance_sampling_matches_reference():
    import regression as ex

    xs, ys, prior = ex.load_data()
    choices, log_w, _ = ex.importance_sampling(jax.random.key(7), xs, ys, prior, ex.least_squares_fit(xs, ys), 50_000)
    result = ex.summarize(choices, log_w)
    reference = json.loads((ex.DATA / "reference_summary.json").read_text())
    for name in ("alpha", "beta", "sigma"):
        ref = reference[name]
        z = (result[name]["mean"] - ref["mean"]) / np.sqrt(ref["sd"] ** 2 / result["ess"] + ref["mcse_mean"] ** 2)
        assert abs(z) < 4, (name, result[name], ref)
        assert abs(result[name]["sd"] / ref["sd"] - 1) < 0.05, (name, result[name], ref)
