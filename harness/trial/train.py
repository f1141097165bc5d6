"""One ablation trial: `python -m harness.trial.train CONFIG.yaml [--out DIR]`.

Reads a run config, loads the task and the (warm-started) policy, trains with TRL's GRPOTrainer using the configured
estimator and reward mix, scores the final checkpoint on the test split and writes the run directory:
`config.yaml` (resolved), `metrics.jsonl` (one line per step), `checkpoint/`, `eval.json` and `summary.json`.

Under `accelerate launch --num_processes N` every process trains on its share of each batch and scores its share of
the held-out items on its own device (harness.trial.scoring.process_shard); only the main process writes the run
directory (summary.json records `processes`, and `sharded` when an FSDP or ZeRO-3 accelerate config shards the
policy: every process then scores a whole copy gathered from all of them, for the held-out curve, and the gathered
checkpoint loaded afresh, for eval.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging as transformers_logging
from trl import GRPOConfig, GRPOTrainer

import estimators
import rewards
from harness.cli import HelpFormatter
from harness.config import ConfigError, PromptConfig, RunConfig, load_run_config
from harness.lock import provenance
from harness.threads import set_threads
from harness.trial.checkpoints import (check_sharding, checkpoint_arguments, gathered_policy, is_sharded, load_whole,
                                       prepare_run_dir, remove_checkpoints, save_policy)
from harness.trial.model import WARM_START_MARKER, load_policy, training_precision
from harness.trial.scoring import ALONE, Shard, mean_outcomes, process_shard, score_items
from harness.tasks import TaskSplits, load_task, render_prompts
from harness.trial.trl_hooks import EstimatorGRPOTrainer
from rewards.semantic import EmbeddingTableEncoder

transformers_logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)

CPU_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 16,
    "num_generations": 8,
    "max_completion_length": 40,
    "learning_rate": 2e-4,
    "max_steps": 40,
    "temperature": 1.0,
    "beta": 0.0,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "activation_checkpointing": False,
}


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss or gradient norm."""


def grpo_arguments(config: RunConfig, out_dir: Path, reward_weights: list[float]) -> GRPOConfig:
    """GRPOConfig: CPU-friendly defaults, full-state checkpoints when the `trainer:` block sets `save_steps`
    (harness.trial.checkpoints), the device's precision, the config's `trainer:` block, then the seed and the
    reward mix's weights (the harness owns those)."""
    cuda = torch.cuda.is_available()
    device = {"use_cpu": not cuda, "bf16": cuda and torch.cuda.is_bf16_supported(), "fp16": False}
    owned = {"seed": config.seed, "data_seed": config.seed, "reward_weights": reward_weights}
    if "wandb" in str(config.trainer.get("report_to", "")):
        os.environ.setdefault("WANDB_MODE", "offline")  # offline-safe: `wandb sync` later, or set WANDB_MODE=online
    arguments = CPU_DEFAULTS | checkpoint_arguments(config.trainer) | device | config.trainer | owned
    return GRPOConfig(output_dir=str(out_dir / "trl"), **arguments)


def grpo_dataset(records: list[dict[str, str]], prompt: PromptConfig | None = None, tokenizer: Any = None) -> Dataset:
    """TRL's dataset: the prompt of each record (`render_prompt` under `task.prompt`, rendered to text here, so TRL
    applies no template of its own) and its reference solution (the `answer` column the rewards read)."""
    return Dataset.from_list([{"prompt": text, "answer": r["answer"]}
                              for r, text in zip(records, render_prompts(records, prompt or PromptConfig(), tokenizer))])


def write_run_config(config: RunConfig, run_dir: Path) -> None:
    """The resolved run config as `run_dir/config.yaml` (what harness.trial.evaluate reads back)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def reward_mix(config: RunConfig, policy: Any, tokenizer: Any) -> rewards.RewardMix:
    """The configured mix; `correctness` is always a component (weight 0 if unweighted) so accuracy is logged, and
    embedding-unit semantic density with encoder 'policy' reads the policy's input-embedding table."""
    weights = {"correctness": 0.0} | config.rewards
    params = {name: dict(p) for name, p in config.reward_params.items()}
    for p in params.values():
        if p.get("units") == "embedding" and p.get("encoder", "policy") == "policy":
            p["encoder"] = EmbeddingTableEncoder(policy.get_input_embeddings(), tokenizer)
    return rewards.mix(weights, params)


