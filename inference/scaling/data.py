"""Arithmetic word problems (SVAMP, GSM8K) and the grading of a model's final answer.

Two small sets of training problems ship with the package (`DATA_SETS`; `problems/README.md` says which
rows): SVAMP 0–399, the default, and the first 200 of GSM8K train. Whole files (`../shared/data`) load by
path. A problem keeps only what inference and grading need: the question text and the numeric answer.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import NamedTuple

__all__ = ["DATA_SETS", "Problem", "data_path", "default_data_path", "extract_answer", "is_correct", "load_problems"]

DATA_SETS = {"svamp": "svamp_train.json", "gsm8k": "gsm8k_train.jsonl"}
"""The problem sets shipped in the package, by name."""
_BUNDLED = pathlib.Path(__file__).resolve().parent / "problems"

_FORMATS = ("SVAMP (a JSON list of objects with 'Body', 'Question' and 'Answer') or GSM8K (JSON lines "
            "of objects with 'question' and an 'answer' ending in '#### <number>')")

# A number as written in an answer: an optional minus (not a hyphen inside a word or after a number),
# an optional "$", digits with optional thousands separators ("1,000"), and an optional decimal part.
# A trailing "." ("18.") is punctuation, not part of the number.
_NUMBER = re.compile(r"(?<![\w.)])(-?)\$?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?")
_MARKER = re.compile(r"answer\s+is|answer\s*:|####", re.IGNORECASE)


class Problem(NamedTuple):
    question: str
    answer: float
    id: str


def _number(match: re.Match) -> float:
    sign, whole, decimals = match.groups()
    return float(sign + whole.replace(",", "") + (decimals or ""))


def _svamp(path: str, records: list) -> list[Problem]:
    try:
        return [Problem(_sentences(r["Body"], r["Question"]), float(r["Answer"]), str(r["ID"]))
                for r in records]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: a record is not SVAMP's ({e!r}); expected {_FORMATS}") from None


def _gsm8k(path: str, lines: list[str]) -> list[Problem]:
    problems = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            answer = record["answer"].rsplit("####", 1)
            match = _NUMBER.search(answer[-1]) if len(answer) == 2 else None
            question = record["question"]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}, problem {i + 1}: not GSM8K's ({e!r}); expected {_FORMATS}") from None
        if match is None:
            raise ValueError(f"{path}, problem {i + 1}: the answer does not end in '#### <number>'")
        problems.append(Problem(question, _number(match), f"gsm8k-{i}"))
    return problems


def load_problems(path: str, n: int | None = None, offset: int = 0) -> list[Problem]:
    """Problems `offset` to `offset + n` (all from `offset` when n is None) of an SVAMP or GSM8K file, or of a
    set shipped with the package (`DATA_SETS`), whose format is read from its content (so that a file renamed or
    cut down still loads). GSM8K ids are the line index in the file. A range the file does not hold is refused."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n is the number of problems to load, at least 1; got {n!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset is the index of the first problem, at least 0; got {offset!r}")
    path = data_path(path)
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path} is empty: it holds no problems; expected {_FORMATS}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "Body" in data[0]:
        problems = _svamp(path, data)
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            first = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            first = None
        if not (isinstance(first, dict) and "question" in first and "answer" in first):
            raise ValueError(f"{path} is not a problem file: expected {_FORMATS}")
        problems = _gsm8k(path, lines)
    end = len(problems) if n is None else offset + n
    if offset >= len(problems) or end > len(problems):
        raise ValueError(f"problems {offset} to {end - 1} were asked for, but {path} holds {len(problems)} "
                         f"(0 to {len(problems) - 1}); lower offset or n")
    return problems[offset:end]


def data_path(data: str) -> str:
    """The file of `data`: a bundled set's name (`DATA_SETS`: "svamp", "gsm8k") or the path of a problem file."""
    if data in DATA_SETS:
        return str(_BUNDLED / DATA_SETS[data])
    if not pathlib.Path(data).is_file():
        raise FileNotFoundError(f"no problem file at {data!r}; give the path of an SVAMP or GSM8K file, or the name "
                                f"of a set shipped with the package: {', '.join(DATA_SETS)}")
    return data


def default_data_path() -> str:
    """SVAMP problems 0–399, shipped with the package: one or two operations per problem suit a small model."""
    return data_path("svamp")


def extract_answer(text: str) -> float | None:
    """The model's final answer in `text`: the first number after the last "answer is", "Answer:" or
    "####" if one follows it, else the last number in the text; None if there is no number."""
    markers = list(_MARKER.finditer(text))
    if markers:
        match = _NUMBER.search(text, markers[-1].end())
        if match is not None:
            return _number(match)
    numbers = list(_NUMBER.finditer(text))
    return _number(numbers[-1]) if numbers else None


def is_correct(predicted: float | None, answer: float) -> bool:
    """Whether `predicted` is `answer`, up to a relative 1e-4 (answers are written with a few decimals)."""
    return predicted is not None and abs(predicted - answer) <= 1e-4 * max(1.0, abs(answer))


def _sentences(body: str, question: str) -> str:
    """SVAMP's body and question as one text; a third of the bodies lack their final full stop."""
    body = " ".join(body.split())
    if body and body[-1] not in ".!?":
        body += "."
    return f"{body} {' '.join(question.split())}"

