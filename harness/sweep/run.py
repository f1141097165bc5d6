"""The main job: `python -m harness.sweep SPEC [--set KEY=VALUE ...] [--executor ...] [--dry-run] [--resume]
[--max-trials N] [--runs-dir DIR] [--allow-failures] [-v]`.

Expands the spec into trials (grid x seeds, or Optuna suggestions x seeds), skips the finished ones, runs the rest
on the chosen executor, keeps `runs/<name>/results.parquet` current after every trial and builds the report at the
end. Prints a progress bar and one line per finished trial. Re-running the same spec continues it; `--resume` also
continues a sweep directory made by an edited spec. `--dry-run` prints the trials and the expected wall time.

Exit status: 0 when every trial run is done; 3 when any trial failed (the last line says how many and where their
errors are; `--allow-failures` exits 0); 1 on bad input (one line naming the file and key, nothing written) or a full
disk; 130 on Ctrl-C (one line naming the interrupted trials; running the command again resumes them).
"""

from __future__ import annotations

import argparse
import errno
import json
import functools
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from harness.config import ConfigError
from harness.sweep.driver import (Interrupted, Sweep, SweepProgress, console, preload_report,
                                  warm_starts_first)
from harness.sweep.eta import estimate
from harness.sweep.optuna_search import open_study, run_optuna
from harness.sweep.spec import (SweepSpec, Trial, grid_trials, load_sweep, make_trial, optuna_probe_trials,
                                warm_start_controls)
from harness.sweep.store import ResultStore, TrialRecord
from harness.threads import set_threads

__all__ = ["SweepOutcome", "execute_sweep", "main", "run_sweep", "sweep_trials"]

POLL_S = 5.0
"""Longest wait between two looks at the executor (a finished trial is seen at once on the local executor)."""


def run_grid(sweep: Sweep, trials: list[Trial], progress: SweepProgress) -> None:
    """Run the trials of `trials` that are unfinished and not held by another driver, claiming each only when the
    executor has room for it, so that several drivers on one sweep directory share the work."""
    pending = deque(warm_starts_first(trials) if sweep.spec.executor.kind == "local" else trials)
    try:
        with sweep.executor(progress) as executor:
            while pending or executor.in_flight:
                batch = []
                while pending and len(batch) < executor.free:
                    trial = pending.popleft()
                    if sweep.claim(trial):
                        batch.append(trial)
                    elif (record := sweep.store.record(trial.trial_id)) and record.done:
                        progress.skipped(record)
                sweep.submit(batch, executor)
                for record in executor.wait(POLL_S) if executor.in_flight else []:
                    sweep.finish(record)
                    progress.finished(record)
    finally:
        sweep.release_claims()


def run_sequential(sweep: Sweep, trials: list[Trial], progress: SweepProgress) -> None:
    """A sequential sweep (`seeds: {start, step, max}`, reports/sequential.py): before each look, run the seeds of
    that look for the arms that still need them (all arms before the first), then judge every report comparison
    and claim row at the look's share of alpha; stop when no row needs more seeds. RUN_DIR/settle.json is rewritten
    after every look; a rerun replays the finished looks from the finished trials and goes on."""
    from reports.claims_spec import load_claims
    from reports.data import result_arms
    from reports.sequential import SeedPlan, Settle, arm_key, row_records, spec_options, write_settle

    spec = sweep.spec
    assert spec.sequential is not None
    state = Settle(SeedPlan(**spec.sequential.model_dump()))
    claims = load_claims(spec.claims) if spec.claims else None
    options = spec_options(sweep.root)
    for look, alpha in enumerate(state.alphas):
        table = sweep.store.write_table()
        done = table[table["status"] == "done"] if len(table) else table
        arm_of = arms_of_trials(trials, done)
        run_grid(sweep, look_trials(trials, spec.seed_list, state.plan.looks, look, state.needed(), arm_of), progress)
        table = sweep.store.write_table()
        done = table[table["status"] == "done"]
        state.advance(look, {arm_key(a.task, a.label) for a in result_arms(done)})
        state.look(look, row_records(state.subset(done), sweep.root, options, claims, alpha))
        done_looking = state.finish()
        write_settle(sweep.root, state, len(trials))
        if done_looking:
            break


def look_trials(trials: list[Trial], seeds: list[int], looks: list[int], look: int, needed: set[str] | None,
                arm_of: dict[str, str]) -> list[Trial]:
    """The trials of look `look`: the seeds seeds[looks[look - 1]:looks[look]] (seeds[:looks[0]] at the first) of
    the arms in `needed` (every arm when None), and of every trial whose arm is not known yet (`arm_of`: trial_id ->
    arm key, `arms_of_trials`). Earlier looks' seeds are not listed again, so each trial is run and counted once."""
    rank = {seed: k for k, seed in enumerate(seeds)}
    first = looks[look - 1] if look else 0
    return [t for t in trials if first <= rank[t.seed] < looks[look]
            and (needed is None or t.trial_id not in arm_of or arm_of[t.trial_id] in needed)]


def arms_of_trials(trials: list[Trial], done: pd.DataFrame) -> dict[str, str]:
    """trial_id -> arm key (reports.sequential.arm_key) for every trial whose arm has a finished trial: trials of
    one arm share their params, so a finished trial names the arm of its seeds still to run."""
    from reports.data import result_arms
    from reports.sequential import arm_key

    if not len(done):
        return {}
    finished = dict(zip(done["trial_id"], (arm_key(a.task, a.label) for a in result_arms(done))))
    by_params = {params_key(t): finished[t.trial_id] for t in trials if t.trial_id in finished}
    return {t.trial_id: by_params[params_key(t)] for t in trials if params_key(t) in by_params}