WALL_CLOCK_KEYS = ("step_time",)
"""Keys of TRL's logs that measure wall-clock time: written to timing.jsonl, not metrics.jsonl."""


class MetricsWriter(TrainerCallback):
    """Appends each training log to metrics.jsonl (with accuracy) and its wall-clock figures (step seconds,
    tokens/s) to timing.jsonl, so that metrics.jsonl depends only on the config and seed; stops on a non-finite
    loss or gradient norm."""

    def __init__(self, run_dir: Path, progress: Any) -> None:
        self.metrics_path, self.timing_path = run_dir / "metrics.jsonl", run_dir / "timing.jsonl"
        self.progress = progress
        self._step_started = time.perf_counter()
        self._tokens_before = 0.0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kw: Any) -> None:
        self._tokens_before = float(state.num_input_tokens_seen)  # not 0 when resumed from a checkpoint

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._step_started = time.perf_counter()

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs or "loss" not in logs:
            return
        seconds = time.perf_counter() - self._step_started
        tokens = float(logs.get("num_tokens", 0.0))
        row = {"step": state.global_step, **{k: v for k, v in logs.items() if k not in WALL_CLOCK_KEYS},
               "accuracy": logs.get("rewards/correctness/mean")}
        timing = {"step": state.global_step, **{k: logs[k] for k in WALL_CLOCK_KEYS if k in logs},
                  "step_seconds": seconds, "pid": os.getpid(),
                  "tokens_per_second": (tokens - self._tokens_before) / seconds if seconds > 0 else 0.0}
        self._tokens_before = tokens
        if state.is_world_process_zero:  # every process logs the same (gathered) figures: the main one writes
            append_jsonl(self.metrics_path, row)
            append_jsonl(self.timing_path, timing)
            self.progress.update(state.global_step, row.get("reward", math.nan))
        for key in ("loss", "grad_norm"):  # an infinite gradient leaves NaN weights behind: stop there too
            if key in logs and not math.isfinite(float(logs[key])):
                raise NonFiniteLoss(f"{key} is {logs[key]} at step {state.global_step}")


class HeldOutCurve(TrainerCallback):
    """The primary held-out metric (`eval.metric`: sampled pass@1, or greedy accuracy without samples) on a fixed
    subset of the test split before training and every `every_steps` steps, one line `{"step", "metric",
    "accuracy", "n"}` each in eval_curve.jsonl (the sample-efficiency curve of the report). An item's samples use
    the same seeded streams at every step. Every process scores its share of the items; when `trainer` shards the
    policy, each first takes part in gathering a whole copy of it (harness.trial.checkpoints.gathered_policy)."""

    def __init__(self, path: Path, records: list[dict[str, str]], tokenizer: Any, mix: rewards.RewardMix,
                 run: RunConfig, trainer: GRPOTrainer) -> None:
        self.path, self.records, self.tokenizer, self.mix = path, records, tokenizer, mix
        self.config, self.seed, self.prompt = run.eval, run.seed, run.task.prompt
        self.trainer = trainer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, **kw: Any) -> None:
        if state.global_step == 0:
            self._score(model, 0, state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: Any = None, **kw: Any) -> None:
        if state.global_step % self.config.every_steps == 0:
            self._score(model, state.global_step, state)

    def _score(self, model: Any, step: int, state: TrainerState) -> None:
        """Score on every process, each its share of the items (`model` itself when every process holds the whole
        policy, else the gathered copy); the main process writes the line."""
        if is_sharded(self.trainer.accelerator):
            model = gathered_policy(self.trainer)
        was_training = model.training
        metric = self.config.metric
        items, _ = score_items(model, self.tokenizer, self.records, self.mix, self.config, self.seed,
                               greedy=metric == "greedy", prompt=self.prompt, shard=process_shard())
        model.train(was_training)
        if state.is_world_process_zero:
            append_jsonl(self.path, {"step": step, "metric": metric, "accuracy": mean_outcomes(items)[metric],
                                     "n": len(items)})


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append `row` as one JSON line to `path`."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


class Progress:
    """A rich progress bar of training steps with the last reward and the ETA (silent when not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("reward {task.fields[reward]:.3f}"), TimeRemainingColumn(),
                                disable=not sys.stderr.isatty())
        self.task = self.bar.add_task(label, total=total, reward=math.nan)

    def update(self, step: int, reward: float) -> None:
        self.bar.update(self.task, completed=step, reward=reward)


class TrialTrainer(NamedTuple):
    """A trial's trainer with the tokenizer, policy directory and reward mix it was built from."""

    trainer: GRPOTrainer
    tokenizer: Any
    model_dir: Path
    mix: rewards.RewardMix


