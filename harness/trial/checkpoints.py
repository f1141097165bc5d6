"""Preemption-safe training: full-state checkpoints while a trial trains, and resuming an interrupted trial.

When a run config's `trainer:` block sets `save_steps`, the trainer saves Hugging Face Trainer checkpoints
(`run_dir/trl/checkpoint-<step>/`: policy, optimizer, scheduler, RNG states, trainer state with the step) every
`save_steps` steps and keeps the last `save_total_limit` (default 2). Without `save_steps` nothing is saved during
training.

A trial started again in the same run directory with the same config (a killed worker, a requeued SLURM job, a
sweep re-run after a crash) resumes from the latest complete checkpoint: metrics.jsonl, timing.jsonl and
eval_curve.jsonl keep their rows up to the checkpoint's step and the trainer appends from there, so every step is
logged once and the finished steps are not trained (nor their completions generated) again. With another config,
or no checkpoint, the trial starts from step 0 as it always did. The checkpoints are removed once the trial's
summary is written (the trained policy is in `run_dir/checkpoint/`).

The trained policy of a trial sharded across its processes (FSDP, or DeepSpeed ZeRO stage 3: no process holds it
whole) is gathered into one full state dict at save (every process takes part) and written by the main process as
an ordinary unsharded checkpoint; the held-out curve during training scores unsharded copies gathered the same way
and broadcast to every process, each scoring its share of the items on its own device.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast
from transformers import AutoModelForCausalLM
from transformers.modeling_utils import set_zero3_state
from trl.distributed import DistributedBackend

from harness.config import ConfigError, RunConfig

CHECKPOINT_DEFAULTS: dict[str, Any] = {"save_strategy": "steps", "save_total_limit": 2}
"""GRPOConfig fields added when the `trainer:` block sets `save_steps` (the block itself may override them)."""
RUN_LOGS = ("metrics.jsonl", "timing.jsonl", "eval_curve.jsonl")
"""The run directory's per-step logs (one JSON object with a `step` per line)."""
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


