"""Multi-process trials on CPU (gloo): every estimator's advantages on each of 2 processes equal the slice of the
one-process advantages over the same batch (also when a group straddles the processes); a trial launched with
`accelerate launch --num_processes 2`, directly or by a sweep's worker (`executor.processes_per_trial: 2`), trains in
2 processes and writes its run directory once; the executor keys are validated and make the launch command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

import estimators
from harness.config import ConfigError, RunConfig
from harness.sweep import run_sweep
from harness.sweep.launch import accelerate_command, launch_settings
from harness.sweep.run import sweep_trials
from harness.sweep.spec import load_spec
from harness.sweep.store import ResultStore
from harness.trial.distributed import process_advantages
from harness.trial.model import load_policy
from tests.conftest import ROOT, SMOKE, smoke_config
from tests.test_sweep import spec_file

WORLD = 2
GROUP = 4
PER_RANK = (8, 6)
"""Completions per process: 8 = two whole groups each; 6 = the second of three groups split 2 + 2 across them."""
CONFIGURED = [("group_mean", {"scale": "batch"}), ("pairwise_sum", {"scale": "batch"}), ("rloo", {"scale": "group"})]
"""Estimators with a non-default configuration (batch-level scaling) next to every estimator's defaults."""
CASES = [(name, {}) for name in estimators.available() if not estimators.get(name).extra_inputs] + CONFIGURED
RNG_SEED = 1000
"""Torch seed before each estimator call: process p uses RNG_SEED + p, the one-process reference RNG_SEED."""


def full_batch(completions: int) -> dict[str, torch.Tensor]:
    """A reproducible flat batch: tied rewards in {0, 0.5, 1} (the first group all equal), a few masked completions,
    summed log-probs and lengths."""
    generator = torch.Generator().manual_seed(completions)
    rewards = torch.randint(0, 3, (completions,), generator=generator).float() / 2
    rewards[:GROUP] = 0.5
    mask = torch.rand(completions, generator=generator) > 0.15
    mask[0] = True
    return {"rewards": rewards, "mask": mask, "seq_logprobs": -10 * torch.rand(completions, generator=generator),
            "lengths": torch.randint(1, 13, (completions,), generator=generator).float()}


def estimator_inputs(estimator: estimators.Estimator, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The policy inputs `estimator` reads, as the trainer passes them."""
    wanted = {"seq_logprobs": estimator.needs_logprobs, "lengths": estimator.needs_lengths}
    return {key: batch[key] for key, needed in wanted.items() if needed}


def rank_main(rank: int, port: int, out: str) -> None:
    """One of WORLD processes in a gloo process group (set up by accelerate, gathering with accelerate's `gather`
    as the trainer does): this process's advantages for every case and batch layout, saved to `out/rank<rank>.pt`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    from accelerate import PartialState
    from accelerate.utils import gather

    state = PartialState(cpu=True)
    assert state.num_processes == WORLD and state.backend == "gloo"
    results = {}
    for per_rank in PER_RANK:
        batch = full_batch(per_rank * WORLD)
        mine = {key: value[rank * per_rank:(rank + 1) * per_rank] for key, value in batch.items()}
        for name, params in CASES:
            estimator = estimators.get(name, **params)
            torch.manual_seed(RNG_SEED + rank)
            results[(name, str(params), per_rank)] = process_advantages(
                estimator, mine["rewards"], mine["mask"], group=GROUP, process_index=state.process_index,
                gather=gather, **estimator_inputs(estimator, mine)).local
    torch.save(results, Path(out) / f"rank{rank}.pt")
    state.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Each of the 2 processes' advantages (one spawn for every case)."""
    out = tmp_path_factory.mktemp("ranks")
    mp.start_processes(rank_main, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD)]


@pytest.mark.parametrize("per_rank", PER_RANK)
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_each_process_gets_its_slice_of_the_one_process_advantages(rank_results, name, params, per_rank):
    estimator = estimators.get(name, **params)
    batch = full_batch(per_rank * WORLD)
    torch.manual_seed(RNG_SEED)  # process 0's random state: a random estimator draws as process 0 did
    expected = estimator(batch["rewards"].view(-1, GROUP), mask=batch["mask"].view(-1, GROUP),
                         **{k: v.view(-1, GROUP) for k, v in estimator_inputs(estimator, batch).items()}).flatten()
    for rank, results in enumerate(rank_results):
        got = results[(name, str(params), per_rank)]
        assert got.shape == (per_rank,)
        assert torch.allclose(got, expected[rank * per_rank:(rank + 1) * per_rank], atol=1e-6), (rank, got, expected)
    assert expected.abs().sum() > 0  # the batch gives every estimator something to rank


def test_one_process_passes_the_whole_batch_through():
    estimator = estimators.get("lambdarank")
    batch = full_batch(12)
    result = process_advantages(estimator, batch["rewards"], batch["mask"], group=GROUP, process_index=0,
                                gather=lambda t: t, seq_logprobs=batch["seq_logprobs"], lengths=batch["lengths"])
    expected = estimator(batch["rewards"].view(3, GROUP), batch["seq_logprobs"].view(3, GROUP),
                         batch["lengths"].view(3, GROUP), batch["mask"].view(3, GROUP))
    torch.testing.assert_close(result.advantages, expected)
    torch.testing.assert_close(result.local, expected.flatten())
    assert torch.equal(result.mask, batch["mask"].view(3, GROUP))


