"""The arithmetic process verifier on the real SmolLM2 tokenizer (hand-counted equations, and the same
counts under jit and vmap over padded steps), answer extraction, and the SVAMP and GSM8K loaders."""

import json

import jax
import jax.numpy as jnp
import pytest

import ppl
from inference.scaling import (ArithmeticVerifier, Problem, default_data_path, extract_answer, is_correct,
                               load_problems)
from inference.scaling.verifier import DIGIT, EQUALS, OP, OTHER, SPACE, SUB
from testbed.data import SHARED_DATA as SHARED


@pytest.fixture(scope="module")
def tokenizer():
    return ppl.lm.load().tokenizer


@pytest.fixture(scope="module")
def verifier(tokenizer):
    return ArithmeticVerifier.from_tokenizer(tokenizer)


CASES = [  # (text, (n_correct, n_wrong))
    ("16 - 3 - 4 = 9", (1, 0)),
    ("16 - 3 - 4 = 9 eggs", (1, 0)),
    ("Then 9 * 2 = 18.", (1, 0)),
    ("9 * 2 = 18", (1, 0)),
    ("2+3=5", (1, 0)),
    ("2 + 3 * 4 = 14", (1, 0)),  # * before +
    ("2 + 3 * 4 = 20", (0, 1)),
    ("20 - 6 / 2 = 17", (1, 0)),
    ("10 / 4 = 2.5", (1, 0)),
    ("7 / 3 = 2.33", (1, 0)),  # rounded to the decimals written
    ("7 / 3 = 2.4", (0, 1)),
    ("7 / 2 = 3", (0, 1)),  # an integer right side must be exact
    ("5 / 0 = 0", (0, 1)),
    ("5 + 3 = 8 - 2 = 6", (2, 0)),  # a chain: 8 starts the next expression
    ("5 + 3 = 9 - 2 = 7", (1, 1)),
    ("so 12 + 5 = 18", (0, 1)),
    ("She has 3 apples", (0, 0)),
    ("3 apples + 4 apples = 7", (0, 0)),  # a word resets the parser
    ("(2 + 3) * 4 = 20", (0, 0)),  # parentheses are not parsed
    ("x = 5", (0, 0)),
    ("18 = 18", (0, 0)),  # no operator on the left
    ("$4 - $3 = $1", (1, 0)),
    ("1,000 + 1 = 1,001", (1, 0)),
    ("5 x 2 = 10", (1, 0)),
    ("3 × 4 = 12", (1, 0)),
    ("-3 + 5 = 2", (1, 0)),
    ("5 - 8 = -3", (1, 0)),
    ("2.5 * 4 = 10.", (1, 0)),
    ("1. 3 + 4 = 7, then 7 * 2 = 15", (1, 1)),
    ("He pays 4 * 3 = 12 dollars.\n", (1, 0)),
    ("4 + 4 = 8\n8 * 2 = 16\n", (2, 0)),
    ("", (0, 0)),
]


@pytest.mark.parametrize("text,counts", CASES)
def test_check_text_counts_equations(verifier, tokenizer, text, counts):
    assert verifier.check_text(tokenizer, text) == counts


def test_tokens_classified_from_the_real_vocabulary(verifier, tokenizer):
    """The operators arrive glued to a space (" =", " -") and digits one per token."""
    ids = tokenizer.encode("16 - 3 = 13")
    assert [tokenizer.decode([i]) for i in ids] == ["1", "6", " -", " ", "3", " =", " ", "1", "3"]
    classes = [(int(verifier.token_class[i]), int(verifier.token_value[i])) for i in ids]
    assert classes[:6] == [(DIGIT, 1), (DIGIT, 6), (OP, SUB), (SPACE, 0), (DIGIT, 3), (EQUALS, 0)]
    assert int(verifier.token_class[tokenizer.eos_id]) == OTHER


def padded(tokenizer, text, length):
    ids = tokenizer.encode(text)
    return ids + [tokenizer.eos_id] * (length - len(ids))


def test_eos_padding_and_jit_vmap_match_per_row(verifier, tokenizer):
    texts = [text for text, _ in CASES]
    batch = jnp.asarray([padded(tokenizer, text, 48) for text in texts], jnp.int32)
    n_correct, n_wrong = jax.jit(jax.vmap(verifier.check))(batch)
    assert n_correct.dtype == n_wrong.dtype == jnp.int32
    assert [(int(c), int(w)) for c, w in zip(n_correct, n_wrong)] == [counts for _, counts in CASES]
    for row, (_, counts) in zip(batch[:6], CASES[:6]):
        assert tuple(int(n) for n in verifier.check(row)) == counts
    # Unpadded, the number at the very end is closed by the end of the array.
    assert tuple(int(n) for n in verifier.check(jnp.asarray(tokenizer.encode("9 * 2 = 18")))) == (1, 0)


