"""Correctness, format and length rewards."""

from __future__ import annotations

import math
import threading

from math_verify import parse, verify

from rewards.base import Samples, register
from rewards.text import (FINAL_MARK, NUMBER, choice_letter, extract_final_answer, lone_choice, reasoning_part,
                          stated_answer, to_number)


def answers_match(predicted: str | None, reference: str | None, rel_tol: float = 1e-6) -> bool:
    """True when two extracted answers are equal: as numbers within `rel_tol` (relative, absolute 1e-9 near 0),
    else as mathematical expressions by math-verify (`verify(parse(reference), parse(predicted))`)."""
    if predicted is None or reference is None or not predicted.strip():
        return False
    pred_value, ref_value = to_number(predicted), to_number(reference)
    if pred_value is not None and ref_value is not None:
        return math.isclose(pred_value, ref_value, rel_tol=rel_tol, abs_tol=1e-9)
    return _math_verify_equal(predicted, reference)


def _math_verify_equal(predicted: str, reference: str) -> bool:
    """math-verify comparison; its signal-based time-outs only work in the main thread, so off elsewhere."""
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    wrap = lambda s: s if "$" in s else f"${s}$"  # noqa: E731  (math-verify reads LaTeX between dollars)
    gold = parse(wrap(reference), parsing_timeout=timeout)
    pred = parse(wrap(predicted), parsing_timeout=timeout)
    return bool(gold and pred and verify(gold, pred, timeout_seconds=timeout))


def grade(completion: str, reference: str, rel_tol: float = 1e-6) -> bool:
    """The one grading of training (`correctness`), the harness's scoring and lm-eval's local tasks: the final answer
    the completion states (`stated_answer`: none, as in a truncated trace, is wrong) against the reference's
    (`extract_final_answer`). A reference that is a lone choice letter (GPQA's `#### B`) is matched by the letter the
    completion's answer starts with (`choice_letter`: `B`, `(B)`, `\\text{B}`, `B) ...`); others by `answers_match`."""
    predicted, gold = stated_answer(completion), extract_final_answer(reference)
    letter = lone_choice(gold) if gold is not None else None
    if letter is not None:
        return predicted is not None and choice_letter(predicted) == letter
    return answers_match(predicted, gold, rel_tol)


@register("correctness", needs_reference=True)
def correctness(samples: Samples, *, rel_tol: float = 1e-6) -> list[float]:
    """1.0 when the completion's final answer equals the reference's (see `grade`), else 0.0."""
    assert samples.references is not None
    return [float(grade(c, r, rel_tol)) for c, r in zip(samples.completions, samples.references)]


@register("format")
def format_reward(samples: Samples, *, partial: float = 0.5) -> list[float]:
    """1.0 for the task's template: at least one reasoning line, then one final line `#### <number>` ending the
    completion; `partial` when a `#### <number>` line is there but the template is not followed; 0.0 otherwise."""
    return [_format_score(text, partial) for text in samples.completions]


def _format_score(text: str, partial: float) -> float:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    marks = [i for i, line in enumerate(lines) if FINAL_MARK.search(line)]
    if not marks:
        return 0.0
    final = FINAL_MARK.search(lines[marks[-1]])
    has_number = final is not None and NUMBER.fullmatch(final.group(1).strip().rstrip(".")) is not None
    follows_template = marks == [len(lines) - 1] and len(lines) >= 2 and has_number and lines[-1].startswith("####")
    if follows_template and reasoning_part(text).strip():
        return 1.0
    return partial if has_number else 0.0


@register("length", minimum=-1.0)
def overlong_penalty(samples: Samples, *, max_length: int = 512, buffer: int = 128) -> list[float]:
    """DAPO's soft overlong penalty on the completion length L: 0 for L <= max_length - buffer,
    (max_length - buffer - L) / buffer in between, -1 for L > max_length."""
    if buffer <= 0 or max_length <= buffer:
        raise ValueError(f"length reward needs 0 < buffer < max_length, got buffer={buffer}, max_length={max_length}")
    free = max_length - buffer
    return [0.0 if n <= free else -1.0 if n > max_length else (free - n) / buffer for n in samples.lengths]

