"""Preemption-safe training: `trainer.save_steps` checkpoints, a trial interrupted after one resumes from it (in
the same process, and after its sweep worker was killed) with continuous metrics and without redoing finished steps;
a run without `save_steps` saves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.sweep import run_sweep
from harness.sweep.run import EXIT_FAILED_TRIALS
from harness.sweep.store import ResultStore
from harness.trial.checkpoints import checkpoints, is_complete, prepare_run_dir, truncate_log
from harness.trial.train import grpo_arguments, run_trial
from harness.trial.trl_hooks import EstimatorGRPOTrainer
from tests.conftest import ROOT, smoke_config
from tests.test_sweep import spec_file

MAX_STEPS, SAVE_STEPS = 6, 2
RESUMABLE = {"trainer.max_steps": MAX_STEPS, "trainer.save_steps": SAVE_STEPS, "eval.every_steps": 2}
"""The smoke trial, 6 steps, a checkpoint every 2 and the held-out curve every 2."""


class Interrupted(Exception):
    """Stands for the process being killed: raised instead of generating a batch."""


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def steps(path: Path) -> list[int]:
    return [row["step"] for row in rows(path)]


def count_generations(monkeypatch: pytest.MonkeyPatch, interrupt_at: int | None = None) -> list[int]:
    """Wrap TRL's real `_generate_and_score_completions`: each call appends the trainer's step to the returned list;
    call number `interrupt_at` raises `Interrupted` instead (a kill in the middle of that step)."""
    calls: list[int] = []
    real = EstimatorGRPOTrainer._generate_and_score_completions

    def counted(self: EstimatorGRPOTrainer, inputs: Any) -> Any:
        calls.append(self.state.global_step)
        if len(calls) == interrupt_at:
            raise Interrupted(f"interrupted in step {self.state.global_step + 1}")
        return real(self, inputs)

    monkeypatch.setattr(EstimatorGRPOTrainer, "_generate_and_score_completions", counted)
    return calls


def test_save_steps_turns_checkpoints_on_and_only_then(tmp_path):
    args = grpo_arguments(smoke_config(**RESUMABLE), tmp_path, [1.0])
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", SAVE_STEPS, 2)
    args = grpo_arguments(smoke_config(**RESUMABLE, **{"trainer.save_total_limit": 5}), tmp_path, [1.0])
    assert args.save_total_limit == 5
    assert grpo_arguments(smoke_config(), tmp_path, [1.0]).save_strategy == "no"


def test_an_interrupted_trial_resumes_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Killed (here: an exception) while generating step 6, after the checkpoint of step 4 and with metrics logged
    up to step 5, the trial resumes from checkpoint-4: it generates only steps 5 and 6, logs each step once, and
    its metrics, held-out curve and evaluation are byte-identical to an uninterrupted run's (the checkpoint restores
    the weights, optimizer, scheduler, RNG states and data order, and on CPU every step is deterministic)."""
    config = smoke_config(**RESUMABLE)
    calls = count_generations(monkeypatch)
    run_trial(config, tmp_path / "whole")
    assert calls == list(range(MAX_STEPS))
    assert checkpoints(tmp_path / "whole") == []  # removed once the trial finished

    run = tmp_path / "interrupted"
    calls = count_generations(monkeypatch, interrupt_at=MAX_STEPS)
    with pytest.raises(Interrupted):
        run_trial(config, run)
    assert [c.name for c in checkpoints(run)] == ["checkpoint-2", "checkpoint-4"]  # save_total_limit 2
    assert all(is_complete(c) for c in checkpoints(run))
    assert steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5]
    first_attempt = (run / "timing.jsonl").read_text().splitlines()

    calls = count_generations(monkeypatch)
    summary = run_trial(config, run)
    assert calls == [4, 5]  # steps 5 and 6 only: the four finished steps are not generated again
    assert steps(run / "metrics.jsonl") == list(range(1, MAX_STEPS + 1))
    assert steps(run / "eval_curve.jsonl") == [0, 2, 4, 6]
    assert (run / "timing.jsonl").read_text().splitlines()[:4] == first_attempt[:4]  # kept, not redone
    for file in ("metrics.jsonl", "eval_curve.jsonl", "eval.json", "eval_items.jsonl"):
        assert (run / file).read_bytes() == (tmp_path / "whole" / file).read_bytes(), file
    assert summary["final"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["final"]
    assert all(t["tokens_per_second"] > 0 for t in rows(run / "timing.jsonl"))
    assert checkpoints(run) == []


def test_a_changed_config_starts_again_from_step_0(tmp_path, monkeypatch):
    """Checkpoints left by another config are discarded, not resumed from."""
    count_generations(monkeypatch, interrupt_at=4)
    with pytest.raises(Interrupted):
        run_trial(smoke_config(**RESUMABLE), tmp_path)
    assert [c.name for c in checkpoints(tmp_path)] == ["checkpoint-2"]
    calls = count_generations(monkeypatch)
    run_trial(smoke_config(**RESUMABLE, **{"trainer.learning_rate": 1e-4}), tmp_path)
    assert calls == list(range(MAX_STEPS))
    assert steps(tmp_path / "metrics.jsonl") == list(range(1, MAX_STEPS + 1))


def test_without_save_steps_nothing_is_saved_during_training(tmp_path, monkeypatch):
    count_generations(monkeypatch, interrupt_at=2)
    with pytest.raises(Interrupted):
        run_trial(smoke_config(), tmp_path)
    assert not (tmp_path / "trl").exists() or not any((tmp_path / "trl").iterdir())
    assert prepare_run_dir(smoke_config(), tmp_path) is None
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_drops_rows_past_the_checkpoint_and_a_torn_last_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')
    truncate_log(log, 2)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'


SWEEP_STEPS = 40
SWEEP_TRAINER = {"max_steps": SWEEP_STEPS, "save_steps": SAVE_STEPS, "per_device_train_batch_size": 8,
                 "num_generations": 4, "max_completion_length": 12}
"""The smoke trainer with 40 steps and a checkpoint every 2: the sweep tests interrupt it after its first checkpoint,
so the 38 steps left (0.1 s each on a quiet machine) outlast the signal's way through SLURM and submitit (8 steps
were too few: the trial could finish first)."""


def resumable_spec(tmp_path: Path, **executor: Any) -> tuple[Path, str]:
    """A one-trial smoke sweep (group_mean, seed 0, and its warm-start control) whose trial saves checkpoints;
    returns the spec's path and the trial's id."""
    from harness.sweep.spec import grid_trials, load_spec

    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"]}, seeds=1, report=False,
                     base={"trainer": SWEEP_TRAINER}, executor=executor)
    (trial,) = grid_trials(load_spec(path), path)
    return path, trial.trial_id


