"""Torch's intra-op thread count, chosen on purpose in every process the harness starts.

A process started on its own (`lph bench`, `lph train`, the sweep driver) uses `LPH_THREADS` if set, else
`OMP_NUM_THREADS` (what `accelerate launch` of a multi-process trial sets per process: harness.sweep.launch), else
every core `os.cpu_count()` reports. A sweep's workers take their executor's share instead (cores / workers locally,
the node's `cpus_per_trial` on a cluster: harness.sweep.executors). On a machine shared with other jobs set
`LPH_THREADS=1` (or cores / jobs): torch's threads wait for each other at every OpenMP barrier, and one busy core
slows them all (`attenuated_pairwise` at 1024x16: 83 ms per call on 2 threads beside another job, 1 ms on one).
Trials record the count they ran with in summary.json's `provenance.threads` (harness.lock.provenance), the
benchmarks in each result's `environment.threads`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.config import ConfigError

THREADS_ENV = "LPH_THREADS"
"""Environment variable naming the torch thread count of a process the harness starts on its own."""


def env_threads(name: str, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count environment variable `name` sets (None: unset or empty); a value that is not a positive
    integer raises `ConfigError` naming the variable."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}={value!r}: expected a positive integer (torch's thread count)")
    return int(value)


def chosen_threads(environ: Mapping[str, str] | None = None) -> int:
    """The thread count of a process started on its own: `LPH_THREADS`, else `OMP_NUM_THREADS`, else
    `os.cpu_count()`."""
    return env_threads(THREADS_ENV, environ) or env_threads("OMP_NUM_THREADS", environ) or os.cpu_count() or 1


def local_trial_threads(workers: int, environ: Mapping[str, str] | None = None) -> int:
    """The threads of each trial of `workers` local workers: `LPH_THREADS`, else an equal share of the cores
    (`os.cpu_count() // workers`, at least 1)."""
    return env_threads(THREADS_ENV, environ) or max(1, (os.cpu_count() or 1) // workers)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (None: `chosen_threads()`) and return the count."""
    import torch

    count = chosen_threads() if threads is None else threads
    torch.set_num_threads(count)
    return count
