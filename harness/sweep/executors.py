"""Executors: where a sweep's trials run.

- `local`: a pool of worker processes on this machine (each imports the stack once and runs many trials);
- `submitit-local`: submitit's local executor (one process per trial, like a cluster job);
- `slurm`: submitit job arrays on a SLURM cluster, resources from the spec, requeued after preemption.

Every executor calls `harness.sweep.payload.execute_trial` and reports each finished trial's record to `on_result`.
A trial whose process dies without a record is reported as failed here.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from harness.sweep.spec import ExecutorConfig
from harness.sweep.payload import execute_trial

Payload = dict[str, Any]
SLURM_MARGIN_MIN = 5
"""Minutes a SLURM job may run past its trial's deadline (start-up, writing the result) before SLURM stops it."""
OnResult = Callable[[dict[str, Any]], None]


def lost_record(payload: Payload, error: str) -> dict[str, Any]:
    """The failed record of a trial whose process ended without writing one."""
    return {"trial_id": payload["trial_id"], "params": payload["params"], "seed": payload["seed"],
            "status": "failed", "error": error, "run_dir": payload.get("run_dir")}


def run_local(payloads: list[Payload], config: ExecutorConfig, on_result: OnResult,
              on_start: Callable[[Payload], None] | None = None) -> None:
    """Run trials in `config.workers` worker processes (spawned: no state leaks from the driver)."""
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    pending = [p | {"threads": threads} for p in payloads]
    context = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(max_workers=config.workers, mp_context=context) as pool:
            futures: dict[Future[dict[str, Any]], Payload] = {}
            while pending or futures:
                while pending and len(futures) < config.workers:
                    payload = pending.pop(0)
                    futures[pool.submit(execute_trial, payload)] = payload
                    if on_start:
                        on_start(payload)
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    payload = futures.pop(future)
                    try:
                        on_result(future.result())
                    except BrokenProcessPool:
                        on_result(lost_record(payload, "worker process died (killed or out of memory)"))
                        pending.extend(futures.values())  # the pool is gone: run the others in a new one
                        futures.clear()
                        break


def submitit_executor(config: ExecutorConfig, folder: Path) -> Any:
    """A submitit executor for `config.kind` ('submitit-local' or 'slurm') with the spec's resources."""
    import submitit

    timeout_min = max(1, int(config.trial_timeout_min))
    if config.kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=timeout_min)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=config.requeues)
    params: dict[str, Any] = {
        "timeout_min": timeout_min + SLURM_MARGIN_MIN,  # the trial's own deadline fires first and records it
        "cpus_per_task": config.cpus_per_trial,
        "mem_gb": config.mem_gb,
        "slurm_array_parallelism": config.array_parallelism,
        "slurm_additional_parameters": dict(config.sbatch),
    }
    if config.gpus_per_trial:
        params["gpus_per_node"] = config.gpus_per_trial
    if config.partition:
        params["slurm_partition"] = config.partition
    if config.account:
        params["slurm_account"] = config.account
    executor.update_parameters(**params)
    return executor


def run_submitit(payloads: list[Payload], config: ExecutorConfig, folder: Path, on_result: OnResult,
                 on_start: Callable[[Payload], None] | None = None) -> None:
    """Submit the trials as one submitit job array and report each job's record as it finishes."""
    executor = submitit_executor(config, folder)
    payloads = [p | {"threads": config.cpus_per_trial} for p in payloads]
    jobs = executor.map_array(RequeueableTrial(), payloads)
    for payload in payloads:
        if on_start:
            on_start(payload)
    remaining = dict(zip(jobs, payloads))
    while remaining:
        for job in [j for j in remaining if j.done()]:
            payload = remaining.pop(job)
            try:
                on_result(job.result())
            except Exception as error:  # noqa: BLE001  (a job that died, was cancelled or timed out)
                on_result(lost_record(payload, f"{type(error).__name__}: {str(error).splitlines()[0][:500]}"))
        if remaining:
            time.sleep(1.0)


class RequeueableTrial:
    """Callable submitted to submitit; on preemption or timeout signal submitit resubmits the same trial."""

    def __call__(self, payload: Payload) -> dict[str, Any]:
        return execute_trial(payload)

    def checkpoint(self, payload: Payload) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, payload)
