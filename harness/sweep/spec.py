"""Sweep specification (YAML plus `--set KEY=VALUE` overrides, validated by pydantic) and its expansion into trials.

A trial is a fully resolved `RunConfig`; its id is the hash of that config, so re-running a sweep recognises the
trials it has already finished. Loading a spec builds its trials once and checks their inputs (harness.sweep.checks:
local paths, data files, model directories, TRL's batch rules), so bad input fails before anything is written or
submitted.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from harness.config import ConfigError, RunConfig, Strict, load_yaml_text, read_yaml, stable_hash, validate
from harness.sweep.checks import check_inputs
from harness.sweep.storage import ENV_REFERENCE, redact
from harness.trial.handoff import Control


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


SLURM_PUNCTUATION = "_.,:=+/@%*&|!()[]-"
SLURM_VALUE = r"^[A-Za-z0-9_.,:=+/@%*&|!()\[\]-]+$"
"""A SLURM value (partition, account, an `executor.sbatch` value): one word of letters, digits and
`SLURM_PUNCTUATION`, so that it stays inside its `#SBATCH` line of the job script."""
SLURM_KEY = r"^[A-Za-z][A-Za-z0-9_-]*$"
"""An `executor.sbatch` key: an sbatch flag name (`qos`, `constraint`, `gres`, ...)."""
NAME_MAX = 100
"""Longest sweep name: it names the sweep directory, and file names longer than 255 bytes fail."""


class ExecutorConfig(Strict):
    """Where trials run: `local` (worker processes), `submitit-local`, or `slurm` (job arrays through submitit).

    A trial with `processes_per_trial` > 1 trains through `accelerate launch` started by its worker (see
    harness.sweep.launch); on SLURM its job gets `nodes_per_trial` nodes and the trial's GPUs, CPUs and memory,
    split evenly across them."""

    kind: Literal["local", "submitit-local", "slurm"] = "local"
    workers: int = Field(1, ge=1, description="local / submitit-local: trials at once")
    trial_timeout_min: float = Field(60.0, gt=0)
    partition: str | None = Field(None, pattern=SLURM_VALUE, description="slurm: partition(s), comma-separated")
    account: str | None = Field(None, pattern=SLURM_VALUE)
    gpus_per_trial: int = Field(0, ge=0)
    cpus_per_trial: int = Field(1, ge=1)
    mem_gb: float = Field(4.0, gt=0)
    array_parallelism: int = Field(16, ge=1)
    requeues: int = Field(3, ge=0, description="slurm: resubmissions after preemption")
    sbatch: dict[str, Any] = Field(default_factory=dict, description="extra sbatch flags, e.g. {qos: high}")
    processes_per_trial: int = Field(1, ge=1, description="training processes of one trial, over all its nodes")
    nodes_per_trial: int = Field(1, ge=1, description="slurm: nodes of one trial's job")
    accelerate_config: str | None = Field(None, description="accelerate config file of a multi-process trial "
                                          "(DDP, FSDP or DeepSpeed settings), passed as --config_file")

    @field_validator("sbatch")
    @classmethod
    def _one_directive_each(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Each entry becomes one `#SBATCH --KEY=VALUE` line: a key of `SLURM_KEY`, a value a number, true, or a
        string of `SLURM_VALUE` (no newline, quote, `#`, `;`, `$` or backtick, which would end the directives or
        add a line the job's shell runs)."""
        for key, item in value.items():
            if not re.fullmatch(SLURM_KEY, str(key)):
                raise ValueError(f"sbatch key {str(key)!r}; allowed: a flag name of letters, digits, '_' and '-'")
            if isinstance(item, bool) and item is False:
                raise ValueError(f"sbatch.{key} is false; allowed: true (a flag) or leave the key out")
            if not isinstance(item, (bool, int, float)) and not re.fullmatch(SLURM_VALUE, str(item)):
                raise ValueError(f"sbatch.{key} is {item!r}; allowed: a number, true, or a string of letters, "
                                 f"digits and {SLURM_PUNCTUATION} (no space, newline, quote, '#', ';', '$' or "
                                 "backtick)")
        return value

    @model_validator(mode="after")
    def _processes(self) -> ExecutorConfig:
        nodes, processes = self.nodes_per_trial, self.processes_per_trial
        if nodes > 1 and self.kind != "slurm":
            raise ValueError(f"nodes_per_trial is {nodes} with kind {self.kind!r}; allowed: 1, or kind 'slurm' "
                             "for several nodes")
        for key in ("processes_per_trial", "gpus_per_trial", "cpus_per_trial"):
            if getattr(self, key) % nodes:
                raise ValueError(f"{key} is {getattr(self, key)}; allowed: a multiple of nodes_per_trial ({nodes}), "
                                 "each node taking an equal share")
        if processes > 1 and self.gpus_per_trial not in (0, processes):
            raise ValueError(f"gpus_per_trial is {self.gpus_per_trial} with processes_per_trial {processes}; "
                             f"allowed: 0 (CPU processes) or {processes} (one GPU per process)")
        if self.accelerate_config is not None:
            if processes == 1:
                raise ValueError("accelerate_config is set but processes_per_trial is 1; allowed: "
                                 "processes_per_trial > 1 (one process trains inside the worker, without accelerate)")
            if not Path(self.accelerate_config).is_file():
                raise ValueError(f"accelerate_config: no such file: {self.accelerate_config} "
                                 f"({Path(self.accelerate_config).absolute()})")
        return self


