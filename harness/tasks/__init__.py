"""Tasks: question/answer records in GSM8K format (`question`, `answer` with reasoning and a final `#### N` line).

`load_task(config)` returns the train and test splits of the configured task family:
- `arithmetic` (the default): 2-step `+-` arithmetic whose warm start learns a 50/50 mixture of the full solution
  and a shortcut that stops after the first step; RL can raise accuracy by choosing, for every prompt, to go on;
- `arithmetic_hard`: 2-step `+-*` arithmetic with a plain warm start (errors are per-prompt facts such as
  `13*4=42`, which RL barely fixes at CPU scale);
- `multihop`: chains of facts in the question resolved hop by hop, with the same shortcut mixture;
- `gsm8k`: any GSM8K-format jsonl files given by path.
`prompt_for(question)` is the one prompt format used by training, the warm start and evaluation; `warm_start_target`
the solution the warm start is supervised on (the shortcut for a seeded `shortcut_share` of the train split).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.config import TaskConfig
from harness.tasks.arithmetic import generate_arithmetic
from harness.tasks.gsm8k import load_gsm8k_jsonl
from harness.tasks.multihop import generate_multihop
from harness.tasks.records import Record, item_id

__all__ = ["Record", "TaskSplits", "item_id", "load_task", "prompt_for", "warm_start_target"]


@dataclass(frozen=True)
class TaskSplits:
    """The train and test records of a task."""

    train: list[Record]
    test: list[Record]


def prompt_for(question: str) -> str:
    """The prompt the policy completes: the question, then a newline (the solution follows)."""
    return f"{question.strip()}\n"


def warm_start_target(record: Record) -> str:
    """What the warm start learns to write for `record`: its `sft_answer` when the task set one, else `answer`."""
    return record.get("sft_answer", record["answer"])


def load_task(config: TaskConfig) -> TaskSplits:
    """Train/test records of the configured task; train records get `sft_answer` = their shortcut with probability
    `shortcut_share` (seeded by the task seed)."""
    if config.name == "gsm8k":
        assert config.path is not None and config.train_path is not None
        return TaskSplits(load_gsm8k_jsonl(config.train_path)[: config.n_train],
                          load_gsm8k_jsonl(config.path)[: config.n_test])
    total = config.n_train + config.n_test
    if config.name == "multihop":
        records = generate_multihop(total, config.steps, config.distractors, config.seed)
    else:
        records = generate_arithmetic(total, config.steps, config.digits, config.seed, config.ops)
    rng = random.Random(f"shortcut-{config.seed}")
    train = [r | {"sft_answer": r["shortcut"]} if rng.random() < config.shortcut_share else r
             for r in records[: config.n_train]]
    return TaskSplits(train, records[config.n_train :])
