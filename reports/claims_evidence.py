"""The evidence rows of the claims report: one row per (comparison, run directory, task, other parameters), computed
with the report's own functions (reports.analysis.analyse, reports.data.paired_matrix, reports.stats.estimate).

A run directory is a sweep (results.parquet: accuracy, length, train:KEY, failures) or the output of `lph diagnose`
(diagnostics.parquet: diagnostics:COLUMN). Rows carry the estimate (diff, se, df or the failure counts) and the raw
p-value; reports.claims judges them with reports.decision (one family per claim).
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from reports.analysis import Analysis, ReportOptions, analyse
from reports.claims_spec import Evidence, arm_pairs, excluded, matches
from reports.data import ESTIMATOR, Arm, arm_columns, curve, make_arm, object_column, paired_matrix, read_jsonl, \
    task_labels
from reports.decision import newcombe
from reports.stats import estimate

TESTBED = "exact-gradient testbed"
MECHANISM = {"mechanism/cosine": "mechanism_cosine", "mechanism/scale_ratio_cv": "mechanism_scale_cv"}
CELL = ["policy", "rewards", "start"]


@dataclass
class Source:
    """One run directory given to `lph claims`: its sweep name and what it holds."""

    root: Path
    name: str
    analysis: Analysis | None = None
    diagnostics: pd.DataFrame | None = None

    def settled(self) -> dict[tuple, dict[str, Any]]:
        """The claim rows a sequential sweep settled (its settle.json, reports/sequential.py), by (claim id,
        evidence, candidate, baseline, task, scope)."""
        path = self.root / "settle.json"
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        return {(r["id"], r["evidence"], r["candidate"], r["baseline"], r["task"], r["scope"]): r
                for r in rows if r["id"] is not None}

    @property
    def margin(self) -> float:
        return self.analysis.options.equivalence_margin if self.analysis else ReportOptions().equivalence_margin

    @property
    def margin_reason(self) -> str:
        return (self.analysis.options if self.analysis else ReportOptions()).margin_reason

    def rl_gain(self, task: str) -> float | None:
        """The sweep's own RL gain on `task`: the mean difference of its group_mean arms vs the warm start (the
        "control: RL" comparisons), None without one."""
        table = self.analysis.comparisons if self.analysis else pd.DataFrame()
        if table.empty:
            return None
        rows = table[(table["kind"] == "control: RL") & (table["task"] == task)]
        return float(rows["diff"].mean()) if len(rows) else None

    @property
    def metric(self) -> str:
        """Name of the sweep report's primary held-out metric."""
        for owner in (self.analysis, getattr(self.analysis, "options", None)):
            value = getattr(owner, "metric", None)
            if isinstance(value, str):
                return value
        return "accuracy"


def load_source(root: Path | str, analysis: Analysis | None = None) -> Source:
    """A sweep directory (analysed as its report is, unless `analysis` is given) or a diagnostics directory."""
    root = Path(root)
    spec_file = root / "spec.json"
    spec = json.loads(spec_file.read_text()).get("spec", {}) if spec_file.is_file() else {}
    source = Source(root, str(spec.get("name") or root.name))
    if (root / "results.parquet").is_file():
        source.analysis = analysis or analyse(pd.read_parquet(root / "results.parquet"), root,
                                              ReportOptions.from_spec(spec))
    if (root / "diagnostics.parquet").is_file():
        source.diagnostics = pd.read_parquet(root / "diagnostics.parquet")
        source.name = "diagnostics" if not spec else source.name
    if source.analysis is None and source.diagnostics is None:
        raise FileNotFoundError(f"{root}: neither results.parquet (a sweep) nor diagnostics.parquet (lph diagnose)")
    return source


