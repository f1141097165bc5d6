"""Running one trial of a sweep wherever an executor puts it (worker process, submitit job, SLURM array task).

`execute_trial` never raises for a failing trial: it records the traceback in the trial's result and returns it, so
the sweep goes on. Only a crash of the process itself (killed, out of memory) leaves no result; the driver records
those from the executor's side.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.lock import lock_hash
from harness.sweep.launch import Launch, launch_trial, machine_rank, stop_running
from harness.sweep.store import ResultStore, TrialRecord
from harness.trial.handoff import Control, runner

SUMMARY_KEYS = ("final", "eval", "train_seconds", "reward_failures")
"""The entries of a trial's summary its record keeps."""
PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal this process gets when the thread that started it ends."""


class TrialTimeout(Exception):
    """The trial ran past the sweep's `trial_timeout_min`."""


def die_with_parent(parent: int) -> None:
    """Initializer of a local worker process: SIGTERM it when its driver `parent` dies, even by kill -9 (Linux's
    PR_SET_PDEATHSIG), and turn SIGTERM into `SystemExit`, so a running trial stops like an interrupt (its result
    records the failure and an `accelerate launch` of it stops its process group); exit at once when the driver is
    already gone. A new driver then finds the claim's process dead and runs the trial again from the start. A daemon
    thread watches the parent too and ends the process once it is gone: the death signal alone left orphans behind
    (library code of a trial may replace the SIGTERM handler, and the signal follows the driver's thread that started
    the worker, not the driver)."""
    stop_on_sigterm()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise SystemExit(f"driver {parent} is gone")
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="watch-driver", daemon=True).start()


def _exit_when_orphaned(parent: int, every_s: float = 0.5) -> None:
    """End this process (status 1, no other cleanup) once its parent is no longer `parent`, after stopping the
    processes of the multi-process trial it launched (harness.sweep.launch.stop_running): they run in a session of
    their own, so nothing else would stop them, and a new driver would rerun the trial in the same run directory
    under their writes."""
    while os.getppid() == parent:
        time.sleep(every_s)
    stop_running()
    os._exit(1)


class StopSignal(SystemExit):
    """The `SystemExit` a stop signal (SIGTERM) raises in a worker: the trial records its failure and stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signal.Signals(signum).name} (the driver is gone)")
        self.signum = signum


def stop_on_sigterm() -> None:
    """Turn SIGTERM into `StopSignal` in this process. Python runs a signal handler wherever the interpreter is, and
    an exception raised where it cannot propagate (a `__del__`, a weakref or garbage-collector callback) goes to
    `sys.unraisablehook`, is printed as "Exception ignored" and dropped, and the trial would go on: the hook installed
    here sends the signal again a moment later instead, once that context has ended (other unraisable exceptions go
    to the previous hook)."""
    previous = sys.unraisablehook

    def resend_dropped_stop(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, StopSignal):
            threading.Timer(0.05, os.kill, (os.getpid(), unraisable.exc_value.signum)).start()
        else:
            previous(unraisable)

    sys.unraisablehook = resend_dropped_stop
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: Any) -> None:
    """The SIGTERM handler of a worker: raise `StopSignal`."""
    raise StopSignal(signum)


@dataclass(frozen=True)
class TrialPayload:
    """What a sweep hands to wherever one of its trials runs: the trial (id, swept `params`, `seed`, resolved
    `config`, `control` or None), its sweep directory, its deadline, whether its library logs stay on the terminal,
    and what the executor adds (torch `threads`, the `launch` settings of a multi-process trial)."""

    trial_id: str
    params: dict[str, Any]
    seed: int
    config: RunConfig
    sweep_root: str
    timeout_s: float | None = None
    control: Control | None = None
    verbose: bool = False
    threads: int | None = None
    launch: Launch | None = None

    @property
    def run_dir(self) -> Path:
        return ResultStore(Path(self.sweep_root)).trial_dir(self.trial_id)

    def failed(self, error: str) -> TrialRecord:
        """The failed record of this trial when its process ended without writing one."""
        return TrialRecord(self.trial_id, self.params, self.seed, "failed", run_dir=str(self.run_dir), error=error,
                           finished_at=time.time())


def execute_trial(payload: TrialPayload) -> TrialRecord | None:
    """Run the trial of `payload` through harness.trial.handoff and write its result record (status `done` with
    metrics, or `failed` with the traceback); None on a further node of a multi-node trial (the first one records
    it; a further node only launches its share of a training trial's processes, a control runs on the first node
    alone). A trial interrupted earlier in the same run directory resumes from its last `trainer.save_steps`
    checkpoint (run_trial)."""
    store = ResultStore(Path(payload.sweep_root))
    run_dir, launch = payload.run_dir, payload.launch  # launch: several training processes (harness.sweep.launch)
    first_node = launch is None or machine_rank(launch) == 0
    if (finished := store.record(payload.trial_id)) is not None and finished.done:
        # a job requeued after its trial finished (a race with a requeue): recorded once, not rerun
        return finished if first_node else None
    if not first_node:
        if payload.control is None:
            launch_trial(payload.config, run_dir, launch, payload.threads)
        return None
    store.record_attempt(payload.trial_id)
    started_at, started = time.time(), time.perf_counter()
    try:
        _limit_threads(payload.threads)
        log = None if payload.verbose else run_dir / "trial.log"
        with _output_to(log):
            run = runner(payload.control)  # imports the training stack before the deadline starts
        with _deadline(payload.timeout_s), _output_to(log):
            if launch and payload.control is None:
                summary = launch_trial(payload.config, run_dir, launch, payload.threads)
            else:
                summary = run(payload.config, run_dir)
        outcome = {"status": "done", **{key: summary[key] for key in SUMMARY_KEYS}}
    except BaseException as error:  # noqa: BLE001  (interrupts too: record them, then re-raise below)
        outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()}
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            # Ctrl-C, submitit's exit after requeueing a preempted SLURM job, or the driver gone: the process ends
            # without a result to hand back (a requeued job resumes the trial from its last checkpoint)
            raise
    finally:
        record = TrialRecord(payload.trial_id, payload.params, payload.seed, run_dir=str(run_dir),
                             task=payload.config.task.name, host=os.uname().nodename, lock=lock_hash(),
                             started_at=started_at, finished_at=time.time(),
                             wall_seconds=time.perf_counter() - started, **outcome)
        store.write_result(record)
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
    """Raise `TrialTimeout` in the main thread after `seconds` (SIGALRM; no limit off the main thread or if None).

    Library code that catches `Exception` can swallow the alarm's exception (a 6 ms limit once let a trial finish
    "done"), so the alarm repeats every `REPEAT_S` until the block ends, and a block that ends without an error
    after its deadline raises `TrialTimeout` on exit."""

    REPEAT_S = 1.0

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
            self.ends = time.monotonic() + float(self.seconds or 0)
            signal.setitimer(signal.ITIMER_REAL, float(self.seconds or 0), self.REPEAT_S)

    def __exit__(self, error_type: type[BaseException] | None, *exc: Any) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            if error_type is None and time.monotonic() >= self.ends:
                self._expire(signal.SIGALRM, None)

    def _expire(self, signum: int, frame: Any) -> None:
        raise TrialTimeout(f"trial exceeded its time limit of {self.seconds:.3g} s")
