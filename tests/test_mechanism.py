"""The mechanism check (issue 29, item 5): each step compares the arm's advantages with group_mean's on the same
rollouts (`mechanism/cosine`, `mechanism/scale_ratio_cv` in metrics.jsonl)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import estimators
from harness.trial.train import run_trial
from harness.trial.trl_hooks import mechanism_metrics
from tests.conftest import smoke_config

MASK = torch.tensor([[True, True, True, False], [True, True, True, True], [True, True, True, True]])
BASELINE = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.5, 0.5, -0.5, -0.5], [2.0, -1.0, -1.0, 0.0]])


def test_a_rescaled_baseline_has_cosine_1_and_no_ratio_spread():
    masked_garbage = torch.where(MASK, 0.0, 7.0)  # masked entries are ignored whatever they hold
    metrics = mechanism_metrics(0.3 * BASELINE + masked_garbage, BASELINE, MASK)
    assert metrics["mechanism/cosine"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["mechanism/scale_ratio_cv"] == pytest.approx(0.0, abs=1e-12)
    assert mechanism_metrics(-BASELINE, BASELINE, MASK)["mechanism/cosine"] == pytest.approx(-1.0, abs=1e-12)


def test_per_group_scales_spread_the_ratio():
    """Groups scaled by 1, 2 and 3: ratios 1, 2, 3, CV = std / mean = sqrt(2/3) / 2; a cosine below 1."""
    scales = torch.tensor([[1.0], [2.0], [3.0]])
    metrics = mechanism_metrics(scales * BASELINE, BASELINE, MASK)
    assert metrics["mechanism/scale_ratio_cv"] == pytest.approx(math.sqrt(2 / 3) / 2, rel=1e-12)
    assert 0.0 < metrics["mechanism/cosine"] < 1.0


def test_groups_without_baseline_signal_are_left_out_and_undefined_figures_are_nan():
    flat = torch.cat([BASELINE[:2], torch.zeros(1, 4)])  # the third group: equal rewards, no baseline advantage
    arm = torch.cat([2.0 * BASELINE[:2], torch.tensor([[5.0, -5.0, 0.0, 0.0]])])
    assert mechanism_metrics(arm, flat, MASK)["mechanism/scale_ratio_cv"] == pytest.approx(0.0, abs=1e-12)
    one_group = mechanism_metrics(arm, torch.cat([BASELINE[:1], torch.zeros(2, 4)]), MASK)
    assert math.isnan(one_group["mechanism/scale_ratio_cv"])
    assert all(math.isnan(v) for v in mechanism_metrics(arm, torch.zeros(3, 4), MASK).values())


def test_the_group_mean_estimator_is_its_own_baseline():
    rewards = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    baseline = estimators.get("group_mean")(rewards)
    metrics = mechanism_metrics(estimators.get("group_mean")(rewards), baseline, torch.ones(6, 4, dtype=torch.bool))
    assert metrics == {"mechanism/cosine": pytest.approx(1.0, abs=1e-12), "mechanism/scale_ratio_cv": 0.0}


def test_an_attenuated_trial_logs_the_mechanism_metrics(tmp_path: Path):
    config = smoke_config(**{"estimator.name": "attenuated_pairwise", "rewards.semantic_density": 1.0})
    run_trial(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == config.trainer["max_steps"]
    assert all(-1.0 <= r["mechanism/cosine"] <= 1.0 and r["mechanism/scale_ratio_cv"] >= 0.0 for r in rows), rows