def evidence_rows(source: Source, evidence: Evidence) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of one comparison in one run directory, and notes on what was asked for but is not there."""
    if not evidence.counts(source.name):
        return [], []
    if evidence.kind == "diagnostics":
        return diagnostics_rows(source, evidence) if source.diagnostics is not None else ([], [])
    if source.analysis is None or source.analysis.trials.empty:
        return [], []
    if evidence.kind == "failures":
        return failure_rows(source, evidence), []
    trials = source.analysis.trials
    arms = list(dict.fromkeys(trials["arm"]))
    pairs = arm_pairs(arms, evidence)
    if not pairs:
        return [], []
    if evidence.kind == "length":
        trials = trials.assign(items=object_column([item_values(r, "length") for r in trials["run_dir"]]))
        trials["score"] = [s.mean() if s is not None else math.nan for s in trials["items"]]
        if trials["items"].map(lambda s: s is None).all():
            return [], [f"{source.name}: no `length` in eval_items.jsonl (held-out completion length not recorded)"]
    elif evidence.kind == "train":
        values = [train_value(r, evidence.key, evidence.agg) for r in trials["run_dir"]]
        if all(math.isnan(v) for v in values):
            return [], [f"{source.name}: metrics.jsonl has no `{evidence.key}`" + (
                " (TRL logs the KL only when trainer.beta > 0)" if evidence.key == "kl" else "")]
        trials = trials.assign(items=object_column([None] * len(trials)), score=transform(values, evidence.log))
    by_arm = {arm: group for arm, group in trials.groupby("arm", sort=False)}
    counts = whole_keys(arms)
    rows = []
    for candidate, baseline in pairs:
        matrix, noise = paired_matrix(by_arm[candidate], by_arm[baseline])
        matrix = matrix[:, ~np.all(np.isnan(matrix), axis=0)] if matrix.size else matrix
        matrix = matrix[~np.isnan(matrix).any(axis=1)] if matrix.ndim == 2 else matrix
        means = paired_means(by_arm[candidate], by_arm[baseline], evidence.log)
        rows.append(row(source, evidence, candidate.task, describe_scope(candidate, baseline, evidence, counts),
                        candidate.label, baseline.label, estimate(matrix), noise, *means)
                    | mechanism(by_arm[candidate], candidate.estimator != baseline.estimator))
    return rows, []


def mechanism(trials: pd.DataFrame, estimators_differ: bool) -> dict[str, float]:
    """The candidate arm's mechanism check (harness/trial/trl_hooks.py logs it at every step of an estimator arm):
    mean over its trials of the per-trial mean of each metrics.jsonl key of MECHANISM; NaN when the comparison does
    not change the estimator or the trials did not log it."""
    found = {}
    for key, field in MECHANISM.items():
        values = [train_value(r, key, "mean") for r in trials["run_dir"]] if estimators_differ else []
        values = [v for v in values if not math.isnan(v)]
        found[field] = float(np.mean(values)) if values else math.nan
    return found


def row(source: Source, evidence: Evidence, task: str, scope: str, candidate: str, baseline: str, result: Any,
        noise: str, candidate_mean: float, baseline_mean: float) -> dict[str, Any]:
    """An evidence row: the report's comparison fields plus the comparison's prediction and settings."""
    metric = source.metric if evidence.kind == "accuracy" else evidence.metric
    accuracy = evidence.kind == "accuracy" and evidence.margin is None
    margin = source.margin if accuracy else evidence.margin
    reason = source.margin_reason if accuracy else evidence.margin_reason
    return {"evidence": evidence.label, "metric": metric, "sweep": source.name, "run_dir": str(source.root),
            "task": task, "scope": scope, "candidate": candidate, "baseline": baseline,
            "n_seeds": result.n_seeds, "n_items": result.n_items if noise == "seeds+items" else None,
            "candidate_mean": candidate_mean, "baseline_mean": baseline_mean, "diff": result.mean,
            "se": result.se, "df": result.df, "counts": getattr(result, "counts", None),
            "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value, "mde80": result.mde80,
            "seeds_to_detect": result.seeds_to_detect() if result.components is not None else None,
            "noise": noise, "scale": "log ratio" if evidence.log else "difference", "margin": margin,
            "margin_reason": reason, "rl_gain": source.rl_gain(task) if evidence.kind == "accuracy" else None,
            "predict": evidence.predict, "higher_is_better": evidence.higher_is_better}


def whole_keys(arms: list[Arm]) -> set[str]:
    """Parameters with several values, all whole numbers (counts such as trainer.num_generations, stored as float
    when the warm start's row leaves them empty): shown without the `.0`."""
    values: dict[str, set[Any]] = {}
    for arm in arms:
        for key, value in arm.params:
            values.setdefault(key, set()).add(value)
    return {key for key, found in values.items() if len(found) > 1 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in found)}


