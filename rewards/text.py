"""Parsing of reasoning text: final-answer extraction, the reasoning part, numbers and normalised tokens.

Used by the rewards and by evaluation so that training and scoring read answers identically.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

FINAL_MARK = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*(.+?)(?:\.\s|\.?$|\n)", re.IGNORECASE)
NUMBER = re.compile(r"[-+−]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
NUMBER_COMMAS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[+\-*/=()^%×÷]")
CHOICE = re.compile(r"^[\s(\[{]*(?:\\text\{\s*)?\(?([A-Z])\)?(?![A-Za-z])")
LONE_CHOICE = re.compile(r"\s*(?:\\text\{\s*)?\(?([A-Z])\)?\s*\}?\s*")
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s*$")
MAX_PARSE_CHARS = 100_000
"""Longer texts are cut to their last `MAX_PARSE_CHARS` characters before answer extraction."""


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a chat-message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces balanced), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        brace = text.find("{", start)
        if brace != -1 and text[start + len("\\boxed") : brace].strip() == "":
            depth = 0
            for pos in range(brace, len(text)):
                depth += {"{": 1, "}": -1}.get(text[pos], 0)
                if depth == 0:
                    return text[brace + 1 : pos]
        start = text.rfind("\\boxed", 0, start)
    return None


def extract_final_answer(text: str, last_number: bool = True) -> str | None:
    """Final answer of a solution: the last `#### X` line, else the last `\\boxed{X}`, else "the answer is X",
    else (with `last_number`, as for a reference) the last number in the text; None when there is none."""
    text = text[-MAX_PARSE_CHARS:]
    marks = FINAL_MARK.findall(text)
    if marks:
        return marks[-1]
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    stated = ANSWER_IS.findall(text)
    if stated:
        return stated[-1]
    numbers = NUMBER.findall(text) if last_number else []
    return numbers[-1] if numbers else None


def stated_answer(completion: str) -> str | None:
    """The final answer of a completion: `#### X`, `\\boxed{X}` or "the answer is X", else the last number only when
    the text ends a sentence (`So she has 72 clips in total.`). A trace cut off mid-sentence by the token limit
    before an answer marker has none (None: graded wrong), not the last number it reached (issue 30, item 8: false
    hits on AIME from truncated thinking)."""
    return extract_final_answer(completion, last_number=SENTENCE_END.search(completion) is not None)


def choice_letter(answer: str) -> str | None:
    """The letter a final answer chooses: `B`, `(B)`, `\\text{B}`, `\\text{(B)}`, `B) 42 kJ`, `[B]` -> `B`; None when
    it does not start with a lone capital letter (`Alpha`, `42`)."""
    found = CHOICE.match(answer)
    return found.group(1) if found else None


def lone_choice(answer: str) -> str | None:
    """The letter of a reference final answer that is nothing but a choice letter (GPQA's `#### B`, MATH's
    `\\text{(C)}`), else None: such a reference is graded by the letter (`rewards.builtin.grade`)."""
    found = LONE_CHOICE.fullmatch(answer)
    return found.group(1) if found else None


def to_number(answer: str) -> float | None:
    """The value of an answer that is a single number once commas, currency, units and trailing dots are dropped
    (`"$1,000.00"` -> 1000.0, `"-3 apples"` -> -3.0, Unicode digits accepted); None if it holds no single number."""
    cleaned = unicodedata.normalize("NFKC", answer).replace("−", "-").strip().rstrip(".")
    cleaned = re.sub(r"^\$|\\\$|\$$|\\%|%$", "", cleaned).strip()
    found = NUMBER.findall(cleaned)
    if len(found) != 1 or not re.fullmatch(r"[^\d]{0,3}" + re.escape(found[0]) + r"(\s*[^\W\d]+\.?)*", cleaned):
        return None
    try:
        return float(found[0].replace(",", ""))
    except ValueError:
        return None


def reasoning_part(text: str) -> str:
    """The reasoning of a solution: the text without its final-answer line(s) and calculator notes `<<...>>`."""
    lines = [line for line in text.splitlines() if not FINAL_MARK.search(line)]
    return CALCULATOR_NOTE.sub("", "\n".join(lines))


def canonical_number(token: str) -> str:
    """`"2.50"` -> `"2.5"`, `"007"` -> `"7"`, `"3.0"` -> `"3"`: one spelling per value."""
    value = float(token)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def normalised_tokens(text: str) -> list[str]:
    """Lower-cased word, number (commas dropped, canonical spelling) and operator tokens of `text` (NFKC)."""
    flat = NUMBER_COMMAS.sub(lambda m: m.group(0).replace(",", ""), unicodedata.normalize("NFKC", text).lower())
    return [canonical_number(t) if t[0].isdigit() else t for t in TOKEN.findall(flat)]

