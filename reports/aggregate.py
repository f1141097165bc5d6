"""Across tasks (Agarwal et al. 2021, rliable's definitions): interquartile mean and probability of improvement of
per-trial held-out accuracy, with 95% percentile intervals from a stratified bootstrap (seeds resampled with
replacement within each task). With a handful of seeds per task these intervals are optimistic; they summarise,
the per-task paired tests decide.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
from scipy import stats

from reports.compare import Pair, describe

RESAMPLES = 2000
CONFIDENCE = 0.95


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the scores left after cutting 25% from each end (scipy's trim_mean)."""
    return stats.trim_mean(scores, 0.25, axis=axis)


def probability_of_improvement(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray | float:
    """Mean over tasks t of P(X_t > Y_t) = 1/(n m) sum_ij ([x_i > y_j] + [x_i == y_j] / 2); the runs are the last
    axis, any leading axes (bootstrap replicates) are kept."""
    per_task = [np.mean((a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :]),
                        axis=(-2, -1)) for a, b in zip(x, y)]
    return np.mean(per_task, axis=0)


def stratified_resample(per_task: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Each task's runs drawn with replacement within the task: one (RESAMPLES, n_t) array per task."""
    return [runs[rng.integers(0, runs.size, (RESAMPLES, runs.size))] for runs in per_task]


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(replicates, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def iqm_interval(per_task: list[np.ndarray], rng: np.random.Generator) -> tuple[float, float, float]:
    """(IQM of all runs pooled over tasks, stratified-bootstrap interval)."""
    replicates = iqm(np.concatenate(stratified_resample(per_task, rng), axis=1), axis=1)
    return float(iqm(np.concatenate(per_task))), *percentile_interval(replicates)


def improvement_interval(x: list[np.ndarray], y: list[np.ndarray],
                         rng: np.random.Generator) -> tuple[float, float, float]:
    """(P(X > Y), stratified-bootstrap interval), X and Y resampled independently within each task."""
    replicates = probability_of_improvement(stratified_resample(x, rng), stratified_resample(y, rng))
    return float(probability_of_improvement(x, y)), *percentile_interval(replicates)


def across_tasks(trials: pd.DataFrame, pairs: list[Pair], seed: int = 0) -> pd.DataFrame:
    """For each comparison (kind, candidate, baseline) made on 2+ tasks: IQMs and P(candidate > baseline)."""
    scores = {arm: group["score"].dropna().to_numpy(float) for arm, group in trials.groupby("arm", sort=False)}
    grouped: dict[tuple[str, str, str], list[Pair]] = defaultdict(list)
    for pair in pairs:
        grouped[(pair.kind, pair.candidate.label, pair.baseline.label)].append(pair)
    rng = np.random.default_rng(seed)
    rows = []
    for (kind, candidate, baseline), found in sorted(grouped.items()):
        found = [p for p in found if scores[p.candidate].size and scores[p.baseline].size]
        if len({p.candidate.task for p in found}) < 2:
            continue
        x = [scores[p.candidate] for p in found]
        y = [scores[p.baseline] for p in found]
        row = {"kind": kind, "comparison": describe(found[0]), "candidate": candidate, "baseline": baseline,
               "n_tasks": len(found),
               "tasks": ", ".join(p.candidate.task for p in found)}
        for name, values in (("iqm_candidate", iqm_interval(x, rng)), ("iqm_baseline", iqm_interval(y, rng)),
                             ("p_improvement", improvement_interval(x, y, rng))):
            row |= dict(zip([name, f"{name}_low", f"{name}_high"], values))
        rows.append(row)
    return pd.DataFrame(rows)
