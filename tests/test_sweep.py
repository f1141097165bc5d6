"""Sweeps: the smoke sweep end to end, resume after a kill, two drivers on one store, failures, bad specs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.config import ConfigError
from harness.sweep.store import ResultStore
from harness.sweep import optuna_storage, prepare_warm_starts, run_sweep
from harness.sweep.spec import grid_trials, load_spec
from tests.conftest import ROOT, SMOKE


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.sweep", *args]


def spec_file(tmp_path: Path, **changes: object) -> Path:
    """A copy of the smoke spec with top-level keys replaced (`base` and `executor` merged one level deep)."""
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value} if key in ("base", "executor") else value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_dry_run_prints_the_trial_table(tmp_path):
    out = subprocess.run(cli(str(SMOKE), "--dry-run", "--runs-dir", str(tmp_path / "sweep")), cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    trials = grid_trials(load_spec(SMOKE), SMOKE)
    assert len(trials) == 4 and "4 trials" in out
    for trial in trials:
        assert trial.trial_id in out
    assert not (tmp_path / "sweep").exists()


def test_smoke_sweep_writes_results_and_report_then_skips_finished_trials(tmp_path):
    root = run_sweep(SMOKE, root=tmp_path / "smoke")
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == 4 and set(table["status"]) == {"done"}
    assert set(table["param.estimator.name"]) == {"group_mean", "attenuated_pairwise"}
    assert set(table["seed"]) == {0, 1} and table["eval.accuracy"].between(0, 1).all()
    assert (root / "report.md").is_file() and (root / "report.html").is_file()
    store = ResultStore(root)
    before = {t: (root / "trials" / t / "result.json").stat().st_mtime_ns for t in table["trial_id"]}
    run_sweep(SMOKE, root=root)
    assert {t: (root / "trials" / t / "result.json").stat().st_mtime_ns for t in table["trial_id"]} == before
    assert all(store.attempts(t) == 1 for t in table["trial_id"])


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    # num_generations 3 does not divide the batch of 8 completions: TRL rejects it when the trial starts
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"], "trainer.num_generations": [4, 3]}, seeds=1)
    root = run_sweep(path, root=tmp_path / "fail")
    table = pd.read_parquet(root / "results.parquet").set_index("param.trainer.num_generations")
    assert table.loc[4, "status"] == "done"
    assert table.loc[3, "status"] == "failed" and "ValueError" in table.loc[3, "error"]
    report = (root / "report.md").read_text()
    assert "1 trial(s) failed" in report and "ValueError" in report
    # re-running redoes only the failed trial
    run_sweep(path, root=root)
    store = ResultStore(root)
    assert store.attempts(table.loc[4, "trial_id"]) == 1 and store.attempts(table.loc[3, "trial_id"]) == 2


def test_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    root = tmp_path / "killed"
    process = subprocess.Popen(cli(str(SMOKE), "--runs-dir", str(root)), cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ResultStore(root) if root.exists() else None
    deadline = time.time() + 300
    while time.time() < deadline:
        store = ResultStore(root) if root.exists() else None
        if store and any(store.is_done(r["trial_id"]) for r in store.records()):
            break
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert store is not None
    finished = {r["trial_id"]: (root / "trials" / r["trial_id"] / "result.json").read_text()
                for r in store.records() if r["status"] == "done"}
    assert 1 <= len(finished) < 4
    run_sweep(SMOKE, root=root)
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == 4 and set(table["status"]) == {"done"}
    for trial_id, text in finished.items():
        assert (root / "trials" / trial_id / "result.json").read_text() == text
        assert store.attempts(trial_id) == 1


def test_two_drivers_on_one_store_run_each_trial_once(tmp_path):
    root = tmp_path / "shared"
    prepare_warm_starts(grid_trials(load_spec(SMOKE), SMOKE))  # the warm start once, before the race
    drivers = [subprocess.Popen(cli(str(SMOKE), "--runs-dir", str(root)), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for driver in drivers:
        assert driver.wait(timeout=600) == 0, driver.stderr.read()
    store = ResultStore(root)
    trials = grid_trials(load_spec(SMOKE), SMOKE)
    assert all(store.is_done(t.trial_id) for t in trials)
    assert [store.attempts(t.trial_id) for t in trials] == [1, 1, 1, 1]
    assert len(pd.read_parquet(root / "results.parquet")) == 4


def test_submitit_local_executor_gives_the_local_results(tmp_path):
    path = spec_file(tmp_path, grid={"estimator.name": ["attenuated_pairwise"]}, seeds=[0])
    local = run_sweep(path, root=tmp_path / "local")
    remote = run_sweep(path, executor="submitit-local", root=tmp_path / "submitit")
    columns = ["trial_id", "status", "eval.accuracy", "train.reward", "train.loss"]
    pd.testing.assert_frame_equal(pd.read_parquet(local / "results.parquet")[columns],
                                  pd.read_parquet(remote / "results.parquet")[columns])


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"gridd": {"a": [1]}}, r"gridd: Extra inputs are not permitted; allowed keys: name, base, grid, seeds"),
        ({"grid": {}}, r"grid: empty; give at least one axis"),
        ({"grid": {"estimator.name": []}}, r"grid: Value error, grid axis 'estimator.name' has no values|has no values"),
        ({"grid": {"estimator.name": ["group_mean", "nope"]}}, r"(?s)estimator.name='nope'.*estimator: unknown estimator 'nope'"),
        ({"seeds": -2}, r"seeds must be a positive count"),
        ({"executor": {"kind": "kubernetes"}}, r"executor.kind: Input should be 'local', 'submitit-local' or 'slurm'"),
    ],
)
def test_bad_specs_fail_clearly_and_write_nothing(tmp_path, changes, expected):
    path = spec_file(tmp_path, **changes)
    with pytest.raises(ConfigError, match=expected) as info:
        run_sweep(path, root=tmp_path / "never")
    assert str(path) in str(info.value)
    assert not (tmp_path / "never").exists()


def test_unreadable_spec_via_cli(tmp_path):
    result = subprocess.run(cli(str(tmp_path / "missing.yaml")), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "missing.yaml: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("storage", [None, "sqlite"])
def test_optuna_sweep_tells_the_study_and_reports_it(tmp_path, storage):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}" if storage else None
    path = spec_file(tmp_path, grid={}, seeds=[0, 1], storage=url, base={
        "estimator": {"name": "attenuated_pairwise", "scale": "group"}},
        optuna={"n_trials": 3, "sampler": "random", "metric": "eval_accuracy",
                "space": {"estimator.beta": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
                          "trainer.learning_rate": {"type": "categorical", "choices": [1.0e-5, 1.0e-4]}}})
    root = run_sweep(path, root=tmp_path / "tune")
    storage_obj = optuna_storage(load_spec(path), root)
    study = optuna.load_study(study_name="smoke", storage=storage_obj)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == 6 and set(table["status"]) == {"done"}
    for trial in complete:  # the objective is the seeds' mean of the metric for the trial's parameters
        rows = table[table["param.estimator.beta"] == trial.params["estimator.beta"]]
        assert len(rows) == 2 and trial.value == pytest.approx(rows["eval.accuracy"].mean())
    report = (root / "report.md").read_text()
    assert "## Optuna search" in report and "Best trial #" in report
    assert (root / "figures" / "optuna_history.png").is_file()
    run_sweep(path, root=root)  # resuming a finished study runs nothing more
    assert len(optuna.load_study(study_name="smoke", storage=storage_obj).trials) == 3


def test_a_trial_past_its_time_limit_is_recorded_as_failed(tmp_path):
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"]}, seeds=1,
                     executor={"trial_timeout_min": 0.01},  # 0.6 s: the trial cannot finish
                     base={"trainer": {"max_steps": 50, "per_device_train_batch_size": 8, "num_generations": 4,
                                       "max_completion_length": 12}})
    table = pd.read_parquet(run_sweep(path, root=tmp_path / "slow") / "results.parquet")
    assert list(table["status"]) == ["failed"]
    assert table["error"].iloc[0].startswith("TrialTimeout: trial exceeded its time limit of 1 s")