def test_a_cut_off_text_does_not_count_its_unfinished_equation(verifier, tokenizer):
    """A step cut at its token budget inside "= 143" must not count "= 14" as a slip."""
    assert verifier.check_text(tokenizer, "so 11 x 13 = 14", closed=False) == (0, 0)
    assert verifier.check_text(tokenizer, "so 11 x 13 = 14") == (0, 1)
    assert verifier.check_text(tokenizer, "2 + 2 = 5 and 11 x 13 = 14", closed=False) == (0, 1)


def test_extract_answer():
    assert extract_answer("The answer is 51.") == 51.0
    assert extract_answer("So the answer is $1,000.") == 1000.0
    assert extract_answer("9 * 2 = 18\n#### 18") == 18.0
    assert extract_answer("The answer is 7. Check: 3 + 4 = 7 and 2 * 9 = 18") == 7.0
    assert extract_answer("Answer: -3") == -3.0
    assert extract_answer("He has 2.5 kg left") == 2.5
    assert extract_answer("She has 3 apples and 4 pears") == 4.0
    assert extract_answer("no number") is None


def test_is_correct():
    assert is_correct(18.0, 18.0) and is_correct(2.50001, 2.5)
    assert not is_correct(17.0, 18.0) and not is_correct(None, 18.0)


@pytest.mark.shared_data
def test_load_svamp():
    problems = load_problems(str(SHARED / "svamp" / "svamp.json"))
    assert len(problems) == 700
    first = problems[0]
    assert isinstance(first, Problem) and first.id == "chal-1" and first.answer == 51.0
    assert first.question.startswith("Each pack of dvds costs 76 dollars.") and "  " not in first.question
    assert first.question.endswith("How much do you have to pay to buy each pack?")
    assert load_problems(str(SHARED / "svamp" / "svamp.json"), n=3, offset=1) == problems[1:4]


@pytest.mark.shared_data
def test_the_shipped_problems_are_svamp_0_to_399_and_the_first_gsm8k_training_problems():
    """What the package carries is the shared data's training rows, unchanged (so never a test problem)."""
    assert load_problems(default_data_path()) == load_problems("svamp") == load_problems(
        str(SHARED / "svamp" / "svamp.json"), n=400)
    assert load_problems("gsm8k") == load_problems(str(SHARED / "gsm8k" / "train.jsonl"), n=200)


@pytest.mark.shared_data
def test_load_gsm8k():
    path = str(SHARED / "gsm8k" / "test.jsonl")
    problems = load_problems(path)
    assert len(problems) == 1000
    assert problems[0].answer == 18.0 and problems[0].id == "gsm8k-0"
    assert problems[0].question.startswith("Janet")
    assert [p.id for p in load_problems(path, n=2, offset=5)] == ["gsm8k-5", "gsm8k-6"]


def test_load_rejects_other_formats(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"text": "2 + 2", "label": 4}]))
    with pytest.raises(ValueError, match="other.json.*SVAMP.*GSM8K"):
        load_problems(str(other))
    lines = tmp_path / "bad.jsonl"
    lines.write_text(json.dumps({"question": "q", "answer": "no final number"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl.*####"):
        load_problems(str(lines))


class _WordTokenizer:
    """A tokenizer that keeps whole numbers as tokens (as GPT-2's merges do): one token per space-split word."""

    def __init__(self, text):
        self.vocab = sorted(set(text.split()))
        self.vocab_size = len(self.vocab)

    def encode(self, text):
        return [self.vocab.index(w) for w in text.split()]

    def decode(self, ids, skip_special=True):
        return " ".join(self.vocab[i] for i in ids)


def test_a_tokenizer_that_merges_digits_is_refused(tokenizer):
    """Its numbers would be words: no equation checked, r = 1 on every step, silently."""
    words = _WordTokenizer("12 + 305 = 317 and 4.75 * 8 = 38 the answer is")
    with pytest.raises(ValueError, match=r"does not split numbers into one token per digit.*'12'"):
        ArithmeticVerifier.from_tokenizer(words)
    ArithmeticVerifier.from_tokenizer(tokenizer)  # SmolLM2's splits every digit
