"""The main job: `python -m harness.sweep SPEC [--executor ...] [--dry-run] [--resume] [--max-trials N]`.

Expands the spec into trials (grid x seeds, or Optuna suggestions x seeds), skips the finished ones, runs the rest
on the chosen executor, keeps `runs/<name>/results.parquet` current after every trial and builds the report at the
end. Re-running the same spec continues it; `--resume` also continues a sweep directory made by an edited spec.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.config import ConfigError
from harness.sweep.executors import run_local, run_submitit
from harness.sweep.store import ResultStore, atomic_write
from harness.sweep.spec import SweepSpec, Trial, grid_trials, load_spec, make_trial, spec_hash

console = Console(stderr=True)
RUNS_DIR = Path("runs")


class SweepProgress:
    """Rich progress bar of trials: done, failed, running, ETA."""

    def __init__(self, total: int) -> None:
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("[green]{task.fields[done]} done [red]{task.fields[failed]} failed "
                                       "[yellow]{task.fields[running]} running"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("trials", total=total, **self.counts)

    def started(self, payload: dict[str, Any]) -> None:
        self.counts["running"] += 1
        self.bar.update(self.task, **self.counts)

    def finished(self, record: dict[str, Any]) -> None:
        self.counts["running"] = max(0, self.counts["running"] - 1)
        self.counts["done" if record.get("status") == "done" else "failed"] += 1
        self.bar.update(self.task, advance=1, **self.counts)


class Sweep:
    """A sweep spec bound to its directory and results store."""

    def __init__(self, spec: SweepSpec, source: Path, root: Path | None = None) -> None:
        self.spec, self.source = spec, source
        self.root = (root or RUNS_DIR / spec.name).absolute()  # jobs on other nodes get absolute paths
        self.store = ResultStore(self.root)

    def check_spec(self, resume: bool) -> None:
        """Refuse to mix results of an edited spec into an existing sweep directory unless `resume`."""
        marker = self.root / "spec.json"
        current = {"spec_hash": spec_hash(self.spec), "source": str(self.source)}
        if marker.exists() and json.loads(marker.read_text())["spec_hash"] != current["spec_hash"] and not resume:
            raise ConfigError(f"{self.root} holds a sweep of a different version of {self.source}; "
                              "pass --resume to continue it anyway (finished trials of the same config are kept)")
        atomic_write(marker, json.dumps(current | {"spec": self.spec.model_dump(mode="json")}, indent=2).encode())

    def payload(self, trial: Trial) -> dict[str, Any]:
        return {"trial_id": trial.trial_id, "params": trial.params, "seed": trial.seed,
                "config": trial.config.model_dump(mode="json"), "sweep_root": str(self.root),
                "run_dir": str(self.store.trial_dir(trial.trial_id)),
                "timeout_s": self.spec.executor.trial_timeout_min * 60}

    def run_trials(self, trials: list[Trial], progress: SweepProgress) -> list[dict[str, Any]]:
        """Run the unfinished trials (claimed for this driver) and return every record of `trials`."""
        stale_after = self.spec.executor.trial_timeout_min * 60 + 300
        todo = [t for t in trials if self.store.claim(t.trial_id, stale_after)]
        for t in trials:
            if t not in todo and self.store.is_done(t.trial_id):
                progress.finished({"status": "done"})
        prepare_warm_starts(todo)
        payloads = [self.payload(t) for t in todo]

        def on_result(record: dict[str, Any]) -> None:
            if (self.store.result(record["trial_id"]) or {}).get("status") != "done":  # a trial lost with its process
                self.store.write_result(record["trial_id"], record)
            self.store.release(record["trial_id"])
            self.store.write_table()
            progress.finished(record)

        try:
            if self.spec.executor.kind == "local":
                run_local(payloads, self.spec.executor, on_result, progress.started)
            else:
                run_submitit(payloads, self.spec.executor, self.root / "submitit", on_result, progress.started)
        finally:
            for payload in payloads:
                self.store.release(payload["trial_id"])
        return [r for t in trials if (r := self.store.result(t.trial_id)) is not None]


def prepare_warm_starts(trials: list[Trial]) -> None:
    """Train each distinct tiny-model warm start once, in the driver, before trials that share it start."""
    from harness.trial.model import ensure_warm_start

    seen = set()
    for trial in trials:
        model, task = trial.config.model, trial.config.task
        key = (model.model_dump_json(), task.model_dump_json())
        if model.path is None and key not in seen:
            seen.add(key)
            ensure_warm_start(model, task)


def optuna_storage(spec: SweepSpec, root: Path) -> Any:
    """The study storage: the spec's URL (sqlite:///..., postgresql://...) or a journal file in the sweep dir."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if spec.storage:
        return optuna.storages.RDBStorage(spec.storage)
    return optuna.storages.JournalStorage(JournalFileBackend(str(root / "optuna.journal")))


