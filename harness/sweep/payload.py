"""Running one trial of a sweep wherever an executor puts it (worker process, submitit job, SLURM array task).

`execute_trial` never raises for a failing trial: it records the traceback in the trial's result and returns it, so
the sweep goes on. Only a crash of the process itself (killed, out of memory) leaves no result; the driver records
those from the executor's side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.lock import lock_hash
from harness.sweep.launch import launch_trial, machine_rank
from harness.sweep.store import ResultStore


class TrialTimeout(Exception):
    """The trial ran past the sweep's `trial_timeout_min`."""


def execute_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the trial described by `payload` (trial_id, params, seed, config, sweep_root, timeout_s, threads, launch)
    and write its result record (status `done` with metrics, or `failed` with the traceback). A trial interrupted
    earlier in the same run directory resumes from its last `trainer.save_steps` checkpoint (run_trial)."""
    store = ResultStore(Path(payload["sweep_root"]))
    trial_id = payload["trial_id"]
    run_dir = store.trial_dir(trial_id)
    launch = payload.get("launch")  # several training processes: accelerate launch (harness.sweep.launch)
    if launch and machine_rank(launch) > 0:  # a further node of a multi-node trial: the first node records it
        launch_trial(RunConfig.model_validate(payload["config"]), run_dir, launch, payload.get("threads"))
        return {}
    if (finished := store.result(trial_id)) is not None and finished.get("status") == "done":
        return finished  # a job requeued after its trial finished (a race with a requeue): recorded once, not rerun
    record: dict[str, Any] = {"trial_id": trial_id, "params": payload["params"], "seed": payload["seed"],
                              "run_dir": str(run_dir), "host": os.uname().nodename, "lock": lock_hash()}
    store.record_attempt(trial_id)
    record["started_at"] = time.time()
    started = time.perf_counter()
    try:
        _limit_threads(payload.get("threads"))
        log = None if payload.get("verbose") else run_dir / "trial.log"
        with _output_to(log):
            # imported before the deadline starts: an alarm inside an import leaves half-initialised modules behind
            from harness.trial.train import run_trial, score_warm_start
        with _deadline(payload.get("timeout_s")), _output_to(log):
            config = RunConfig.model_validate(payload["config"])
            record["task"] = config.task.name
            if launch and payload.get("control") is None:
                summary = launch_trial(config, run_dir, launch, payload.get("threads"))
            else:
                run = score_warm_start if payload.get("control") == "warm_start" else run_trial
                summary = run(config, run_dir)
        record |= {"status": "done", "final": summary["final"], "eval": summary["eval"],
                   "train_seconds": summary["train_seconds"], "reward_failures": summary["reward_failures"]}
    except BaseException as error:  # noqa: BLE001  (interrupts too: record them, then re-raise below)
        record |= {"status": "failed", "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()}
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            # Ctrl-C, or submitit's exit after requeueing a preempted SLURM job: the process ends without a
            # result to hand back (the requeued job resumes the trial from its last checkpoint and records it)
            raise
    finally:
        record["wall_seconds"] = time.perf_counter() - started
        record["finished_at"] = time.time()
        if record.get("status"):
            store.write_result(trial_id, record)
    return record


@contextlib.contextmanager
def _output_to(log: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so libraries' progress bars and warnings
    too) to `log` while the trial runs; `None` leaves them on the terminal (`--verbose`)."""
    if log is None:
        yield
        return
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _limit_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


class _deadline:
    """Raise `TrialTimeout` in the main thread after `seconds` (SIGALRM; no limit off the main thread or if None)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.active = bool(seconds) and hasattr(signal, "setitimer")

    def __enter__(self) -> None:
        if self.active:
            try:
                self.previous = signal.signal(signal.SIGALRM, self._expire)
            except ValueError:  # not the main thread
                self.active = False
                return
            signal.setitimer(signal.ITIMER_REAL, float(self.seconds or 0))

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    def _expire(self, signum: int, frame: Any) -> None:
        raise TrialTimeout(f"trial exceeded its time limit of {self.seconds:.0f} s")
