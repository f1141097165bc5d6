"""Two-node trials on a real two-node cluster on this machine (.ci/slurm2-up.sh, LPH_SLURM2_CONF set): each slurmd
runs in its own network and UTS namespace, so the trial's two processes, one per node, reach each other only over
the cluster's bridge. A trial with `nodes_per_trial: 2` meets at its first node's address over gloo, trains and
writes its run directory once; a preempted two-node trial is requeued and resumes from its last checkpoint."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.sweep import run_sweep
from harness.sweep.launch import node_address
from harness.sweep.run import sweep_trials
from harness.sweep.spec import load_spec
from harness.sweep.store import ResultStore
from tests.test_distributed import assert_written_once, two_process_config
from tests.test_resume import assert_resumed, resumable_spec
from tests.test_slurm import job_ids, preempt_once_checkpointed
from tests.test_sweep import spec_file

pytestmark = pytest.mark.slurm

TWO_NODES = {"kind": "slurm", "nodes_per_trial": 2, "processes_per_trial": 2, "cpus_per_trial": 2, "mem_gb": 2,
             "trial_timeout_min": 10}
"""A trial of two processes in one job of two nodes (one task, one CPU and one process on each)."""


@pytest.fixture(autouse=True)
def two_node_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """SLURM commands of the test (and the sweeps and jobs it starts) address the two-node cluster."""
    conf = os.environ.get("LPH_SLURM2_CONF")
    if not conf or shutil.which("sbatch") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs the two-node SLURM tests: .ci/run starts that cluster with .ci/slurm2-up.sh")
        pytest.skip("no two-node test SLURM cluster: eval \"$(.ci/slurm2-up.sh)\" starts one")
    monkeypatch.setenv("SLURM_CONF", conf)


def task_logs(root: Path, job: str) -> dict[int, str]:
    """Task rank -> the text of its submitit log (`<job>_<rank>_log.out`) for the job `job`."""
    return {int(log.name.split("_")[-2]): log.read_text() for log in (root / "submitit").glob(f"{job}_*_log.out")}


def launch_flags(log: str, rank: int) -> dict[str, str]:
    """The `accelerate launch` flags that node `rank` of a two-node trial logged (harness.sweep.launch)."""
    match = re.search(rf"^node {rank} of 2: (.+)$", log, re.MULTILINE)
    assert match, f"node {rank} logged no launch command"
    words = shlex.split(match.group(1))
    return {word: value for word, value in zip(words, words[1:]) if word.startswith("--")}


def test_a_two_node_trial_meets_across_the_nodes_trains_and_writes_its_run_dir_once(tmp_path, capfd):
    """Both tasks of the trial's job ran on different nodes (network namespaces), each launched one of the two
    processes with its node id as machine rank, both at the first node's address; the trial trained in 2 processes
    and the main one wrote the run directory once; the driver got each job's record from its first task. The
    warm-start control runs on the first node alone."""
    config = two_process_config()
    path = spec_file(tmp_path, grid={"estimator.name": [config.estimator.name]}, seeds=1, report=False,
                     base={"trainer": config.trainer, "eval": config.eval.model_dump()}, executor=TWO_NODES)
    root = run_sweep(path, executor="slurm", root=tmp_path / "two-nodes")
    finished = capfd.readouterr().err.splitlines()
    assert sum(line.startswith("done ") for line in finished) == 2 and not any("FAIL" in line for line in finished)
    store = ResultStore(root)
    trials = sweep_trials(load_spec(path), str(path))
    assert {store.result(t.trial_id)["status"] for t in trials} == {"done"}, [store.result(t.trial_id) for t in trials]
    (trial,) = [t for t in trials if t.control is None]
    run = store.trial_dir(trial.trial_id)
    assert_written_once(run, trial.config, 2)
    assert store.attempts(trial.trial_id) == 1

    job = job_ids(root)[trial.trial_id]
    logs = task_logs(root, job)
    nodes = {rank: re.search(rf"^trial {trial.trial_id} on (\S+) ", log, re.MULTILINE).group(1)
             for rank, log in logs.items()}
    assert sorted(nodes) == [0, 1] and nodes[0] != nodes[1], nodes
    address = node_address(nodes[0])
    assert address != "127.0.0.1" and address != node_address(nodes[1]), address
    for rank, log in ((0, (run / "trial.log").read_text()), (1, logs[1])):
        flags = launch_flags(log, rank)
        assert flags["--machine_rank"] == str(rank) and flags["--main_process_ip"] == address, flags
        assert flags["--num_machines"] == "2" and flags["--num_processes"] == "2", flags
    hostlist = subprocess.run(["scontrol", "show", "hostlist", ",".join(sorted(nodes.values()))], check=True,
                              capture_output=True, text=True).stdout.strip()
    accounting = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "NNodes,NodeList"], check=True,
                                capture_output=True, text=True).stdout.split()
    assert accounting == [f"2|{hostlist}"], accounting  # the job's two nodes, as SLURM accounted them


def test_a_preempted_two_node_trial_is_requeued_and_resumes_from_its_last_checkpoint(tmp_path):
    """As tests.test_slurm's preemption test, for a trial of one process on each of two nodes: once it has a
    checkpoint its job gets SIGUSR2 (every process of the job's step on both nodes: the training processes end, the
    first node's submitit hook requeues the job), SLURM runs the job again on two nodes, and the trial continues from
    its latest checkpoint in two processes."""
    path, trial_id = resumable_spec(tmp_path, **TWO_NODES)
    root = tmp_path / "requeue"
    job, log = preempt_once_checkpointed(path, trial_id, root)
    assert "FAIL" not in log, log  # the driver got the requeued job's record from its first task
    run_dir = ResultStore(root).trial_dir(trial_id)
    assert f"Requeued job {job}" in (run_dir / "trial.log").read_text()
    assert len(re.findall(r"^node 0 of 2: ", (run_dir / "trial.log").read_text(), re.MULTILINE)) == 2
    assert_resumed(root, trial_id, launched=True)
