"""Sharded policies on CPU: a trial launched with the shipped FSDP accelerate config (sweeps/accelerate/fsdp.yaml)
trains on 2 CPU processes over gloo with its policy sharded by FSDP2, writes its run directory once, saves the full
(gathered) policy as its checkpoint, and its held-out scores (the curve from in-memory gathered copies, eval.json
from the checkpoint) equal scoring that checkpoint loaded unsharded in one process.

accelerate 1.15 turns an FSDP config into FSDP only on GPU hosts (AcceleratorState keeps MULTI_CPU, plain DDP, on a
host without GPUs, and the trial refuses to run so: harness.trial.checkpoints.check_sharding). Run as
`python -m tests.test_fsdp CONFIG --out DIR` under `accelerate launch`, this module sets accelerate's state to FSDP
as it does on GPUs (`shard_on_cpu`) and runs the trial: accelerate's own FSDP2 wrapping, TRL's generation and
training, the trainer's gathered save and the harness's scoring then run sharded, on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from harness.config import ConfigError, RunConfig
from harness.sweep.spec import load_spec
from harness.tasks import load_task
from harness.trial.checkpoints import check_sharding
from harness.trial.model import load_policy, shipped_warm_start
from harness.trial.train import reward_mix, score_held_out
from tests.conftest import ROOT
from tests.test_distributed import WORLD, assert_written_once, free_port, two_process_config
from tests.test_sweep import spec_file

FSDP_CONFIG = ROOT / "sweeps" / "accelerate" / "fsdp.yaml"
ZERO3_CONFIG = ROOT / "sweeps" / "accelerate" / "zero3.yaml"


def sharded_config() -> RunConfig:
    """The 2-process trial of tests.test_distributed on the shipped arithmetic warm start (2 decoder layers, so FSDP
    shards two layer units and the root; non-zero pass@1 on these 8 items, so the scores compared are not all
    zero), with the held-out curve at every step on the same items as the final scoring."""
    return two_process_config(**{
        "model.hidden_size": 128, "model.layers": 2, "model.heads": 4, "model.warm_start_steps": 700,
        "model.warm_start_batch": 64, "task.steps": 2, "task.ops": "+-", "task.shortcut_share": 0.5,
        "task.n_train": 2000, "task.n_test": 500, "trainer.max_completion_length": 24,
        "eval.max_new_tokens": 24, "eval.curve_examples": 8})


def shard_on_cpu() -> None:
    """Make accelerate shard on this CPU host as it does on GPUs: an AcceleratorState given an FSDP plugin that
    accelerate left MULTI_CPU becomes DistributedType.FSDP with that plugin (on GPUs accelerate sets the same two
    fields itself, in its own state and in PartialState's)."""
    from accelerate.state import AcceleratorState, PartialState

    initialise = AcceleratorState.__init__

    def fsdp_state(self: AcceleratorState, *args: object, fsdp_plugin: object = None, **kwargs: object) -> None:
        initialise(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = fsdp_state


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, Path]:
    """A trial of `sharded_config` launched with the shipped FSDP config on 2 CPU processes, and its run directory."""
    config = sharded_config()
    assert shipped_warm_start(config.model, config.task) is not None  # no warm start trained here
    tmp = tmp_path_factory.mktemp("fsdp")
    path, run = tmp / "config.yaml", tmp / "run"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(FSDP_CONFIG),
               "--num_processes", str(WORLD), "--main_process_port", str(free_port()), "-m", "tests.test_fsdp",
               str(path), "--out", str(run)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count('"run_dir"') == 1, done.stdout
    return config, run


@pytest.mark.slow
def test_an_fsdp_trial_on_two_cpu_processes_scores_its_gathered_checkpoint(fsdp_run, tmp_path):
    config, run = fsdp_run
    assert_written_once(run, config, WORLD)
    assert json.loads((run / "summary.json").read_text())["sharded"] is True
    # the checkpoint is the whole trained policy: every tensor of the warm start at its full shape, changed by training
    _, tokenizer, warm_dir = load_policy(config.model, config.task)  # the trial's own tokenizer and warm start
    warm = load_file(warm_dir / "model.safetensors")
    trained = load_file(run / "checkpoint" / "model.safetensors")
    assert set(warm) <= set(trained)
    assert all(trained[key].shape == warm[key].shape for key in warm)
    assert any(not torch.equal(trained[key], warm[key]) for key in warm)
    # scoring the checkpoint loaded unsharded in this one process gives the trial's held-out items, byte for byte
    from transformers import AutoModelForCausalLM

    checkpoint = AutoModelForCausalLM.from_pretrained(run / "checkpoint", local_files_only=True, dtype="auto")
    evaluation = score_held_out(checkpoint, tokenizer, load_task(config.task).test,
                                reward_mix(config, checkpoint, tokenizer), config, tmp_path)
    assert (tmp_path / "eval_items.jsonl").read_bytes() == (run / "eval_items.jsonl").read_bytes()
    assert evaluation["accuracy"] > 0  # the compared scores are not all zero
    # the curve's last point, scored on a gathered in-memory copy of the same items, is the same number
    curve = [json.loads(line) for line in (run / "eval_curve.jsonl").read_text().splitlines()]
    assert curve[-1]["step"] == config.trainer["max_steps"] and curve[-1]["accuracy"] == evaluation["accuracy"]


def test_an_fsdp_config_that_accelerate_runs_unsharded_is_refused():
    with pytest.raises(ConfigError, match=r"executor.accelerate_config asks for FSDP \(distributed_type: FSDP\), but "
                                          r"accelerate runs this trial as MULTI_CPU: accelerate 1.15 shards with FSDP "
                                          r"only on GPU hosts .*allowed on a host without GPUs: no accelerate_config"):
        check_sharding({"ACCELERATE_USE_FSDP": "true"}, DistributedType.MULTI_CPU)
    check_sharding({"ACCELERATE_USE_FSDP": "true"}, DistributedType.FSDP)
    check_sharding({"ACCELERATE_USE_FSDP": "false"}, DistributedType.MULTI_CPU)
    check_sharding({"ACCELERATE_USE_DEEPSPEED": "true"}, DistributedType.DEEPSPEED)
    check_sharding({}, DistributedType.NO)


def test_the_shipped_accelerate_configs_gather_the_policy_at_save(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    fsdp, zero3 = load_config_from_file(str(FSDP_CONFIG)), load_config_from_file(str(ZERO3_CONFIG))
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.fsdp_config["fsdp_version"] == 2
    assert zero3.distributed_type == DistributedType.DEEPSPEED and zero3.deepspeed_config["zero_stage"] == 3
    assert zero3.deepspeed_config["zero3_save_16bit_model"] is True  # else save_model writes DeepSpeed shards only
    for config in (FSDP_CONFIG, ZERO3_CONFIG):  # a sweep accepts them as executor.accelerate_config
        executor = {"processes_per_trial": 2, "accelerate_config": str(config)}
        assert load_spec(spec_file(tmp_path, executor=executor)).executor.accelerate_config == str(config)


if __name__ == "__main__":  # `accelerate launch ... -m tests.test_fsdp CONFIG --out DIR`: one process of the trial
    from harness.trial.train import main

    shard_on_cpu()
    main()
