"""A sweep's driver side: the spec bound to its directory and store (`Sweep`: claims, payloads, records), the
progress bar and per-trial lines (`SweepProgress`), and the order in which local workers meet the warm starts."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.config import ConfigError
from harness.sweep.executors import Executor, make_executor
from harness.sweep.payload import TrialPayload
from harness.sweep.spec import SweepSpec, Trial, spec_hash
from harness.sweep.storage import redact
from harness.sweep.store import ResultStore, TrialRecord, atomic_write
from harness.trial.handoff import Control

console = Console(stderr=True)
RUNS_DIR = Path("runs")


def arm(params: dict[str, Any]) -> str:
    """The swept parameters as `key=value` words."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "base"


class Interrupted(Exception):
    """The driver was interrupted (Ctrl-C) while the trials `running` (id -> arm and seed) ran."""

    def __init__(self, running: dict[str, str]) -> None:
        self.running = dict(running)
        listed = ", ".join(f"{trial_id} ({label})" for trial_id, label in self.running.items()) or "none"
        super().__init__(f"interrupted; trials stopped before they finished: {listed}; run the same command again "
                         "to resume them (finished trials are kept)")


class SweepProgress:
    """Rich progress bar of trials (done, failed, running, ETA) and one line per trial finished here; `failures`
    keeps the failed records of trials run by this driver, `running` the trials started and not finished."""

    def __init__(self, total: int) -> None:
        self.counts = {"done": 0, "failed": 0}
        self.running: dict[str, str] = {}
        self.failures: list[TrialRecord] = []
        self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("[green]{task.fields[done]} done [red]{task.fields[failed]} failed "
                                       "[yellow]{task.fields[running]} running"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task = self.bar.add_task("trials", total=total, running=0, **self.counts)

    def _update(self, advance: int = 0) -> None:
        self.bar.update(self.task, advance=advance, running=len(self.running), **self.counts)

    def started(self, payload: TrialPayload) -> None:
        self.running[payload.trial_id] = f"{arm(payload.params)} seed={payload.seed}"
        self._update()

    def finished(self, record: TrialRecord) -> None:
        """A trial run by this driver: count it and print its line (arm, seed, accuracy, seconds or error)."""
        self.running.pop(record.trial_id, None)
        self.counts["done" if record.done else "failed"] += 1
        if not record.done:
            self.failures.append(record)
        self._update(advance=1)
        seconds = f" {record.wall_seconds:.1f} s" if record.wall_seconds is not None else ""
        outcome = (f"accuracy {record.eval.get('accuracy', float('nan')):.3f}" if record.done
                   else (str(record.error or "").splitlines() or ["no error recorded"])[0][:160])
        self.bar.console.print(f"{'[green]done[/green]' if record.done else '[red]FAIL[/red]'} "
                               f"{escape(arm(record.params))} seed={record.seed} {escape(outcome)}{seconds}",
                               highlight=False, soft_wrap=True)  # one line per trial, also in a log file

    def skipped(self, record: TrialRecord) -> None:
        """A trial finished earlier or by another driver: counted, no line."""
        self.counts["done" if record.done else "failed"] += 1
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
        spec = self.spec.model_dump(mode="json")
        spec["storage"] = spec["storage"] and redact(spec["storage"])  # no password on disk
        atomic_write(marker, json.dumps(current | {"spec": spec}, indent=2).encode())

    def payload(self, trial: Trial) -> TrialPayload:
        return TrialPayload(trial.trial_id, trial.params, trial.seed, trial.config, str(self.root),
                            self.spec.executor.trial_timeout_min * 60, trial.control, self.verbose)

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
        """Hand the (claimed) trials to `executor`. Local workers train the warm starts themselves (a grid reaches
        them in the order of `warm_starts_first`, so trials whose warm start is ready run while a slower one
        trains); for cluster jobs the driver trains them first (jobs on other hosts would each train their own)."""
        if not trials:
            return
        if self.spec.executor.kind != "local":
            prepare_warm_starts(trials, self.spec.executor.workers)
        executor.submit([self.payload(t) for t in trials])

    def finish(self, record: TrialRecord) -> None:
        """Store the record of a trial this driver ran (unless its runner stored a finished one), release it and
        rewrite the results table."""
        if not self.store.is_done(record.trial_id):  # a trial lost with its process
            self.store.write_result(record)
        self.release(record.trial_id)
        self.store.write_table()


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
    for trial in sorted(trials, key=lambda t: t.control is not Control.WARM_START):  # stable: controls lead
        model = trial.config.model
        key = "" if model.path is not None else model.model_dump_json() + trial.config.task.model_dump_json()
        groups.setdefault(key, []).append(trial)
    ordered = [group for key, group in groups.items() if key]
    return [group[0] for group in ordered] + [t for group in ordered for t in group[1:]] + groups.get("", [])


def preload_report() -> threading.Thread:
    """Import the report's modules (`reports`: pandas, scipy.stats, matplotlib; about 5 s of a 2-core CPU under
    load, 3.6 s of the smoke sweep's driver) in a daemon thread while the trials run, so that the report built at
    the end does not wait for them (the import lock makes a later `import reports` wait for this one). The driver
    idles while its workers train; the import takes CPU time once per sweep."""
    thread = threading.Thread(target=importlib.import_module, args=("reports",), name="preload-report", daemon=True)
    thread.start()
    return thread
