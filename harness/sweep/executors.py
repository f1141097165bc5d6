"""Executors: where a sweep's trials run, as a stream that takes new trials while others run.

- `local`: a pool of `workers` worker processes on this machine (each imports the stack once and runs many trials;
  they end with the driver, even when it is killed);
- `submitit-local`: submitit's local executor (one process per trial, like a cluster job), `workers` at once;
- `slurm`: submitit job arrays on a SLURM cluster (one array per `submit` call), resources from the spec, at most
  `array_parallelism` tasks of an array at once, requeued after preemption.

Every executor runs `harness.sweep.payload.execute_trial` and hands back each finished trial's record from `wait`.
A trial of `processes_per_trial` > 1 processes is started from there with `accelerate launch` (harness.sweep.launch);
on SLURM its job has `nodes_per_trial` nodes with one task each.
A trial whose process dies without a record comes back as a failed record made here.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.sweep.launch import launch_settings
from harness.sweep.payload import TrialPayload, die_with_parent, execute_trial
from harness.sweep.spec import ExecutorConfig
from harness.sweep.store import TrialRecord
from harness.threads import local_trial_threads

OnStart = Callable[[TrialPayload], None]
SLURM_MARGIN_MIN = 5
"""Minutes a SLURM job may run past its trial's deadline (start-up, writing the result) before SLURM stops it."""
JOB_POLL_S = 1.0
"""Seconds between two looks at submitit jobs' states."""


class Executor:
    """Streaming executor: `submit` trials at any time, `wait` for finished ones. Submitted trials wait in `queue`
    until `_fill` starts them (`running`: a future or job -> its payload; `capacity` at once); `in_flight` counts
    those submitted and not yet handed back by `wait`. Use as a context manager."""

    def __init__(self, config: ExecutorConfig, capacity: int, threads: int, on_start: OnStart | None = None) -> None:
        self.capacity, self.threads = capacity, threads
        self.launch = launch_settings(config)
        self.on_start = on_start or (lambda payload: None)
        self.queue: deque[TrialPayload] = deque()
        self.running: dict[Any, TrialPayload] = {}

    @property
    def in_flight(self) -> int:
        return len(self.queue) + len(self.running)

    @property
    def free(self) -> int:
        """Trials this executor would start now: its free workers (the cluster's queue takes any number)."""
        return self.capacity - self.in_flight

    def submit(self, payloads: list[TrialPayload]) -> None:
        """Queue `payloads` (each stamped with the threads and launch settings of a trial here) and start what fits."""
        self.queue.extend(replace(p, threads=self.threads, launch=self.launch) for p in payloads)
        self._fill()

    def _fill(self) -> None:
        """Start queued trials while there is room."""
        raise NotImplementedError

    def wait(self, timeout: float) -> list[TrialRecord]:
        """Records of trials finished since the last call; blocks until at least one finishes or `timeout` seconds
        passed (also when nothing is in flight)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop accepting work; the local pool finishes the trials it runs."""

    def interrupt(self) -> None:
        """Stop accepting work and stop the trials running here (the driver was interrupted); cluster jobs go on."""
        self.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        self.interrupt() if kind is KeyboardInterrupt else self.close()


class LocalExecutor(Executor):
    """`config.workers` spawned worker processes (no state leaks from the driver), each trial on
    `harness.threads.local_trial_threads` torch threads; more trials wait in a queue."""

    def __init__(self, config: ExecutorConfig, on_start: OnStart | None = None) -> None:
        super().__init__(config, config.workers, local_trial_threads(config.workers), on_start)
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))

    def _fill(self) -> None:
        while self.queue and len(self.running) < self.capacity:
            payload = self.queue.popleft()
            self.running[self.pool.submit(execute_trial, payload)] = payload
            self.on_start(payload)

    def wait(self, timeout: float) -> list[TrialRecord]:
        if not self.running:
            time.sleep(timeout)
            return []
        done, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        records = []
        for future in sorted(done, key=lambda f: f.exception() is not None):  # results first, then a broken pool
            payload = self.running.pop(future, None)
            if payload is None:  # requeued below after the pool broke
                continue
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                records.append(payload.failed("worker process died (killed or out of memory)"))
                self._restart()
                break
            records.append(payload.failed(f"{type(error).__name__}: {error}") if error else future.result())
        self._fill()
        return records

    def _restart(self) -> None:
        """A dead worker breaks the whole pool: run the trials it held again in a new one."""
        self.queue.extendleft(reversed(list(self.running.values())))
        self.running.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()

    def close(self) -> None:
        """Stop accepting work and wait for the trials running here; idle workers are left to exit on their own
        (a worker's interpreter takes about 2 s to finalise the training stack: that overlaps the report; the
        driver's exit still joins them, concurrent.futures' atexit hook)."""
        self.queue.clear()
        self.pool.shutdown(wait=bool(self.running), cancel_futures=True)

    def interrupt(self) -> None:
        """SIGTERM each worker (its trial records the failure, a launched trial's process group is stopped, and the
        next run starts or resumes the trial), then wait for them to end."""
        for process in list(getattr(self.pool, "_processes", {}).values()):  # the pool keeps its workers there
            if process.is_alive():
                process.terminate()
        self.queue.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


