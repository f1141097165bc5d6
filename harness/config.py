"""Run configuration (one training trial) as pydantic models, loaded from YAML with errors that name the file,
the key and the allowed values."""

from __future__ import annotations

import difflib
import enum
import functools
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_serializer,
                      model_validator)

import estimators
import rewards


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and key."""


class Strict(BaseModel):
    """Base model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


TASK_FAMILIES: dict[str, dict[str, Any]] = {
    "arithmetic": {"steps": 2, "ops": "+-", "shortcut_share": 0.5},
    "arithmetic_hard": {"steps": 2, "ops": "+-*", "shortcut_share": 0.0},
    "multihop": {"steps": 2, "shortcut_share": 0.5},
    "gsm8k": {"shortcut_share": 0.0},
    "jsonl": {"shortcut_share": 0.0},
}
"""Each task family's defaults, filled in for keys the config leaves out (see harness/tasks)."""


class PromptConfig(Strict):
    """How a record becomes the policy's prompt (harness.tasks.prompts.render_prompt, the one function training, the
    warm start, the held-out scoring and the lm-eval tasks call). `chat: false` (the tiny model's default): `template`
    with `{question}` (the stripped question) and `{instruction}` (the instruction or ""), after the `system` text and
    a newline when one is set. `chat: true`: the policy tokenizer's own chat template on [system (when set), user:
    question + newline + instruction] with the generation prompt, `chat_template_kwargs` passed to it (e.g. Qwen3's
    `enable_thinking`); the instruction then defaults to `DEFAULT_CHAT_INSTRUCTION`."""

    chat: bool = False
    system: str | None = None
    instruction: str | None = None
    template: str = Field("{question}\n", description="chat: false only; {question} and {instruction} are filled in")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _template_has_the_question(self) -> PromptConfig:
        if "{question}" not in self.template:
            raise ValueError(f"task.prompt.template {self.template!r} must contain {{question}}")
        return self


