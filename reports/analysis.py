"""Every number of a report, computed once from the sweep table and the trial directories; `report_json` is its
machine-readable form (report.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.aggregate import across_tasks
from reports.decision import ALPHA
from reports.compare import arm_table, comparison_table, plan
from reports.data import finished_trials, held_out_metric, long_curves, provenance
from reports.efficiency import efficiency_table, trial_efficiency


DEFAULT_MARGIN_REASON = (
    "2 points of held-out pass@1: GRPO-variant papers report gains of 1-5 points on GSM8K and MATH, and a smaller "
    "difference would not change which advantage estimator anyone uses; the report shows it as a share of the "
    "sweep's own RL gain (group_mean vs warm_start)")


@dataclass(frozen=True)
class ReportOptions:
    """`report:` options of the sweep spec: equivalence margin of the verdicts (metric units), the held-out value
    that defines steps-to-threshold (None: warm start + half of the best final gain) and the primary metric (a
    per-item outcome of eval_items.jsonl: `pass@1`, `greedy` or `pass@k`; None: pass@1 when the trials drew
    samples, else greedy)."""

    equivalence_margin: float = 0.02
    threshold: float | None = None
    metric: str | None = None
    margin_reason: str = DEFAULT_MARGIN_REASON
    alpha: float = ALPHA  # the family-wise level of the verdicts (a sequential sweep's look spends less)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ReportOptions:
        """From `spec["report"]`: a bool (defaults) or a mapping {enabled, equivalence_margin, margin_reason,
        threshold, metric}."""
        report = spec.get("report")
        if not isinstance(report, dict):
            return cls()
        return cls(float(report.get("equivalence_margin", cls.equivalence_margin)), report.get("threshold"),
                   report.get("metric"), str(report.get("margin_reason") or cls.margin_reason))


@dataclass(frozen=True)
class Analysis:
    """The tables of a report."""

    results: pd.DataFrame
    trials: pd.DataFrame
    arms: pd.DataFrame
    comparisons: pd.DataFrame
    eval_curves: pd.DataFrame
    efficiency: pd.DataFrame
    across: pd.DataFrame
    train_curves: pd.DataFrame
    thresholds: dict[str, float]
    options: ReportOptions
    metric: str
    provenance: dict[str, list[str]]

    @property
    def source(self) -> str:
        """Where the held-out metric comes from."""
        with_items = self.trials["items"].map(lambda s: s is not None)
        fallback = held_out_metric(self.results)
        if with_items.empty:
            return "no finished trial"
        if with_items.all():
            return f"per-item `{self.metric}` of eval_items.jsonl"
        if not with_items.any():
            return f"`{fallback}` per trial (no per-item `{self.metric}` in eval_items.jsonl: intervals over seeds only)"
        return (f"per-item `{self.metric}` of eval_items.jsonl where every trial of an arm has it, else `{fallback}` "
                "per trial with intervals over seeds only (column `noise`)")


def analyse(results: pd.DataFrame, root: Path, options: ReportOptions) -> Analysis:
    """Arms, planned comparisons, sample efficiency, across-task aggregates and curves of the sweep in `root`."""
    trials, metric = finished_trials(results, root, options.metric)
    pairs = plan(list(dict.fromkeys(trials["arm"])))
    margin = options.equivalence_margin
    eval_curves = curves_of_metric(long_curves(trials, "eval_curve.jsonl"), metric)
    per_trial = trial_efficiency(eval_curves, options.threshold)
    efficiency = efficiency_table(per_trial, pairs, margin, options.alpha)
    limits = per_trial.groupby("task")["threshold"].first().to_dict() if not per_trial.empty else {}
    return Analysis(results, trials, arm_table(trials), comparison_table(trials, pairs, margin, options.alpha), eval_curves,
                    efficiency, across_tasks(trials, pairs), long_curves(trials, "metrics.jsonl"), limits, options,
                    metric, provenance(list(trials["run_dir"])))


def curves_of_metric(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The held-out curve rows (`accuracy` column) that measure `metric` (rows without a `metric` key are greedy
    accuracy, as written before sampled scoring); empty when none does."""
    if "accuracy" not in curves:
        return pd.DataFrame()
    measured = curves["metric"].fillna("greedy") if "metric" in curves else pd.Series("greedy", index=curves.index)
    return curves[measured == metric].reset_index(drop=True)


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of `frame` as JSON-ready dicts of `columns` (NaN -> None, NumPy scalars -> Python)."""
    return [{c: plain(row[c]) for c in columns if c in frame} for _, row in frame.iterrows()]


def plain(value: Any) -> Any:
    """A JSON-serialisable form of a table cell."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def report_json(analysis: Analysis) -> dict[str, Any]:
    """report.json: arms, comparisons (accuracy), sample-efficiency comparisons and across-task aggregates."""
    comparison = ["candidate", "baseline", "task", "kind", "n_seeds", "n_items", "diff", "se", "df", "ci_low",
                  "ci_high", "ci95_low", "ci95_high", "family_size", "p_value", "p_adjusted", "mde80", "seeds_to_detect",
                  "verdict", "margin", "noise"]
    return {
        "metric": analysis.metric, "source": analysis.source,
        "equivalence_margin": analysis.options.equivalence_margin, "margin_reason": analysis.options.margin_reason,
        "arms": records(analysis.arms, ["arm", "task", "params", "n_seeds", "n_items", "mean", "ci_low", "ci_high",
                                        "noise"]),
        "comparisons": records(analysis.comparisons, comparison),
        "thresholds": {task: plain(value) for task, value in analysis.thresholds.items()},
        "sample_efficiency": records(analysis.efficiency, ["metric", *comparison, "reached"]),
        "across_tasks": records(analysis.across, list(analysis.across.columns)),
        "environment": analysis.provenance,
    }
