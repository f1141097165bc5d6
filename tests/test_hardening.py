"""Hardening (issue #25): bad input caught at load, a sweep directory that cannot be written, torn .jsonl files,
workers that die with their driver, drivers sharing a sweep, secrets kept off disk, the dry run of a large grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError, RunConfig, validate
from harness.sweep import run_sweep
from harness.sweep.spec import grid_trials, load_spec
from harness.sweep.storage import redact
from tests.conftest import ROOT, SMOKE


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.sweep", *args]


def smoke_spec(tmp_path: Path, **changes: object) -> Path:
    """A copy of the smoke spec with top-level keys replaced."""
    data = yaml.safe_load(SMOKE.read_text()) | changes
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_trainer_value_given_as_a_string_is_coerced_to_the_grpo_config_type():
    spec = load_spec(SMOKE, ["base.trainer.learning_rate=1e-4", "base.trainer.bf16=false"])
    assert spec.base["trainer"]["learning_rate"] == "1e-4"  # YAML 1.1 reads it as a string
    trainer = grid_trials(spec, SMOKE)[0].config.trainer
    assert trainer["learning_rate"] == 1e-4 and isinstance(trainer["learning_rate"], float)
    written = load_spec(SMOKE, ["base.trainer.learning_rate=1.0e-4", "base.trainer.bf16=false"])
    assert grid_trials(written, SMOKE)[0].trial_id == grid_trials(spec, SMOKE)[0].trial_id


@pytest.mark.parametrize("trainer,expected", [
    ({"learning_rate": "fast"}, r"trainer: learning_rate is 'fast'; expected float"),
    ({"lr_scheduler_type": "bogus"}, r"lr_scheduler_type is 'bogus'; allowed values: linear, cosine,"),
    ({"max_steps": 0}, r"max_steps is 0; allowed: a positive number of training steps"),
    ({"max_steps": True}, r"max_steps is True; expected int"),
    ({"save_strategy": "sometimes"}, r"save_strategy is 'sometimes'; allowed values: no, steps, epoch, best"),
])
def test_trainer_fields_are_checked_against_grpo_config_at_load(trainer, expected):
    with pytest.raises(ConfigError, match=expected):
        validate(RunConfig, {"trainer": trainer}, "run.yaml")


def test_a_spec_with_a_bad_trainer_value_fails_the_dry_run(tmp_path):
    path = smoke_spec(tmp_path)
    result = subprocess.run(cli(str(path), "--dry-run", "--set", "base.trainer.lr_scheduler_type=bogus"), cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "lr_scheduler_type is 'bogus'; allowed values" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("params,expected", [
    ({"seed": "x"}, r"estimator 'shuffled' parameter 'seed' is 'x'; expected int \| None"),
    ({"seed": 1.5}, r"parameter 'seed' is 1.5; expected int \| None"),
    ({"scale": "row"}, r"parameter 'scale' is 'row'; allowed values: 'group', 'batch', 'none'"),
])
def test_estimator_parameters_are_checked_against_their_annotated_types(tmp_path, params, expected):
    path = smoke_spec(tmp_path, grid={"estimator": [{"name": "shuffled", **params}]})
    with pytest.raises(ConfigError, match=expected):
        load_spec(path)
    assert load_spec(smoke_spec(tmp_path, grid={"estimator": [{"name": "shuffled", "seed": 3}]}))


def test_a_spec_that_is_not_utf8_fails_in_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(SMOKE.read_text().replace("# Seconds", "# S\xe9conds").encode("latin-1"))
    result = subprocess.run(cli(str(path), "--dry-run"), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {path}: not UTF-8 text (byte 0xe9 at offset 3)"]


@pytest.mark.parametrize("name", [".", ".."])
def test_a_sweep_named_dot_or_dot_dot_is_rejected(tmp_path, name):
    path = smoke_spec(tmp_path, name=name)
    with pytest.raises(ConfigError, match=rf"name: name '{name}' would put the sweep into runs/"):
        load_spec(path)


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root may write anywhere but in sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/lph-hardening")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return locked / "sweep"


@pytest.mark.parametrize("case", ["file", "unwritable"])
def test_a_runs_dir_that_cannot_be_written_fails_in_one_line_and_writes_nothing(tmp_path, case):
    if case == "file":
        runs_dir = tmp_path / "a-file"
        runs_dir.write_text("not a directory")
        expected = f"error: sweep directory {runs_dir}: {runs_dir} is a file, not a directory (see --runs-dir)"
    else:
        runs_dir = unwritable_directory(tmp_path)
        expected = f"error: sweep directory {runs_dir}: cannot write in {runs_dir.parent} ("
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(cli(str(SMOKE), "--runs-dir", str(runs_dir)), cwd=ROOT, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert sorted(tmp_path.rglob("*")) == before and not runs_dir.is_dir()


def test_torn_last_lines_are_skipped_with_a_warning_and_the_report_builds(tmp_path):
    from reports import build_report
    from tests.test_reports import write_sweep

    table = write_sweep(tmp_path)
    run_dir = Path(table[table["param.estimator.name"] == "group_mean"]["run_dir"].iloc[0])
    torn = [run_dir / "metrics.jsonl", run_dir / "eval_items.jsonl"]
    for path in torn:
        with path.open("a") as f:
            f.write('{"step": 31, "reward": 0.')  # a writer killed mid-append
    with pytest.warns(UserWarning) as warned:
        report = build_report(tmp_path)
    messages = {str(w.message) for w in warned}
    for path in torn:
        assert any(m.startswith(f"{path}: torn last line skipped") for m in messages), messages
    assert "## Verdict" in report.read_text() and (tmp_path / "report.html").is_file()


def big_grid(tmp_path: Path, rates: int, seeds: int) -> Path:
    """The smoke spec with `rates` learning rates x `seeds` seeds."""
    return smoke_spec(tmp_path, name="big", seeds=seeds,
                      grid={"trainer.learning_rate": [round(1e-5 * (k + 1), 8) for k in range(rates)]})


def test_the_dry_run_builds_and_validates_each_trial_once(tmp_path, monkeypatch, capsys):
    import harness.sweep.spec as spec_module

    built = []
    make_trial = spec_module.make_trial
    monkeypatch.setattr(spec_module, "make_trial", lambda *args: built.append(args[1]) or make_trial(*args))
    run_sweep(big_grid(tmp_path, 5, 3), dry_run=True, root=tmp_path / "never")
    assert len(built) == 5 * 3 and "18 trials" in capsys.readouterr().out  # and one warm_start control per seed
    assert not (tmp_path / "never").exists()


def test_the_dry_run_of_a_10100_trial_grid_takes_under_15_s(tmp_path, capsys):
    import time

    path = big_grid(tmp_path, 101, 100)
    load_spec(SMOKE)  # imports done, as in a fresh process before its first trial
    started = time.process_time()
    run_sweep(path, dry_run=True, root=tmp_path / "never")
    seconds = time.process_time() - started
    out = capsys.readouterr().out
    assert "10200 trials" in out and len(out.splitlines()) > 10200
    assert seconds < 15, f"{seconds:.1f} s of CPU"


def optuna_smoke(tmp_path: Path, storage: str, report: bool = True) -> Path:
    """The smoke spec as an Optuna search of 2 suggestions x 1 seed (random sampling) into `storage`."""
    return smoke_spec(tmp_path, grid={}, seeds=1, storage=storage, report=report,
                      base={**yaml.safe_load(SMOKE.read_text())["base"], "estimator": {"name": "attenuated_pairwise"}},
                      optuna={"n_trials": 2, "sampler": "random",
                              "space": {"estimator.beta": {"type": "float", "low": 0.1, "high": 10.0}}})


def test_a_storage_password_is_written_nowhere(tmp_path):
    path = optuna_smoke(tmp_path, "postgresql://lph:s3cret-pw@127.0.0.1:9/lph", report=False)
    root = tmp_path / "sweep"
    result = subprocess.run(cli(str(path), "--runs-dir", str(root)), cwd=ROOT, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: storage postgresql://lph:***@127.0.0.1:9/lph: cannot open the database (")
    written = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert root / "spec.json" in written and not any(b"s3cret-pw" in data for data in written.values())
    assert json.loads(written[root / "spec.json"])["spec"]["storage"] == "postgresql://lph:***@127.0.0.1:9/lph"


@pytest.mark.parametrize(("url", "redacted"), [
    ("postgresql://u:se/cret@h/db", "postgresql://u:***@h/db"),  # a "/" in the password
    ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),  # an unencoded "@" in the password
    ("postgresql://u@h/db?sslmode=require&password=s3cret", "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
    ("sqlite:////tmp/a@b/study.db", "sqlite:////tmp/a@b/study.db"),  # nothing to hide: left as written
    ("u:s3cret@h/db", "u:***@h/db"),  # no scheme: not parseable, the fallback still hides it
])
def test_redaction_parses_the_url(url, redacted):
    assert redact(url) == redacted
    assert not any(secret in redact(url) for secret in ("cret", "ss@", "s3cret"))


def test_storage_from_an_environment_variable_and_a_report_that_reads_files_only(tmp_path, monkeypatch):
    from reports import build_report

    database = tmp_path / "study.db"
    monkeypatch.setenv("LPH_STORAGE", f"sqlite:///{database}")
    root = run_sweep(optuna_smoke(tmp_path, "${LPH_STORAGE}"), root=tmp_path / "tune")
    assert database.is_file() and json.loads((root / "spec.json").read_text())["spec"]["storage"] == "${LPH_STORAGE}"
    trials = json.loads((root / "optuna_trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert "## Optuna search" in (root / "report.md").read_text()
    database.unlink()
    monkeypatch.delenv("LPH_STORAGE")  # the report needs neither the database nor its URL
    report = build_report(root).read_text()
    best = max(trials, key=lambda t: t["value"])
    assert f"Best trial #{best['number']}: objective {best['value']:.4f}" in report


def test_an_unset_storage_variable_fails_at_load(tmp_path, monkeypatch):
    monkeypatch.delenv("LPH_NO_SUCH_STORAGE", raising=False)
    path = optuna_smoke(tmp_path, "${LPH_NO_SUCH_STORAGE}")
    expected = r"storage \$\{LPH_NO_SUCH_STORAGE\}: environment variable LPH_NO_SUCH_STORAGE is not set"
    with pytest.raises(ConfigError, match=expected):
        load_spec(path)


def test_an_optuna_sweep_on_postgresql_builds_its_report(tmp_path):
    import uuid

    import optuna

    from harness.sweep.storage import sqlalchemy_url

    url = os.environ.get("LPH_POSTGRES_URL")
    if not url:
        pytest.skip("LPH_POSTGRES_URL is not set: eval \"$(.ci/postgres-up.sh)\" starts a private PostgreSQL server")
    name = f"pg-report-{uuid.uuid4().hex[:8]}"
    path = optuna_smoke(tmp_path, url)
    path.write_text(path.read_text().replace("name: smoke", f"name: {name}"))
    try:
        root = run_sweep(path, root=tmp_path / "tune")
        assert "## Optuna search" in (root / "report.md").read_text()
    finally:
        optuna.delete_study(study_name=name, storage=sqlalchemy_url(url))


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_driver_killed_mid_trial_takes_its_worker_along_and_a_rerun_trains_the_trial_once(tmp_path):
    import signal
    import time

    from harness.sweep.store import ResultStore

    overrides = ["--set", "grid.estimator.name=[group_mean]", "--set", "seeds=1", "--set", "base.trainer.max_steps=30",
                 "--set", "executor.workers=2"]  # the trial trains beside its warm_start control
    root = tmp_path / "killed"
    driver = subprocess.Popen(cli(str(SMOKE), "--runs-dir", str(root), *overrides), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and not any(len(p.read_text().splitlines()) >= 3
                                              for p in root.glob("trials/*/metrics.jsonl")):
        time.sleep(0.2)
    (metrics,) = root.glob("trials/*/metrics.jsonl")  # the trial trains
    worker = json.loads((metrics.parent / "attempts.log").read_text().splitlines()[0])["pid"]
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone, not its process group
    driver.wait()
    subprocess.run(cli(str(SMOKE), "--runs-dir", str(root), *overrides), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not alive(worker)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == list(range(1, 31))
    store = ResultStore(root)
    assert store.is_done(metrics.parent.name) and store.attempts(metrics.parent.name) == 2


def test_the_hand_off_is_typed_and_a_record_round_trips_through_the_store(tmp_path):
    import dataclasses
    import pickle

    from harness.sweep.driver import Sweep
    from harness.sweep.store import ResultStore, TrialRecord
    from harness.trial.handoff import Control, runner
    from harness.trial.train import run_trial, score_warm_start
    from tests.test_sweep import smoke_trials

    control = next(t for t in smoke_trials() if t.control is not None)
    payload = Sweep(load_spec(SMOKE), SMOKE, tmp_path).payload(control)
    assert payload.control is Control.WARM_START and payload.run_dir == tmp_path / "trials" / control.trial_id
    assert pickle.loads(pickle.dumps(payload)) == payload  # what a spawned worker or a submitit job receives
    with pytest.raises(dataclasses.FrozenInstanceError):
        payload.seed = 1  # type: ignore[misc]
    assert runner(Control.WARM_START) is score_warm_start and runner(None) is run_trial
    store = ResultStore(tmp_path)
    record = payload.failed("worker process died")
    store.write_result(record)
    assert store.record(control.trial_id) == record and store.result(control.trial_id)["status"] == "failed"
    older = json.loads((store.trial_dir(control.trial_id) / "result.json").read_text()) | {"gone": 1}
    assert TrialRecord.from_json(older) == record  # keys of another version are left out