def describe_scope(candidate: Arm, baseline: Arm, evidence: Evidence, counts: set[str] = frozenset()) -> str:
    """Task and the parameters that tell this row from the other rows of its comparison: `multihop |
    rewards.semantic_density=0.5`; a parameter the baseline changes shows both values (`trainer.num_generations=2 vs
    8`), the estimator only when the comparison does not fix it."""
    base = {key: show(value) if key in counts else value for key, value in baseline.params}
    parts = []
    for key, value in candidate.params:
        value = show(value) if key in counts else value
        fixed = key in evidence.candidate and not isinstance(evidence.candidate[key], (list, str))
        if key in evidence.baseline and base.get(key) != value:
            if key != ESTIMATOR:
                parts.append(f"{key}={value} vs {base.get(key)}")
        elif key == ESTIMATOR:
            if ESTIMATOR not in evidence.candidate or not fixed:
                parts.append(f"estimator={value}")
        elif not fixed:
            parts.append(f"{key}={value}")
    return " | ".join([candidate.task, *parts])


def show(value: Any) -> Any:
    """A whole float as an int (a parameter column with gaps, such as the warm start's, is stored as float)."""
    return int(value) if isinstance(value, float) and value.is_integer() and not isinstance(value, bool) else value


def paired_means(candidate: pd.DataFrame, baseline: pd.DataFrame, log: bool) -> tuple[float, float]:
    """Mean per-trial score of each arm over the seeds both finished (back from logs when `log`)."""
    merged = candidate.merge(baseline, on="seed", suffixes=("", ".base"))
    values = merged[["score", "score.base"]].to_numpy(dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    values = np.exp(values) if log else values
    with np.errstate(invalid="ignore"):
        return float(np.nanmean(values[:, 0])), float(np.nanmean(values[:, 1]))


def transform(values: list[float], log: bool) -> np.ndarray:
    """log of positive values (NaN otherwise) when `log`."""
    array = np.asarray(values, dtype=float)
    if not log:
        return array
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(array > 0, np.log(array), np.nan)


def item_values(run_dir: Any, key: str) -> pd.Series | None:
    """Per-item `key` of a trial's eval_items.jsonl by item_id (mean over duplicates), None when absent."""
    records = read_jsonl(Path(run_dir) / "eval_items.jsonl") if isinstance(run_dir, str) and run_dir else []
    frame = pd.DataFrame(records)
    if frame.empty or key not in frame or "item_id" not in frame:
        return None
    return frame.groupby("item_id")[key].mean().astype(float)


def train_value(run_dir: Any, key: str, agg: str) -> float:
    """`agg` (mean, last, max, min) of a metrics.jsonl column over the logged steps; NaN when absent."""
    frame = curve(run_dir, "metrics.jsonl")
    if key not in frame:
        return math.nan
    values = pd.to_numeric(frame[key], errors="coerce").dropna()
    if values.empty:
        return math.nan
    return float(values.iloc[-1] if agg == "last" else getattr(values, agg)())


def diagnostics_rows(source: Source, evidence: Evidence) -> tuple[list[dict[str, Any]], list[str]]:
    """Candidate - baseline estimator on every testbed cell (policy x rewards x start) at group size G: the cells
    are the replicates (interval over cells, t with cells - 1 df)."""
    frame = source.diagnostics
    assert frame is not None
    column = evidence.key
    if column not in frame:
        return [], [f"{source.name}: diagnostics.parquet has no column `{column}`"]
    frame = frame[frame["G"] == evidence.group_size]
    label = "estimator"
    wanted = [evidence.candidate.get(label), evidence.baseline.get(label)]
    tables = [frame[frame[label].map(lambda e, w=w: matches({label: e}, {label: w}))] for w in wanted]
    if any(t.empty for t in tables):
        return [], []
    merged = tables[0].merge(tables[1], on=CELL, suffixes=("", ".base"))
    if merged.empty:
        return [], []
    pair = [transform(merged[c].tolist(), evidence.log) for c in (column, f"{column}.base")]
    result = estimate((pair[0] - pair[1])[:, None])
    scope = f"{TESTBED} | G={evidence.group_size} | {len(merged)} cells ({' x '.join(CELL)})"
    return [row(source, evidence, TESTBED, scope, str(wanted[0]), str(wanted[1]), result, "testbed cells",
                float(merged[column].mean()), float(merged[f"{column}.base"].mean()))], []


def failure_rows(source: Source, evidence: Evidence) -> list[dict[str, Any]]:
    """Share of failed trials (error, NaN loss, timeout) of the candidate's and the baseline's estimator over the
    whole sweep: difference with Newcombe's hybrid score interval, Fisher's exact p-value."""
    assert source.analysis is not None
    results = source.analysis.results
    columns = arm_columns(results)
    params = [{c.removeprefix("param."): row[c] for c in columns} for _, row in results.iterrows()]
    params = [dict(make_arm("", p).params) for p in params]
    failed = (results["status"] != "done").to_numpy()
    base_conditions = {**{k: v for k, v in evidence.candidate.items() if k not in evidence.baseline},
                       **evidence.baseline}
    chosen = [np.array([matches(p, conditions) and not excluded(p, evidence.exclude) for p in params])
              for conditions in (evidence.candidate, base_conditions)]
    if not all(c.any() for c in chosen):
        return []
    counts = [(int(failed[c].sum()), int(c.sum())) for c in chosen]
    (x1, n1), (x2, n2) = counts
    low, high = newcombe(x1, n1, x2, n2)
    p_value = float(scipy_stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]])[1])
    tasks = ", ".join(sorted(set(task_labels(results))))

    result = Counted(n1 + n2, x1 / n1 - x2 / n2, low, high, p_value, (x1, n1, x2, n2))
    scope = f"all tasks ({tasks}) | share of trials failed"  # no counts: a sequential look keys its rows by scope
    return [row(source, evidence, "all tasks", scope, label_of(evidence.candidate), label_of(base_conditions),
                result, "trials", x1 / n1, x2 / n2)]


