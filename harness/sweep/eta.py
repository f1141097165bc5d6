"""Expected wall time of a sweep (for `--dry-run`) from this machine's benchmark figures: `runs/bench/train.json`
(seconds per training step, warm start), `eval.json` (held-out scoring rate) and `sweep.json` (overhead per trial,
local parallel efficiency), as written by `python -m harness.bench train eval sweep`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ModelConfig, RunConfig
from harness.sweep.spec import ExecutorConfig

BENCH_DIR = Path("runs/bench")
BENCH_TRAINER = {"per_device_train_batch_size": 32}
"""The trainer block `python -m harness.bench train` measures (on the CPU defaults of harness.trial.train)."""


@dataclass(frozen=True)
class Figures:
    """The benchmark figures an estimate uses; `eval` and `sweep` are empty when not measured."""

    train: dict[str, Any]
    eval: dict[str, Any]
    sweep: dict[str, Any]

    @classmethod
    def read(cls, bench_dir: Path) -> Figures | None:
        """The figures in `bench_dir`, None without train.json."""
        found = {}
        for name in ("train", "eval", "sweep"):
            path = bench_dir / f"{name}.json"
            found[name] = json.loads(path.read_text()) if path.is_file() else {}
        return cls(**found) if found["train"] else None

    def row(self, name: str, **match: Any) -> dict[str, Any]:
        """The row of benchmark `name` with the `match` values (empty if absent)."""
        rows = getattr(self, name).get("rows", [])
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), {})


def trial_seconds(config: RunConfig, figures: Figures) -> float:
    """Expected seconds of one trial of the tiny model: steps x seconds per step (scaled by completion tokens per
    step), held-out scoring (every completion it generates, curve included, at the greedy scorer's benchmarked
    rate), and the sweep's overhead per trial."""
    import estimators
    from harness.trial.train import CPU_DEFAULTS

    needs_logprobs = estimators.get(config.estimator.name, **config.estimator.params).needs_logprobs
    trainer = figures.row("train", trainer="harness attenuated_pairwise" if needs_logprobs else "harness group_mean")
    ours, bench = CPU_DEFAULTS | config.trainer, CPU_DEFAULTS | BENCH_TRAINER
    scale = (ours["per_device_train_batch_size"] * ours["max_completion_length"]
             / (bench["per_device_train_batch_size"] * bench["max_completion_length"]))
    seconds = ours["max_steps"] * trainer["seconds_per_step"] * scale
    greedy = figures.row("eval", scorer="harness greedy scoring").get("examples_per_second")
    lm_eval = figures.row("eval", scorer="lm-eval lph_test (HF)").get("examples_per_second")
    scored = config.eval.n_examples * config.eval.completions_per_item
    if config.eval.every_steps:  # the held-out curve: the primary metric's completions at step 0 and every N steps
        points = 1 + ours["max_steps"] // config.eval.every_steps
        scored += points * config.eval.curve_examples * max(config.eval.samples, 1)
    seconds += scored / greedy if greedy else 0.0
    seconds += config.eval.n_examples / lm_eval if lm_eval and config.eval.lm_eval else 0.0
    return seconds + figures.row("sweep", executor="local", parallel=1).get("overhead_per_trial_s", 0.0)


def parallelism(executor: ExecutorConfig, n_trials: int, figures: Figures) -> float:
    """Trials running side by side, times the local efficiency measured with 2 workers (trials per hour with 2
    workers over twice that with 1: workers share the cores)."""
    if executor.kind == "slurm":
        return float(min(executor.array_parallelism, n_trials))
    one, two = (figures.row("sweep", executor="local", parallel=n).get("trials_per_hour") for n in (1, 2))
    efficiency = min(1.0, two / (2 * one)) if one and two and executor.workers > 1 else 1.0
    return min(executor.workers, n_trials) * efficiency


def warm_start_seconds(configs: list[RunConfig], figures: Figures) -> float:
    """Training time of the distinct tiny-model warm starts not cached yet (scaled by warm-start steps)."""
    from harness.trial.model import warm_start_dir, warm_start_ready

    per_step = figures.train.get("warm_start_seconds", 0.0) / ModelConfig().warm_start_steps
    steps = {warm_start_dir(c.model, c.task): c.model.warm_start_steps for c in configs
             if c.model.path is None and not warm_start_ready(c.model, c.task)}
    return sum(n * per_step for n in steps.values())


def estimate(configs: list[RunConfig], executor: ExecutorConfig, bench_dir: Path = BENCH_DIR) -> str:
    """One line: the expected wall time of running `configs` on `executor`, or why there is none."""
    figures = Figures.read(bench_dir)
    if figures is None:
        return (f"expected wall time: unknown, no benchmark figures in {bench_dir} "
                "(python -m harness.bench train eval sweep measures them)")
    if any(c.model.path is not None for c in configs):
        return "expected wall time: unknown, the benchmark figures are for the tiny model, not model.path"
    per_trial = [trial_seconds(c, figures) for c in configs]
    parallel = parallelism(executor, len(configs), figures)
    warm = warm_start_seconds(configs, figures)
    total = warm + sum(per_trial) / parallel
    where = "this machine's CPU figures; cluster nodes differ" if executor.kind == "slurm" else "this machine"
    return (f"expected wall time: {format_seconds(total)} ({len(configs)} trials of about "
            f"{format_seconds(sum(per_trial) / len(per_trial))}, {parallel:.1f} at a time"
            + (f", warm starts {format_seconds(warm)}" if warm else "") + f"; from {bench_dir}, {where})")


def format_seconds(seconds: float) -> str:
    """`42 s`, `7.5 min` or `3.2 h`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
