"""The scaling methods over a real OpenAI-compatible server (llama.cpp's, on the embedded GGUF): one batch of
requests per step, the verifier's weights on the steps' texts, and the budget account."""

import numpy as np
import pytest

import ppl
from inference import scaling
from inference.scaling.remote import RemoteReasoner


@pytest.fixture(scope="module")
def remote(llama_cpp_server):
    tokenizer = ppl.lm.load().tokenizer
    return RemoteReasoner(ppl.lm.HTTPEngine(llama_cpp_server, timeout=120), tokenizer, n_steps=3, step_tokens=24)


def test_importance_weights_are_the_verifier_penalties(remote):
    problem = scaling.load_problems(scaling.default_data_path(), 1, 3)[0]
    solution = remote.solve(0, problem.question, "weighted", budget=4)
    wrong = np.array([remote.verifier.check_text(remote.tokenizer, text)[1] for text in solution.texts], float)
    expected = np.exp(-3.0 * (wrong - wrong.min()))
    np.testing.assert_allclose(solution.weights, expected / expected.sum(), rtol=1e-6)
    assert 0 < solution.reward_calls <= 4 * 3 and solution.tokens_generated >= solution.reward_calls
    assert all(text.strip() for text in solution.texts)


def test_particle_filter_and_beam_search_run_over_http(remote):
    problem = scaling.load_problems(scaling.default_data_path(), 1, 4)[0]
    pf = remote.solve(1, problem.question, "pf", budget=4)
    assert len(pf.texts) == 4 and np.isclose(pf.weights.sum(), 1.0)
    beam = remote.solve(1, problem.question, "beam", budget=4)
    assert len(beam.texts) == 2  # sqrt(4) beams
    with pytest.raises(ValueError, match="particle Gibbs needs teacher-forced scoring"):
        remote.solve(0, problem.question, "pgibbs", budget=4)