DEFAULT_CHAT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The user-turn instruction of `task.prompt.chat: true` when `instruction` is not set."""

TASK_KEYS_SINCE_HASHED = {"prompt": PromptConfig().model_dump(mode="json"), "question_field": None,
                          "answer_field": None, "solution_field": None}
"""Task keys added after trial ids were first recorded: left out of the dumped config (and so of the trial id and the
warm-start cache key) while at these defaults, so the trials of existing sweeps keep their ids."""


class TaskConfig(Strict):
    """Which task to train and evaluate on; keys left out take the family's defaults (`TASK_FAMILIES`)."""

    name: Literal["arithmetic", "arithmetic_hard", "multihop", "gsm8k", "jsonl"] = "arithmetic"
    n_train: int = Field(2000, ge=1)
    n_test: int = Field(500, ge=1)
    steps: int = Field(2, ge=1, description="arithmetic: operations per problem; multihop: hops of the chain")
    digits: int = Field(1, ge=1, le=6, description="arithmetic: digits per operand")
    ops: str = Field("+-", pattern=r"^[+\-*]+$", description="arithmetic: operations to draw from")
    distractors: int = Field(1, ge=0, description="multihop: facts outside the chain")
    shortcut_share: float = Field(0.0, ge=0.0, le=1.0,
                                  description="share of warm-start solutions that take the task's shortcut")
    seed: int = Field(0, description="generator seed (fixed across trials: same data for every trial)")
    path: str | None = Field(None, description="gsm8k, jsonl: test-split file")
    train_path: str | None = Field(None, description="gsm8k, jsonl: train-split file")
    question_field: str | None = Field(None, description="jsonl: the question's field (default question, problem)")
    answer_field: str | None = Field(None, description="jsonl: the final answer's field (default answer)")
    solution_field: str | None = Field(None, description="jsonl: the reference solution's field (default solution)")
    prompt: PromptConfig = Field(default_factory=PromptConfig)

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return TASK_FAMILIES.get(data.get("name", "arithmetic"), {}) | data
        return data

    @model_validator(mode="after")
    def _paths_for_gsm8k(self) -> TaskConfig:
        if self.name in ("gsm8k", "jsonl") and (self.path is None or self.train_path is None):
            raise ValueError(f"task {self.name!r} needs path (test file) and train_path (train file)")
        if self.name == "multihop" and self.steps < 2:
            raise ValueError("task 'multihop' needs steps >= 2 (a chain of at least two hops)")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_new_defaults(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for key, default in TASK_KEYS_SINCE_HASHED.items():
            value = data.get(key)
            if key in data and (value.model_dump(mode="json") if isinstance(value, BaseModel) else value) == default:
                del data[key]
        return data


class ModelConfig(Strict):
    """The policy: a local Hugging Face model directory, or the project's tiny model with a cached warm start."""

    path: str | None = Field(None, description="local model directory; None builds the tiny model")
    hidden_size: int = Field(128, ge=16)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    warm_start_steps: int = Field(700, ge=0)
    warm_start_lr: float = Field(3e-3, gt=0)
    warm_start_batch: int = Field(64, ge=1)


class EstimatorConfig(BaseModel):
    """`name` of a registered estimator plus its parameters as further keys."""

    model_config = ConfigDict(extra="allow")
    name: str = "group_mean"

    @model_validator(mode="after")
    def _known_estimator(self) -> EstimatorConfig:
        estimators.get(self.name, **self.params)
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The estimator's parameters (every key but `name`)."""
        return dict(self.model_extra or {})


class EvalConfig(Strict):
    """Held-out evaluation on the first `n_examples` items of the test split after training (and on the first
    `curve_examples` every `every_steps` training steps; 0 turns the curve off): `samples` completions per item at
    `temperature` and `top_p`, seeded per trial seed and item (pass@1 = the share of them that is correct), plus the
    greedy completion when `greedy` (the only one when samples is 0)."""

    n_examples: int = Field(500, ge=1)
    samples: int = Field(8, ge=0, description="sampled completions per item (0: greedy only)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of the held-out samples")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus of the held-out samples")
    greedy: bool = Field(True, description="also score the greedy completion (column `greedy`)")
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int | None = Field(None, ge=1, description="rows (samples and greedy completions) decoded together; "
                                   "none: as many as a 1 GiB KV cache holds, at most 1,024 (harness.trial.scoring)")
    every_steps: int = Field(0, ge=0, description="held-out accuracy curve during training: every N steps")
    curve_examples: int = Field(100, ge=1, description="test items scored for the curve")
    lm_eval: bool = Field(False, description="also score the checkpoint with lm-evaluation-harness")
    lm_eval_tasks: list[str] = Field(default_factory=lambda: ["lph_test"],
                                     description="lm-eval tasks or presets scored when lm_eval is true")
    data_dir: str | None = Field(None, description="offline presets: a directory holding <preset>.jsonl (.json, "
                                 ".parquet, .csv), e.g. aime24.jsonl (harness.trial.evaluate)")

    @property
    def metric(self) -> str:
        """The primary held-out metric: `pass@1` of the samples, or `greedy` without samples."""
        return "pass@1" if self.samples > 0 else "greedy"

    @property
    def completions_per_item(self) -> int:
        """Completions the final scoring generates per item: the samples, plus the greedy one when scored."""
        return self.samples + int(self.greedy or self.samples == 0)


class RunConfig(Strict):
    """One training trial."""

    seed: int = 0
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = ModelConfig()
    estimator: EstimatorConfig = EstimatorConfig()
    rewards: dict[str, float] = Field(default_factory=lambda: {"correctness": 1.0})
    reward_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    trainer: dict[str, Any] = Field(default_factory=dict, description="fields of trl.GRPOConfig")
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _valid_rewards(self) -> RunConfig:
        params = {k: v for k, v in self.reward_params.items() if not _is_bound_later(v)}
        try:
            rewards.mix(self.rewards, params)
        except ValueError as error:
            raise ValueError(f"rewards / reward_params: {error}") from None
        return self

    @field_validator("trainer")
    @classmethod
    def _known_trainer_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Every key a trl.GRPOConfig field, every value of its type (coerced: YAML reads `1e-4` as a string) and
        among its choices; `max_steps` trains at least one step."""
        types = grpo_field_types()
        for key in value:
            if key not in types:
                close = difflib.get_close_matches(key, types, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else "; see trl.GRPOConfig for the allowed fields"
                raise ValueError(f"unknown GRPOConfig field {key!r}{hint}")
        coerced = {key: grpo_field_value(key, item, types[key]) for key, item in value.items()}
        steps = coerced.get("max_steps", 1)
        if steps == 0 or steps < -1:
            raise ValueError(f"max_steps is {steps}; allowed: a positive number of training steps "
                             "(or -1: num_train_epochs decides)")
        return coerced

    def config_hash(self) -> str:
        """Short stable hash of the resolved configuration."""
        return stable_hash(self.model_dump(mode="json"))


@functools.cache
def grpo_field_types() -> dict[str, Any]:
    """trl.GRPOConfig's field name -> annotated type."""
    from trl import GRPOConfig

    return typing.get_type_hints(GRPOConfig)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))


