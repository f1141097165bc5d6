"""fp32 master weights (issue 30, item 1): a bf16 checkpoint trains in float32, bf16 only as autocast."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from harness.trial.model import WARM_START_MARKER, load_policy
from harness.trial.train import run_trial
from tests.conftest import smoke_config

LEARNING_RATE = 5e-5
"""Adam moves a weight by at most about lr a step (1.0014 lr at step 2), below half bf16's spacing for 2^-6 < |w| < 2^-5
(2^-14 = 6.1e-5): AdamW on bf16 weights leaves every weight of that band where it was (at |w| = 2^-6 a step down
meets the finer spacing below)."""
BAND = (2.0**-6, 2.0**-5)


def test_a_bf16_checkpoint_trains_float32_master_weights(tmp_path: Path):
    """The smoke warm start saved in bf16, then 2 GRPO steps at lr 5e-5 (a dense reward, so every step has a
    gradient): most weights of moderate magnitude move. With the checkpoint's own dtype as the training dtype none
    of them moves (0 of the band's weights: the updates round away)."""
    dense = {"estimator.name": "group_mean", "rewards.semantic_density": 1.0}
    config = smoke_config(**dense)
    policy, tokenizer, warm_dir = load_policy(config.model, config.task)
    checkpoint = tmp_path / "bf16"
    policy.to(torch.bfloat16).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    shutil.copy(warm_dir / WARM_START_MARKER, checkpoint / WARM_START_MARKER)  # the tiny model's tokenizer loading
    assert load_policy(smoke_config(**dense, **{"model.path": str(checkpoint)}).model,
                       config.task)[0].dtype == torch.float32

    trial = smoke_config(**dense, **{"model.path": str(checkpoint), "trainer.learning_rate": LEARNING_RATE})
    summary = run_trial(trial, tmp_path / "run")
    assert summary["param_dtype"] == "float32"  # autocast_dtype: the device's (None here, bfloat16 on a CUDA GPU)

    def weights(path: Path) -> torch.Tensor:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    before, after = weights(checkpoint), weights(tmp_path / "run" / "checkpoint")
    band = (before.abs() > BAND[0]) & (before.abs() < BAND[1])
    moved = (after[band] != before[band]).float().mean().item()
    assert band.sum() > 1000 and moved > 0.5, (int(band.sum()), moved)