@dataclass(frozen=True)
class Counted:
    """The fields of a reports.stats.Estimate that a failure-count comparison has (no power analysis; the decision
    rule widens Newcombe's interval from the counts, reports.decision.family_interval)."""

    n_seeds: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    counts: tuple[int, int, int, int]
    se: float = math.nan
    df: float = math.nan
    mde80: float = math.nan
    components: None = None


def label_of(conditions: dict[str, Any]) -> str:
    return "|".join(f"{'estimator' if k == ESTIMATOR else k}={v}" for k, v in conditions.items())


def critic_free() -> tuple[bool, str]:
    """C7 checked in code: every registered estimator's inputs are among `estimators.INPUTS` (rewards, a greedy
    completion's reward, the mix's components and weights, the sampling policy's log-probs, sum_v pi_v^2, lengths and
    the mask; its other parameters are keyword-only settings), and the trainer's model arguments hold no value model."""
    import estimators
    from estimators import _REGISTRY

    inputs = set(estimators.INPUTS)
    odd = []
    for name in estimators.available():
        positional = [p.name for p in inspect.signature(_REGISTRY.function(name)).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not set(positional) <= inputs:
            odd.append(f"{name}{tuple(positional)}")
    if odd:
        return False, f"estimators with inputs other than ({', '.join(estimators.INPUTS)}): " + ", ".join(odd)
    return True, (f"all {len(estimators.available())} registered estimators take only ({', '.join(estimators.INPUTS)})"
                  " and keyword-only settings: rewards and the sampling policy's statistics, no value estimate enters"
                  " any advantage")
