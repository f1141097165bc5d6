"""Run configuration (one training trial) as pydantic models, loaded from YAML with errors that name the file,
the key and the allowed values."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
}
"""Each task family's defaults, filled in for keys the config leaves out (see harness/tasks)."""


class TaskConfig(Strict):
    """Which task to train and evaluate on; keys left out take the family's defaults (`TASK_FAMILIES`)."""

    name: Literal["arithmetic", "arithmetic_hard", "multihop", "gsm8k"] = "arithmetic"
    n_train: int = Field(2000, ge=1)
    n_test: int = Field(500, ge=1)
    steps: int = Field(2, ge=1, description="arithmetic: operations per problem; multihop: hops of the chain")
    digits: int = Field(1, ge=1, le=6, description="arithmetic: digits per operand")
    ops: str = Field("+-", pattern=r"^[+\-*]+$", description="arithmetic: operations to draw from")
    distractors: int = Field(1, ge=0, description="multihop: facts outside the chain")
    shortcut_share: float = Field(0.0, ge=0.0, le=1.0,
                                  description="share of warm-start solutions that take the task's shortcut")
    seed: int = Field(0, description="generator seed (fixed across trials: same data for every trial)")
    path: str | None = Field(None, description="gsm8k: test-split jsonl")
    train_path: str | None = Field(None, description="gsm8k: train-split jsonl")

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return TASK_FAMILIES.get(data.get("name", "arithmetic"), {}) | data
        return data

    @model_validator(mode="after")
    def _paths_for_gsm8k(self) -> TaskConfig:
        if self.name == "gsm8k" and (self.path is None or self.train_path is None):
            raise ValueError("task 'gsm8k' needs path (test jsonl) and train_path (train jsonl)")
        if self.name == "multihop" and self.steps < 2:
            raise ValueError("task 'multihop' needs steps >= 2 (a chain of at least two hops)")
        return self


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
    """Held-out evaluation: greedy decoding on the first `n_examples` items of the test split after training (and on
    the first `curve_examples` every `every_steps` training steps; 0 turns the curve off)."""

    n_examples: int = Field(500, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(100, ge=1)
    every_steps: int = Field(0, ge=0, description="held-out accuracy curve during training: every N steps")
    curve_examples: int = Field(100, ge=1, description="test items scored for the curve")
    lm_eval: bool = Field(False, description="also score the checkpoint with lm-evaluation-harness")
    lm_eval_tasks: list[str] = Field(default_factory=lambda: ["lph_test"],
                                     description="lm-eval tasks or presets scored when lm_eval is true")


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
        from trl import GRPOConfig

        allowed = {f.name for f in dataclasses.fields(GRPOConfig)}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else "; see trl.GRPOConfig for the allowed fields"
                raise ValueError(f"unknown GRPOConfig field {key!r}{hint}")
        return value

    def config_hash(self) -> str:
        """Short stable hash of the resolved configuration."""
        return stable_hash(self.model_dump(mode="json"))


def _is_bound_later(params: dict[str, Any]) -> bool:
    """Embedding-unit semantic density with encoder 'policy' is bound to the policy by the trainer."""
    return params.get("units") == "embedding" and params.get("encoder", "policy") == "policy"


def stable_hash(data: Any, length: int = 12) -> str:
    """sha256 of the canonical JSON of `data`, first `length` hex digits."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; unreadable files and non-mappings raise `ConfigError` naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
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
