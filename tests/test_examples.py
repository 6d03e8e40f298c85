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


READS_SHARED_DATA = {"01_regression_importance_sampling.ipynb", "03_eight_schools_nuts.ipynb", "08_workflow.ipynb"}  # posteriordb


@pytest.mark.parametrize("notebook", [
    pytest.param(p, marks=[pytest.mark.shared_data] if p.name in READS_SHARED_DATA else [])
    for p in sorted(EXAMPLES.glob("*.ipynb"))], ids=lambda p: p.name)
def test_notebook_executes(notebook):
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()


@pytest.mark.parametrize("notebook", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_with_outputs(notebook):
    """The docs site renders each notebook as committed (mkdocs-jupyter, `execute: false`), so every code cell must
    have been run, top to bottom, with its outputs saved: `python -m nbconvert --to notebook --execute --inplace
    examples/*.ipynb` (examples/README.md). A cell may show nothing (it only defines things) but must have run."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    not_run = [i for i, c in cells if c.execution_count is None]
    assert not not_run, f"code cells {not_run} (0-based, among all cells) have not been run; run the notebook in place"
    counts = [c.execution_count for _, c in cells]
    assert counts == sorted(set(counts)), f"execution counts {counts}: not one run from the top"
    errors = [i for i, c in cells if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"cells {errors} saved an error"
    assert any(c.outputs for _, c in cells), "no cell has saved outputs"


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
