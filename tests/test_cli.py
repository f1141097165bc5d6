"""The `lph` command (installed console script and `python -m harness`), the paper-scale spec, and the GPU check on a
machine without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli, gpu_check
from harness.config import ModelConfig
from harness.sweep.spec import grid_trials, load_spec
from harness.trial.model import build_tiny_model, build_tokenizer
from tests.conftest import ROOT, SMOKE

LPH = Path(sys.executable).with_name("lph")
PAPER = ROOT / "sweeps" / "paper.yaml"
GSM8K = ROOT / "tests" / "fixtures" / "gsm8k_test_300.jsonl"

# Each command: the prog its module's parser prints, and what its --help must show (options with their defaults).
HELP = {
    "sweep": ("python -m harness.sweep", ["--dry-run", "(default: False)"]),
    "train": ("python -m harness.trial.train", ["--out", "default runs/single/<config hash>"]),
    "evaluate": ("python -m harness.trial.evaluate", ["(default: lph_test)", "(default: 8)", "(default: hf)"]),
    "report": ("python -m reports", ["run_dir"]),
    "repro": ("python -m harness.repro", ["ATEN_CPU_CAPABILITY=default", "(default: runs/repro)"]),
    "claims": ("python -m reports.claims", ["RUN_DIR", "(default: runs/claims)"]),
    "settle": ("python -m reports.sequential", ["RUN_DIR", "--claims", "(default: 3)", "(default: 12)"]),
    "model": ("python -m harness.trial.model_import", ["import"]),
    "diagnose": ("python -m harness.diagnostics", ["--out", "default runs/<name>"]),
    "bench": ("python -m harness.bench", ["(default: runs/bench)", "(default: False)"]),
    "gpu-check": ("python -m harness.gpu_check", ["(default: runs/bench/gpu.json)"]),
}


def run(*command: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `command` in the repository root and capture its output."""
    return subprocess.run([str(part) for part in command], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def test_every_command_has_its_help_entry():
    assert set(HELP) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", sorted(HELP))
def test_each_command_help_comes_from_its_module_and_shows_defaults(command, capsys):
    prog, expected = HELP[command]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {prog} ")
    for text in expected:
        assert text in " ".join(out.split()), f"{command} --help lacks {text!r}:\n{out}"


def test_installed_lph_lists_the_commands_and_rejects_unknown_ones():
    assert LPH.is_file(), f"{LPH} missing: install the project (pip install -c constraints.txt --no-deps -e .)"
    listing = run(LPH, "--help")
    assert listing.returncode == 0, listing.stderr
    assert all(f"\n  {name} " in listing.stdout for name in cli.COMMANDS)
    unknown = run(LPH, "trian")
    assert unknown.returncode == 2 and "invalid choice: 'trian'" in unknown.stderr


def test_installed_lph_forwards_the_arguments_to_the_sweep(tmp_path):
    out = run(LPH, "sweep", SMOKE, "--dry-run", "--runs-dir", tmp_path / "smoke")
    assert out.returncode == 0, out.stderr
    for trial in grid_trials(load_spec(SMOKE), SMOKE):
        assert trial.trial_id in out.stdout
    assert not (tmp_path / "smoke").exists()


def test_python_m_harness_is_the_same_command():
    out = run(sys.executable, "-m", "harness", "bench", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m harness.bench ")


def test_a_command_error_reaches_the_caller(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", str(missing)])
    assert str(missing) in str(exit_info.value.code) and "cannot read" in str(exit_info.value.code)


def tiny_model_dir(path: Path) -> Path:
    """A local Hugging Face model directory holding the (untrained) tiny model and its tokenizer."""
    tokenizer = build_tokenizer()
    build_tiny_model(ModelConfig(hidden_size=32, layers=1, heads=2), tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_paper_spec_dry_runs_with_a_local_model_and_data(tmp_path):
    """paper.yaml prompts with the model's chat template: a local Qwen3-architecture model that has one (the
    paper-mini policy) stands in for Qwen3-1.7B."""
    from harness.paper_mini import build

    overrides = {"base.model.path": str(build(tmp_path / "model")), "base.task.path": str(GSM8K),
                 "base.task.train_path": str(GSM8K)}
    sets = [part for key, value in overrides.items() for part in ("--set", f"{key}={value}")]
    out = run(sys.executable, "-m", "harness.sweep", PAPER, "--dry-run", "--runs-dir", tmp_path / "paper", *sets)
    assert out.returncode == 0, out.stderr

    data = yaml.safe_load(PAPER.read_text())
    data["base"]["model"]["path"] = overrides["base.model.path"]
    data["base"]["task"] |= {"path": str(GSM8K), "train_path": str(GSM8K)}
    local = tmp_path / "paper.yaml"
    local.write_text(yaml.safe_dump(data))
    trials = grid_trials(load_spec(local), local)
    for trial in trials:
        assert trial.trial_id in out.stdout
    assert not (tmp_path / "paper").exists()

    assert len(trials) == 4 * 2 * 3
    assert {t.config.estimator.name for t in trials} == {"group_mean", "pairwise_sum", "attenuated_pairwise",
                                                          "shuffled"}
    assert {t.config.rewards.get("semantic_density") for t in trials} == {0.0, 0.5}
    config = trials[0].config
    assert config.reward_params["semantic_density"]["units"] == "lcs"
    assert {k: config.trainer[k] for k in ("num_generations", "use_vllm", "vllm_mode", "bf16")} == {
        "num_generations": 8, "use_vllm": True, "vllm_mode": "colocate", "bf16": True}
    assert load_spec(local).executor.kind == "slurm" and load_spec(local).executor.gpus_per_trial == 1


def test_paper_spec_placeholders_are_refused_before_anything_runs(tmp_path):
    out = run(sys.executable, "-m", "harness.sweep", PAPER, "--dry-run", "--runs-dir", tmp_path / "paper")
    assert out.returncode != 0
    assert "base.model.path" in out.stderr and "/models/Qwen3-1.7B" in out.stderr


def test_gpu_check_without_a_device_reports_every_check_skipped(tmp_path):
    out_file = tmp_path / "gpu.json"
    out = run(sys.executable, "-m", "harness.gpu_check", "--out", out_file,
              env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr
    checks = json.loads(out_file.read_text())["checks"]
    assert set(checks) == {check.name for check in gpu_check.CHECKS}
    assert all(result == {"status": "skipped", "reason": "no CUDA device"} for result in checks.values())
    assert all(name in out.stdout for name in checks) and "no CUDA device" in out.stdout


def test_gpu_check_records_results_failures_and_missing_extras(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
    done = gpu_check.run_check(gpu_check.Check("ok", lambda workdir: {"workdir": str(workdir)}), tmp_path)
    assert done["status"] == "done" and done["workdir"] == str(tmp_path) and done["seconds"] >= 0
    failed = gpu_check.run_check(gpu_check.Check("boom", lambda workdir: {"ratio": 1 / 0}), tmp_path)
    assert failed["status"] == "failed" and failed["error"].startswith("ZeroDivisionError")
    absent = gpu_check.run_check(gpu_check.Check("x", lambda workdir: {}, extra="no_such_extra_lph"), tmp_path)
    assert absent == {"status": "skipped",
                      "reason": "no_such_extra_lph is not installed (pip install -e '.[no_such_extra_lph]')"}
