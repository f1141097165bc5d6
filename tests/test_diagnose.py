"""The exact-gradient testbed: gradients against finite differences, unbiasedness of the unbiased estimators."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

import estimators
from harness.diagnostics.diagnose import (AscentConfig, DiagnosticsSpec, gradient_statistics,
                                         run_diagnostics)
from harness.diagnostics.testbed import make_testbed, starting_point
from tests.conftest import ROOT


def finite_difference(testbed, params: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(params)
    for index in range(params.numel()):
        step = torch.zeros_like(params).view(-1)
        step[index] = eps
        step = step.view_as(params)
        grad.view(-1)[index] = (testbed.expected_reward(params + step) - testbed.expected_reward(params - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("policy", ["tabular", "linear"])
@pytest.mark.parametrize("rewards", ["binary", "graded"])
@pytest.mark.parametrize("start", ["uniform", "confident_wrong", "nearly_solved"])
def test_exact_gradient_equals_finite_differences(policy, rewards, start):
    testbed = make_testbed(5, 6, rewards, policy, 4, torch.Generator().manual_seed(1))
    params = starting_point(testbed, start) + 0.3 * torch.randn(starting_point(testbed, start).shape,
                                                                generator=torch.Generator().manual_seed(2),
                                                                dtype=torch.float64)
    torch.testing.assert_close(testbed.true_gradient(params), finite_difference(testbed, params), rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("name,params", [("rloo", {}), ("group_mean", {"scale": "none"})])
def test_unbiased_estimators_converge_to_the_true_direction(name, params):
    """Cosine of the mean estimate to the exact gradient tends to 1 as samples grow; RLOO's norm is exact too, while
    the self-including group mean is scaled by (G - 1) / G."""
    testbed = make_testbed(6, 5, "binary", "tabular", 4, torch.Generator().manual_seed(3))
    start = starting_point(testbed, "confident_wrong") * 0.5
    estimator = estimators.get(name, **params)
    cosines = []
    for samples in (50, 800, 12_800):
        stats = gradient_statistics(testbed, start, estimator, 4, samples, torch.Generator().manual_seed(samples))
        cosines.append(stats["cosine"])
    assert cosines[-1] > 0.995 and cosines[-1] > cosines[0]
    expected_norm_error = 0.0 if name == "rloo" else 1 / 4
    assert stats["relative_norm_error"] == pytest.approx(expected_norm_error, abs=0.05)


def test_attenuation_biases_the_direction_away_from_uniform():
    """Where the policy is confident, the attenuated estimator's mean is not parallel to the exact gradient."""
    testbed = make_testbed(6, 5, "graded", "tabular", 4, torch.Generator().manual_seed(4))
    start = starting_point(testbed, "nearly_solved")
    stats = gradient_statistics(testbed, start, estimators.get("attenuated_pairwise", beta=2.0, score="sum"), 8,
                                6_000, torch.Generator().manual_seed(5))
    rloo = gradient_statistics(testbed, start, estimators.get("rloo"), 8, 6_000, torch.Generator().manual_seed(5))
    assert stats["cosine"] < rloo["cosine"] - 0.01


def test_cli_writes_tables_and_report(tmp_path):
    spec = {"name": "tiny", "prompts": 4, "candidates": 4, "policies": ["tabular"], "rewards": ["binary"],
            "group_sizes": [2, 4], "samples": 50, "ascent": {"group_size": 4, "steps": 5, "repeats": 2},
            "estimators": {"group_mean": {}, "attenuated_pairwise": {"beta": 2.0}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    subprocess.run([sys.executable, "-m", "harness.diagnostics", str(path), "--out", str(tmp_path / "out")], cwd=ROOT,
                   check=True, capture_output=True)
    stats = pd.read_parquet(tmp_path / "out" / "diagnostics.parquet")
    assert set(stats["estimator"]) == {"group_mean", "attenuated_pairwise"} and set(stats["G"]) == {2, 4}
    assert stats["cosine"].between(-1, 1).all() and (stats["snr"] > 0).all()
    ascent = pd.read_parquet(tmp_path / "out" / "ascent.parquet")
    assert set(stats["start"]) == {"uniform", "confident_wrong"} and len(stats) == 2 * 2 * 2
    assert ascent["step"].max() == 5 and len(ascent) == 2 * 3 * 2 * 6
    report = (tmp_path / "out" / "report.md").read_text()
    assert "What the numbers mean" in report and (tmp_path / "out" / "figures" / "ascent.png").stat().st_size > 5000
    path.write_text(yaml.safe_dump(spec | {"estimators": {"nope": {}}}))
    failed = subprocess.run([sys.executable, "-m", "harness.diagnostics", str(path)], cwd=ROOT, capture_output=True,
                            text=True)
    assert failed.returncode != 0 and "unknown estimator 'nope'" in failed.stderr


def test_every_registered_estimator_has_a_testbed_row():
    """sweeps/diagnostics.yaml measures every built-in estimator (the field's too: ReMax's greedy reward is the
    reward of the policy's mode, GDPO's one component the testbed's reward, OTB's completions one token each), and
    each gives finite statistics on a tiny testbed."""
    spec = DiagnosticsSpec.model_validate(yaml.safe_load((ROOT / "sweeps" / "diagnostics.yaml").read_text()))
    built_in = {name for name in estimators.available()
                if estimators._REGISTRY.function(name).__module__.startswith("estimators.")}  # not other tests' own
    assert {params.get("name", label) for label, params in spec.estimators.items()} == built_in
    tiny = spec.model_copy(update={"prompts": 3, "candidates": 4, "policies": ["linear"], "rewards": ["graded"],
                                   "group_sizes": [2], "samples": 20, "bias_starts": ["uniform"],
                                   "ascent": AscentConfig(group_size=3, steps=2, repeats=2, starts=["uniform"]),
                                   "estimators": {name: {} for name in ["remax", "gdpo", "maxrl", "otb"]}})
    stats, ascent = run_diagnostics(tiny)
    assert list(stats["estimator"]) == ["remax", "gdpo", "maxrl", "otb"]
    assert stats[["cosine", "relative_norm_error", "snr"]].notna().all().all()
    assert ascent["expected_reward"].notna().all()
