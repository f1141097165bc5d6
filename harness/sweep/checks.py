"""Checks of a sweep's inputs at load, before anything is written or submitted (`check_inputs`), so that a trial
cannot fail at its start on what the spec already shows:

- local paths (model directory, data files, the SQLite storage's directory) exist;
- each distinct task's data files are read in full by the task's own loader (`harness.tasks.load_task`): a file of
  an unknown format, rows that are not objects, text that is not UTF-8, a row without a question or an answer are one
  line naming the file (and line); questions given more than once print one warning line per file;
- each `model.path` is a model directory: a `config.json`, weights (`*.safetensors` or `pytorch_model*.bin`) and a
  tokenizer file that loads (with a chat template when `task.prompt.chat` is set);
- the trainer's batch sizes meet TRL's GRPOConfig constraints (`grpo_batch_problem`) for the trial's processes.

Each failure is a `ConfigError` naming the spec file and the key (`base.*`, `grid.*` or `optuna.space.*`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import ConfigError, RunConfig, stable_hash
from harness.sweep.storage import resolve_url

if TYPE_CHECKING:
    from harness.sweep.spec import SweepSpec, Trial

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
"""Files of which a model directory holds at least one: its weights (or their shard index)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
"""Files of which a model directory holds at least one: its tokenizer's vocabulary (transformers builds an empty
tokenizer of one token, without an error, when there is none)."""


def check_inputs(spec: SweepSpec, trials: list[Trial], source: str | Path) -> None:
    """Raise one `ConfigError` for the first problem of `trials`' inputs (module docstring), in the order: local
    paths, trainer batch sizes, model directories, data files."""
    check_local_paths(spec, trials, source)
    processes = spec.executor.processes_per_trial
    for trial in _distinct(trials, lambda c: c.trainer):
        if problem := grpo_batch_problem(trial.config.trainer, processes):
            raise ConfigError(f"{source}: {spec_key(spec, trial.params, 'trainer')}: {problem}")
    for trial in _distinct(trials, lambda c: (c.model.path, c.task.prompt.model_dump())):
        if trial.config.model.path is not None and (problem := model_problem(trial.config)):
            raise ConfigError(f"{source}: {spec_key(spec, trial.params, 'model.path')}: {problem}")
    for trial in _distinct(trials, lambda c: (c.task.model_dump(), c.rewards)):
        check_task_data(trial.config, f"{source}: {spec_key(spec, trial.params, 'task')}")


def _distinct(trials: list[Trial], part: Any) -> list[Trial]:
    """The first trial of each distinct `part(config)` (one check per distinct model, task or trainer block)."""
    firsts: dict[str, Trial] = {}
    for trial in trials:
        firsts.setdefault(stable_hash(part(trial.config)), trial)
    return list(firsts.values())


def grpo_batch_problem(trainer: dict[str, Any], processes: int) -> str | None:
    """What TRL's `GRPOConfig.__post_init__` (trl 1.16) would refuse in the trainer block `trainer` (over the
    harness's CPU defaults, harness.trial.train.CPU_DEFAULTS) run on `processes` processes, or None. Its rules: the
    generation batch is `generation_batch_size`, else per_device_train_batch_size x processes x
    `steps_per_generation` (default gradient_accumulation_steps); a given `generation_batch_size` is a multiple of
    per_device_train_batch_size x processes, and not given together with `steps_per_generation`; the generation
    batch is a multiple of `num_generations`, which is at least 2."""
    from harness.trial.train import CPU_DEFAULTS

    settings = CPU_DEFAULTS | trainer
    group, per_device = settings["num_generations"], settings["per_device_train_batch_size"]
    steps = settings.get("steps_per_generation") or settings.get("gradient_accumulation_steps", 1)
    generation = settings.get("generation_batch_size")
    if generation is not None and settings.get("steps_per_generation") is not None:
        return "generation_batch_size and steps_per_generation are both set; allowed: one of them (TRL's GRPOConfig)"
    if group is not None and group < 2:
        return f"num_generations is {group}; allowed: 2 or more (GRPO compares the completions of a group)"
    global_batch = per_device * processes
    if generation is not None and generation % global_batch:
        return (f"generation_batch_size {generation} is not a multiple of per_device_train_batch_size {per_device} "
                f"x {processes} process(es) = {global_batch} (TRL's GRPOConfig)")
    generation = generation if generation is not None else global_batch * steps
    if group is not None and generation % group:
        return (f"the generation batch ({_batch_formula(settings, processes, steps)} = {generation} completions) is "
                f"not a multiple of num_generations {group}; allowed: per_device_train_batch_size (x processes x "
                "steps_per_generation) a multiple of num_generations (TRL's GRPOConfig)")
    return None