def build_trainer(config: RunConfig, out_dir: Path, splits: TaskSplits, plain: bool = False) -> TrialTrainer:
    """The trainer of `config` on `splits.train`: its (warm-started) policy, reward mix and GRPOConfig
    (`grpo_arguments`, checkpoints under `out_dir/trl`), with the configured estimator injected (`plain`: TRL's own
    GRPOTrainer, the benchmark's reference) and without TRL's printed logs."""
    policy, tokenizer, model_dir = load_policy(config.model, config.task)
    mix = reward_mix(config, policy, tokenizer)
    common = {"model": policy, "reward_funcs": mix.components, "args": grpo_arguments(config, out_dir, mix.weights),
              "train_dataset": grpo_dataset(splits.train, config.task.prompt, tokenizer),
              "processing_class": tokenizer}
    trainer = (GRPOTrainer(**common) if plain else
               EstimatorGRPOTrainer(**common, estimator=estimators.get(config.estimator.name,
                                                                       **config.estimator.params)))
    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl and the progress bar, not stdout
    return TrialTrainer(trainer, tokenizer, model_dir, mix)


def run_trial(config: RunConfig, out_dir: Path) -> dict[str, Any]:
    """Train and evaluate one trial into `out_dir`; returns the summary (also written to summary.json).

    A run of the same config interrupted after a `trainer.save_steps` checkpoint resumes from it (see
    harness.trial.checkpoints); `train_seconds` and `wall_seconds` then count this attempt only."""
    started = time.perf_counter()
    splits = load_task(config.task, config.rewards)
    trainer, tokenizer, model_dir, mix = build_trainer(config, out_dir, splits)
    check_sharding(os.environ, trainer.accelerator.distributed_type)
    sharded = is_sharded(trainer.accelerator)
    state = PartialState()  # the trial's processes (set up by the trainer's arguments): the main one writes files
    resume = None  # the latest checkpoint of an interrupted run of this config, or None
    if state.is_main_process:
        resume = prepare_run_dir(config, out_dir)
        write_run_config(config, out_dir)
    resume = broadcast_object_list([resume])[0]  # every process resumes from the main process's choice
    progress = Progress(trainer.args.max_steps, f"{config.estimator.name} seed {config.seed}")
    trainer.add_callback(MetricsWriter(out_dir, progress))
    if config.eval.every_steps:
        trainer.add_callback(HeldOutCurve(out_dir / "eval_curve.jsonl", splits.test[: config.eval.curve_examples],
                                          tokenizer, mix, config, trainer))
    with progress.bar:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    train_seconds = time.perf_counter() - started
    save_checkpoint(trainer, tokenizer, model_dir, out_dir / "checkpoint")
    if sharded:  # every process scores the gathered checkpoint, once the main process has written it
        state.wait_for_everyone()
    policy = load_whole(out_dir / "checkpoint", state.device) if sharded else trainer.model
    evaluation = score_held_out(policy, tokenizer, splits.test, mix, config, out_dir, process_shard())
    if not state.is_main_process:  # the main process writes the summary
        state.wait_for_everyone()
        return json.loads((out_dir / "summary.json").read_text())
    if config.eval.lm_eval:
        from harness.trial.evaluate import evaluate_run

        scored = evaluate_run(out_dir, config.eval.lm_eval_tasks, limit=config.eval.n_examples)["metrics"]
        evaluation |= lm_eval_summary(scored)
    summary = write_summary(out_dir, config, evaluation, mix, model_dir, started,
                            final=final_metrics(out_dir / "metrics.jsonl"), train_seconds=train_seconds,
                            processes=state.num_processes, sharded=sharded,
                            **training_precision(trainer.model, trainer.args.bf16, trainer.args.fp16))
    remove_checkpoints(out_dir)  # only an unfinished trial resumes; the trained policy is in checkpoint/
    state.wait_for_everyone()
    return summary


def score_warm_start(config: RunConfig, out_dir: Path) -> dict[str, Any]:
    """The `warm_start` control: the untrained policy of `config` scored on the same held-out items as its trials
    (eval.json, eval_items.jsonl, summary.json in `out_dir`); returns the summary."""
    started = time.perf_counter()
    write_run_config(config, out_dir)
    policy, tokenizer, model_dir = load_policy(config.model, config.task)
    mix = reward_mix(config, policy, tokenizer)
    evaluation = score_held_out(policy, tokenizer, load_task(config.task).test, mix, config, out_dir)
    return write_summary(out_dir, config, evaluation, mix, model_dir, started, final={}, train_seconds=0.0)


