"""The one function that turns a task record into the policy's prompt.

Training (`harness.trial.train.grpo_dataset`), the warm start (`harness.trial.model.supervised_batch`), the harness's
held-out scoring (`harness.trial.scoring`) and the lm-eval tasks (`harness.trial.evaluate`, which writes each
document's rendered prompt into the task's data file) all call `render_prompt`, so the four see byte-identical
prompts for the same record (tests/test_paper_mini.py checks it with a chat template).

`task.prompt.chat: false` (the default, the tiny model): the template, `"{question}\\n"` by default, i.e. the stripped
question and a newline. `chat: true`: the tokenizer's own chat template renders [system, user: question + "\\n" +
instruction] with the generation prompt; a tokenizer without a chat template is an error naming the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.config import DEFAULT_CHAT_INSTRUCTION, PromptConfig

DEFAULT_PROMPT = PromptConfig()


class MissingChatTemplate(ValueError):
    """`task.prompt.chat: true` with a tokenizer that has no chat template."""


def check_chat_template(prompt: PromptConfig, tokenizer: Any, model_path: object) -> None:
    """Raise `MissingChatTemplate` naming `model_path` when `prompt.chat` is set and `tokenizer` has no chat
    template (the load-time check of harness.trial.model.load_policy)."""
    if prompt.chat and not getattr(tokenizer, "chat_template", None):
        raise MissingChatTemplate(
            f"task.prompt.chat is true but the tokenizer of the model {model_path} has no chat template "
            "(no chat_template in its tokenizer_config.json or chat_template.jinja); give a model with one, or set "
            "task.prompt.chat: false (the question then goes through task.prompt.template)")


def user_message(question: str, prompt: PromptConfig) -> str:
    """The user turn of a chat prompt: the stripped question, then a newline and the instruction (the default
    instruction when none is set; an empty instruction leaves the question alone)."""
    instruction = DEFAULT_CHAT_INSTRUCTION if prompt.instruction is None else prompt.instruction
    return f"{question.strip()}\n{instruction}" if instruction else question.strip()


def render_prompt(record: Mapping[str, Any] | str, prompt: PromptConfig = DEFAULT_PROMPT, tokenizer: Any = None) -> str:
    """The prompt of `record` (a task record with `question`, or the question itself) under `prompt`; `tokenizer`
    (the policy's) is needed only with `prompt.chat`."""
    question = record if isinstance(record, str) else record["question"]
    if not prompt.chat:
        text = prompt.template.replace("{instruction}", prompt.instruction or "").replace("{question}", question.strip())
        return f"{prompt.system}\n{text}" if prompt.system else text
    if tokenizer is None:
        raise ValueError("task.prompt.chat is true: rendering a prompt needs the policy's tokenizer")
    check_chat_template(prompt, tokenizer, getattr(tokenizer, "name_or_path", "") or "(unnamed)")
    messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        {"role": "user", "content": user_message(question, prompt)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **prompt.chat_template_kwargs)


def render_prompts(records: Sequence[Mapping[str, Any]], prompt: PromptConfig = DEFAULT_PROMPT,
                   tokenizer: Any = None) -> list[str]:
    """`render_prompt` of each record."""
    return [render_prompt(record, prompt, tokenizer) for record in records]
