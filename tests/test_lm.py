"""The embedded language model (SmolLM2-135M-Instruct, GGUF): logits against transformers, greedy answers,
the tokenizer, the KV cache, padding, and the sampler's distribution."""

import json
import operator
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl.lm.model import cache_slots
from ppl.lm.sampling import Sampler, log_probs, sample
from ppl.lm.transformer import Q4_1, Int8, _project

REFERENCE = pathlib.Path(__file__).parent / "data" / "smollm2_reference.npz"


@pytest.fixture(scope="module")
def lm():
    return ppl.lm.load()


def forward(lm, ids):
    """Logits of a whole sequence in one pass from an empty cache."""
    ids = jnp.asarray(ids, jnp.int32)[None]
    m = lm.transformer
    logits, _ = m(ids, jnp.int32(0), jnp.zeros(1, jnp.int32), m.empty_cache(1, cache_slots(ids.shape[1])))
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


def test_generation_stops_at_a_delimiter_per_sequence(lm):
    prompts = ["1, 2, 3,", "The capital of France is"]
    out = lm.generate(jax.random.key(0), prompts, max_tokens=12, temperature=0.0, stop=",")
    assert out[0] == " 4" and "," not in out[1]
    tokens, _ = lm.sample_tokens(jax.random.key(0), prompts, max_tokens=12, temperature=0.0, stop=",")
    comma = [i for i, t in enumerate(tokens[0]) if "," in lm.tokenizer.decode([int(t)])]
    assert comma and np.all(tokens[0, comma[0] + 1:] == lm.eos_id)  # nothing after the delimiter's token
    with pytest.raises(ValueError, match="stop must be a non-empty string"):
        lm.generate(jax.random.key(0), prompts, stop="")


def test_int8_weights_keep_the_next_token_distribution(lm):
    """quantize="int8": per-row rounding error at most half a scale step, and next-token distributions within
    a small Kullback-Leibler divergence of float32's on the reference prompts."""
    quantized = ppl.lm.LanguageModel(lm.transformer.quantize("int8"), lm.tokenizer)
    q = quantized.transformer.layers["up"]
    w = np.asarray(lm.transformer.layers["up"])
    error = np.abs(np.asarray(q.values, np.float32) * np.asarray(q.scale)[..., None] - w)
    assert np.all(error <= np.asarray(q.scale)[..., None] / 2 + 1e-7)
    ref = np.load(REFERENCE)
    for i in range(3):
        p, r = (jax.nn.log_softmax(forward(m, ref[f"ids_{i}"])[-1]) for m in (lm, quantized))
        assert 0 <= float(jnp.sum(jnp.exp(p) * (p - r))) < 0.01
    assert quantized.generate(jax.random.key(0), ["The capital of France is"], max_tokens=3,
                              temperature=0.0)[0].startswith(" Paris")
    with pytest.raises(ValueError, match="quantize must be one of"):
        lm.transformer.quantize("int4")


@pytest.fixture(scope="module")
def q4_1():
    return ppl.lm.load(quantize="q4_1")


def test_q4_1_keeps_the_gguf_blocks_and_the_next_token_distribution(lm, q4_1):
    """quantize="q4_1": the GGUF's Q4_1 blocks kept as stored (dequantised, exactly the float32 model's weights,
    which `gguf` dequantised; quantising those floats again gives the same blocks), so the model differs from
    float32 only by its int8 embedding: next-token distributions within the int8 test's bound at every
    position of the reference prompts."""
    for name in ("q", "k", "v", "o", "gate", "up", "down"):
        w = q4_1.transformer.layers[name]
        assert isinstance(w, Q4_1) and w.nibbles.dtype == jnp.uint8 and w.scale.dtype == jnp.float16
        np.testing.assert_array_equal(np.asarray(w.dequantize()), np.asarray(lm.transformer.layers[name]))
    again = Q4_1.quantize(lm.transformer.layers["up"])
    for field in ("nibbles", "scale", "minimum"):
        np.testing.assert_array_equal(np.asarray(getattr(again, field)), np.asarray(getattr(q4_1.transformer.layers["up"], field)))
    ref = np.load(REFERENCE)
    for i in range(3):
        p, r = (jax.nn.log_softmax(forward(m, ref[f"ids_{i}"]), axis=-1) for m in (lm, q4_1))
        assert np.all(np.sum(np.exp(p) * (p - r), axis=-1) < 0.01)
    assert q4_1.generate(jax.random.key(0), ["The capital of France is"], max_tokens=3,
                         temperature=0.0)[0].startswith(" Paris")