def score_held_out(model: Any, tokenizer: Any, test: list[dict[str, str]], mix: rewards.RewardMix,
                   config: RunConfig, out_dir: Path, shard: Shard = ALONE) -> dict[str, Any]:
    """Scoring of the first `eval.n_examples` test items (harness.trial.scoring.score_items, seeded by the trial
    seed; under `shard` this process decodes its share): eval_items.jsonl (one line per item) and eval.json (the
    mean of every per-item outcome, `metric` = the primary one and `accuracy` = its mean, n, the first completions),
    written by the shard of index 0; returns eval.json's content."""
    items, completions = score_items(model, tokenizer, test[: config.eval.n_examples], mix, config.eval, config.seed,
                                     prompt=config.task.prompt, shard=shard)
    means = mean_outcomes(items)
    evaluation = {"metric": config.eval.metric, "accuracy": means.get(config.eval.metric, 0.0), **means,
                  "n": len(items), "examples": completions[:5]}
    if shard.index == 0:
        (out_dir / "eval_items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
        (out_dir / "eval.json").write_text(json.dumps(evaluation, indent=2))
    return evaluation


def lm_eval_summary(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat eval metrics from lm-eval's `{task: {metric: value}}`: `lm_eval_exact_match` for the run's own test
    split (`lph_test`), `lm_eval_<task>_<metric>` for every other task."""
    return {("lm_eval_" if task == "lph_test" else f"lm_eval_{task}_") + metric: value
            for task, values in metrics.items() for metric, value in values.items()}


def write_summary(out_dir: Path, config: RunConfig, evaluation: dict[str, Any], mix: rewards.RewardMix,
                  model_dir: Path, started: float, *, final: dict[str, float], train_seconds: float,
                  **extra: Any) -> dict[str, Any]:
    """Write summary.json of a trial or control and return it: the config hash, the `final` training metrics, the
    numeric eval metrics, `train_seconds`, `wall_seconds` since `started` (perf_counter), the policy's directory, the
    reward failures counted by `mix`, the machine's provenance (harness.lock.provenance), then `extra`."""
    summary = {
        "config_hash": config.config_hash(), "final": final,
        "eval": {k: v for k, v in evaluation.items() if isinstance(v, (int, float))},
        "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - started, "model_dir": str(model_dir),
        "reward_failures": {fn.name: fn.failures for fn in mix.components}, "provenance": provenance(), **extra,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def save_checkpoint(trainer: Any, tokenizer: Any, model_dir: Path, checkpoint: Path) -> None:
    """Save the trained policy (whole: harness.trial.checkpoints.save_policy) and its tokenizer (with the tiny-model
    marker, so it loads like its source). Every process calls it; the main process writes the files."""
    save_policy(trainer, checkpoint)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(checkpoint)
        if (model_dir / WARM_START_MARKER).is_file():
            shutil.copy(model_dir / WARM_START_MARKER, checkpoint / WARM_START_MARKER)


def final_metrics(metrics_path: Path, last: int = 5) -> dict[str, float]:
    """Means over the last `last` logged steps of every numeric training metric."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    tail = rows[-last:]
    keys = {k for row in tail for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
    return {k: sum(r[k] for r in tail if isinstance(r.get(k), (int, float))) /
            max(1, sum(isinstance(r.get(k), (int, float)) for r in tail)) for k in sorted(keys)}


def main(argv: list[str] | None = None) -> None:
    """CLI: train one trial from a run config YAML."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial.train", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/single/<config hash>)")
    args = parser.parse_args(argv)
    try:
        config = load_run_config(args.config)
        set_threads()  # LPH_THREADS, else OMP_NUM_THREADS (set per process by accelerate launch), else every core
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    out = args.out or Path("runs/single") / config.config_hash()
    summary = run_trial(config, out)
    if PartialState().is_main_process:  # once per trial under `accelerate launch`
        print(json.dumps({"run_dir": str(out), "eval_accuracy": summary["eval"]["accuracy"],
                          "wall_seconds": round(summary["wall_seconds"], 1)}, indent=2))


if __name__ == "__main__":
    main()
