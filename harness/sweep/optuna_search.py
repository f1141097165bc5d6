"""Optuna search of a sweep: suggestions are kept in flight while the executor has room (`workers`, or
`array_parallelism` on SLURM), each runs over every seed, and each is told the seeds' mean metric (FAIL if a seed
failed) as its last seed finishes. TPE samples with `constant_liar`, so suggestions asked while others run avoid them.

The study's trials are written to `optuna_trials.json` in the sweep directory after each tell and at the end (for the
report, which reads files only; see harness.sweep.storage).

Several drivers may share one study (same storage, same sweep directory): trial runs are claimed through the store,
so none is run twice; a suggestion whose runs another driver holds waits for their results; a suggestion left
RUNNING by a driver that died is adopted by the next driver that can claim its unfinished runs; a suggestion asked
past `n_trials` in a race between drivers is marked PRUNED and not run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import ConfigError
from harness.sweep.driver import Sweep, SweepProgress
from harness.sweep.executors import Executor
from harness.sweep.spec import SearchParam, SweepSpec, Trial, make_trial
from harness.sweep.storage import study_storage, write_trials
from harness.sweep.store import TrialRecord

if TYPE_CHECKING:
    import optuna

POLL_S = 2.0
"""Seconds between two looks at runs held by other drivers when nothing of this driver finishes."""
ORPHAN_AFTER_S = 30.0
"""Seconds a suggestion must have been RUNNING before another driver may adopt it (its own driver claims its runs
right after asking it)."""


def optuna_storage(spec: SweepSpec, root: Path) -> Any:
    """The study storage of `spec` (its `storage` URL or `${NAME}`, else a journal file in the sweep dir `root`)."""
    return study_storage(spec.storage, root)


def open_study(spec: SweepSpec, root: Path, verbose: bool = False) -> optuna.Study:
    """Create or load the sweep's study (TPE with constant liar, or random sampling; unseeded, so that drivers
    sharing the study suggest different parameters)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    assert spec.optuna is not None
    sampler = (optuna.samplers.TPESampler(constant_liar=True) if spec.optuna.sampler == "tpe"
               else optuna.samplers.RandomSampler())
    return optuna.create_study(study_name=spec.name, storage=optuna_storage(spec, root), sampler=sampler,
                               direction=spec.optuna.direction, load_if_exists=True)


def suggest(trial: Any, key: str, param: SearchParam) -> Any:
    """One Optuna suggestion for a search-space dimension."""
    if param.type == "categorical":
        return trial.suggest_categorical(key, param.choices)
    if param.type == "int":
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(key, param.low, param.high, log=param.log)


def objective(records: list[TrialRecord], metric: str) -> float | None:
    """The seeds' mean of `metric` (eval_<name> from the eval results, else a final training metric); None when a
    seed failed or lacks the metric."""
    values = [r.eval.get(metric.removeprefix("eval_")) if metric.startswith("eval_") else r.final.get(metric)
              for r in records if r.done]
    if len(values) != len(records) or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def max_in_flight(study: optuna.Study) -> int:
    """The most suggestions of `study` that were running at the same moment (from their start and end times)."""
    events = sorted((when, step) for t in study.trials if t.datetime_start and t.datetime_complete
                    for when, step in ((t.datetime_start, 1), (t.datetime_complete, -1)))
    running = peak = 0
    for _, step in events:  # at equal times the end (-1) sorts first: touching intervals do not overlap
        running += step
        peak = max(peak, running)
    return peak


@dataclass
class Suggestion:
    """One Optuna trial in flight: its seed runs, the records already in, the runs claimed when it was adopted, and
    the runs held by others (trial id -> `finished_at` of the result they had when this driver started waiting, so
    an old failed result is not taken for the new one)."""

    number: int
    params: dict[str, Any]
    trials: list[Trial]
    records: dict[str, TrialRecord] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    waiting: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return len(self.records) == len(self.trials)


