"""Tasks: question/answer records in GSM8K format (`question`, `answer` with reasoning and a final `#### N` line).

`load_task(config)` returns the train and test splits of the configured task family:
- `arithmetic` (the default): 2-step `+-` arithmetic whose warm start learns a 50/50 mixture of the full solution
  and a shortcut that stops after the first step; RL can raise accuracy by choosing, for every prompt, to go on;
- `arithmetic_hard`: 2-step `+-*` arithmetic with a plain warm start (errors are per-prompt facts such as
  `13*4=42`, which RL barely fixes at CPU scale);
- `multihop`: chains of facts in the question resolved hop by hop, with the same shortcut mixture;
- `gsm8k`: any GSM8K-format jsonl files given by path;
- `jsonl`: benchmark files as published (jsonl, json, parquet or csv; AIME, AMC, MATH, GSM8K, GPQA rows), see
  `harness.tasks.jsonl`.
`render_prompt(record, task.prompt, tokenizer)` (harness.tasks.prompts) is the one prompt function used by training,
the warm start, the held-out scoring and the lm-eval tasks; `prompt_for(question)` is its default (`"{question}\n"`);
`warm_start_target` the solution the warm start is supervised on (the shortcut for a seeded `shortcut_share` of the
train split).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.config import TaskConfig
from harness.tasks.arithmetic import generate_arithmetic
from harness.tasks.gsm8k import load_gsm8k_jsonl
from harness.tasks.jsonl import load_benchmark, without_solution
from harness.tasks.multihop import generate_multihop
from harness.tasks.prompts import check_chat_template, render_prompt, render_prompts
from harness.tasks.records import Record, distinct_items, item_id

__all__ = ["Record", "TaskSplits", "check_chat_template", "item_id", "load_task", "prompt_for", "render_prompt",
           "render_prompts", "warm_start_target"]


@dataclass(frozen=True)
class TaskSplits:
    """The train and test records of a task."""

    train: list[Record]
    test: list[Record]


def prompt_for(question: str) -> str:
    """The default prompt (`task.prompt` left out): the question, then a newline (the solution follows)."""
    return render_prompt(question)


def warm_start_target(record: Record) -> str:
    """What the warm start learns to write for `record`: its `sft_answer` when the task set one, else `answer`."""
    return record.get("sft_answer", record["answer"])


def load_task(config: TaskConfig, weights: dict[str, float] | None = None) -> TaskSplits:
    """Train/test records of the configured task; train records get `sft_answer` = their shortcut with probability
    `shortcut_share` (seeded by the task seed). A file's records of one question are kept once (`distinct_items`, with
    a `RepeatedItems` warning). With the reward `weights` of the run, a `jsonl` file whose records
    lack a reference solution while `semantic_density` has weight > 0 is a `ValueError` naming the file."""
    if config.name == "gsm8k":
        assert config.path is not None and config.train_path is not None
        train, test = (distinct_items(load_gsm8k_jsonl(path), path) for path in (config.train_path, config.path))
        return TaskSplits(train[: config.n_train], test[: config.n_test])
    if config.name == "jsonl":
        assert config.path is not None and config.train_path is not None
        fields = (config.question_field, config.answer_field, config.solution_field)
        train, test = (distinct_items(load_benchmark(path, *fields), path) for path in (config.train_path, config.path))
        splits = TaskSplits(train[: config.n_train], test[: config.n_test])
        if (weights or {}).get("semantic_density", 0.0) > 0:
            for path, records in ((config.train_path, splits.train), (config.path, splits.test)):
                if missing := without_solution(records):
                    raise ValueError(
                        f"{path}: {missing} of {len(records)} records have no reference solution (only a final "
                        "answer), and semantic_density (weight > 0) compares completions with the reference "
                        "solution; set rewards.semantic_density: 0, or give a file with solutions "
                        "(task.solution_field)")
        return splits
    total = config.n_train + config.n_test
    if config.name == "multihop":
        records = generate_multihop(total, config.steps, config.distractors, config.seed)
    else:
        records = generate_arithmetic(total, config.steps, config.digits, config.seed, config.ops)
    rng = random.Random(f"shortcut-{config.seed}")
    train = [r | {"sft_answer": r["shortcut"]} if rng.random() < config.shortcut_share else r
             for r in records[: config.n_train]]
    return TaskSplits(train, records[config.n_train :])
