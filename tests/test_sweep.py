"""Sweeps: the smoke sweep end to end, resume after a kill, two drivers on one store, failures, bad specs, missing
local paths, parallel Optuna suggestions (also two drivers on one study), the dry run's expected wall time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.config import ConfigError
from harness.sweep.store import ResultStore
from harness.sweep import optuna_storage, prepare_warm_starts, run_sweep
from harness.sweep.eta import estimate
from harness.sweep.optuna_search import max_in_flight, open_study
from harness.sweep.run import sweep_trials
from harness.sweep.spec import ExecutorConfig, grid_trials, load_spec, make_trial
from tests.conftest import ROOT, SMOKE


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.sweep", *args]


def smoke_trials() -> list:
    """The smoke sweep's trials: 2 estimators x 2 seeds and the warm-start control of each seed."""
    return sweep_trials(load_spec(SMOKE), str(SMOKE))


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
    trials = smoke_trials()
    assert len(trials) == 6 and "6 trials" in out
    for trial in trials:
        assert trial.trial_id in out
    assert not (tmp_path / "sweep").exists()


def test_smoke_sweep_writes_results_and_report_then_skips_finished_trials(tmp_path):
    root = run_sweep(SMOKE, root=tmp_path / "smoke")
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == 6 and set(table["status"]) == {"done"}
    assert set(table["param.estimator.name"]) == {"group_mean", "attenuated_pairwise", "warm_start"}
    assert set(table["seed"]) == {0, 1} and table["eval.accuracy"].between(0, 1).all()
    assert (root / "report.md").is_file() and (root / "report.html").is_file()
    store = ResultStore(root)
    before = {t: (root / "trials" / t / "result.json").stat().st_mtime_ns for t in table["trial_id"]}
    run_sweep(SMOKE, root=root)
    assert {t: (root / "trials" / t / "result.json").stat().st_mtime_ns for t in table["trial_id"]} == before
    assert all(store.attempts(t) == 1 for t in table["trial_id"])


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    # bitsandbytes is not installed: transformers refuses its 8-bit optimizer when the trial builds it
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"], "trainer.optim": ["adamw_torch",
                                                                                          "adamw_bnb_8bit"]}, seeds=1)
    root = run_sweep(path, root=tmp_path / "fail")
    table = pd.read_parquet(root / "results.parquet").set_index("param.trainer.optim")
    assert table.loc["adamw_torch", "status"] == "done"
    failed = table.loc["adamw_bnb_8bit"]
    assert failed["status"] == "failed" and "bitsandbytes" in failed["error"], failed["error"]
    report = (root / "report.md").read_text()
    assert "1 trial(s) failed" in report and "bitsandbytes" in report
    # re-running redoes only the failed trial
    run_sweep(path, root=root)
    store = ResultStore(root)
    assert store.attempts(table.loc["adamw_torch", "trial_id"]) == 1 and store.attempts(failed["trial_id"]) == 2


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
    assert 1 <= len(finished) < len(smoke_trials())
    run_sweep(SMOKE, root=root)
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == len(smoke_trials()) and set(table["status"]) == {"done"}
    for trial_id, text in finished.items():
        assert (root / "trials" / trial_id / "result.json").read_text() == text
        assert store.attempts(trial_id) == 1