def wait_for_checkpoint(run_dir: Path, timeout_s: float) -> None:
    """Block until the trial in `run_dir` has a complete checkpoint (fail after `timeout_s`)."""
    deadline = time.time() + timeout_s
    while not any(is_complete(c) for c in checkpoints(run_dir)):
        assert time.time() < deadline, f"no checkpoint in {run_dir} after {timeout_s} s"
        time.sleep(0.05)


def assert_resumed(root: Path, trial_id: str, launched: bool = False) -> None:
    """The trial of the sweep in `root` ran twice: its first attempt ended after a checkpoint (step k), the second
    trained only steps k+1..40, every step is logged once, and the sweep holds one finished record of it. The
    attempts' pids are the worker's (attempts.log), or with `launched` (training in processes that
    harness.sweep.launch started) the main training process's: the first and last in timing.jsonl."""
    store = ResultStore(root)
    run_dir = store.trial_dir(trial_id)
    assert store.attempts(trial_id) == 2
    assert steps(run_dir / "metrics.jsonl") == list(range(1, SWEEP_STEPS + 1))
    timing = rows(run_dir / "timing.jsonl")
    if launched:
        first, second = timing[0]["pid"], timing[-1]["pid"]
    else:
        first, second = (json.loads(line)["pid"] for line in (run_dir / "attempts.log").read_text().splitlines())
    assert [t["step"] for t in timing] == list(range(1, SWEEP_STEPS + 1))
    resumed_at = sum(t["pid"] == first for t in timing)  # steps the first attempt trained and kept
    assert resumed_at >= SAVE_STEPS and resumed_at % SAVE_STEPS == 0, timing  # a checkpoint's step
    # the second attempt generated and trained only the steps after the checkpoint (one generation batch a step)
    assert [t["pid"] for t in timing] == [first] * resumed_at + [second] * (SWEEP_STEPS - resumed_at)
    assert f"resuming from {run_dir / 'trl' / f'checkpoint-{resumed_at}'}" in (run_dir / "trial.log").read_text()
    assert store.is_done(trial_id) and checkpoints(run_dir) == []
    table = pd.read_parquet(root / "results.parquet")
    assert list(table.loc[table["trial_id"] == trial_id, "status"]) == ["done"]


def test_a_sweep_trial_whose_worker_was_killed_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL to the local worker once the trial has a checkpoint: the sweep records the trial as failed and goes
    on; the same sweep run again resumes that trial from its latest checkpoint."""
    path, trial_id = resumable_spec(tmp_path)
    root = tmp_path / "sweep"
    run_dir = ResultStore(root).trial_dir(trial_id)
    driver = subprocess.Popen([sys.executable, "-m", "harness.sweep", str(path), "--runs-dir", str(root)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_checkpoint(run_dir, timeout_s=300)
        worker = json.loads((run_dir / "attempts.log").read_text().splitlines()[-1])["pid"]
        os.kill(worker, signal.SIGKILL)
        assert driver.wait(timeout=300) == EXIT_FAILED_TRIALS, driver.stderr.read()  # a trial failed in this run
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    killed = ResultStore(root).result(trial_id)
    assert killed["status"] == "failed" and "worker process died" in killed["error"], killed
    assert steps(run_dir / "metrics.jsonl") != list(range(1, SWEEP_STEPS + 1))  # killed before its last step
    run_sweep(path, root=root)
    assert_resumed(root, trial_id)