def _batch_formula(settings: dict[str, Any], processes: int, steps: int) -> str:
    if settings.get("generation_batch_size") is not None:
        return "generation_batch_size"
    per_device = settings["per_device_train_batch_size"]
    return f"per_device_train_batch_size {per_device} x {processes} process(es) x {steps} step(s)"


def model_problem(config: RunConfig) -> str | None:
    """Why `config.model.path` is not a usable model directory (no config.json, no weights, no tokenizer file or one
    that does not load, no chat template while `task.prompt.chat` is set), or None."""
    path = Path(str(config.model.path))
    if not (path / "config.json").is_file():
        return f"{path} is not a model directory: no config.json (expected a Hugging Face model saved there)"
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return (f"{path} is not a model directory: no weights (expected {' or '.join(WEIGHT_PATTERNS[:2])} files "
                "next to config.json)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return f"{path} is not a model directory: no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})"
    from harness.tasks.prompts import check_chat_template
    from harness.trial.model import load_tokenizer

    try:
        tokenizer = load_tokenizer(path)
        check_chat_template(config.task.prompt, tokenizer, path)
    except Exception as error:  # noqa: BLE001  (transformers raises many kinds; each becomes one line)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"{path}: its tokenizer does not load ({reason[:300]})"
    return None


def check_task_data(config: RunConfig, where: str) -> None:
    """Read the data files of `config.task` (gsm8k, jsonl) with the task's own loader; its `ValueError` (naming the
    file and line) becomes a `ConfigError` prefixed with `where`; repeated questions print a warning line each."""
    if config.task.name not in ("gsm8k", "jsonl"):
        return
    from harness.tasks import load_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_task(config.task, config.rewards)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
    for message in dict.fromkeys(str(warning.message) for warning in caught):  # a file of both splits: once
        print(f"warning: {message}", file=sys.stderr)


def local_paths(config: RunConfig) -> dict[str, tuple[str, str]]:
    """Dotted key -> (path, "directory" or "file") for every local path a run config reads. (A semantic-density
    encoder directory is checked by the run config's own validation.)"""
    found = {"model.path": (config.model.path, "directory"), "task.path": (config.task.path, "file"),
             "task.train_path": (config.task.train_path, "file")}
    return {key: (path, kind) for key, (path, kind) in found.items() if path is not None}


def spec_key(spec: SweepSpec, params: dict[str, Any], key: str) -> str:
    """Where a run-config key comes from in the spec: `grid.<key>`, `optuna.space.<key>` or `base.<key>`."""
    if key in params:
        return f"grid.{key}" if key in spec.grid else f"optuna.space.{key}"
    return f"base.{key}"


def sqlite_directory(url: str | None) -> Path | None:
    """The directory an `sqlite:///PATH` storage URL writes to (None for other URLs and in-memory databases)."""
    if url is None or not url.startswith("sqlite:///") or url.removeprefix("sqlite:///") in ("", ":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///")).parent


def check_local_paths(spec: SweepSpec, trials: list[Trial], source: str | Path) -> None:
    """Raise one `ConfigError` naming the spec, each key and each missing path of `trials` and the storage."""
    missing: dict[tuple[str, str], str] = {}
    for trial in trials:
        for key, (path, kind) in local_paths(trial.config).items():
            found = Path(path).is_dir() if kind == "directory" else Path(path).is_file()
            if not found:
                missing[(spec_key(spec, trial.params, key), path)] = kind
    try:
        directory = sqlite_directory(resolve_url(spec.storage) if spec.storage else None)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    if directory is not None and not directory.is_dir():
        missing[("storage", str(directory))] = "directory (for the SQLite file)"
    if missing:
        lines = [f"{source}: local paths not found (nothing was run or submitted)"]
        for (key, path), kind in missing.items():
            resolved = "" if Path(path).is_absolute() else f" ({Path(path).absolute()})"
            lines.append(f"  {key}: no such {kind}: {path}{resolved}")
        raise ConfigError("\n".join(lines))
