"""Benchmark files as published: jsonl, json, parquet or csv rows turned into the harness's GSM8K-format records.

Field names are matched case-insensitively (AIME 2024 is published both as `problem, solution, answer` and as
`Problem, Solution, Answer`):
- the question: `question_field`, else `question`, else `problem`;
- the final answer: `answer_field`, else `answer` (a GSM8K solution ending `#### N`, or a bare final answer such as
  AIME's `204` or AMC's `27.0`, numbers accepted), else the last `\\boxed{}` of the solution;
- the reference solution: `solution_field`, else `solution`.
A GSM8K answer (with its `#### N` line) is kept as it is. Otherwise the record's `answer` is the reference solution
(when there is one), a newline and `#### <final answer>`: `correctness` grades against exactly the final answer the
file gives, and `semantic_density` compares against the solution's reasoning. Records without a reference solution
get `answer = "#### <final answer>"` and `has_solution = ""` (see `without_solution`).

GPQA's published rows (`Question`, `Correct Answer`, `Incorrect Answer 1..3`) become multiple-choice records: the
four choices in an order seeded by the question, listed as `(A) ...` under it, and `answer = "#### <letter>"`, graded
by the letter (`rewards.builtin.grade`, in training, the harness's scoring and lm-eval alike).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from harness.tasks.records import Record, final_line, item_id
from rewards.text import FINAL_MARK, last_boxed

FORMATS = (".jsonl", ".json", ".parquet", ".csv")
GPQA_FIELDS = ("question", "correct answer", "incorrect answer 1", "incorrect answer 2", "incorrect answer 3")
LETTERS = "ABCD"
CHOICE_INSTRUCTION = "Answer with the letter of the correct choice."


def read_text(path: Path) -> str:
    """The text of `path` as UTF-8, a leading byte-order mark dropped (spreadsheets save CSV with one); other
    encodings are a `ValueError` naming the file, the line and the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {data[error.start]:#04x}); expected a UTF-8 file "
                         "(re-save it as UTF-8)") from None


def json_lines(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each JSON object of JSON-lines `text`, one a line (blank lines skipped); a line that
    is not valid JSON, or holds anything but an object (a number, a list), is a `ValueError` naming the file and
    line."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}); expected one JSON object a "
                             "line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: a JSON {type(row).__name__}; expected one JSON object a line")
        rows.append((number, row))
    return rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a jsonl, json (a list of objects, an object holding one such list, or JSON lines), parquet or csv
    file; `ValueError` naming the file (and line or row) when it is missing, unreadable or holds rows that are not
    objects."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix!r}; use one of {', '.join(FORMATS)}")
    if suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except pyarrow.ArrowException as error:
            raise ValueError(f"{path}: not a readable parquet file ({str(error).splitlines()[0]})") from None
    text = read_text(path)
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON lines saved as .json (as `datasets` writes them)
        if isinstance(data, dict):
            lists = [value for value in data.values() if isinstance(value, list)]
            data = lists[0] if len(lists) == 1 else [data]
        if isinstance(data, list):
            for number, row in enumerate(data, start=1):
                if not isinstance(row, dict):
                    raise ValueError(f"{path}: row {number} is a JSON {type(row).__name__}; expected a list of "
                                     "JSON objects")
            return data
    return [row for _, row in json_lines(path, text)]


def _field(row: dict[str, Any], names: list[str]) -> Any:
    lowered = {str(key).lower(): value for key, value in row.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None and str(value).strip() != "":
            return value
    return None


def _text(value: Any) -> str:
    """A field value as text: `27.0` stays `27.0`, `204` stays `204`."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def benchmark_record(row: dict[str, Any], where: str, question_field: str | None = None,
                     answer_field: str | None = None, solution_field: str | None = None) -> Record:
    """One row as a record `{"question", "answer", "has_solution"}`; `ValueError`
    naming `where` (file:line) when the question or the final answer cannot be found."""
    lowered = {str(key).lower() for key in row}
    if question_field is None and all(name in lowered for name in GPQA_FIELDS):
        return gpqa_record(row)
    question = _field(row, [question_field] if question_field else ["question", "problem"])
    if not isinstance(question, str):
        raise ValueError(f"{where}: no question (looked for {question_field or 'question, problem'})")
    answer = _field(row, [answer_field] if answer_field else ["answer"])
    solution = _field(row, [solution_field] if solution_field else ["solution"])
    solution = _text(solution).strip() if solution is not None else None
    if answer is not None and FINAL_MARK.search(_text(answer)):  # a GSM8K solution: kept as it is
        return {"question": question, "answer": _text(answer), "has_solution": "1"}
    final = _text(answer).strip() if answer is not None else last_boxed(solution) if solution else None
    if final is None or not final.strip():
        raise ValueError(f"{where}: no final answer (looked for {answer_field or 'answer'}, then the last \\boxed{{}} "
                         f"of {solution_field or 'solution'})")
    final = " ".join(final.split())
    reference = f"{solution}{final_line(final)}" if solution else final_line(final).lstrip("\n")
    return {"question": question, "answer": reference, "has_solution": "1" if solution else ""}


def gpqa_record(row: dict[str, Any]) -> Record:
    """A GPQA row as a multiple-choice record: choices in an order seeded by the question's item id."""
    question = _text(_field(row, ["question"])).strip()
    correct = _text(_field(row, ["correct answer"])).strip()
    choices = [correct] + [_text(_field(row, [f"incorrect answer {i}"])).strip() for i in (1, 2, 3)]
    random.Random(item_id(question)).shuffle(choices)
    letter = LETTERS[choices.index(correct)]
    listed = "\n".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return {"question": f"{question}\n\n{listed}\n\n{CHOICE_INSTRUCTION}", "answer": final_line(letter).lstrip("\n"),
            "has_solution": ""}


def load_benchmark(path: str | Path, question_field: str | None = None, answer_field: str | None = None,
                   solution_field: str | None = None) -> list[Record]:
    """The records of a benchmark file as published (see the module docstring); errors name the file and row."""
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no records")
    return [benchmark_record(row, f"{path}:{number}", question_field, answer_field, solution_field)
            for number, row in enumerate(rows, start=1)]


def without_solution(records: list[Record]) -> int:
    """How many records carry no reference solution (only a final answer)."""
    return sum(record.get("has_solution", "1") == "" for record in records)
