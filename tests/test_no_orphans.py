"""Issue #30 item 5: a driver killed with kill -9 while its worker runs a 2-process trial leaves no process of the
trial behind. The launch runs in a session of its own and torch's elastic agent starts each training process in yet
another, so only the worker can stop them (harness.sweep.launch.stop, called by the worker's orphan watcher). On
44f4033 the watcher's `os._exit(1)` left `accelerate launch` and both training processes running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from harness.sweep import prepare_warm_starts
from harness.sweep.launch import STOP_GRACE_S
from harness.sweep.spec import grid_trials, load_spec
from tests.conftest import ROOT
from tests.test_distributed import two_process_config
from tests.test_sweep import spec_file


def trial_processes(root: str) -> list[psutil.Process]:
    """The processes training a trial into the sweep directory `root` (`harness.trial.train ... --out root/...`)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "harness.trial.train" in cmdline and any(part.startswith(root) for part in cmdline):
            found.append(process)
    return found


@pytest.mark.slow
def test_a_killed_driver_leaves_no_process_of_its_two_process_trial(tmp_path):
    config = two_process_config(**{"trainer.max_steps": 200})  # long enough to be killed mid-training
    path = spec_file(tmp_path, grid={"estimator.name": ["attenuated_pairwise"]}, seeds=1, report=False,
                     base={"trainer": config.trainer, "eval": config.eval.model_dump()},
                     executor={"processes_per_trial": 2})
    prepare_warm_starts(grid_trials(load_spec(path), path))  # the warm start before the driver, not in the wait
    root = str(tmp_path / "sweep")
    driver = subprocess.Popen([sys.executable, "-m", "harness.sweep", str(path), "--runs-dir", root], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(trial_processes(root)) < 3:  # accelerate's launcher and the two training processes
        assert driver.poll() is None and time.monotonic() < deadline, "the trial's processes never all started"
        time.sleep(0.5)
    launched = trial_processes(root)
    assert len({os.getsid(p.pid) for p in launched}) >= 2  # not one session: a killpg alone cannot reach them all
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    _, alive = psutil.wait_procs(launched, timeout=2 * STOP_GRACE_S + 30)
    assert not alive and not trial_processes(root), [p.cmdline() for p in alive]


LAUNCHER = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                           "time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(f"{os.getpid()} {worker.pid}")
time.sleep(600)
"""
"""A stand-in for `accelerate launch` that ignores SIGTERM, with a training process in a session of its own that
ignores it too (a process stuck in a collective, or a library's handler): only SIGKILL ends them."""

ORPHANED_WORKER = """
import sys, threading, time
from pathlib import Path
from harness.config import RunConfig
from harness.sweep import launch, payload
pids = Path(sys.argv[1])
launch.STOP_GRACE_S = 2.0
launch.accelerate_command = lambda *args: [sys.executable, "-c", sys.argv[2], str(pids)]
threading.Thread(target=launch.launch_trial, args=(RunConfig(), Path(sys.argv[3]), {"processes": 2, "nodes": 1,
                 "accelerate_config": None}, 1), daemon=True).start()
while not pids.exists() or not pids.read_text():
    time.sleep(0.1)
payload._exit_when_orphaned(parent=-1)  # the driver is gone: the watcher's last act
"""
"""A worker whose orphan watcher fires while its (real) `launch_trial` runs the stand-in launcher."""


def test_the_orphan_watcher_kills_a_launch_that_ignores_sigterm(tmp_path):
    pids = tmp_path / "pids"
    subprocess.run([sys.executable, "-c", ORPHANED_WORKER, str(pids), LAUNCHER, str(tmp_path / "run")], cwd=ROOT,
                   timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # orphans keep pipes open
    launched = [psutil.Process(int(pid)) for pid in pids.read_text().split() if psutil.pid_exists(int(pid))]
    try:
        _, alive = psutil.wait_procs(launched, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for process in launched:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