def two_process_config(**overrides: object) -> RunConfig:
    """The smoke trial with 6 completions per process in groups of 4: the second group of each step straddles the
    two processes (and TRL accepts the batch only with 2 processes: 12 completions per step)."""
    return smoke_config(**{"estimator.name": "attenuated_pairwise", "trainer.per_device_train_batch_size": 6,
                           "eval.every_steps": 1, **overrides})


def assert_written_once(run: Path, config: RunConfig, processes: int) -> None:
    """`run` holds one trial of `config` trained in `processes` processes, each file written by one process once:
    every step once in metrics.jsonl, timing.jsonl and the held-out curve, eval.json, eval_items.jsonl
    and summary.json consistent, the checkpoint with its tokenizer."""
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == processes and summary["config_hash"] == config.config_hash()
    steps = list(range(1, config.trainer["max_steps"] + 1))
    rows, timing, curve, items = ([json.loads(line) for line in (run / name).read_text().splitlines()]
                                  for name in ("metrics.jsonl", "timing.jsonl", "eval_curve.jsonl", "eval_items.jsonl"))
    assert [r["step"] for r in rows] == [t["step"] for t in timing] == steps  # a second writer would repeat them
    assert all("advantage/abs_mean" in r and "loss" in r for r in rows)
    assert [c["step"] for c in curve] == [0, *steps]
    evaluation = json.loads((run / "eval.json").read_text())
    assert len(items) == evaluation["n"] == summary["eval"]["n"] == config.eval.n_examples
    accuracy = sum(i["pass@1"] for i in items) / len(items)
    assert evaluation["accuracy"] == pytest.approx(accuracy) and summary["eval"]["accuracy"] == pytest.approx(accuracy)
    assert (run / "checkpoint" / "model.safetensors").is_file() and (run / "checkpoint" / "tokenizer.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text()) == config.model_dump(mode="json")


def test_a_trial_launched_in_two_processes_trains_in_both_and_writes_its_run_dir_once(tmp_path):
    config = two_process_config()
    load_policy(config.model, config.task)  # the warm start, cached before the two processes load it
    path, run = tmp_path / "config.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    # `--multi_gpu` is accelerate's torchrun launcher: on a host without GPUs its processes train on CPU over gloo
    # (the trainer sets use_cpu). `--cpu` would start one process: accelerate runs several CPU processes only via mpirun.
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
               str(WORLD), "--main_process_port", str(free_port()), "-m", "harness.trial.train", str(path),
               "--out", str(run)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count('"run_dir"') == 1, done.stdout  # one process reports the finished trial
    assert_written_once(run, config, WORLD)


def test_a_sweep_trial_of_two_processes_is_launched_by_its_worker(tmp_path):
    path = spec_file(tmp_path, grid={"estimator.name": ["attenuated_pairwise"]}, seeds=1, report=False,
                     base={"trainer": two_process_config().trainer, "eval": two_process_config().eval.model_dump()},
                     executor={"processes_per_trial": 2})
    root = run_sweep(path, root=tmp_path / "sweep")
    records = {r["trial_id"]: r for r in map(json.loads, map(Path.read_text, (root / "trials").glob("*/result.json")))}
    assert {r["status"] for r in records.values()} == {"done"}, records
    (trial,) = [t for t in sweep_trials(load_spec(path), str(path)) if t.control is None]
    assert_written_once(root / "trials" / trial.trial_id, trial.config, WORLD)
    assert ResultStore(root).attempts(trial.trial_id) == 1


@pytest.mark.parametrize(("executor", "error"), [
    ({"processes_per_trial": 3, "nodes_per_trial": 2, "kind": "slurm"},
     r"executor: processes_per_trial is 3; allowed: a multiple of nodes_per_trial \(2\)"),
    ({"nodes_per_trial": 2}, r"executor: nodes_per_trial is 2 with kind 'local'; allowed: 1, or kind 'slurm'"),
    ({"processes_per_trial": 2, "gpus_per_trial": 1},
     r"executor: gpus_per_trial is 1 with processes_per_trial 2; allowed: 0 \(CPU processes\) or 2"),
    ({"processes_per_trial": 0}, r"executor.processes_per_trial: Input should be greater than or equal to 1"),
    ({"accelerate_config": "ddp.yaml"}, r"executor: accelerate_config is set but processes_per_trial is 1"),
    ({"processes_per_trial": 2, "accelerate_config": "missing.yaml"},
     r"executor: accelerate_config: no such file: missing.yaml"),
])
def test_bad_multi_process_executor_settings_name_the_file_key_and_allowed_values(tmp_path, executor, error):
    path = spec_file(tmp_path, executor=executor)
    with pytest.raises(ConfigError, match=rf"{path}: invalid configuration\n  {error}"):
        load_spec(path)


def test_the_launch_command_of_a_multi_process_trial(tmp_path):
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text("distributed_type: MULTI_GPU\n")
    spec = load_spec(spec_file(tmp_path, executor={"processes_per_trial": 4, "accelerate_config": str(ddp)}))
    launch = launch_settings(spec.executor)
    assert launch == {"processes": 4, "nodes": 1, "accelerate_config": str(ddp)}
    command = accelerate_command(launch, tmp_path / "config.yaml", tmp_path / "run")
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    flags = dict(zip(command[3:15:2], command[4:15:2]))
    assert flags["--num_processes"] == "4" and flags["--num_machines"] == "1" and flags["--machine_rank"] == "0"
    assert flags["--main_process_ip"] == "127.0.0.1" and flags["--config_file"] == str(ddp)
    assert command[15:] == ["-m", "harness.trial.train", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]
    assert launch_settings(load_spec(SMOKE).executor) is None  # one process: trained inside the worker
