"""The scaling methods over a real OpenAI-compatible server (llama.cpp's, on the embedded GGUF): one batch of
requests per step, the verifier's weights on the steps' texts, and the budget account."""

import numpy as np
import pytest

import ppl
from inference import scaling
from inference.scaling.remote import RemoteReasoner


@pytest.fixture(scope="module")
def remote(llama_server):
    tokenizer = ppl.lm.load().tokenizer
    return RemoteReasoner(ppl.lm.HTTPEngine(llama_server, timeout=120), tokenizer, n_steps=3, step_tokens=24)


def test_importance_weights_are_the_verifier_penalties(remote):
    problem = scaling.load_problems(scaling.default_data_path(), 1, 3)[0]
    solution = remote.solve(0, problem.question, "weighted", budget=4)
    wrong = np.array([remote.verifier.check_text(remote.tokenizer, text)[1] for text in solution.texts], float)
    expected = np.exp(-3.0 * (wrong - wrong.min()))
    np.testing.assert_allclose(solution.weights, expected / expected.sum(), rtol=1e-6)
    assert 0 < solution.reward_calls <= 4 * 3 and solution.tokens_generated >= solution.reward_calls
    assert all(text.strip() for text in solution.texts)
    # a step that stopped at its newline is followed by the next (a particle ends at end-of-sequence only)
    assert solution.reward_calls > 4 and any(text.count("\n") >= 1 for text in solution.texts), solution.texts


def test_particle_filter_and_beam_search_run_over_http(remote):
    problem = scaling.load_problems(scaling.default_data_path(), 1, 4)[0]
    pf = remote.solve(1, problem.question, "pf", budget=4)
    assert len(pf.texts) == 4 and np.isclose(pf.weights.sum(), 1.0)
    beam = remote.solve(1, problem.question, "beam", budget=4)
    assert len(beam.texts) == 2  # sqrt(4) beams
    with pytest.raises(ValueError, match="method must be one of"):
        remote.solve(0, problem.question, "sampling", budget=4)


def test_particle_gibbs_over_http_keeps_a_weighted_lineage(llama_server, remote):
    """Two CSMC sweeps of 4 particles with a plug-in reward (a Python callable): each sweep's trajectory is a
    candidate with equal weight, and every scored step, the reference's included, went through the reward."""
    problem = scaling.load_problems(scaling.default_data_path(), 1, 4)[0]
    seen = []

    def reward(text_so_far, step, complete):
        seen.append((text_so_far, step, complete))
        return -5.0 * ("answer" in step)

    custom = RemoteReasoner(remote.engine, remote.tokenizer, reward=reward, n_steps=2, step_tokens=16)
    solution = custom.solve(2, problem.question, "pgibbs", budget=8)  # 4 particles, 2 sweeps
    assert len(solution.texts) == 2 and np.allclose(solution.weights, 0.5)
    assert all(text for text in solution.texts)
    assert len(seen) == solution.reward_calls and solution.reward_calls <= 2 + 2 * 2 * 4
