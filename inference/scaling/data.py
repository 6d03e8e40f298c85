"""Arithmetic word problems (SVAMP, GSM8K) and the grading of a model's final answer.

The data sets are not part of the repository: they live in `../shared/data` next to it (see its
README). A problem keeps only what inference and grading need: the question text and the numeric answer.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import NamedTuple

__all__ = ["Problem", "default_data_path", "extract_answer", "is_correct", "load_problems"]

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
    """Problems `offset` to `offset + n` of an SVAMP or GSM8K file, whose format is read from its content
    (so that a file renamed or cut down still loads). GSM8K ids are the line index in the file."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
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
    return problems[offset:] if n is None else problems[offset:offset + n]


EXAMPLE_PROBLEMS = [  # written for this project, in SVAMP's style: the demonstration's data when SVAMP is absent
    Problem("Lena had 12 stickers. She gave 5 stickers to her brother. How many stickers does Lena have now?", 7.0,
            "example-1"),
    Problem("A baker made 8 trays of rolls with 6 rolls on each tray. How many rolls did the baker make?", 48.0,
            "example-2"),
    Problem("Omar read 23 pages on Monday and 19 pages on Tuesday. How many pages did he read in the two days?",
            42.0, "example-3"),
    Problem("There are 36 chairs in a hall, put in 4 equal rows. How many chairs are in each row?", 9.0, "example-4"),
    Problem("A box holds 50 pencils. 17 pencils were taken out and 9 were put back. How many pencils are in the box?",
            42.0, "example-5"),
    Problem("Mia has 7 red balloons and 3 times as many blue balloons. How many blue balloons does she have?", 21.0,
            "example-6"),
]


def default_data_path() -> str:
    """SVAMP, the default benchmark: one or two operations per problem suit a small model."""
    path = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "svamp" / "svamp.json"
    if not path.is_file():
        raise FileNotFoundError(f"SVAMP is expected at {path} (the shared data folder next to the repository, "
                                "../shared/data); give the path of a problem file instead")
    return str(path)


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

