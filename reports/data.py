"""Reading a sweep directory: finished trials grouped into arms, per-item eval outcomes and per-trial curves.

An arm is a task plus the swept parameters of a trial (`param.*` columns except `param.task.*`), NaN ones dropped;
its seeds are the replicates. The warm-start control rows (`param.estimator.name == "warm_start"`) form one arm per
task.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ESTIMATOR = "estimator.name"
BASELINE = "group_mean"
WARM_START = "warm_start"
SHUFFLED = "shuffled"
SEMANTIC_DENSITY = "rewards.semantic_density"
METRIC = "eval.accuracy"
LM_EVAL_METRIC = "eval.lm_eval_exact_match"


@dataclass(frozen=True)
class Arm:
    """A configuration arm of one task: `params` = sorted (dotted key, value) pairs, estimator first."""

    task: str
    params: tuple[tuple[str, Any], ...]

    @property
    def estimator(self) -> str:
        return str(dict(self.params).get(ESTIMATOR, ""))

    @property
    def label(self) -> str:
        """`estimator=group_mean|rewards.semantic_density=0.0`, or `warm_start` for the control."""
        if self.estimator == WARM_START:
            return WARM_START
        return "|".join(f"{'estimator' if key == ESTIMATOR else key}={value}" for key, value in self.params)

    @property
    def others(self) -> tuple[tuple[str, Any], ...]:
        """The parameters other than the estimator (the reward mix and any other swept key)."""
        return tuple((key, value) for key, value in self.params if key != ESTIMATOR)

    @property
    def mix(self) -> str:
        """Label of `others` (facet title of the figures): `rewards.semantic_density=0.5`, `all` when none."""
        return "|".join(f"{key}={value}" for key, value in self.others) or "all"

    def replace(self, key: str, value: Any) -> Arm:
        """The same arm with parameter `key` set to `value`."""
        params = dict(self.params) | {key: value}
        return make_arm(self.task, params)


def make_arm(task: str, params: dict[str, Any]) -> Arm:
    """Arm with NaN parameters dropped, NumPy scalars made plain, keys sorted with the estimator first."""
    plain = {key: value.item() if isinstance(value, np.generic) else value for key, value in params.items()}
    kept = {key: value for key, value in plain.items() if not (isinstance(value, float) and math.isnan(value))}
    if kept.get(ESTIMATOR) == WARM_START:
        kept = {ESTIMATOR: WARM_START}
    return Arm(task, tuple(sorted(kept.items(), key=lambda kv: (kv[0] != ESTIMATOR, kv[0]))))


def held_out_metric(results: pd.DataFrame) -> str:
    """Trial-level fallback metric: lm-eval's exact match when the trials were scored with lm-eval, else accuracy."""
    if LM_EVAL_METRIC in results and results[LM_EVAL_METRIC].notna().any():
        return LM_EVAL_METRIC
    return METRIC


def task_labels(results: pd.DataFrame) -> pd.Series:
    """The `task` column, else `param.task.name`, else one task called `task`."""
    for column in ("task", "param.task.name"):
        if column in results:
            return results[column].fillna("task").astype(str)
    return pd.Series("task", index=results.index)


def arm_columns(results: pd.DataFrame) -> list[str]:
    """The swept `param.*` columns that define an arm (task keys excluded)."""
    return sorted(c for c in results.columns if c.startswith("param.") and not c.startswith("param.task."))


def result_arms(results: pd.DataFrame) -> list[Arm]:
    """The arm of each row of a results table (its task and swept parameters)."""
    columns = arm_columns(results)
    return [make_arm(task, {c.removeprefix("param."): row[c] for c in columns})
            for task, (_, row) in zip(task_labels(results), results.iterrows())]


def local_run_dir(row: pd.Series, root: Path) -> str | None:
    """The trial's recorded run_dir, or ROOT/trials/<trial_id> when that path is gone (a moved or copied sweep)."""
    recorded = row.get("run_dir")
    if isinstance(recorded, str) and Path(recorded).is_dir():
        return recorded
    fallback = root / "trials" / str(row.get("trial_id"))
    return str(fallback) if fallback.is_dir() else None


def finished_trials(results: pd.DataFrame, root: Path, metric: str | None = None) -> tuple[pd.DataFrame, str]:
    """One row per finished trial: task, arm, seed, run_dir, `score` (the fallback metric) and `items` (Series of
    per-item `metric` by item_id, or None without it in eval_items.jsonl), and the metric (`default_metric` of the
    trials when None). Duplicate (arm, seed) rows keep the first."""
    done = results[results["status"] == "done"].copy()
    fallback = held_out_metric(results)
    tasks = task_labels(done)
    arms = result_arms(done)
    frame = pd.DataFrame({"task": tasks.to_numpy(), "arm": arms, "seed": done["seed"].to_numpy(),
                          "run_dir": [local_run_dir(row, root) for _, row in done.iterrows()],
                          "score": done[fallback].to_numpy(dtype=float) if fallback in done else np.nan})
    frame = frame.drop_duplicates(subset=["arm", "seed"], keep="first").reset_index(drop=True)
    metric = metric or default_metric(list(frame["run_dir"]))
    frame["items"] = object_column([item_outcomes(run_dir, metric) for run_dir in frame["run_dir"]])
    has_items = frame["items"].map(lambda s: s is not None)
    frame.loc[has_items, "score"] = [s.mean() for s in frame.loc[has_items, "items"]]
    return frame, metric