class SeedPlanConfig(Strict):
    """`seeds: {start, step, max}`: a group-sequential sweep (reports/sequential.py): every arm runs `start` seeds,
    then `step` more at each look for the arms of rows still undecided, up to `max`."""

    start: int = Field(ge=2)
    step: int = Field(ge=1)
    max: int = Field(ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> SeedPlanConfig:
        if self.max < self.start:
            raise ValueError(f"seeds.max ({self.max}) must be at least seeds.start ({self.start})")
        return self


class ReportConfig(Strict):
    """The report built at the end of a sweep (`report: false` turns it off; `report: true` keeps the defaults)."""

    enabled: bool = True
    equivalence_margin: float = Field(0.02, gt=0, lt=1,
                                      description="the smallest difference that matters (reports/decision.py)")
    margin_reason: str | None = Field(None, min_length=1, description="why a smaller difference does not matter; "
                                      "default: the reason reports/analysis.py gives for 0.02 of pass@1")
    threshold: float | None = Field(None, ge=0, le=1, description="held-out metric for steps-to-threshold; default: "
                                    "warm start + half the best final gain")
    metric: str | None = Field(None, pattern=r"^(greedy|pass@[1-9][0-9]*)$",
                               description="primary metric: pass@1 (sampled), greedy or pass@k; default: pass@1 when "
                               "the trials drew samples, else greedy")

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class SweepSpec(Strict):
    """A sweep: `base` run config, `grid` axes (dotted keys -> values), `seeds`, optional `optuna`, executor."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=NAME_MAX)
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | int = 3
    optuna: OptunaConfig | None = None
    executor: ExecutorConfig = ExecutorConfig()
    storage: str | None = Field(None, description="Optuna storage URL, or ${NAME}: the URL in environment variable "
                                "NAME; default a journal file in the sweep dir")
    report: ReportConfig = Field(default_factory=lambda: ReportConfig())
    sequential: SeedPlanConfig | None = Field(None, description="set by `seeds: {start, step, max}`")
    claims: str | None = Field(None, description="a claims file whose rows a sequential sweep settles too")

    @model_validator(mode="before")
    @classmethod
    def _seed_plan(cls, data: Any) -> Any:
        """`seeds: {start, step, max}` -> `sequential` and the seeds 0 .. max - 1 (each look takes the next ones)."""
        if isinstance(data, dict) and isinstance(data.get("seeds"), dict):
            plan = SeedPlanConfig.model_validate(data["seeds"])
            data = {**data, "sequential": plan, "seeds": list(range(plan.max))}
        return data

    @model_validator(mode="after")
    def _claims_file(self) -> SweepSpec:
        if self.claims is not None:
            if self.sequential is None:
                raise ValueError("claims: only a sequential sweep (seeds: {start, step, max}) settles claim rows")
            if not Path(self.claims).is_file():
                raise ValueError(f"claims: {self.claims}: no such file")
        if self.sequential is not None and self.optuna is not None:
            raise ValueError("seeds: {start, step, max} (a sequential sweep) does not go with optuna")
        return self

    @field_validator("name")
    @classmethod
    def _not_a_relative_step(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"name {value!r} would put the sweep into runs/ itself or above it; allowed: letters, "
                             "digits, '_', '-' and '.', other than '.' or '..'")
        return value

    @field_validator("storage")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value and not ENV_REFERENCE.match(value):
            raise ValueError("expected a database URL such as sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB, "
                             f"or ${{NAME}} naming an environment variable that holds one; got {redact(value)!r}")
        return value

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
    control: Control | None = None
    """None for a training trial; `Control.WARM_START` for the control that scores the untrained policy."""


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
    return Trial(config.config_hash(), flat_params(params), seed, config)


def flat_params(params: dict[str, Any]) -> dict[str, Any]:
    """Swept values as dotted keys: a mapping value (a whole `estimator: {name, ...}` on one grid axis) becomes one
    key per entry (`estimator.name`, `estimator.attenuation`, ...), so results and reports see every parameter."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat |= flat_params({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def grid_trials(spec: SweepSpec, source: str | Path) -> list[Trial]:
    """Cartesian product of the grid axes times the seeds (seeds innermost)."""
    keys = list(spec.grid)
    combos = itertools.product(*(spec.grid[k] for k in keys)) if keys else [()]
    return [make_trial(spec, dict(zip(keys, combo)), seed, source) for combo in combos for seed in spec.seed_list]


def warm_start_controls(trials: list[Trial]) -> list[Trial]:
    """One `warm_start` control per distinct (task, model, eval settings, seed) of `trials`: the untrained policy
    scored on the same items, so every comparison can show that training moved anything. Its params keep the
    trial's `task.*` and `model.*` keys with `estimator.name = "warm_start"`."""
    controls: dict[str, Trial] = {}
    for trial in trials:
        config = trial.config
        key = stable_hash({"control": Control.WARM_START.value, "seed": trial.seed,
                           "task": config.task.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
                           "eval": config.eval.model_dump(mode="json")})
        params = {k: v for k, v in trial.params.items() if k.startswith(("task.", "model."))}
        controls.setdefault(key, Trial(f"warm-{key}", {"estimator.name": Control.WARM_START.value} | params,
                                       trial.seed, config, control=Control.WARM_START))
    return list(controls.values())


def optuna_probe_trials(spec: SweepSpec, source: str | Path) -> list[Trial]:
    """Trials standing for the Optuna space at load time: every dimension at its low end (first choice), and each
    categorical choice in turn, so that invalid values and missing paths among the choices fail before the sweep."""
    if spec.optuna is None:
        return []
    space = spec.optuna.space
    first = {k: p.choices[0] if p.choices else int(p.low) if p.type == "int" else p.low for k, p in space.items()}
    probes = [first] + [first | {k: c} for k, p in space.items() for c in (p.choices or [])[1:]]
    return [make_trial(spec, params, spec.seed_list[0], source) for params in probes]


DOTTED_KEY_MAPPINGS = (("grid",), ("optuna", "space"))
"""Spec mappings whose keys are themselves dotted run-config keys (`grid: {estimator.name: [...]}`)."""


def override_path(data: dict[str, Any], key: str) -> list[str]:
    """The spec keys a dotted `--set` key walks through; inside `grid` and `optuna.space` the longest existing
    dotted key is taken as one step (the whole rest when none exists): `optuna.space.estimator.beta.high` ->
    [optuna, space, estimator.beta, high]."""
    parts, path, node = key.split("."), [], data
    while parts:
        n = 1
        if tuple(path) in DOTTED_KEY_MAPPINGS:
            existing = [m for m in range(len(parts), 0, -1) if isinstance(node, dict) and ".".join(parts[:m]) in node]
            n = existing[0] if existing else len(parts)
        path.append(".".join(parts[:n]))
        parts = parts[n:]
        node = node.get(path[-1]) if isinstance(node, dict) else None
    return path


def apply_override(data: dict[str, Any], item: str, source: str | Path) -> None:
    """Apply one `KEY=VALUE` override (dotted KEY into the spec mapping, VALUE parsed as YAML) to `data`."""
    key, sep, text = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{source}: --set {item!r}: expected KEY=VALUE with a dotted KEY into the spec, "
                          "e.g. --set executor.partition=a100 or --set base.model.path=/models/qwen3-1.7b")
    try:
        value = load_yaml_text(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: --set {key}: value {text!r} is not valid YAML ({error})") from None
    *parents, last = override_path(data, key)
    node = data
    for depth, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{source}: --set {key}: {where} is a {type(node).__name__}, not a mapping of keys")
    node[last] = value


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> tuple[SweepSpec, list[Trial]]:
    """Read a sweep spec, apply `overrides` (`KEY=VALUE`) and validate it; returns it with its grid trials, built
    and validated once here (with the Optuna space's probes) so bad values and missing local paths fail before any
    run, with errors naming the file (and overrides) and the key."""
    source = f"{path} (with --set {' '.join(overrides)})" if overrides else str(path)
    data = read_yaml(path)
    for item in overrides:
        apply_override(data, item, path)
    spec = validate(SweepSpec, data, source)
    if not spec.grid and spec.optuna is None:
        raise ConfigError(f"{source}: grid: empty; give at least one axis (e.g. estimator.name: [group_mean]) "
                          "or optuna")
    trials = grid_trials(spec, source)
    check_inputs(spec, trials + optuna_probe_trials(spec, source), source)
    return spec, trials


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """The validated sweep spec of `path` with `overrides` (see `load_sweep`)."""
    return load_sweep(path, overrides)[0]


def spec_hash(spec: SweepSpec) -> str:
    """Hash of what determines a sweep's trials (the executor and storage may change between runs)."""
    return stable_hash(spec.model_dump(mode="json", include={"name", "base", "grid", "seeds", "optuna"}))
