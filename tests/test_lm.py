"""The embedded language model (SmolLM2-135M-Instruct, GGUF): logits against transformers, greedy answers,
the tokenizer, the KV cache, padding, and the sampler's distribution."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl.lm.sampling import Sampler, log_probs, sample

REFERENCE = pathlib.Path(__file__).parent / "data" / "smollm2_reference.npz"


@pytest.fixture(scope="module")
def lm():
    return ppl.lm.load()


def forward(lm, ids, slots=64):
    ids = jnp.asarray(ids, jnp.int32)[None]
    m = lm.transformer
    logits, _ = m(ids, jnp.int32(0), jnp.zeros(1, jnp.int32), m.empty_cache(1, slots))
    return np.asarray(logits[0])


def test_logits_match_transformers_on_the_same_gguf(lm):
    """tests/data/make_lm_reference.py: transformers (its own dequantisation and Llama, rotate-half rope)."""
    ref = np.load(REFERENCE)
    for i in range(3):
        ids = ref[f"ids_{i}"]
        assert list(ids) == lm.tokenizer.prompt_ids(
            ["The capital of France is", "Héllo wörld — 日本語 🙂 12345 + 678 = ?",
             [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]][i])
        logits = forward(lm, ids)
        scale = np.abs(ref[f"last_{i}"]).max()
        np.testing.assert_allclose(logits[-1], ref[f"last_{i}"], atol=1e-4 * scale, rtol=0)
        np.testing.assert_allclose(logits[:, ref["vocab_subset"]], ref[f"subset_{i}"], atol=1e-4 * scale, rtol=0)


def test_greedy_answers_are_coherent(lm):
    out = lm.generate(jax.random.key(0), [[{"role": "user", "content": "What is the capital of France?"}],
                                          "The capital of Germany is"], max_tokens=16, temperature=0.0)
    assert out[0] == "The capital of France is Paris."
    assert out[1].startswith(" Berlin")


def test_tokenizer_round_trips_unicode_and_special_tokens(lm):
    tok = lm.tokenizer
    for text in ["Héllo wörld — 日本語 🙂 12345", "tabs\tand\nnewlines  ", "<|im_start|>user\nHi<|im_end|>", "Ωμέγα ∑ ∫ 𝔘"]:
        assert tok.decode(tok.encode(text), skip_special=False) == text
    assert tok.encode("<|im_start|>") == [tok.id_of("<|im_start|>")]  # a special token is one id
    assert tok.encode("12") == [tok.id_of("1"), tok.id_of("2")]  # digits are split one by one


def test_prefill_then_incremental_decode_equals_a_full_forward_pass(lm):
    ids = lm.tokenizer.encode("One, two, three, four, five, six")
    full = forward(lm, ids)
    m = lm.transformer
    cache = m.empty_cache(1, 64)
    pad = jnp.zeros(1, jnp.int32)
    logits, cache = m(jnp.asarray([ids[:4]]), jnp.int32(0), pad, cache)
    steps = [np.asarray(logits[0])]
    for t in range(4, len(ids)):
        logits, cache = m(jnp.asarray([[ids[t]]]), jnp.int32(t), pad, cache)
        steps.append(np.asarray(logits[0]))
    np.testing.assert_allclose(np.concatenate(steps), full, atol=2e-4 * np.abs(full).max(), rtol=0)


def test_a_padded_batch_equals_its_rows_alone(lm):
    prompts = ["The capital of Germany is", "Once upon a time, in a land far, far away, there lived"]
    tokens, pad = lm.batch(prompts)
    m = lm.transformer
    batched, _ = m(tokens, jnp.int32(0), pad, m.empty_cache(2, 64))
    assert np.all(np.isfinite(np.asarray(batched)))
    for row, prompt in enumerate(prompts):
        alone = forward(lm, lm.tokenizer.encode(prompt))
        np.testing.assert_allclose(np.asarray(batched[row, -1]), alone[-1], atol=1e-4 * np.abs(alone).max(), rtol=0)


def test_logprob_is_the_sum_of_token_log_probabilities(lm):
    prefix, cont = "The capital of France is", " Paris, a city"
    p_ids, c_ids = lm.tokenizer.encode(prefix), lm.tokenizer.encode(cont)
    logp = jax.nn.log_softmax(forward(lm, p_ids + c_ids), axis=-1)
    expected = sum(float(logp[len(p_ids) - 1 + i, t]) for i, t in enumerate(c_ids))
    assert abs(float(lm.logprob(prefix, cont)) - expected) < 1e-3
    assert lm.logprob(prefix, " Paris") > lm.logprob(prefix, " London") + 2.0


@pytest.mark.parametrize("sampler", [Sampler(0.7), Sampler(1.0, top_k=5), Sampler(1.3, top_p=0.8),
                                     Sampler(0.9, top_k=8, top_p=0.9)], ids=["temperature", "top-k", "top-p", "all"])
def test_sampling_frequencies_match_the_stated_distribution(sampler):
    """χ² of 20,000 draws against `log_probs`, the distribution whose log density lm.step reports."""
    logits = jax.random.normal(jax.random.key(0), (12,)) * 1.5
    lp = np.asarray(log_probs(logits, sampler), np.float64)
    tokens, token_lp = jax.vmap(lambda k: sample(k, logits, sampler))(jax.random.split(jax.random.key(1), 20_000))
    np.testing.assert_allclose(np.asarray(token_lp), lp[np.asarray(tokens)], atol=1e-5)
    support = np.isfinite(lp)
    counts = np.bincount(np.asarray(tokens), minlength=12)
    assert counts[~support].sum() == 0, "a token outside the truncated support was drawn"
    expected = np.exp(lp[support]) * counts.sum()
    assert stats.chisquare(counts[support], expected / expected.sum() * counts.sum()).pvalue > 1e-3
    if sampler.top_k:
        assert support.sum() <= sampler.top_k


def test_greedy_is_a_point_mass():
    logits = jnp.array([0.1, 2.0, -1.0])
    assert np.asarray(log_probs(logits, Sampler(0.0))).tolist() == [-np.inf, 0.0, -np.inf]


def test_bad_input_is_named(lm, tmp_path):
    with pytest.raises(TypeError, match="list of prompts"):
        lm.generate(jax.random.key(0), "just a string")
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(jax.random.key(0), ["hi"], temperature=-1.0)
    with pytest.raises(ValueError, match="role"):
        lm.tokenizer.apply_chat_template([{"text": "hi"}])
    with pytest.raises(FileNotFoundError, match="gguf file or a Hugging Face"):
        ppl.lm.load(str(tmp_path / "missing.gguf"))