def params_key(trial: Trial) -> str:
    """A trial's arm without its seed: its swept parameters (and control kind)."""
    return json.dumps([trial.params, str(trial.control)], sort_keys=True, default=str)


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
        reason = f"{error.strerror}; see --runs-dir"
        raise ConfigError(f"sweep directory {root}: cannot write in {existing} ({reason})") from None


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep run: its directory and the records of the trials that failed in this run."""

    root: Path
    failures: list[TrialRecord] = field(default_factory=list)


def run_sweep(spec_path: Path, executor: str | None = None, dry_run: bool = False, resume: bool = False,
              max_trials: int | None = None, root: Path | None = None, overrides: Sequence[str] = (),
              verbose: bool = False) -> Path:
    """Run (or continue) the sweep of `spec_path` with `overrides` (`KEY=VALUE`, as `--set`); returns its
    directory (see `execute_sweep`)."""
    return execute_sweep(spec_path, executor, dry_run, resume, max_trials, root, overrides, verbose).root


def execute_sweep(spec_path: Path, executor: str | None = None, dry_run: bool = False, resume: bool = False,
                  max_trials: int | None = None, root: Path | None = None, overrides: Sequence[str] = (),
                  verbose: bool = False) -> SweepOutcome:
    """Run (or continue) the sweep of `spec_path` with `overrides` (`KEY=VALUE`, as `--set`); returns its directory
    and the trials that failed. `verbose` lets each trial's library logs through (they go to the trial's log
    otherwise). Ctrl-C raises `Interrupted` naming the trials that were running."""
    spec, grid = load_sweep(spec_path, overrides)
    if executor:
        spec = spec.model_copy(update={"executor": spec.executor.model_copy(update={"kind": executor})})
    sweep = Sweep(spec, spec_path, root, overrides, verbose)
    if dry_run:
        print_dry_run(sweep, grid, max_trials)
        return SweepOutcome(sweep.root)
    check_writable(sweep.root)
    sweep.check_spec(resume)
    if not verbose:
        quiet_libraries()
    if spec.optuna is not None:
        total = spec.optuna.n_trials * len(spec.seed_list)
        study = open_study(spec, sweep.root, verbose)  # a storage that cannot be opened fails before the bar shows
        progress = SweepProgress(min(total, max_trials or total))
        run: Callable[[], None] = functools.partial(run_optuna, sweep, study, progress, max_trials)
    else:
        trials = with_controls(grid)
        trials = trials[:max_trials] if max_trials is not None else trials
        progress = SweepProgress(len(trials))
        runner = run_sequential if spec.sequential is not None else run_grid
        run = functools.partial(runner, sweep, trials, progress)
    if spec.report.enabled and spec.sequential is None:  # a sequential sweep imports reports at once itself
        preload_report()
    try:
        with progress.bar:
            run()
    except KeyboardInterrupt:
        raise Interrupted(progress.running) from None
    table = sweep.store.write_table()
    console.print(f"results: {sweep.root / 'results.parquet'} ({len(table)} trials)")
    if spec.report.enabled:
        from reports import build_report

        console.print(f"report: {build_report(sweep.root)}")
    return SweepOutcome(sweep.root, progress.failures)


EXIT_FAILED_TRIALS = 3
"""Exit status of a sweep in which trials failed (without --allow-failures); 1 is bad input or a full disk, 130 an
interrupt."""


def failure_line(outcome: SweepOutcome, allow_failures: bool) -> str:
    """The final line of a sweep with failed trials: how many, where their errors are, the exit status."""
    failed = outcome.failures
    where = (f"{failed[0].run_dir}/result.json" if len(failed) == 1
             else f"{outcome.root / 'trials'}/*/result.json, or results.parquet's error column")
    status = "0 (--allow-failures)" if allow_failures else f"{EXIT_FAILED_TRIALS} (--allow-failures makes it 0)"
    return f"FAILED: {len(failed)} trial(s) failed in this run (errors in {where}); exit status {status}"


def main(argv: list[str] | None = None) -> None:
    """CLI of the sweep runner: exit status 0 when every trial run is done, 3 when any failed (0 with
    --allow-failures), 1 on bad input or a full disk, 130 on Ctrl-C; each of those ends with one line saying so."""
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
    parser.add_argument("--allow-failures", action="store_true",
                        help=f"exit 0 even when trials failed (default: exit status {EXIT_FAILED_TRIALS})")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the trials' library logs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        set_threads()  # the driver's own torch work (the warm starts it trains): harness.threads
        outcome = execute_sweep(args.spec, args.executor, args.dry_run, args.resume, args.max_trials, args.runs_dir,
                                args.overrides or [], args.verbose)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    except Interrupted as error:
        console.print(f"{error}", highlight=False, soft_wrap=True)
        raise SystemExit(130) from None
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        written = error.filename or "the sweep directory"
        raise SystemExit(f"error: no space left on device writing {written}; the driver stopped, finished trials "
                         "are kept: free space and run it again to resume") from None
    if args.dry_run:
        return
    console.print(f"sweep {outcome.root} finished in {time.perf_counter() - started:.0f} s")
    if outcome.failures:
        console.print(failure_line(outcome, args.allow_failures), highlight=False, soft_wrap=True)
        if not args.allow_failures:
            raise SystemExit(EXIT_FAILED_TRIALS)


if __name__ == "__main__":
    main()