class OptunaSearch:
    """The driver's side of the search: asks, adopts, runs and tells suggestions through a streaming executor."""

    def __init__(self, sweep: Sweep, study: optuna.Study, progress: SweepProgress, max_trials: int | None) -> None:
        assert sweep.spec.optuna is not None
        self.sweep, self.study, self.progress, self.config = sweep, study, progress, sweep.spec.optuna
        self.budget = max_trials if max_trials is not None else sys.maxsize
        self.active: list[Suggestion] = []
        self.unsettled = False

    def run(self, executor: Executor) -> None:
        """Until no suggestion is left to ask or adopt and every one started here is told."""
        while True:
            while executor.in_flight < executor.capacity and (suggestion := self.next_suggestion()):
                self.launch(suggestion, executor)
            if not self.active:
                if not self.unsettled:
                    return
                time.sleep(POLL_S)  # another driver's new suggestion may turn out an orphan
                continue
            for record in executor.wait(POLL_S):
                self.sweep.finish(record)
                self.progress.finished(record)
                self.deliver(record)
            self.resolve_waiting(executor)
            self.tell_finished()

    def next_suggestion(self) -> Suggestion | None:
        """An orphaned RUNNING suggestion this driver can take over, else a new one while the study has fewer than
        `n_trials` (None when neither, or this run's `--max-trials` budget is spent)."""
        import optuna

        self.unsettled = False
        if self.budget <= 0:
            return None
        trials = self.study.get_trials(deepcopy=False)
        mine = {s.number for s in self.active}
        for frozen in trials:
            if (frozen.state == optuna.trial.TrialState.RUNNING and frozen.number not in mine
                    and (orphan := self.orphan(frozen)) is not None):
                return orphan
        if len(trials) >= self.config.n_trials:
            return None
        return self.ask()

    def orphan(self, frozen: optuna.trial.FrozenTrial) -> Suggestion | None:
        """Another driver's RUNNING suggestion, adopted when its driver is gone. One younger than `ORPHAN_AFTER_S`
        is left alone (`unsettled`: its driver may be claiming its runs); one without parameters by then lost its
        driver between asking and suggesting and is told FAIL."""
        import optuna

        if frozen.datetime_start is None or frozen.datetime_start > datetime.now() - timedelta(seconds=ORPHAN_AFTER_S):
            self.unsettled = True
            return None
        if set(frozen.params) != set(self.config.space):
            self.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            return None
        return self.adopt(frozen.number, frozen.params)

    def ask(self) -> Suggestion | None:
        """A new suggestion; one numbered past `n_trials` (another driver asked the last one first) is PRUNED."""
        import optuna

        trial = self.study.ask()
        if trial.number >= self.config.n_trials:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return None
        params = {key: suggest(trial, key, p) for key, p in self.config.space.items()}
        try:
            return self.suggestion(trial.number, params)
        except ConfigError:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise

    def adopt(self, number: int, params: dict[str, Any]) -> Suggestion | None:
        """The suggestion `number` when this driver can claim all of its unfinished runs (their driver is gone)."""
        suggestion = self.suggestion(number, params)
        for trial in suggestion.trials:
            if self.sweep.store.is_done(trial.trial_id):
                continue
            if not self.sweep.claim(trial):
                for trial_id in suggestion.claimed:
                    self.sweep.release(trial_id)
                return None
            suggestion.claimed.add(trial.trial_id)
        return suggestion

    def suggestion(self, number: int, params: dict[str, Any]) -> Suggestion:
        spec = self.sweep.spec
        return Suggestion(number, params, [make_trial(spec, params, seed, self.sweep.label) for seed in spec.seed_list])

    def launch(self, suggestion: Suggestion, executor: Executor) -> None:
        """Submit the suggestion's runs this driver holds or can claim; take finished ones from the store; wait for
        those another driver (or an earlier suggestion with the same parameters) runs."""
        store, todo = self.sweep.store, []
        for trial in suggestion.trials:
            if store.is_done(trial.trial_id):
                self.take_from_store(suggestion, trial.trial_id)
            elif trial.trial_id in suggestion.claimed or self.sweep.claim(trial):
                todo.append(trial)
            else:
                suggestion.waiting[trial.trial_id] = (store.result(trial.trial_id) or {}).get("finished_at")
        self.active.append(suggestion)
        self.sweep.submit(todo, executor)
        self.budget -= len(todo)

    def take_from_store(self, suggestion: Suggestion, trial_id: str) -> None:
        """Use the stored result of a run finished before or by another driver."""
        record = self.sweep.store.record(trial_id)
        assert record is not None
        suggestion.records[trial_id] = record
        suggestion.waiting.pop(trial_id, None)
        self.progress.skipped(record)

    def deliver(self, record: TrialRecord) -> None:
        """Hand a record of this driver's executor to every suggestion that includes its run."""
        for suggestion in self.active:
            if any(t.trial_id == record.trial_id for t in suggestion.trials):
                suggestion.records[record.trial_id] = record
                suggestion.waiting.pop(record.trial_id, None)

    def resolve_waiting(self, executor: Executor) -> None:
        """Runs held by others: take their new result; claim and run those whose holder let go without one."""
        for suggestion in self.active:
            for trial in [t for t in suggestion.trials if t.trial_id in suggestion.waiting]:
                result = self.sweep.store.result(trial.trial_id)
                if result and (result.get("status") == "done"
                               or result.get("finished_at") != suggestion.waiting[trial.trial_id]):
                    self.take_from_store(suggestion, trial.trial_id)
                elif self.sweep.claim(trial):
                    del suggestion.waiting[trial.trial_id]
                    self.sweep.submit([trial], executor)
                    self.budget -= 1

    def tell_finished(self) -> None:
        """Tell the study each suggestion whose runs all finished (another driver may have told it already)."""
        import optuna

        for suggestion in [s for s in self.active if s.finished]:
            value = objective([suggestion.records[t.trial_id] for t in suggestion.trials], self.config.metric)
            if value is None:
                self.study.tell(suggestion.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            else:
                self.study.tell(suggestion.number, value, skip_if_finished=True)
            self.active.remove(suggestion)
            self.progress.told(suggestion.number, suggestion.params, value)
            write_trials(self.study, self.sweep.root)


def run_optuna(sweep: Sweep, study: optuna.Study, progress: SweepProgress, max_trials: int | None) -> None:
    """Run the spec's Optuna search of `study` (see the module docstring) on the spec's executor."""
    search = OptunaSearch(sweep, study, progress, max_trials)
    try:
        with sweep.executor(progress) as executor:
            search.run(executor)
    finally:
        sweep.release_claims()
    write_trials(study, sweep.root)  # with the suggestions other drivers told meanwhile, for the report

