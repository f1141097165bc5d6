"""`--set KEY=VALUE` overrides of a sweep spec: dotted keys into the spec (grid and Optuna-space keys that are dotted
themselves included), YAML values, validation with errors naming the file, the override and the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.config import ConfigError
from harness.sweep.driver import Sweep
from harness.sweep.spec import grid_trials, load_spec
from tests.conftest import ROOT, SMOKE
from tests.test_cli import tiny_model_dir

TUNE = ROOT / "sweeps" / "tune.yaml"


def test_overrides_reach_the_spec_and_every_trial(tmp_path):
    model = tiny_model_dir(tmp_path / "qwen")
    spec = load_spec(SMOKE, [f"base.model.path={model}", "executor.partition=a100", "executor.gpus_per_trial=2",
                             "seeds=[0, 7]", "executor.sbatch={qos: high, constraint: h100}"])
    assert spec.executor.partition == "a100" and spec.executor.gpus_per_trial == 2
    assert spec.executor.sbatch == {"qos": "high", "constraint": "h100"}
    trials = grid_trials(spec, SMOKE)
    assert [t.seed for t in trials] == [0, 7, 0, 7]
    assert {t.config.model.path for t in trials} == {str(model)}


def test_grid_and_search_space_keys_are_dotted_keys_themselves():
    spec = load_spec(SMOKE, ["grid.estimator.name=[rloo, pairwise_sum, group_mean]", "grid.trainer.beta=[0.0, 0.04]"])
    assert spec.grid == {"estimator.name": ["rloo", "pairwise_sum", "group_mean"], "trainer.beta": [0.0, 0.04]}
    assert len(grid_trials(spec, SMOKE)) == 3 * 2 * 2
    tune = load_spec(TUNE, ["optuna.space.estimator.beta.high=20", "optuna.n_trials=3", "optuna.sampler=random"])
    assert tune.optuna.space["estimator.beta"].high == 20 and tune.optuna.space["estimator.beta"].low == 0.1
    assert tune.optuna.n_trials == 3 and tune.optuna.sampler == "random"
    added = load_spec(TUNE, ["optuna.space.trainer.learning_rate={type: categorical, choices: [1.0e-5, 2.0e-5]}"])
    assert added.optuna.space["trainer.learning_rate"].choices == [1.0e-5, 2.0e-5]


@pytest.mark.parametrize(
    "override,expected",
    [
        ("executor.kind=kubernetes", r"executor.kind: Input should be 'local', 'submitit-local' or 'slurm'"),
        ("executer.kind=slurm", r"executer: Extra inputs are not permitted; allowed keys: name, base, grid"),
        ("seeds=-1", r"seeds: .*seeds must be a positive count"),
        ("grid.estimator.name=[nope]", r"(?s)estimator.name='nope'.*estimator: unknown estimator 'nope'"),
        ("base.trainer.learning_rat=0.1", r"unknown GRPOConfig field 'learning_rat'; did you mean learning_rate"),
        ("optuna.space.estimator.beta.low=-1", r"optuna.space.estimator.beta: .*needs 'low' <= 'high'|log-scale"),
        ("name.x=1", r"--set name.x: name is a str, not a mapping of keys"),
        ("executor", r"--set 'executor': expected KEY=VALUE with a dotted KEY into the spec"),
        ("executor..kind=slurm", r"expected KEY=VALUE with a dotted KEY"),
        ("seeds=[0, 1", r"--set seeds: value '\[0, 1' is not valid YAML"),
        ("base.model.path=/no/such/model", r"base.model.path: no such directory: /no/such/model"),
    ],
)
def test_bad_overrides_fail_naming_the_file_and_the_key(override, expected):
    spec = TUNE if override.startswith("optuna") else SMOKE
    with pytest.raises(ConfigError, match=expected) as info:
        load_spec(spec, [override])
    assert str(info.value).startswith(str(spec))


def test_the_source_of_an_invalid_value_names_the_override():
    with pytest.raises(ConfigError, match=r"smoke.yaml \(with --set executor.workers=0\): invalid configuration"):
        load_spec(SMOKE, ["executor.workers=0"])


def test_overrides_of_the_trials_need_resume_those_of_the_executor_do_not(tmp_path):
    root = tmp_path / "sweep"
    Sweep(load_spec(SMOKE), SMOKE, root).check_spec(resume=False)
    Sweep(load_spec(SMOKE, ["executor.workers=2"]), SMOKE, root, ["executor.workers=2"]).check_spec(resume=False)
    edited = ["base.trainer.max_steps=3"]
    with pytest.raises(ConfigError, match=r"holds a sweep of a different version of .*smoke.yaml \(with --set "
                                          r"base.trainer.max_steps=3\); pass --resume"):
        Sweep(load_spec(SMOKE, edited), SMOKE, root, edited).check_spec(resume=False)
    Sweep(load_spec(SMOKE, edited), SMOKE, root, edited).check_spec(resume=True)


def test_cli_takes_repeated_overrides_and_reports_bad_ones_without_a_traceback(tmp_path):
    command = [sys.executable, "-m", "harness.sweep", str(SMOKE), "--dry-run", "--runs-dir", str(tmp_path / "s")]
    out = subprocess.run([*command, "--set", "grid.estimator.name=[rloo]", "--set", "seeds=3"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if " rloo " in line]  # the table's training trials
    assert len(rows) == 3 and "group_mean" not in out
    bad = subprocess.run([*command, "--set", "executor.kind=k8s"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "smoke.yaml (with --set executor.kind=k8s): invalid configuration" in bad.stderr
    assert "executor.kind: Input should be 'local', 'submitit-local' or 'slurm'" in bad.stderr
    assert not (tmp_path / "s").exists()
