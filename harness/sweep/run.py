"""The main job: `python -m harness.sweep SPEC [--set KEY=VALUE ...] [--executor ...] [--dry-run] [--resume]
[--max-trials N] [--runs-dir DIR] [-v]`.

Expands the spec into trials (grid x seeds, or Optuna suggestions x seeds), skips the finished ones, runs the rest
on the chosen executor, keeps `runs/<name>/results.parquet` current after every trial and builds the report at the
end. Prints a progress bar and one line per finished trial. Re-running the same spec continues it; `--resume` also
continues a sweep directory made by an edited spec. `--dry-run` prints the trials and the expected wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.config import ConfigError
from harness.sweep.eta import estimate
from harness.sweep.executors import Executor, Record, make_executor
from harness.sweep.optuna_search import optuna_storage, run_optuna
from harness.sweep.spec import (WARM_START, SweepSpec, Trial, grid_trials, load_sweep, make_trial,
                                optuna_probe_trials, spec_hash, warm_start_controls)
from harness.sweep.store import ResultStore, atomic_write

__all__ = ["main", "optuna_storage", "prepare_warm_starts", "run_sweep"]

console = Console(stderr=True)
RUNS_DIR = Path("runs")
POLL_S = 5.0
"""Longest wait between two looks at the executor (a finished trial is seen at once on the local executor)."""


def arm(params: dict[str, Any]) -> str:
    """The swept parameters as `key=value` words."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "base"


