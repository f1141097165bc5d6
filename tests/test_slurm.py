"""The SLURM path on a real single-node cluster (.ci/slurm-up.sh, SLURM_CONF set): results equal the local run's,
a failing job is recorded, an array's trials run in parallel, each job gets its own (fake) GPU, Optuna keeps
suggestions in flight on the cluster, a two-process trial runs in one job, a preempted job resumes its trial from the
last checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.sweep import run_sweep
from harness.sweep.store import ResultStore
from tests.conftest import ROOT
from tests.test_resume import assert_resumed, resumable_spec, wait_for_checkpoint
from tests.test_sweep import overlapping, spans, spec_file, tune_spec

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs the SLURM tests: .ci/run starts the cluster with .ci/slurm-up.sh")
        pytest.skip("no test SLURM cluster: eval \"$(.ci/slurm-up.sh)\" starts one")


def test_smoke_sweep_on_slurm_equals_the_local_run_and_runs_the_array_in_parallel(tmp_path):
    path = spec_file(tmp_path, executor={"cpus_per_trial": 1, "mem_gb": 1, "trial_timeout_min": 10})
    local = pd.read_parquet(run_sweep(path, root=tmp_path / "local") / "results.parquet")
    root = run_sweep(path, executor="slurm", root=tmp_path / "slurm")
    remote = pd.read_parquet(root / "results.parquet")
    columns = ["trial_id", "status", "seed", "eval.accuracy", "train.reward", "train.loss"]
    pd.testing.assert_frame_equal(local[columns].sort_values("trial_id").reset_index(drop=True),
                                  remote[columns].sort_values("trial_id").reset_index(drop=True))
    assert list((root / "submitit").glob("*_log.out")), "submitit wrote no job logs"
    assert overlapping(spans(root)), f"no overlap in {spans(root)}"


def test_a_failing_slurm_job_is_recorded(tmp_path):
    # bitsandbytes is not installed: the trial fails when it builds its optimizer (a batch mistake is refused at load)
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"], "trainer.optim": ["adamw_torch",
                                                                                          "adamw_bnb_8bit"]},
                     seeds=1, executor={"cpus_per_trial": 1, "mem_gb": 1})
    table = pd.read_parquet(run_sweep(path, executor="slurm", root=tmp_path / "fail") / "results.parquet")
    table = table.set_index("param.trainer.optim")
    assert table.loc["adamw_torch", "status"] == "done"
    assert table.loc["adamw_bnb_8bit", "status"] == "failed" and "bitsandbytes" in table.loc["adamw_bnb_8bit", "error"]


def job_devices(root: Path) -> dict[str, str]:
    """Trial id -> CUDA_VISIBLE_DEVICES its SLURM job saw (from the first line each job writes to its log)."""
    found = {}
    for log in (root / "submitit").glob("*_log.out"):
        match = re.search(r"^trial (\S+) on \S+ CUDA_VISIBLE_DEVICES=(\S*)$", log.read_text(), re.MULTILINE)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_each_job_gets_its_own_gpu_and_two_run_at_once(tmp_path):
    # one trial and its warm-start control: two jobs for the node's two GPUs
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"]}, seeds=1, report=False,
                     executor={"gpus_per_trial": 1, "cpus_per_trial": 1, "mem_gb": 1, "array_parallelism": 2})
    root = run_sweep(path, executor="slurm", root=tmp_path / "gpus")
    records = [json.loads(p.read_text()) for p in (root / "trials").glob("*/result.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"done"}
    devices = job_devices(root)
    assert set(devices) == {r["trial_id"] for r in records}
    assert all(re.fullmatch(r"\d+", d) for d in devices.values()), devices  # exactly one device each
    assert len(set(devices.values())) == 2, devices
    assert overlapping(spans(root)), f"the two GPU jobs did not overlap: {spans(root)}"


def test_optuna_keeps_two_suggestions_in_flight_on_slurm(tmp_path):
    path = tune_spec(tmp_path, n_trials=2, seeds=1, workers=1)
    root = run_sweep(path, executor="slurm", root=tmp_path / "tune")
    assert len(spans(root)) == 2 and overlapping(spans(root)), spans(root)


def test_a_preempted_job_is_requeued_and_resumes_its_trial_from_the_last_checkpoint(tmp_path):
    """Once the trial has a checkpoint its job gets SIGUSR2, as SLURM signals a job before preempting it or at its
    time limit (submitit's `--signal=USR2@90`): submitit's checkpoint hook (RequeueableTrial.checkpoint) runs
    `scontrol requeue <job id>` and the job exits; SLURM runs it again and the trial continues from its latest
    checkpoint (continuous metrics, finished steps not trained again, one result). A plain `scontrol requeue` from
    outside is not used here: SLURM then sends SIGTERM, which submitit ignores, and kills the job KillWait (5 s)
    later, by when this tiny trial (0.1-2 s a step) may have finished; such a job's rerun returns the recorded
    result without training (execute_trial)."""
    path, trial_id = resumable_spec(tmp_path, cpus_per_trial=1, mem_gb=1, trial_timeout_min=10)
    root = tmp_path / "requeue"
    job, _ = preempt_once_checkpointed(path, trial_id, root)
    # submitit's log lines of the signal went to the trial's log (its stdout and stderr while it runs)
    assert f"Requeued job {job}" in (ResultStore(root).trial_dir(trial_id) / "trial.log").read_text()
    assert_resumed(root, trial_id)


def preempt_once_checkpointed(path: Path, trial_id: str, root: Path) -> tuple[str, str]:
    """Run the sweep `path` on SLURM into `root`; once trial `trial_id` has a checkpoint, send its job SIGUSR2
    (submitit's hook requeues it), let the requeued job start at once and wait for the driver to finish. Returns the
    job id and the driver's stderr; the driver must exit 0."""
    driver = subprocess.Popen([sys.executable, "-m", "harness.sweep", str(path), "--executor", "slurm",
                               "--runs-dir", str(root)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        wait_for_checkpoint(ResultStore(root).trial_dir(trial_id), timeout_s=300)
        job = job_ids(root)[trial_id]
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        deadline = time.time() + 60
        while job_state(job) != "PENDING":  # requeued
            assert time.time() < deadline, f"job {job} was not requeued: {job_state(job)}"
            time.sleep(0.2)
        # SLURM holds a requeued job back for two minutes; let it start now
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        log = driver.communicate(timeout=600)[1]
        assert driver.returncode == 0, log
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    return job, log


def job_state(job: str) -> str:
    """The SLURM state of `job` (empty once it left the queue)."""
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def job_ids(root: Path) -> dict[str, str]:
    """Trial id -> its SLURM job id (`<array job>_<task>` for an array task), from the job logs
    (`<job id>_<rank>_log.out`) and their first lines."""
    found = {}
    for log in (root / "submitit").glob("*_log.out"):
        match = re.search(r"^trial (\S+) on ", log.read_text(), re.MULTILINE)
        if match:
            found[match.group(1)] = re.fullmatch(r"(.+)_\d+_log\.out", log.name).group(1)
    return found


def test_a_two_process_trial_runs_in_one_job_and_writes_its_run_dir_once(tmp_path):
    """executor.processes_per_trial 2: the trial's one job launches both training processes (accelerate, gloo on the
    node's CPUs) and its run directory is written once."""
    from harness.sweep.run import sweep_trials
    from harness.sweep.spec import load_spec
    from tests.test_distributed import assert_written_once, two_process_config

    config = two_process_config()
    path = spec_file(tmp_path, grid={"estimator.name": [config.estimator.name]}, seeds=1, report=False,
                     base={"trainer": config.trainer, "eval": config.eval.model_dump()},
                     executor={"processes_per_trial": 2, "cpus_per_trial": 2, "mem_gb": 2, "trial_timeout_min": 10})
    root = run_sweep(path, executor="slurm", root=tmp_path / "two")
    (trial,) = [t for t in sweep_trials(load_spec(path), str(path)) if t.control is None]
    assert json.loads((root / "trials" / trial.trial_id / "result.json").read_text())["status"] == "done"
    logs = [log for log in (root / "submitit").glob("*_log.out") if f"trial {trial.trial_id} on " in log.read_text()]
    assert len(logs) == 1, logs  # one job (one task) for the trial
    assert_written_once(root / "trials" / trial.trial_id, trial.config, 2)
    assert ResultStore(root).attempts(trial.trial_id) == 1