def object_column(values: list[Any]) -> np.ndarray:
    """A 1-D object array of `values` (NumPy would otherwise stack equal-length Series into a 2-D array)."""
    column = np.empty(len(values), dtype=object)
    for k, value in enumerate(values):
        column[k] = value
    return column


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a .jsonl file (blank lines skipped; empty when the file is missing). A torn last line (a
    writer killed mid-append) is skipped with a warning naming the file; a bad line before it raises `ValueError`."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    last = max((n for n, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if n < last:
                raise ValueError(f"{path}: line {n + 1} is not JSON ({error})") from None
            warnings.warn(f"{path}: torn last line skipped (line {n + 1}: {line[:60]!r})", stacklevel=2)
    return records


ITEM_METRICS = ("pass@1", "greedy")
"""The per-item outcomes of eval_items.jsonl a report can be about, in the order of preference of the default
(sampled pass@1 when the trials drew samples); `pass@k` for larger k where the trials drew k samples or more."""


def item_outcomes(run_dir: Any, metric: str) -> pd.Series | None:
    """Per-item `metric` (`pass@1` = share of the item's samples that is correct, `greedy` = 0/1, `pass@k`) of a
    trial's eval_items.jsonl (mean over duplicate item_ids), None when the file or the metric is absent. Files of
    greedy-only scoring before sampled scoring existed name the greedy outcome `correct`."""
    if not isinstance(run_dir, str) or not run_dir:
        return None
    frame = pd.DataFrame(read_jsonl(Path(run_dir) / "eval_items.jsonl"))
    column = "correct" if metric == "greedy" and "greedy" not in frame and "correct" in frame else metric
    if column not in frame:
        return None
    return frame.groupby("item_id")[column].mean().astype(float)


def default_metric(run_dirs: list[Any]) -> str:
    """The first of ITEM_METRICS that the first trial with eval_items.jsonl scored (`greedy` when none has one)."""
    for run_dir in run_dirs:
        records = read_jsonl(Path(run_dir) / "eval_items.jsonl") if isinstance(run_dir, str) and run_dir else []
        if records:
            return next((m for m in ITEM_METRICS if m in records[0]), "greedy")
    return "greedy"


def outcome_matrix(trials: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Seeds x items matrix of one arm's trials on the items every seed saw ("seeds+items"), or the seeds x 1 matrix
    of trial scores when a trial lacks eval_items ("seeds")."""
    trials = trials.sort_values("seed")
    if trials["items"].map(lambda s: s is not None).all():
        matrix = pd.concat(list(trials["items"]), axis=1, join="inner").T.to_numpy()
        if matrix.shape[1] > 0:
            return matrix, "seeds+items"
    return trials["score"].to_numpy(dtype=float)[:, None], "seeds"


def paired_matrix(candidate: pd.DataFrame, baseline: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Candidate - baseline on the seeds both finished, per item where both have eval_items on common items
    (seeds x items), else per trial score (seeds x 1); with the noise sources it covers."""
    merged = candidate.merge(baseline, on="seed", suffixes=("", ".base")).sort_values("seed")
    if merged.empty:
        return np.empty((0, 1)), "seeds"
    series = list(merged["items"]) + list(merged["items.base"])
    if all(s is not None for s in series):
        common = pd.concat(series, axis=1, join="inner")
        if not common.empty:
            n = len(merged)
            return (common.iloc[:, :n].to_numpy() - common.iloc[:, n:].to_numpy()).T, "seeds+items"
    return (merged["score"] - merged["score.base"]).to_numpy(dtype=float)[:, None], "seeds"


def provenance(run_dirs: list[Any]) -> dict[str, list[str]]:
    """The distinct values of each `provenance` fact (cpu, cpu_capability, threads, lock) over the trials'
    summary.json files, sorted (harness.lock.provenance writes them)."""
    seen: dict[str, set[str]] = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / "summary.json" if isinstance(run_dir, str) and run_dir else None
        if path is None or not path.is_file():
            continue
        for key, value in json.loads(path.read_text()).get("provenance", {}).items():
            seen.setdefault(key, set()).add(str(value))
    return {key: sorted(values) for key, values in seen.items()}


def curve(run_dir: Any, name: str) -> pd.DataFrame:
    """A trial's `name` .jsonl (metrics.jsonl, eval_curve.jsonl) as a table sorted by step; empty when absent."""
    records = read_jsonl(Path(run_dir) / name) if isinstance(run_dir, str) and run_dir else []
    frame = pd.DataFrame(records)
    return frame.sort_values("step").reset_index(drop=True) if "step" in frame else pd.DataFrame()


def long_curves(trials: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every trained trial's `name` curve (the warm-start control has none to speak of) stacked with its task, arm
    and seed."""
    frames = [curve(row.run_dir, name).assign(task=row.task, arm=row.arm, seed=row.seed)
              for row in trials.itertuples() if row.arm.estimator != WARM_START]
    frames = [f for f in frames if "step" in f]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
