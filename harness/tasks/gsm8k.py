"""Loader for GSM8K-format jsonl files: one JSON object per line with string fields `question` and `answer`."""

from __future__ import annotations

from pathlib import Path

from harness.tasks.jsonl import json_lines, read_text


def load_gsm8k_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Records of a GSM8K-format jsonl file; a missing file, bad JSON or missing field raises `ValueError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such GSM8K-format jsonl file")
    records = []
    for number, row in json_lines(path, read_text(path)):
        missing = [key for key in ("question", "answer") if not isinstance(row.get(key), str)]
        if missing:
            raise ValueError(f"{path}:{number}: missing string field(s) {', '.join(missing)}; need question, answer")
        records.append({"question": row["question"], "answer": row["answer"]})
    if not records:
        raise ValueError(f"{path}: no records")
    return records
