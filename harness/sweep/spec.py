"""Sweep specification (YAML, validated by pydantic) and its expansion into trials.

A trial is a fully resolved `RunConfig`; its id is the hash of that config, so re-running a sweep recognises the
trials it has already finished.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.config import ConfigError, RunConfig, Strict, read_yaml, stable_hash, validate


class SearchParam(Strict):
    """One Optuna search-space dimension."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"a {self.type} parameter needs 'low' <= 'high'")
        if self.log and self.type != "categorical" and (self.low or 0) <= 0:
            raise ValueError("a log-scale parameter needs low > 0")
        return self


class OptunaConfig(Strict):
    """Optuna search: `n_trials` suggestions, each run over every seed; the objective is the seeds' mean metric."""

    sampler: Literal["tpe", "random"] = "tpe"
    n_trials: int = Field(8, ge=1)
    direction: Literal["maximize", "minimize"] = "maximize"
    metric: str = "eval_accuracy"
    space: dict[str, SearchParam]

    @field_validator("space")
    @classmethod
    def _non_empty(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        if not value:
            raise ValueError("optuna.space needs at least one parameter")
        return value


class ExecutorConfig(Strict):
    """Where trials run: `local` (worker processes), `submitit-local`, or `slurm` (job arrays through submitit)."""

    kind: Literal["local", "submitit-local", "slurm"] = "local"
    workers: int = Field(1, ge=1, description="local / submitit-local: trials at once")
    trial_timeout_min: float = Field(60.0, gt=0)
    partition: str | None = None
    account: str | None = None
    gpus_per_trial: int = Field(0, ge=0)
    cpus_per_trial: int = Field(1, ge=1)
    mem_gb: float = Field(4.0, gt=0)
    array_parallelism: int = Field(16, ge=1)
    requeues: int = Field(3, ge=0, description="slurm: resubmissions after preemption")
    sbatch: dict[str, Any] = Field(default_factory=dict, description="extra sbatch flags, e.g. {qos: high}")


class SweepSpec(Strict):
    """A sweep: `base` run config, `grid` axes (dotted keys -> values), `seeds`, optional `optuna`, executor."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | int = 3
    optuna: OptunaConfig | None = None
    executor: ExecutorConfig = ExecutorConfig()
    storage: str | None = Field(None, description="Optuna storage URL; default a journal file in the sweep dir")
    report: bool = True

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, value: list[int] | int) -> list[int]:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"seeds must be a positive count or a list of seeds, got {value}")
            return list(range(value))
        if not value or len(set(value)) != len(value):
            raise ValueError("seeds must be a non-empty list of distinct integers")
        return value

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"grid axis {key!r} has no values")
        return value

    @property
    def seed_list(self) -> list[int]:
        assert isinstance(self.seeds, list)
        return self.seeds


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: its id, the swept parameters and the resolved config."""

    trial_id: str
    params: dict[str, Any]
    seed: int
    config: RunConfig


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", creating mappings on the way."""
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is not a mapping")
    data[last] = value


def make_trial(spec: SweepSpec, params: dict[str, Any], seed: int, source: str | Path) -> Trial:
    """The trial of `params` (dotted keys) and `seed` on top of `spec.base`; errors name the spec file and key."""
    data = copy.deepcopy(spec.base)
    for key, value in params.items():
        set_dotted(data, key, value)
    data["seed"] = seed
    where = f"{source} (base with {', '.join(f'{k}={v!r}' for k, v in params.items()) or 'no grid values'})"
    config = validate(RunConfig, data, where)
    return Trial(config.config_hash(), dict(params), seed, config)


def grid_trials(spec: SweepSpec, source: str | Path) -> list[Trial]:
    """Cartesian product of the grid axes times the seeds (seeds innermost)."""
    keys = list(spec.grid)
    combos = itertools.product(*(spec.grid[k] for k in keys)) if keys else [()]
    return [make_trial(spec, dict(zip(keys, combo)), seed, source) for combo in combos for seed in spec.seed_list]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec; the grid's trials are built once here so bad values fail before any run."""
    spec = validate(SweepSpec, read_yaml(path), path)
    if not spec.grid and spec.optuna is None:
        raise ConfigError(f"{path}: grid: empty; give at least one axis (e.g. estimator.name: [group_mean]) or optuna")
    grid_trials(spec, path)
    return spec


def spec_hash(spec: SweepSpec) -> str:
    """Hash of what determines a sweep's trials (the executor and storage may change between runs)."""
    return stable_hash(spec.model_dump(mode="json", include={"name", "base", "grid", "seeds", "optuna"}))