def grpo_field_value(key: str, value: Any, annotation: Any) -> Any:
    """`value` of GRPOConfig field `key`: kept when of the field's type, else converted to it (a string `1e-4` to a
    float, never a bool to a number); a value of neither, or a string outside an enumerated field's choices
    (`lr_scheduler_type`, `optim`, `save_strategy`, ...), raises `ValueError` naming the key and what is allowed."""
    choices = [str(member.value) for arg in typing.get_args(annotation) if isinstance(arg, type)
               and issubclass(arg, enum.Enum) for member in arg]
    if choices and isinstance(value, str) and value not in choices:
        raise ValueError(f"{key} is {value!r}; allowed values: {', '.join(choices)}")
    for strict in (True, False) if not isinstance(value, bool) else (True,):
        try:
            converted = _adapter(annotation).validate_python(value, strict=strict)
        except ValidationError:
            continue
        return value if strict else converted
    expected = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    raise ValueError(f"{key} is {value!r}; expected {expected} (the type of trl.GRPOConfig.{key})")


def _is_bound_later(params: dict[str, Any]) -> bool:
    """Embedding-unit semantic density with encoder 'policy' is bound to the policy by the trainer."""
    return params.get("units") == "embedding" and params.get("encoder", "policy") == "policy"


def stable_hash(data: Any, length: int = 12) -> str:
    """sha256 of the canonical JSON of `data`, first `length` hex digits."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


class DuplicateKey(yaml.YAMLError):
    """A YAML mapping gives one key twice; the message names the key and both lines."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives one key twice (PyYAML keeps the last, silently dropping
    the first, e.g. a whole second `trainer:` block)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKey(f"key {key!r} given twice (lines {seen[key]} and {line}); keep one of them")
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str) -> Any:
    """The value of YAML `text` (safe tags only); a key given twice in one mapping raises `DuplicateKey`."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; unreadable files, non-mappings and keys given twice raise `ConfigError` naming the
    file."""
    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise ConfigError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {error.start})") from None
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict[str, Any], source: str | Path) -> Any:
    """`model.model_validate(data)`; errors become one `ConfigError` naming the file, each key and what is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        lines = [f"{source}: invalid configuration"]
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(top level)"
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message += f"; allowed keys: {', '.join(allowed_keys(model, item['loc'][:-1]))}"
            lines.append(f"  {key}: {message}")
        raise ConfigError("\n".join(lines)) from None


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model found by following `loc` from `model`."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run configuration YAML file."""
    return validate(RunConfig, read_yaml(path), path)
