"""The scaling methods over a real OpenAI-compatible server (llama.cpp's, on the embedded GGUF): one batch of
requests per step, the verifier's weights on the steps' texts, and the budget account; and, over a scripted
engine, the host's conditional SMC and budget policy against the device engine's."""

import jax
import numpy as np
import pytest

import ppl
from inference import resampling, scaling
from inference.scaling.remote import RemoteReasoner, _Run


@pytest.fixture(scope="module")
def tokenizer():
    return ppl.lm.load().tokenizer


@pytest.fixture(scope="module")
def remote(llama_server, tokenizer):
    return RemoteReasoner(ppl.lm.HTTPEngine(llama_server, timeout=120), tokenizer, n_steps=3, step_tokens=24)


class ScriptedEngine:
    """A stand-in for `HTTPEngine`: every completion is a numbered step stopped at its newline; the size of each
    batch of requests is recorded."""

    def __init__(self):
        self.batches, self.count = [], 0

    def complete(self, prompts, max_tokens=64, temperature=1.0, stop=None, top_p=1.0, seed=None):
        self.batches.append(len(prompts))
        out = []
        for _ in prompts:
            self.count += 1
            out.append(ppl.lm.Completion(f"step {self.count}", ["step", f" {self.count}"], [-1.0, -1.0], "stop"))
        return out


def scripted_reward(text_so_far, step, complete):
    """The reference's steps ("ref ...") score 0, the engine's steps 0, -1 or -2 by their number: unequal
    weights, so that the reference's slot moves."""
    return 0.0 if step.startswith("ref") else -float(int(step.split()[1]) % 3)


def test_host_csmc_keeps_the_reference_in_the_slot_conditional_systematic_draws(tokenizer, monkeypatch):
    """Each step resamples by `resampling.conditional_systematic` given the reference's last slot, and the
    reference's next step goes to the slot it returns, as in `smc.csmc`; the other slots come from the engine."""
    draws, conditional_systematic = [], resampling.conditional_systematic

    def recorded(key, log_weights, ancestor):
        ancestors, slot = conditional_systematic(key, log_weights, ancestor)
        draws.append((int(ancestor), np.asarray(ancestors), int(slot)))
        return ancestors, slot

    monkeypatch.setattr(resampling, "conditional_systematic", recorded)
    engine = ScriptedEngine()
    reasoner = RemoteReasoner(engine, tokenizer, reward=scripted_reward, n_steps=6)
    reference = [f"ref {t}\n" for t in range(6)]
    moved = False
    for seed in range(4):
        draws.clear()
        particles, slot = reasoner._csmc(_Run("prompt", 0), jax.random.key(seed), 4, reference, [True] * 6)
        assert len(draws) == 5  # every step after the first
        assert [ancestor for ancestor, _, _ in draws] == [0] + [s for _, _, s in draws[:-1]]
        assert all(ancestors[s] == ancestor for ancestor, ancestors, s in draws)
        assert slot == draws[-1][2] and particles.steps[slot] == reference and particles.log_w[slot] == 0.0
        assert all(steps[-1].startswith("step") for i, steps in enumerate(particles.steps) if i != slot)
        moved |= any(s != 0 for _, _, s in draws)
    assert moved, "the reference never left slot 0: the weights did not test the slot's draw"
    assert engine.batches == [3] * 6 * 4  # the 3 particles besides the reference, every step


@pytest.mark.parametrize("method, budget, batches, candidates", [
    ("pgibbs", 8, [1, 1] + [3, 3] * 2, 2),  # a first trajectory, then 2 sweeps of 4 particles (one the reference)
    ("beam", 16, [16, 16], 4),  # 4 beams of 4 children
    ("beam", 8, [8, 8], 8),  # not a square: 8 beams of 1
    ("pf", 3, [3, 3], 3),
])
def test_the_host_engine_runs_at_the_budget_plans_sizes(tokenizer, method, budget, batches, candidates):
    """`RemoteReasoner` spends a budget as `budget.plan` says, the plan `Reasoner` follows too."""
    sizes = scaling.budget.plan(method, budget)
    assert candidates == (sizes.n_sweeps if method == "pgibbs" else sizes.beam_width)
    engine = ScriptedEngine()
    solution = RemoteReasoner(engine, tokenizer, reward=scripted_reward, n_steps=2).solve(0, "Q?", method, budget)
    assert engine.batches == batches and len(solution.texts) == candidates
    with pytest.raises(ValueError, match="budget must be a positive int"):
        RemoteReasoner(engine, tokenizer, reward=scripted_reward).solve(0, "Q?", method, 0)


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


@pytest.mark.slow  # particle filtering and beam search over HTTP stay in the default suite
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


@pytest.fixture(scope="module")
def prm_server():
    """The shipped process reward model served on loopback by `serve_prm`, in a thread; its URL and scorer."""
    import threading

    from inference.scaling.serve_prm import PRMScorer, serve

    scorer = PRMScorer(ppl.lm.load(), scaling.ProcessRewardModel.load())
    server = serve(scorer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", scorer
    server.shutdown()


def test_a_reward_model_over_http_scores_prefixes_as_the_in_jax_one(prm_server):
    """log V of a batch of texts of different lengths, from one request, equals the head on the hidden state
    of each text read alone; a malformed request is refused with the reason."""
    from inference.scaling.remote import HTTPRewardModel

    url, scorer = prm_server
    lm = scorer.lm
    prompt = lm.tokenizer.apply_chat_template(scaling.solve.chat("Tom has 3 apples and buys 5 more. How many?"))
    texts = [prompt + "Tom buys 5 more.\n", prompt + "3 + 5 = 8\nThe answer is 8.", prompt]
    values = HTTPRewardModel(url).score(texts)
    for text, value in zip(texts, values):
        state = lm.prompt_state(text, max_tokens=8)
        assert abs(float(scorer.prm.log_value(state.hidden)) - value) < 2e-3
    assert len(set(np.round(values, 4))) == 3
    with pytest.raises(ppl.lm.EngineError, match="HTTP 400.*'texts' must be a list of strings"):
        HTTPRewardModel(url).score([1, 2])
    with pytest.raises(ppl.lm.EngineError, match="failed 1 times.*serve_prm"):
        HTTPRewardModel("http://127.0.0.1:9/score", timeout=5, retries=0).score(["x"])


@pytest.mark.slow  # 134 s on two cores; test_a_reward_model_over_http_scores_prefixes_as_the_in_jax_one covers the server
def test_remote_reasoner_twists_by_the_served_reward_model(prm_server, remote):
    """Weighted vote over HTTP with the served head: each trajectory's weight is V of its final prefix (the twist's
    increments telescope), and each step's live prefixes went to the reward model as one request."""
    from inference.scaling.remote import HTTPRewardModel

    url, scorer = prm_server
    requests = []

    class Counting(HTTPRewardModel):
        def score(self, texts):
            requests.append(len(texts))
            return super().score(texts)

    reasoner = RemoteReasoner(remote.engine, remote.tokenizer, reward=Counting(url), n_steps=2, step_tokens=16)
    problem = scaling.load_problems(scaling.default_data_path(), 1, 5)[0]
    solution = reasoner.solve(3, problem.question, "weighted", budget=4)
    prompt = remote.tokenizer.apply_chat_template(scaling.solve.chat(problem.question))
    final = scorer.score([prompt + text for text in solution.texts])
    expected = np.exp(final - final.max())
    np.testing.assert_allclose(solution.weights, expected / expected.sum(), rtol=1e-3, atol=1e-6)
    assert len(requests) <= 2 and requests[0] == 4 and sum(requests) == solution.reward_calls