def test_two_drivers_on_one_store_run_each_trial_once_and_share_the_work(tmp_path):
    root = tmp_path / "shared"
    prepare_warm_starts(grid_trials(load_spec(SMOKE), SMOKE))  # the warm start once, before the race
    drivers = [subprocess.Popen(cli(str(SMOKE), "--runs-dir", str(root)), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [driver.communicate(timeout=600)[1] for driver in drivers]
    for driver, log in zip(drivers, logs):
        assert driver.returncode == 0, log
    ran = [sum(line.startswith("done ") for line in log.splitlines()) for log in logs]
    assert sum(ran) == len(smoke_trials()) and min(ran) >= 1, ran  # each claims a trial only when it has room
    store = ResultStore(root)
    trials = smoke_trials()
    assert all(store.is_done(t.trial_id) for t in trials)
    assert [store.attempts(t.trial_id) for t in trials] == [1] * len(trials)
    assert len(pd.read_parquet(root / "results.parquet")) == len(trials)


def test_local_workers_get_one_warm_start_each_first_then_trials_whose_warm_start_is_ready():
    """The default ablation: its two warm starts lead the queue (one per worker, each trained by a `warm_start`
    control), then every arithmetic trial, then every multihop one."""
    from harness.sweep.driver import warm_starts_first

    trials = sweep_trials(load_spec(ROOT / "sweeps" / "ablation.yaml"), "ablation")
    ordered = warm_starts_first(trials)
    assert sorted(t.trial_id for t in ordered) == sorted(t.trial_id for t in trials)
    assert [(t.config.task.name, t.control) for t in ordered[:2]] == [("arithmetic", "warm_start"),
                                                                      ("multihop", "warm_start")]
    tasks = [t.config.task.name for t in ordered[2:]]
    assert tasks == sorted(tasks) and tasks.count("multihop") == tasks.count("arithmetic") == len(trials) // 2 - 1


COUNTED_WARM_START = r"""
import sys
import harness.trial.model as model
from harness.config import ModelConfig, TaskConfig

train = model.train_warm_start
def counted(*args):
    with open(sys.argv[1], "a") as log:
        log.write("trained\n")
    train(*args)
model.train_warm_start = counted
print(model.ensure_warm_start(ModelConfig(hidden_size=32, layers=1, heads=2, warm_start_steps=40), TaskConfig()))
"""


def test_processes_asking_for_one_warm_start_at_once_train_it_once(tmp_path):
    log = tmp_path / "trainings.log"
    env = os.environ | {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    processes = [subprocess.Popen([sys.executable, "-c", COUNTED_WARM_START, str(log)], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert log.read_text() == "trained\n"
    assert outputs[0][0].strip() == outputs[1][0].strip()
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == \
        [Path(outputs[0][0].strip()).name]


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
    trained = table[table["param.estimator.name"] == "group_mean"]  # its warm_start control may finish in time
    assert list(trained["status"]) == ["failed"]
    assert trained["error"].iloc[0].startswith("TrialTimeout: trial exceeded its time limit of 0.6 s")


def test_missing_local_paths_fail_before_anything_runs(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("")
    path = spec_file(tmp_path, base={"model": {"path": str(tmp_path / "no-model")},
                                     "task": {"name": "gsm8k", "path": "missing/test.jsonl", "train_path": str(data)}},
                     grid={"estimator.name": ["group_mean"],
                           "task.train_path": [str(data), str(tmp_path / "gone.jsonl")]},
                     storage=f"sqlite:///{tmp_path / 'no-dir' / 'study.db'}")
    for attempt in (lambda: run_sweep(path, root=tmp_path / "never"),
                    lambda: run_sweep(path, dry_run=True, root=tmp_path / "never")):
        with pytest.raises(ConfigError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(f"{path}: local paths not found (nothing was run or submitted)")
        assert f"base.model.path: no such directory: {tmp_path / 'no-model'}" in message
        assert f"base.task.path: no such file: missing/test.jsonl ({Path.cwd() / 'missing/test.jsonl'})" in message
        assert f"grid.task.train_path: no such file: {tmp_path / 'gone.jsonl'}" in message
        assert f"storage: no such directory (for the SQLite file): {tmp_path / 'no-dir'}" in message
        assert str(data) not in message.replace(str(tmp_path / "gone.jsonl"), "")
    assert not (tmp_path / "never").exists()


def test_a_missing_encoder_directory_fails_at_load(tmp_path):
    path = spec_file(tmp_path, base={"rewards": {"correctness": 1.0, "semantic_density": 0.5},
                                     "reward_params": {"semantic_density": {"units": "embedding",
                                                                            "encoder": str(tmp_path / "enc")}}})
    with pytest.raises(ConfigError, match=r"reward_params: semantic_density encoder .*enc' is not a local model "
                                          r"directory") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def tune_spec(tmp_path: Path, n_trials: int, seeds: int, workers: int, storage: str | None = None,
              name: str = "smoke") -> Path:
    """The smoke spec as a TPE search over the attenuation strength."""
    return spec_file(tmp_path, name=name, grid={}, seeds=seeds, storage=storage, report=False,
                     base={"estimator": {"name": "attenuated_pairwise", "scale": "group"}},
                     executor={"workers": workers},
                     optuna={"n_trials": n_trials, "sampler": "tpe", "metric": "eval_accuracy",
                             "space": {"estimator.beta": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}})


def spans(root: Path) -> list[tuple[float, float]]:
    """(started_at, finished_at) of every trial of a sweep, sorted."""
    return sorted((r["started_at"], r["finished_at"]) for r in
                  (json.loads(p.read_text()) for p in (root / "trials").glob("*/result.json")))


def overlapping(intervals: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in zip(intervals, intervals[1:]))


def test_optuna_keeps_suggestions_in_flight_on_every_worker(tmp_path):
    import optuna

    path = tune_spec(tmp_path, n_trials=4, seeds=1, workers=2)
    root = run_sweep(path, root=tmp_path / "tune")
    study = optuna.load_study(study_name="smoke", storage=optuna_storage(load_spec(path), root))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert overlapping(spans(root)), f"no two trials overlapped: {spans(root)}"
    assert max_in_flight(study) == 2


def run_optuna_drivers(path: Path, root: Path, drivers: int = 2) -> list[str]:
    """Run `drivers` sweep processes of `path` on one directory at once, each of which runs some trials; their
    stderr outputs."""
    prepare_warm_starts([make_trial(load_spec(path), {}, 0, path)])  # the warm start once, before the race
    processes = [subprocess.Popen(cli(str(path), "--runs-dir", str(root)), cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(drivers)]
    outputs = [p.communicate(timeout=900)[1] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
        assert any(line.startswith("done ") for line in output.splitlines()), f"this driver ran no trial:\n{output}"
    return outputs


def assert_each_suggestion_ran_once(path: Path, root: Path, storage: Any) -> None:
    """Exactly n_trials suggestions completed, each told the mean over its seeds' runs; every run of every
    suggestion finished and was started once; no run outside them; surplus suggestions pruned."""
    import optuna

    spec = load_spec(path)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    by_state = {state: [t for t in study.trials if t.state == state] for state in optuna.trial.TrialState}
    assert len(by_state[optuna.trial.TrialState.COMPLETE]) == spec.optuna.n_trials
    assert len(by_state[optuna.trial.TrialState.PRUNED]) + spec.optuna.n_trials == len(study.trials)
    store, expected = ResultStore(root), set()
    for trial in by_state[optuna.trial.TrialState.COMPLETE]:
        runs = [make_trial(spec, trial.params, seed, path) for seed in spec.seed_list]
        records = [store.result(run.trial_id) for run in runs]
        assert all(r is not None and r["status"] == "done" for r in records), trial.params
        assert trial.value == pytest.approx(sum(r["eval"]["accuracy"] for r in records) / len(records))
        expected |= {run.trial_id for run in runs}
    ran = {d.name for d in (root / "trials").iterdir()}
    assert ran == expected
    assert {t: store.attempts(t) for t in ran} == dict.fromkeys(ran, 1)


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_optuna_drivers_on_one_study_lose_and_repeat_nothing(tmp_path, storage):
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else None
    path = tune_spec(tmp_path, n_trials=4, seeds=2, workers=1, storage=url)
    root = tmp_path / "shared"
    outputs = run_optuna_drivers(path, root)
    assert_each_suggestion_ran_once(path, root, optuna_storage(load_spec(path), root))
    lines = [line for output in outputs for line in output.splitlines() if line.startswith("done estimator.beta=")]
    assert len(lines) == 8 and all(" seed=" in line and " accuracy " in line for line in lines), outputs


def test_drivers_opening_a_new_sqlite_study_at_once_all_open_it(tmp_path):
    """Drivers started together race to create a new database's tables (Optuna's RDBStorage makes them on first
    open). Measured without the retry in `rdb_storage`: 10 of 10 rounds of 4 threads, and 4 of 5 rounds of 4
    processes, had a driver fail with "table studies already exists" or a duplicate alembic_version key. Here 5 new
    databases, 4 drivers (threads) each let go at once: every driver opens its study, and each database holds one."""
    import threading

    import optuna

    for database in range(5):
        folder = tmp_path / f"db{database}"
        folder.mkdir()
        url = f"sqlite:///{folder / 'study.db'}"
        spec = load_spec(tune_spec(folder, n_trials=4, seeds=1, workers=1, storage=url))
        start, errors = threading.Barrier(4), []

        def driver() -> None:
            start.wait()
            try:
                open_study(spec, folder)
            except Exception as error:  # noqa: BLE001  (collected and asserted below)
                errors.append(f"{type(error).__name__}: {error}")

        threads = [threading.Thread(target=driver) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == [], errors
        assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["smoke"]


def test_dry_run_estimates_the_wall_time_from_the_benchmark_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "empty-cache"))  # no warm start cached: it counts
    bench = tmp_path / "bench"
    bench.mkdir()
    figures = {"train": {"rows": [{"trainer": "harness group_mean", "seconds_per_step": 0.3},
                                  {"trainer": "harness attenuated_pairwise", "seconds_per_step": 0.5}],
                         "warm_start_seconds": 140.0},
               "eval": {"rows": [{"scorer": "harness greedy scoring", "examples_per_second": 8.0}]},
               "sweep": {"rows": [{"executor": "local", "parallel": 1, "overhead_per_trial_s": 1.5,
                                   "trials_per_hour": 100.0},
                                  {"executor": "local", "parallel": 2, "trials_per_hour": 150.0}]}}
    for name, data in figures.items():
        (bench / f"{name}.json").write_text(json.dumps(data))
    configs = [t.config for t in grid_trials(load_spec(SMOKE), SMOKE)]
    # per step: 8 x 12 completion tokens against the benchmark's 32 x 40; 2 steps; 8 test items x (8 samples + the
    # greedy completion) at 8/s; overhead
    group_mean, attenuated = (2 * s * (8 * 12) / (32 * 40) + 8 * 9 / 8.0 + 1.5 for s in (0.3, 0.5))
    warm = 140.0 / 700 * 20
    total = warm + 2 * (group_mean + attenuated) / (2 * 0.75)
    line = estimate(configs, ExecutorConfig(workers=2), bench)
    assert line.startswith(f"expected wall time: {total:.0f} s (4 trials of about {(group_mean + attenuated) / 2:.0f}"
                           " s, 1.5 at a time, warm starts 4 s;"), line
    assert "unknown, no benchmark figures" in estimate(configs, ExecutorConfig(), tmp_path / "nothing")
    out = subprocess.run(cli(str(SMOKE), "--dry-run", "--runs-dir", str(tmp_path / "sweep")), cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert "expected wall time: unknown, no benchmark figures in runs/bench" in out


def test_a_killed_optuna_driver_leaves_its_suggestions_to_the_next_one(tmp_path):
    import optuna

    path = tune_spec(tmp_path, n_trials=2, seeds=1, workers=2)
    root = tmp_path / "killed"
    prepare_warm_starts([make_trial(load_spec(path), {}, 0, path)])
    process = subprocess.Popen(cli(str(path), "--runs-dir", str(root)), cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not list(root.glob("trials/*/attempts.log")):  # a trial started
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    storage = optuna_storage(load_spec(path), root)
    before = optuna.load_study(study_name="smoke", storage=storage).trials
    assert [t.state for t in before] == [optuna.trial.TrialState.RUNNING] * 2  # both asked, neither told
    run_sweep(path, root=root)  # adopts the RUNNING suggestions instead of asking new ones
    after = optuna.load_study(study_name="smoke", storage=storage).trials
    assert [t.state for t in after] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.params for t in after] == [t.params for t in before]
    assert len(ResultStore(root).records()) == 2