def run_optuna(sweep: Sweep, progress: SweepProgress, max_trials: int | None) -> None:
    """Ask Optuna for parameters until the study holds `n_trials` finished suggestions; each runs over every seed
    and is told the seeds' mean of the objective metric (or FAIL if any seed failed)."""
    import optuna

    spec, cfg = sweep.spec, sweep.spec.optuna
    assert cfg is not None
    sampler = optuna.samplers.TPESampler(seed=0) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(study_name=spec.name, storage=optuna_storage(spec, sweep.root), sampler=sampler,
                                direction=cfg.direction, load_if_exists=True)
    budget = max_trials if max_trials is not None else sys.maxsize
    while len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL))) < cfg.n_trials:
        if budget <= 0:
            break
        ask = study.ask()
        params = {key: suggest(ask, key, p) for key, p in cfg.space.items()}
        trials = [make_trial(spec, params, seed, sweep.source) for seed in spec.seed_list]
        records = sweep.run_trials(trials, progress)
        budget -= len(trials)
        values = [r.get("eval", {}).get(cfg.metric.removeprefix("eval_")) if cfg.metric.startswith("eval_")
                  else r.get("final", {}).get(cfg.metric) for r in records if r.get("status") == "done"]
        if len(values) == len(trials) and all(v is not None for v in values):
            study.tell(ask, sum(values) / len(values))
        else:
            study.tell(ask, state=optuna.trial.TrialState.FAIL)


def suggest(trial: Any, key: str, param: Any) -> Any:
    """One Optuna suggestion for a search-space dimension."""
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, param.low, param.high, log=param.log)


def print_trials(trials: list[Trial], store: ResultStore) -> None:
    """The dry-run table: one row per trial with its parameters and status."""
    table = Table(title=f"{len(trials)} trials")
    keys = sorted({k for t in trials for k in t.params})
    for column in ["trial_id", *keys, "seed", "status"]:
        table.add_column(column)
    for t in trials:
        status = (store.result(t.trial_id) or {}).get("status", "todo")
        table.add_row(t.trial_id, *(str(t.params.get(k, "")) for k in keys), str(t.seed), status)
    Console().print(table)


def run_sweep(spec_path: Path, executor: str | None = None, dry_run: bool = False, resume: bool = False,
              max_trials: int | None = None, root: Path | None = None) -> Path:
    """Run (or continue) the sweep of `spec_path`; returns its directory."""
    spec = load_spec(spec_path)
    if executor:
        spec = spec.model_copy(update={"executor": spec.executor.model_copy(update={"kind": executor})})
    sweep = Sweep(spec, spec_path, root)
    if spec.optuna is not None:
        if dry_run:
            console.print(f"Optuna sweep {spec.name}: {spec.optuna.n_trials} suggestions x {len(spec.seed_list)} seeds "
                          f"over {', '.join(spec.optuna.space)}")
            return sweep.root
        sweep.check_spec(resume)
        total = spec.optuna.n_trials * len(spec.seed_list)
        with (progress := SweepProgress(min(total, max_trials or total))).bar:
            run_optuna(sweep, progress, max_trials)
    else:
        trials = grid_trials(spec, spec_path)
        if dry_run:
            print_trials(trials, sweep.store)
            return sweep.root
        sweep.check_spec(resume)
        trials = trials[:max_trials] if max_trials is not None else trials
        with (progress := SweepProgress(len(trials))).bar:
            sweep.run_trials(trials, progress)
    table = sweep.store.write_table()
    console.print(f"results: {sweep.root / 'results.parquet'} ({len(table)} trials)")
    if spec.report:
        from reports import build_report

        console.print(f"report: {build_report(sweep.root)}")
    return sweep.root


def main(argv: list[str] | None = None) -> None:
    """CLI of the sweep runner."""
    parser = argparse.ArgumentParser(prog="python -m harness.sweep", description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--executor", choices=["local", "submitit-local", "slurm"])
    parser.add_argument("--dry-run", action="store_true", help="print the trial table and exit")
    parser.add_argument("--resume", action="store_true", help="continue a sweep directory made by an edited spec")
    parser.add_argument("--max-trials", type=int, default=None, help="run at most N trials this time")
    parser.add_argument("--runs-dir", type=Path, default=None, help="sweep directory (default runs/<name>)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        root = run_sweep(args.spec, args.executor, args.dry_run, args.resume, args.max_trials, args.runs_dir)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    if not args.dry_run:
        console.print(f"sweep {root} finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
