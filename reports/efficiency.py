"""Sample efficiency from each trial's eval_curve.jsonl (held-out accuracy on a fixed subset during training).

Per trial:
  - auc = integral of accuracy over steps (trapezoid) / (last step - first step): the mean accuracy over training;
  - steps_to_threshold = first evaluated step whose accuracy >= threshold; a trial that never reaches it is censored
    at its last step (`reached` False). The threshold of a task is `report.threshold` when configured, else the
    warm-start accuracy (mean step-0 accuracy) + half of the best final gain (best arm's mean final accuracy - warm).
The planned comparisons are repeated on both, paired by seed, with seed-only t-intervals (the curves carry no per-item
outcomes) and the decision rule of reports/decision.py within each metric (its claim comparisons one family,
each control its own). Fewer steps is better; steps have no equivalence margin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.compare import Pair, comparison_row, with_verdicts
from reports.decision import ALPHA
from reports.stats import estimate


def normalised_auc(steps: np.ndarray, accuracy: np.ndarray) -> float:
    """trapezoid(accuracy, steps) / (steps[-1] - steps[0]); the accuracy itself for a single evaluation."""
    if len(steps) == 1:
        return float(accuracy[0])
    area = float(np.sum((accuracy[1:] + accuracy[:-1]) / 2 * np.diff(steps)))
    return area / float(steps[-1] - steps[0])


def steps_to_threshold(steps: np.ndarray, accuracy: np.ndarray, threshold: float) -> tuple[float, bool]:
    """(first step with accuracy >= threshold, True), or (last step, False) when it is never reached."""
    reached = np.flatnonzero(np.asarray(accuracy) >= threshold)
    return (float(steps[reached[0]]), True) if reached.size else (float(steps[-1]), False)


def thresholds(curves: pd.DataFrame, configured: float | None) -> dict[str, float]:
    """Per task: `configured`, else warm + (best final - warm) / 2 with warm = mean accuracy at each curve's first
    step and best final = max over arms of the mean accuracy at each curve's last step (gain floored at 0)."""
    result = {}
    for task, group in curves.groupby("task", sort=True):
        if configured is not None:
            result[task] = configured
            continue
        by_trial = group.groupby(["arm", "seed"], sort=False)["accuracy"]
        warm = float(by_trial.first().mean())
        best = float(by_trial.last().groupby(level="arm", sort=False).mean().max())
        result[task] = warm + max(best - warm, 0.0) / 2
    return result


def trial_efficiency(curves: pd.DataFrame, configured: float | None) -> pd.DataFrame:
    """One row per trial with a curve: task, arm, seed, auc, steps (to threshold), reached, threshold."""
    if curves.empty:
        return pd.DataFrame()
    limits = thresholds(curves, configured)
    rows = []
    for (arm, seed), group in curves.groupby(["arm", "seed"], sort=False):
        steps, accuracy = group["step"].to_numpy(float), group["accuracy"].to_numpy(float)
        to_threshold, reached = steps_to_threshold(steps, accuracy, limits[arm.task])
        rows.append({"task": arm.task, "arm": arm, "seed": seed, "auc": normalised_auc(steps, accuracy),
                     "steps": to_threshold, "reached": reached, "threshold": limits[arm.task]})
    return pd.DataFrame(rows)


def efficiency_table(per_trial: pd.DataFrame, pairs: list[Pair], margin: float, alpha: float = ALPHA) -> pd.DataFrame:
    """Seed-paired comparisons of auc (higher is better, equivalence margin) and steps (lower is better)."""
    if per_trial.empty:
        return pd.DataFrame()
    tables = []
    for metric, higher, metric_margin in (("auc", True, margin), ("steps", False, None)):
        rows = []
        for pair in pairs:
            candidate = per_trial[per_trial["arm"] == pair.candidate][["seed", metric, "reached"]]
            baseline = per_trial[per_trial["arm"] == pair.baseline][["seed", metric, "reached"]]
            merged = candidate.merge(baseline, on="seed", suffixes=("", ".base"))
            if merged.empty:
                continue
            result = estimate((merged[metric] - merged[f"{metric}.base"]).to_numpy(float)[:, None])
            reached = f"{int(merged['reached'].sum())}/{int(merged['reached.base'].sum())} of {len(merged)}"
            rows.append(comparison_row(pair, result, "seeds") | {"metric": metric, "reached": reached})
        tables.append(with_verdicts(pd.DataFrame(rows), metric_margin, higher, alpha))
    return pd.concat(tables, ignore_index=True)