@pytest.mark.parametrize("kind", [Int8, Q4_1])
def test_a_quantised_matrix_product_equals_the_dequantised_float_one(kind):
    """The fused product (the weights dequantised inside it) against float64 products with the dequantised
    matrix; a float block's rounding error is at most half a quantisation step."""
    w = jax.random.normal(jax.random.key(0), (3, 96, 64)) * jnp.linspace(0.01, 2.0, 64)
    q = kind.quantize(w)
    dense = np.asarray(q.dequantize() if kind is Q4_1 else q.values * q.scale[..., None], np.float64)
    step = np.repeat(np.asarray(q.scale, np.float64), 32, axis=-1) if kind is Q4_1 else np.asarray(q.scale)[..., None]
    assert np.all(np.abs(dense - np.asarray(w)) <= step / 2 * (1 + 1e-3) + 1e-6)
    x = jax.random.normal(jax.random.key(1), (5, 64))
    for layer in range(3):
        one = jax.tree.map(operator.itemgetter(layer), q)
        y = np.einsum("bi,oi->bo", np.asarray(x, np.float64), dense[layer])
        np.testing.assert_allclose(np.asarray(jax.jit(_project)(x, one)), y, rtol=1e-5, atol=1e-5 * np.abs(y).max())
    np.testing.assert_array_equal(np.asarray(q.rows(jnp.array([[2, 0]]))), np.asarray(dense[[[2, 0]]], np.float32))


def test_bad_quantize_is_named():
    with pytest.raises(ValueError, match=r"quantize must be one of \(None, 'int8', 'q4_1'\), got 'q4'"):
        ppl.lm.load(quantize="q4")


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


def test_a_safetensors_directory_loads_the_same_model(lm, tmp_path):
    """The GGUF's weights written as a Hugging Face Llama directory (Q and K rows back in rotate-half order,
    config.json, tokenizer.json and tokenizer_config.json) give the same logits and chat prompt."""
    from safetensors.numpy import save_file

    from ppl.lm import weights as weights_io

    config, arrays, meta = weights_io.read(weights_io.default_path())
    c = config

    def rotate_half_rows(w, heads):  # undo llama.cpp's interleaving of each head's rows
        return w.reshape(heads, c.head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)

    names = {"attn_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
             "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
             "mlp_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
             "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"}
    hf = {"model.embed_tokens.weight": arrays["embed"], "model.norm.weight": arrays["norm"]}
    for i in range(c.layers):
        for ours, theirs in names.items():
            w = arrays[f"layers.{i}.{ours}"]
            w = rotate_half_rows(w, c.heads) if ours == "q" else rotate_half_rows(w, c.kv_heads) if ours == "k" else w
            hf[f"model.layers.{i}.{theirs}"] = np.ascontiguousarray(w)
    save_file(hf, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": c.vocab_size, "hidden_size": c.hidden, "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads, "intermediate_size": c.ffn,
        "rope_theta": c.rope_base, "rms_norm_eps": c.norm_eps, "max_position_embeddings": c.context}))
    lm.tokenizer.backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "chat_template": lm.tokenizer.chat_template}))

    theirs = ppl.lm.load(str(tmp_path))
    chat = [{"role": "user", "content": "What is 2 + 2?"}]
    assert theirs.tokenizer.prompt_ids(chat) == lm.tokenizer.prompt_ids(chat)
    assert theirs.eos_id == lm.eos_id
    ids = lm.tokenizer.prompt_ids(chat)
    ours, other = forward(lm, ids), forward(theirs, ids)
    np.testing.assert_allclose(other, ours, atol=1e-4 * np.abs(ours).max(), rtol=0)


def test_bad_input_is_named(lm, tmp_path):
    with pytest.raises(TypeError, match="list of prompts"):
        lm.generate(jax.random.key(0), "just a string")
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(jax.random.key(0), ["hi"], temperature=-1.0)
    with pytest.raises(ValueError, match="role"):
        lm.tokenizer.apply_chat_template([{"text": "hi"}])
    with pytest.raises(FileNotFoundError, match="gguf file or a Hugging Face"):
        ppl.lm.load(str(tmp_path / "missing.gguf"))