def checkpoint_arguments(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The GRPOConfig fields that turn checkpoints on: `CHECKPOINT_DEFAULTS` when `trainer` (a run config's
    `trainer:` block) sets `save_steps`, else none (the CPU defaults save nothing)."""
    return dict(CHECKPOINT_DEFAULTS) if trainer.get("save_steps") else {}


def checkpoint_step(checkpoint: Path) -> int:
    """The training step a `checkpoint-<step>` directory was saved at."""
    match = CHECKPOINT_DIR.fullmatch(checkpoint.name)
    if match is None:
        raise ValueError(f"{checkpoint} is not a checkpoint-<step> directory")
    return int(match.group(1))


def is_complete(checkpoint: Path) -> bool:
    """Whether the trainer finished writing `checkpoint` (it writes trainer_state.json last)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def checkpoints(out_dir: Path) -> list[Path]:
    """The trainer's `checkpoint-<step>` directories under `out_dir/trl`, oldest step first (complete or not)."""
    trl_dir = out_dir / "trl"
    if not trl_dir.is_dir():
        return []
    return sorted((p for p in trl_dir.iterdir() if p.is_dir() and CHECKPOINT_DIR.fullmatch(p.name)),
                  key=checkpoint_step)


def same_config(config: RunConfig, out_dir: Path) -> bool:
    """Whether `out_dir/config.yaml` (written when the run directory's last trial started) is `config`."""
    try:
        return yaml.safe_load((out_dir / "config.yaml").read_text()) == config.model_dump(mode="json")
    except (OSError, yaml.YAMLError):
        return False


def prepare_run_dir(config: RunConfig, out_dir: Path) -> Path | None:
    """Get `out_dir` ready for a trial of `config`; call it before the trial rewrites config.yaml.

    When `out_dir` holds a complete checkpoint of the same config, returns the latest one, removes the incomplete
    ones (a save the interruption cut short) and truncates the per-step logs to its step. Otherwise removes the
    per-step logs and any checkpoints (of another config) and returns None: the trial starts from step 0."""
    found = checkpoints(out_dir)
    complete = [c for c in found if is_complete(c)] if same_config(config, out_dir) else []
    resume = complete[-1] if complete else None
    for stale in found:
        if stale not in complete:
            shutil.rmtree(stale, ignore_errors=True)
    for name in RUN_LOGS:
        if resume is None:
            (out_dir / name).unlink(missing_ok=True)
        else:
            truncate_log(out_dir / name, checkpoint_step(resume))
    if resume is not None:
        print(f"resuming from {resume} (step {checkpoint_step(resume)})", file=sys.stderr, flush=True)
    return resume


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the lines of the JSON-lines log `path` whose `step` is at most `last_step` (dropping a line the
    interruption cut short); a missing log stays missing."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= last_step:
            kept.append(line + "\n")
    path.write_text("".join(kept))


def remove_checkpoints(out_dir: Path) -> None:
    """Delete the resume checkpoints of a finished trial (its policy is in `out_dir/checkpoint/`)."""
    for checkpoint in checkpoints(out_dir):
        shutil.rmtree(checkpoint, ignore_errors=True)


def check_sharding(environ: Mapping[str, str], running: DistributedType) -> None:
    """Raise `ConfigError` when `accelerate launch` asked for FSDP (ACCELERATE_USE_FSDP=true in `environ`, from the
    accelerate config file) but the trainer's accelerator runs as `running`, not FSDP: accelerate 1.15 turns FSDP on
    only on GPU hosts and would otherwise train plain DDP, every process holding the whole policy, without a word."""
    if environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and running != DistributedType.FSDP:
        raise ConfigError(
            f"executor.accelerate_config asks for FSDP (distributed_type: FSDP), but accelerate runs this trial as "
            f"{running.value}: accelerate 1.15 shards with FSDP only on GPU hosts (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()} here); allowed on a host without GPUs: no accelerate_config (DDP over "
            "gloo), one with distributed_type MULTI_GPU, or DEEPSPEED")


def is_sharded(accelerator: Accelerator) -> bool:
    """Whether the trial's policy is sharded across its processes: FSDP, or DeepSpeed ZeRO stage 3."""
    backend = DistributedBackend(accelerator)
    return backend.is_fsdp or backend.is_zero3


def gathered_policy(trainer: Any) -> torch.nn.Module:
    """A whole, unsharded copy of a sharded trainer's policy on every process, on that process's device: every process
    takes part in gathering the full state dict (accelerate's `get_state_dict`, as `Trainer.save_model` does), which
    the main process receives and loads into a fresh model of the policy's config, dtype and generation config; the
    others build the same model and receive its weights by broadcast (each then scores its share of the items)."""
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    source = trainer.accelerator.unwrap_model(trainer.model)
    with set_zero3_state():  # built whole here: not partitioned by DeepSpeed's zero.Init across the other processes
        policy = AutoModelForCausalLM.from_config(source.config, dtype=source.dtype)
    if trainer.accelerator.is_main_process:
        policy.load_state_dict(state)
    policy.to(trainer.accelerator.device)
    broadcast(list(policy.state_dict().values()), from_process=0)  # in place: the tensors are the parameters
    policy.generation_config = source.generation_config
    return policy


def load_whole(checkpoint: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The policy saved in `checkpoint`, loaded whole by this process alone onto `device` (under ZeRO-3 transformers
    would build it inside DeepSpeed's zero.Init, partitioned across processes that are not loading it)."""
    with set_zero3_state():
        return AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True, dtype="auto").to(device)


def save_policy(trainer: Any, checkpoint: Path) -> None:
    """Save the trained policy as one full checkpoint in `checkpoint`. Every process calls it: the trainer gathers
    sharded weights and the main process writes them. Under FSDP the final save always gathers the full state dict
    (accelerate's FSDP2 default, SHARDED_STATE_DICT, would make `save_model` write no weights at all)."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(checkpoint))
