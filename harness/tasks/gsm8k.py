"""Loader for GSM8K-format jsonl files: one JSON object per line with string fields `question` and `answer`."""

from __future__ import annotations

import json
from pathlib import Path


def load_gsm8k_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Records of a GSM8K-format jsonl file; a missing file, bad JSON or missing field raises `ValueError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such GSM8K-format jsonl file")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        missing = [key for key in ("question", "answer") if not isinstance(row.get(key), str)]
        if missing:
            raise ValueError(f"{path}:{number}: missing string field(s) {', '.join(missing)}; need question, answer")
        records.append({"question": row["question"], "answer": row["answer"]})
    if not records:
        raise ValueError(f"{path}: no records")
    return records