# --- one reasoning step as a generative function -------------------------------------------------------------

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]


@pytest.fixture(scope="module")
def stepping(lm):
    return lm.prompt_state(QUESTION, max_tokens=128), lm.step_fn(budget=24, delimiter="\n", temperature=0.8, top_k=50)


def test_step_log_density_equals_an_independent_recomputation(lm, stepping):
    """The sampled step's score against a full forward pass from scratch (no cache) with the same sampler."""
    state, step = stepping
    traces = jax.jit(jax.vmap(lambda k: step.simulate(k, state)))(jax.random.split(jax.random.key(0), 3))
    prompt = lm.tokenizer.prompt_ids(QUESTION)
    for i in range(3):
        tokens = np.asarray(traces.value[i])
        n = int(traces.retval.length[i]) - len(prompt)
        assert n >= 1 and np.all(tokens[n:] == lm.eos_id)
        logits = forward(lm, prompt + tokens[:n].tolist())
        lp = np.asarray(log_probs(jnp.asarray(logits[len(prompt) - 1:-1]), step.sampler))
        expected = sum(lp[j, tokens[j]] for j in range(n))
        assert abs(float(traces.score[i]) - expected) < 1e-3 * max(1.0, abs(expected))
        # and assess (teacher forcing through the cache) agrees, new state included
        score, new = step.assess(traces.value[i], state)
        assert abs(float(score) - float(traces.score[i])) < 1e-3 * max(1.0, abs(expected))
        assert int(new.length) == int(traces.retval.length[i])
        np.testing.assert_array_equal(np.asarray(new.tokens), np.asarray(traces.retval.tokens[i]))
        text = lm.tokenizer.decode(tokens[:n])
        assert "\n" not in text[:-1] and (text.endswith("\n") or n == step.budget)
        # the state's hidden state is the last position's in a full pass, and its logits are read from it
        ids = jnp.asarray([prompt + tokens[:n].tolist()], jnp.int32)
        hidden, _ = lm.transformer.hidden_states(ids, jnp.int32(0), jnp.zeros(1, jnp.int32),
                                                 lm.transformer.empty_cache(1, cache_slots(ids.shape[1])))
        np.testing.assert_allclose(np.asarray(traces.retval.hidden[i]), np.asarray(hidden[0, -1]), atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(np.asarray(new.hidden), np.asarray(traces.retval.hidden[i]), atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(np.asarray(lm.transformer.logits(traces.retval.hidden[i])),
                                   np.asarray(traces.retval.next_logits[i]), atol=1e-3)


def test_particles_are_resampled_by_a_gather_inside_jit(lm, stepping):
    state, step = stepping

    @jax.jit
    def two_steps(key):
        k1, k2 = jax.random.split(key)
        first = jax.vmap(lambda k: step.simulate(k, state))(jax.random.split(k1, 4))
        ancestors = jnp.array([2, 2, 0, 1])
        parents = jax.tree.map(lambda x: x[ancestors], first.retval)
        second = jax.vmap(lambda k, s: step.simulate(k, s))(jax.random.split(k2, 4), parents)
        return first, second

    first, second = two_steps(jax.random.key(1))
    for child, parent in enumerate([2, 2, 0, 1]):
        n = int(first.retval.length[parent])
        np.testing.assert_array_equal(np.asarray(second.retval.tokens[child, :n]), np.asarray(first.retval.tokens[parent, :n]))
        assert int(second.retval.length[child]) >= n


def test_a_step_is_a_choice_of_a_model(lm, stepping):
    state, step = stepping

    @ppl.gen
    def reasoning(state):
        first = step(state) @ "first"
        return step(first) @ "second"

    tr = reasoning.simulate(jax.random.key(2), state)
    score, final = reasoning.assess(tr.choices, state)
    assert abs(float(score) - float(tr.score)) < 1e-3 * max(1.0, abs(float(tr.score)))
    assert int(final.length) == int(tr.retval.length)
    finished = eqx_done(state)
    dead = step.simulate(jax.random.key(3), finished)
    assert float(dead.score) == 0.0 and np.all(np.asarray(dead.value) == lm.eos_id)
    with pytest.raises(ppl.ModelError, match="token ids"):
        step.assess(jnp.zeros(3, jnp.int32), state)


def eqx_done(state):
    import equinox as eqx

    return eqx.tree_at(lambda s: s.done, state, jnp.ones((), bool))