class SweepProgress:
    """Rich progress bar of trials (done, failed, running, ETA) and one line per trial finished here."""

    def __init__(self, total: int) -> None:
        self.counts = {"done": 0, "failed": 0}
        self.running: set[str] = set()
        self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("[green]{task.fields[done]} done [red]{task.fields[failed]} failed "
                                       "[yellow]{task.fields[running]} running"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("trials", total=total, running=0, **self.counts)

    def _update(self, advance: int = 0) -> None:
        self.bar.update(self.task, advance=advance, running=len(self.running), **self.counts)

    def started(self, payload: dict[str, Any]) -> None:
        self.running.add(payload["trial_id"])
        self._update()

    def finished(self, record: Record) -> None:
        """A trial run by this driver: count it and print its line (arm, seed, accuracy, seconds or error)."""
        self.running.discard(record["trial_id"])
        done = record.get("status") == "done"
        self.counts["done" if done else "failed"] += 1
        self._update(advance=1)
        seconds = f" {record['wall_seconds']:.1f} s" if "wall_seconds" in record else ""
        outcome = (f"accuracy {record.get('eval', {}).get('accuracy', float('nan')):.3f}" if done
                   else (str(record.get("error", "")).splitlines() or ["no error recorded"])[0][:160])
        self.bar.console.print(f"{'[green]done[/green]' if done else '[red]FAIL[/red]'} "
                               f"{escape(arm(record['params']))} seed={record['seed']} {escape(outcome)}{seconds}",
                               highlight=False, soft_wrap=True)  # one line per trial, also in a log file

    def skipped(self, record: Record) -> None:
        """A trial finished earlier or by another driver: counted, no line."""
        self.counts["done" if record.get("status") == "done" else "failed"] += 1
        self._update(advance=1)

    def told(self, number: int, params: dict[str, Any], value: float | None) -> None:
        """An Optuna suggestion told to the study."""
        self.bar.console.print(f"optuna #{number} {escape(arm(params))}: "
                               + ("FAIL" if value is None else f"objective {value:.4g}"), highlight=False,
                               soft_wrap=True)


class Sweep:
    """A sweep spec bound to its directory, results store and the trial claims this driver holds."""

    def __init__(self, spec: SweepSpec, source: Path, root: Path | None = None, overrides: Sequence[str] = (),
                 verbose: bool = False) -> None:
        self.spec, self.source, self.overrides, self.verbose = spec, source, list(overrides), verbose
        self.label = f"{source} (with --set {' '.join(overrides)})" if overrides else str(source)
        self.root = (root or RUNS_DIR / spec.name).absolute()  # jobs on other nodes get absolute paths
        self.store = ResultStore(self.root)
        self.claimed: set[str] = set()

    def check_spec(self, resume: bool) -> None:
        """Refuse to mix results of an edited spec into an existing sweep directory unless `resume`."""
        marker = self.root / "spec.json"
        current = {"spec_hash": spec_hash(self.spec), "source": str(self.source), "overrides": self.overrides}
        if marker.exists() and json.loads(marker.read_text())["spec_hash"] != current["spec_hash"] and not resume:
            raise ConfigError(f"{self.root} holds a sweep of a different version of {self.label}; "
                              "pass --resume to continue it anyway (finished trials of the same config are kept)")
        atomic_write(marker, json.dumps(current | {"spec": self.spec.model_dump(mode="json")}, indent=2).encode())

    def payload(self, trial: Trial) -> dict[str, Any]:
        return {"trial_id": trial.trial_id, "params": trial.params, "seed": trial.seed,
                "config": trial.config.model_dump(mode="json"), "sweep_root": str(self.root),
                "run_dir": str(self.store.trial_dir(trial.trial_id)),
                "timeout_s": self.spec.executor.trial_timeout_min * 60, "control": trial.control,
                "verbose": self.verbose}

    def claim(self, trial: Trial) -> bool:
        """Take `trial` for this driver; False when it is done or another live runner holds it."""
        if self.store.claim(trial.trial_id, self.spec.executor.trial_timeout_min * 60 + 300):
            self.claimed.add(trial.trial_id)
            return True
        return False

    def release(self, trial_id: str) -> None:
        self.store.release(trial_id)
        self.claimed.discard(trial_id)

    def release_claims(self) -> None:
        """Let go of every claim still held (the driver stops)."""
        for trial_id in list(self.claimed):
            self.release(trial_id)

    def executor(self, progress: SweepProgress) -> Executor:
        return make_executor(self.spec.executor, self.root / "submitit", progress.started)

    def submit(self, trials: list[Trial], executor: Executor) -> None:
        """Hand the (claimed) trials to `executor`. Local workers train the warm starts themselves, in the order of
        `warm_starts_first`, so trials whose warm start is ready run while a slower one trains; for cluster jobs the
        driver trains them first (jobs on other hosts would each train their own)."""
        if not trials:
            return
        if self.spec.executor.kind == "local":
            trials = warm_starts_first(trials)
        else:
            prepare_warm_starts(trials, self.spec.executor.workers)
        executor.submit([self.payload(t) for t in trials])

    def finish(self, record: Record) -> None:
        """Store the record of a trial this driver ran (unless its runner stored a finished one), release it and
        rewrite the results table."""
        if (self.store.result(record["trial_id"]) or {}).get("status") != "done":  # a trial lost with its process
            self.store.write_result(record["trial_id"], record)
        self.release(record["trial_id"])
        self.store.write_table()


def run_grid(sweep: Sweep, trials: list[Trial], progress: SweepProgress) -> None:
    """Run the trials of `trials` that are unfinished and not held by another driver."""
    todo = [t for t in trials if sweep.claim(t)]
    for trial in trials:
        if trial not in todo and (record := sweep.store.result(trial.trial_id)) and record.get("status") == "done":
            progress.skipped(record)
    try:
        with sweep.executor(progress) as executor:
            sweep.submit(todo, executor)
            while executor.in_flight:
                for record in executor.wait(POLL_S):
                    sweep.finish(record)
                    progress.finished(record)
    finally:
        sweep.release_claims()


def prepare_warm_starts(trials: list[Trial], workers: int = 1) -> None:
    """Train each distinct tiny-model warm start once, in the driver (`workers` at a time), before the trials that
    share it start."""
    from harness.trial.model import ensure_warm_starts

    ensure_warm_starts([(t.config.model, t.config.task) for t in trials], workers)


def warm_starts_first(trials: list[Trial]) -> list[Trial]:
    """`trials` grouped by the tiny-model warm start they share, each group led by its `warm_start` control (or its
    first trial): the groups' leaders come first, so each of the first workers trains a different warm start (its
    trial's wall time includes that) and the rest of a group follows once its warm start is cached; trials on a
    local model directory come last."""
    groups: dict[str, list[Trial]] = {}
    for trial in sorted(trials, key=lambda t: t.control != WARM_START):  # stable: controls lead their group
        model = trial.config.model
        key = "" if model.path is not None else model.model_dump_json() + trial.config.task.model_dump_json()
        groups.setdefault(key, []).append(trial)
    ordered = [group for key, group in groups.items() if key]
    return [group[0] for group in ordered] + [t for group in ordered for t in group[1:]] + groups.get("", [])


def sweep_trials(spec: SweepSpec, label: str) -> list[Trial]:
    """The grid's trials, preceded by their `warm_start` controls (one per task, model, eval and seed)."""
    return with_controls(grid_trials(spec, label))


def with_controls(trials: list[Trial]) -> list[Trial]:
    """`trials` preceded by their `warm_start` controls."""
    return warm_start_controls(trials) + trials


def quiet_libraries() -> None:
    """Keep the progress bars and info logs of the driver's own library work (warm starts) off the terminal."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def print_trials(trials: list[Trial], store: ResultStore) -> None:
    """The dry-run table: one line per trial with its parameters and status, in aligned plain-text columns (a rich
    table takes seconds per thousand rows)."""
    keys = sorted({k for t in trials for k in t.params})
    rows = [["trial_id", *keys, "seed", "status"]]
    rows += [[t.trial_id, *(str(t.params.get(k, "")) for k in keys), str(t.seed),
              (store.result(t.trial_id) or {}).get("status", "todo")] for t in trials]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    print(f"{len(trials)} trials", *lines, sep="\n")


def print_dry_run(sweep: Sweep, grid: list[Trial], max_trials: int | None) -> None:
    """Print the trials (`grid` with its controls) or the search (Optuna) and the expected wall time; write
    nothing."""
    spec = sweep.spec
    if spec.optuna is not None:
        Console().print(f"Optuna sweep {spec.name}: {spec.optuna.n_trials} suggestions x {len(spec.seed_list)} seeds "
                        f"over {', '.join(spec.optuna.space)}")
        probe = optuna_probe_trials(spec, sweep.label)[0]  # the space's low end stands for every suggestion
        configs = [make_trial(spec, probe.params, seed, sweep.label).config for seed in spec.seed_list]
        configs *= spec.optuna.n_trials
    else:
        trials = with_controls(grid)
        print_trials(trials, sweep.store)
        configs = [t.config for t in trials if t.control is None and not sweep.store.is_done(t.trial_id)]
    configs = configs[:max_trials] if max_trials is not None else configs
    Console().print(estimate(configs, spec.executor) if configs else "expected wall time: 0 s (every trial is done)",
                    soft_wrap=True)


def check_writable(root: Path) -> None:
    """Raise `ConfigError` (one line) unless the sweep directory `root` can be made and written: its nearest existing
    ancestor is a directory in which a file can be created (probed with a temporary file, removed at once)."""
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"sweep directory {root}: {existing} is a file, not a directory (see --runs-dir)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(f"sweep directory {root}: cannot write in {existing} ({error.strerror}; see --runs-dir)") from None


def run_sweep(spec_path: Path, executor: str | None = None, dry_run: bool = False, resume: bool = False,
              max_trials: int | None = None, root: Path | None = None, overrides: Sequence[str] = (),
              verbose: bool = False) -> Path:
    """Run (or continue) the sweep of `spec_path` with `overrides` (`KEY=VALUE`, as `--set`); returns its
    directory. `verbose` lets each trial's library logs through (they go to the trial's log otherwise)."""
    spec, grid = load_sweep(spec_path, overrides)
    if executor:
        spec = spec.model_copy(update={"executor": spec.executor.model_copy(update={"kind": executor})})
    sweep = Sweep(spec, spec_path, root, overrides, verbose)
    if dry_run:
        print_dry_run(sweep, grid, max_trials)
        return sweep.root
    check_writable(sweep.root)
    sweep.check_spec(resume)
    if not verbose:
        quiet_libraries()
    if spec.optuna is not None:
        total = spec.optuna.n_trials * len(spec.seed_list)
        with (progress := SweepProgress(min(total, max_trials or total))).bar:
            run_optuna(sweep, progress, max_trials, verbose)
    else:
        trials = with_controls(grid)
        trials = trials[:max_trials] if max_trials is not None else trials
        with (progress := SweepProgress(len(trials))).bar:
            run_grid(sweep, trials, progress)
    table = sweep.store.write_table()
    console.print(f"results: {sweep.root / 'results.parquet'} ({len(table)} trials)")
    if spec.report.enabled:
        from reports import build_report

        console.print(f"report: {build_report(sweep.root)}")
    return sweep.root


def main(argv: list[str] | None = None) -> None:
    """CLI of the sweep runner."""
    from harness.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m harness.sweep", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("spec", type=Path, help="sweep spec (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a spec key (dotted path, YAML value), e.g. --set executor.partition=a100; "
                             "repeatable")
    parser.add_argument("--executor", choices=["local", "submitit-local", "slurm"])
    parser.add_argument("--dry-run", action="store_true", help="print the trials and the expected wall time, and exit")
    parser.add_argument("--resume", action="store_true", help="continue a sweep directory made by an edited spec")
    parser.add_argument("--max-trials", type=int, default=None, help="run at most N trials this time")
    parser.add_argument("--runs-dir", type=Path, default=None, help="sweep directory (default runs/<name>)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the trials' library logs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        root = run_sweep(args.spec, args.executor, args.dry_run, args.resume, args.max_trials, args.runs_dir,
                         args.overrides or [], args.verbose)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    if not args.dry_run:
        console.print(f"sweep {root} finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
