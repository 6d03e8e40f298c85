"""The process reward model: its file round-trips, its training fits what is learnable and reports exact
metrics, the rollout cache resumes with the same keys, and the shipped head loads for the embedded model
(the twist's statistics, on the toy language model, are in test_scaling.py)."""

import types

import jax
import numpy as np
import pytest

from inference.scaling import ProcessRewardModel, train_prm
from inference.scaling.prm import DEFAULT_PATH
from inference.scaling.rollouts import Rollouts

D, T = 6, 3


def dataset(rng, n, signal=3.0):
    """Trajectories whose step features carry the label along one direction (more so at later steps)."""
    correct = rng.random(n) < 0.3
    live = np.ones((n, T), bool)
    live[rng.random(n) < 0.3, 2] = False
    hidden = rng.normal(size=(n, T, D))
    hidden[:, :, 0] += signal * (np.arange(1, T + 1) / T)[None] * (2 * correct[:, None] - 1)
    return train_prm.Dataset(hidden.astype(np.float16), live, rng.normal(size=(n, T)).astype(np.float32),
                             np.full(n, 30), live[:, -1], correct, np.ones(n, bool), np.arange(n) // 4)


def test_a_saved_head_loads_with_the_same_values_and_record(tmp_path):
    features = np.random.default_rng(0).normal(size=(50, D))
    prm = ProcessRewardModel.init(jax.random.key(1), features, width=8, depth=2)
    path = tmp_path / "head.safetensors"
    prm.save(path, {"auroc": 0.7})
    loaded = ProcessRewardModel.load(path)
    x = features[:5].astype(np.float32)
    np.testing.assert_array_equal(jax.vmap(prm.log_value)(x), jax.vmap(loaded.log_value)(x))
    assert ProcessRewardModel.record(path) == {"auroc": 0.7} and loaded.depth == 2 and loaded.width == 8
    assert np.all(np.asarray(jax.vmap(prm.log_value)(x)) < 0)  # a log probability
    with pytest.raises(FileNotFoundError, match="train_prm"):
        ProcessRewardModel.load(tmp_path / "missing.safetensors")
    lm = types.SimpleNamespace(transformer=types.SimpleNamespace(config=types.SimpleNamespace(hidden=D + 1)))
    with pytest.raises(ValueError, match=f"hidden states of size {D}, but the language model's are {D + 1}"):
        prm.check(lm)


def test_training_finds_the_signal_and_its_metrics_are_exact():
    rng = np.random.default_rng(0)
    train, validation = dataset(rng, 400), dataset(rng, 200)
    prm, info = train_prm.fit(jax.random.key(0), train, validation, width=16, depth=1, steps=400, progress=False)
    m = train_prm.metrics(prm, validation)
    assert m["auroc_end"] > 0.9 and m["auroc_step3"] >= m["auroc_step1"] - 0.05, m
    assert 0 < info["best_step"] <= 400 and m["brier_end"] < m["brier_base_rate"]
    # AUROC is P(right scores above wrong): brute force over pairs
    end = np.exp(np.asarray(jax.vmap(prm.log_value)(train_prm._final(validation))))
    right, wrong = end[validation.correct], end[~validation.correct]
    pairs = (right[:, None] > wrong[None]).mean() + 0.5 * (right[:, None] == wrong[None]).mean()
    assert np.isclose(m["auroc_end"], pairs)
    x, y, step = train_prm.prefixes(validation)
    assert len(y) == validation.live.sum() and set(step) == {0, 1, 2}


def test_rollouts_are_cached_per_batch_and_resume_with_the_same_keys(tmp_path, monkeypatch):
    """Problem i's trajectories come from fold_in(key(seed), i) whatever range is asked for; a second run
    reads the cache and samples nothing."""
    from inference.scaling import rollouts

    seen = {}

    def fake_sample(reasoner, keys, questions, n_rollouts):
        q = len(questions)
        for question, key in zip(questions, keys):
            seen[question] = np.asarray(jax.random.key_data(key))
        return Rollouts(np.zeros((q, n_rollouts, T, D), np.float16), np.ones((q, n_rollouts, T), bool),
                        np.zeros((q, n_rollouts, T), np.float32), np.ones((q, n_rollouts), np.int32),
                        np.ones((q, n_rollouts), bool), [["The answer is 3."] * n_rollouts] * q)

    monkeypatch.setattr(rollouts, "sample", fake_sample)
    reasoner = types.SimpleNamespace(n_steps=T, step_tokens=8, step=types.SimpleNamespace(sampler="s"))
    data = train_prm.collect(reasoner, "svamp", 5, 3, 2, seed=7, batch=4, cache=str(tmp_path))
    assert sorted(set(data.problem)) == [3, 4, 5, 6, 7] and len(data.correct) == 10
    from inference.scaling import load_problems

    problems = load_problems("svamp", 8, 0)  # batches 0-3 and 4-7 were run whole
    for i, p in enumerate(problems):
        np.testing.assert_array_equal(seen[p.question], jax.random.key_data(jax.random.fold_in(jax.random.key(7), i)))
    assert data.correct.tolist() == [p.answer == 3.0 for p in problems[3:8] for _ in range(2)]

    def refuse(*args):
        raise AssertionError("sampled again instead of reading the cache")

    monkeypatch.setattr(rollouts, "sample", refuse)
    again = train_prm.collect(reasoner, "svamp", 5, 3, 2, seed=7, batch=4, cache=str(tmp_path))
    np.testing.assert_array_equal(again.problem, data.problem)


def test_the_shipped_head_reads_the_embedded_model():
    import ppl

    prm = ProcessRewardModel.load().check(ppl.lm.load())
    assert DEFAULT_PATH.stat().st_size <= 5 * 2**20 and 0 < prm.threshold < 1
    record = ProcessRewardModel.record()
    assert record["validation"]["trajectories"] > 0 and "svamp" in record["data"]


def test_paired_comparison_counts_the_discordant_problems():
    from inference.scaling import bench

    records = [{"method": "pf", "budget": 4, "outcomes": [1, 1, 0, 1, 0, 1]},
               {"method": "bon", "budget": 16, "outcomes": [0, 1, 0, 0, 1, 0]}]
    c = bench.paired(records, ("pf", 4), ("bon", 16))
    assert (c["only_a"], c["only_b"]) == (3, 1) and np.isclose(c["p_value"], 0.625)  # 2 * P(Bin(4, 1/2) <= 1)
    with pytest.raises(ValueError, match=r"no records for \[\('beam', 4\)\]"):
        bench.paired(records, ("beam", 4), ("bon", 16))


def test_within_problem_auroc_counts_only_pairs_of_one_problem():
    score = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.8])
    label = np.array([1, 0, 0, 1, 0, 0], bool)
    problem = np.array([0, 0, 0, 1, 1, 2])
    auroc, pairs = train_prm._auroc_within(score, label, problem)
    assert pairs == 3 and np.isclose(auroc, 2 / 3)  # 0.9 beats 0.1 and 0.5; 0.2 loses to 0.3