class SubmititExecutor(Executor):
    """submitit jobs: `submitit-local` runs `workers` job processes at once (more wait here); `slurm` submits each
    batch as one job array at once and SLURM keeps `array_parallelism` of its tasks running."""

    def __init__(self, config: ExecutorConfig, folder: Path, on_start: OnStart | None = None) -> None:
        capacity = config.array_parallelism if config.kind == "slurm" else config.workers
        super().__init__(config, capacity, config.cpus_per_trial // config.nodes_per_trial, on_start)  # a node's share
        self.backend = submitit_executor(config, folder)
        self.throttled = config.kind != "slurm"

    @property
    def free(self) -> int:
        return super().free if self.throttled else sys.maxsize

    def _fill(self) -> None:
        room = self.capacity - len(self.running) if self.throttled else len(self.queue)
        batch = [self.queue.popleft() for _ in range(min(room, len(self.queue)))]
        if not batch:
            return
        jobs = self.backend.map_array(RequeueableTrial(), batch)
        for job, payload in zip(jobs, batch):
            self.running[job] = payload
            self.on_start(payload)

    def wait(self, timeout: float) -> list[TrialRecord]:
        deadline = time.monotonic() + timeout
        while True:
            records = [self._record(job) for job in [j for j in self.running if j.done()]]
            if records or time.monotonic() >= deadline:
                self._fill()
                return records
            time.sleep(min(JOB_POLL_S, max(0.0, deadline - time.monotonic())))

    def _record(self, job: Any) -> TrialRecord:
        """The record of a finished job's trial: its first task's result (a multi-node trial's first node records
        it; the other nodes' tasks return None)."""
        payload = self.running.pop(job)
        try:
            return job.task(0).result()
        except Exception as error:  # noqa: BLE001  (a job that died, was cancelled or timed out)
            return payload.failed(f"{type(error).__name__}: {str(error).splitlines()[0][:500]}")


def make_executor(config: ExecutorConfig, folder: Path, on_start: OnStart | None = None) -> Executor:
    """The executor of `config.kind`; submitit keeps its job files and logs in `folder`."""
    if config.kind == "local":
        return LocalExecutor(config, on_start)
    return SubmititExecutor(config, folder, on_start)


def submitit_executor(config: ExecutorConfig, folder: Path) -> Any:
    """A submitit executor for `config.kind` ('submitit-local' or 'slurm') with the spec's resources."""
    import submitit

    if config.kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=max(1, int(config.trial_timeout_min)))
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=config.requeues)
    executor.update_parameters(**slurm_parameters(config))
    return executor


def slurm_parameters(config: ExecutorConfig) -> dict[str, Any]:
    """The submitit `AutoExecutor.update_parameters` of `config`'s SLURM jobs: one task per node, each launching its
    share of the trial's processes, with the node's share of GPUs, CPUs and memory. Every string among them passed
    `ExecutorConfig`'s `SLURM_VALUE` pattern, so each becomes one `#SBATCH` line of the job script."""
    nodes = config.nodes_per_trial
    params: dict[str, Any] = {
        "timeout_min": max(1, int(config.trial_timeout_min)) + SLURM_MARGIN_MIN,  # the trial's deadline fires first
        "nodes": nodes,
        "tasks_per_node": 1,
        "cpus_per_task": config.cpus_per_trial // nodes,
        "mem_gb": config.mem_gb / nodes,
        "slurm_array_parallelism": config.array_parallelism,
        "slurm_additional_parameters": dict(config.sbatch),
    }
    if config.gpus_per_trial:
        params["gpus_per_node"] = config.gpus_per_trial // nodes
    if config.partition:
        params["slurm_partition"] = config.partition
    if config.account:
        params["slurm_account"] = config.account
    return params


class RequeueableTrial:
    """Callable submitted to submitit; on preemption or timeout signal submitit resubmits the same trial. The job's
    log (`<folder>/<job id>_log.out`) starts with the trial and the devices it was given.

    The requeued job (after this checkpoint hook, or after `scontrol requeue`) runs the same payload in the same run
    directory: a trial with `trainer.save_steps` resumes from its latest checkpoint (harness.trial.checkpoints)
    instead of step 0; one without starts again."""

    def __call__(self, payload: TrialPayload) -> TrialRecord | None:
        devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        print(f"trial {payload.trial_id} on {os.uname().nodename} CUDA_VISIBLE_DEVICES={devices}", flush=True)
        return execute_trial(payload)

    def checkpoint(self, payload: TrialPayload) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, payload)
