"""Multi-process trials: the sweep's worker trains a trial through `accelerate launch` of `harness.trial.train`.

The executor keys `processes_per_trial` (training processes of the trial, over all its nodes), `nodes_per_trial`
(SLURM only) and `accelerate_config` (an accelerate config file: DDP, FSDP or DeepSpeed settings) become the
payload's `launch` entry. Without a config file the launch uses accelerate's torchrun launcher (`--multi_gpu`): one
process per GPU, or on a host without GPUs CPU processes over gloo (the trainer then runs with `use_cpu`); accelerate's
`--cpu` flag is not used since it starts a single process unless an MPI hostfile is given. The launch is a child
process group of the worker, stopped with it (a deadline, an interrupt). One node rendezvouses on this host at a free
port; the nodes of a multi-node SLURM job meet at the job's first node (at its NodeAddr, the address SLURM itself
reaches it at), at a port derived from the job id, each launching its share of the processes with its SLURM node id
as machine rank. Each node writes its launch command to its output (the trial's log on the first node, the job's log
on the others).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.config import RunConfig
from harness.sweep.spec import ExecutorConfig

Launch = dict[str, Any]
"""A payload's `launch` entry: {"processes": total processes, "nodes": machines, "accelerate_config": path or None}."""
PORT_BASE, PORT_SPAN = 20000, 20000
"""A multi-node job's rendezvous port: PORT_BASE + job id modulo PORT_SPAN (the same on every node of the job)."""
STOP_GRACE_S = 30.0
"""Seconds the launched processes get to exit after SIGTERM before SIGKILL."""
RUNNING: set[subprocess.Popen[bytes]] = set()
"""The launches of this process that have not ended (`stop_running` stops them)."""


def launch_settings(config: ExecutorConfig) -> Launch | None:
    """The `launch` entry of the payloads of `config`'s trials; None when a trial is one process (run in the worker)."""
    if config.processes_per_trial == 1:
        return None
    return {"processes": config.processes_per_trial, "nodes": config.nodes_per_trial,
            "accelerate_config": config.accelerate_config}


def machine_rank(launch: Launch) -> int:
    """This node's rank among the trial's nodes (SLURM_NODEID for several nodes, else 0)."""
    return int(os.environ["SLURM_NODEID"]) if launch["nodes"] > 1 else 0


def rendezvous(launch: Launch) -> tuple[str, int]:
    """Address and port of the trial's main process: this host and a free port for one node; the SLURM job's first
    node and a port derived from its job id for several."""
    if launch["nodes"] == 1:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return "127.0.0.1", probe.getsockname()[1]
    if "SLURM_JOB_NODELIST" not in os.environ:
        raise RuntimeError(f"nodes_per_trial is {launch['nodes']}: the trial must run in a SLURM job of that many "
                           "nodes (executor kind slurm)")
    hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]], check=True,
                           capture_output=True, text=True).stdout.split()
    return node_address(hosts[0]), PORT_BASE + int(os.environ["SLURM_JOB_ID"]) % PORT_SPAN


def node_address(node: str) -> str:
    """The address of the SLURM node `node` (its NodeAddr in `scontrol show node`: the node name itself unless the
    cluster gives another, such as an IP address where node names do not resolve)."""
    shown = subprocess.run(["scontrol", "show", "node", node], check=True, capture_output=True, text=True).stdout
    match = re.search(r"\bNodeAddr=(\S+)", shown)
    if match is None:
        raise RuntimeError(f"`scontrol show node {node}` names no NodeAddr: {shown[:500]!r}")
    return match.group(1)


def accelerate_command(launch: Launch, config_path: Path, run_dir: Path) -> list[str]:
    """`accelerate launch` (as `python -m accelerate.commands.launch`, this interpreter's) of the trial's training."""
    address, port = rendezvous(launch)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launch["processes"]),
               "--num_machines", str(launch["nodes"]), "--machine_rank", str(machine_rank(launch)),
               "--main_process_ip", address, "--main_process_port", str(port)]
    if launch["accelerate_config"]:
        command += ["--config_file", str(launch["accelerate_config"])]  # its distributed_type picks the launcher
    else:
        command += ["--multi_gpu"]
    return command + ["-m", "harness.trial.train", str(config_path), "--out", str(run_dir)]


def launch_trial(config: RunConfig, run_dir: Path, launch: Launch, threads: int | None) -> dict[str, Any] | None:
    """Train and evaluate `config` into `run_dir` in `launch["processes"]` processes (this node's share of them) and
    return the trial's summary; None on a node other than the first (whose main process writes the run directory).
    Each process gets `threads` / (processes on this node) threads; a failed launch raises `RuntimeError`."""
    per_node = launch["processes"] // launch["nodes"]
    share = str(max(1, (threads or os.cpu_count() or 1) // per_node))
    env = os.environ | {"OMP_NUM_THREADS": share, "LPH_THREADS": share}  # harness.threads: each process sets it
    with tempfile.TemporaryDirectory(prefix="lph-launch-") as scratch:
        config_path = Path(scratch) / "config.yaml"  # not run_dir/config.yaml: the trial compares that to resume
        config_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        command = accelerate_command(launch, config_path, run_dir)
        print(f"node {machine_rank(launch)} of {launch['nodes']}: {shlex.join(command)}", flush=True)
        child = subprocess.Popen(command, env=env, start_new_session=True)
        RUNNING.add(child)
        try:
            status = child.wait()
        finally:
            stop(child)
            RUNNING.discard(child)
    if status != 0:
        raise RuntimeError(f"accelerate launch of {launch['processes']} processes exited with status {status} "
                           f"(their output is in {run_dir / 'trial.log'} or the job's log)")
    return json.loads((run_dir / "summary.json").read_text()) if machine_rank(launch) == 0 else None


def stop(child: subprocess.Popen[bytes]) -> None:
    """Stop a launch and every process under it, if it still runs: SIGTERM to its process group (accelerate's
    launcher stops its workers on it), then, after at most `STOP_GRACE_S`, SIGKILL to any of them left. Its
    descendants are collected first: torch's elastic agent starts each training process in a session of its own,
    outside the launch's process group, so a SIGKILL of the group alone would leave them training."""
    import psutil  # a dependency of accelerate

    if child.poll() is not None:
        return
    try:
        processes = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    child.wait()


def stop_running() -> None:
    """Stop every launch of this process still running (the worker's last act when its driver is gone)."""
    for child in list(RUNNING):
        stop(child)
