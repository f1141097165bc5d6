"""Records of every task: `question`, `answer` (reasoning lines, then `#### N`) and an optional `shortcut` (a
plausible wrong solution that a warm start may be taught in a mixture with the right one)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable

Record = dict[str, str]


def final_line(value: object) -> str:
    """The GSM8K answer line that ends every solution: newline, `#### `, the value."""
    return f"\n#### {value}"


def item_id(question: str) -> str:
    """Stable id of an eval item: the first 16 hex digits of sha256 of its question (same item, same id, in every
    trial and every sweep)."""
    return hashlib.sha256(question.strip().encode()).hexdigest()[:16]


def unique_records(draw: Callable[[], Record], count: int, what: str) -> list[Record]:
    """`count` records from `draw()` with distinct questions; `ValueError` when the generator runs dry."""
    seen: set[str] = set()
    records: list[Record] = []
    attempts = 0
    while len(records) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise ValueError(f"only {len(records)} distinct problems exist for {what}")
        record = draw()
        if record["question"] not in seen:
            seen.add(record["question"])
            records.append(record)
    return records


class RepeatedItems(UserWarning):
    """A task file holds records of one question (one item id) more than once."""


def distinct_items(records: list[Record], source: str) -> list[Record]:
    """The first record of each item id (`item_id` of the question) in file order, so that an item counts once in
    every metric and in the report; a `RepeatedItems` warning names `source` and how many records were dropped."""
    firsts: dict[str, Record] = {}
    for record in records:
        firsts.setdefault(item_id(record["question"]), record)
    kept = list(firsts.values())
    if dropped := len(records) - len(kept):
        warnings.warn(f"{source}: {dropped} of {len(records)} records repeat the question of an earlier one (same "
                      f"item id); kept the first of each: {len(kept)} items", RepeatedItems, stacklevel=2)
    return kept
