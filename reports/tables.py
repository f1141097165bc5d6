"""Tables of the report, computed from `results.parquet` with pandas."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reports.stats import mean_ci, paired_comparison

ESTIMATOR = "param.estimator.name"
BASELINE = "group_mean"
METRIC = "eval.accuracy"
LM_EVAL_METRIC = "eval.lm_eval_exact_match"


def held_out_metric(results: pd.DataFrame) -> str:
    """lm-eval's greedy exact match when the trials were scored with lm-eval, else the harness's own accuracy."""
    if LM_EVAL_METRIC in results and results[LM_EVAL_METRIC].notna().any():
        return LM_EVAL_METRIC
    return METRIC


def param_columns(results: pd.DataFrame) -> list[str]:
    """The swept parameters (`param.*` columns), estimator first."""
    columns = sorted(c for c in results.columns if c.startswith("param."))
    return sorted(columns, key=lambda c: c != ESTIMATOR)


def arm_label(row: pd.Series, columns: list[str]) -> str:
    """Readable name of a configuration arm, e.g. `attenuated_pairwise | rewards.semantic_density=0.5`."""
    parts = [str(row[c]) if c == ESTIMATOR else f"{c.removeprefix('param.')}={row[c]}" for c in columns]
    return " | ".join(parts) or "all"


def headline(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per arm (combination of swept parameters): mean metric, its 95% t-interval over seeds, n seeds, mean wall time."""
    done = results[results["status"] == "done"]
    columns = param_columns(results)
    rows = []
    for key, group in done.groupby(columns, dropna=False, sort=True) if columns else [((), done)]:
        mean, low, high = mean_ci(group[metric].to_numpy())
        row = dict(zip(columns, key if isinstance(key, tuple) else (key,)))
        rows.append(row | {"mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(group),
                           "wall_seconds": group["wall_seconds"].mean()})
    return pd.DataFrame(rows)


def paired_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each non-baseline arm against `group_mean` with the same other parameters, paired by seed."""
    done = results[results["status"] == "done"]
    if ESTIMATOR not in done or BASELINE not in set(done[ESTIMATOR]):
        return pd.DataFrame()
    others = [c for c in param_columns(results) if c != ESTIMATOR]
    baseline = done[done[ESTIMATOR] == BASELINE][others + ["seed", metric]]
    rows = []
    for key, group in done[done[ESTIMATOR] != BASELINE].groupby([ESTIMATOR, *others], dropna=False, sort=True):
        paired = group[[*others, "seed", metric]].merge(baseline, on=[*others, "seed"], suffixes=("", ".baseline"))
        result = paired_comparison(paired[metric].to_numpy(), paired[f"{metric}.baseline"].to_numpy())
        row = dict(zip([ESTIMATOR, *others], key if isinstance(key, tuple) else (key,)))
        rows.append(row | {"n_pairs": result.n, "mean_diff": result.mean_difference, "ci_low": result.ci_low,
                           "ci_high": result.ci_high, "p_value": result.p_value, "verdict": result.verdict})
    return pd.DataFrame(rows)


def learning_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Long table of every finished trial's metrics.jsonl with its arm label (`arm`) and seed."""
    columns = param_columns(results)
    frames = []
    for _, row in results[results["status"] == "done"].iterrows():
        path = Path(str(row.get("run_dir"))) / "metrics.jsonl"
        if not path.is_file():
            continue
        steps = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        frames.append(steps.assign(arm=arm_label(row, columns), seed=row["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def failed_trials(results: pd.DataFrame) -> pd.DataFrame:
    """Failed trials with the first line of their error."""
    failed = results[results["status"] != "done"].copy()
    if failed.empty:
        return failed
    failed["error"] = failed["error"].fillna("").map(lambda e: str(e).splitlines()[0][:200] if e else "")
    return failed[["trial_id", *param_columns(results), "seed", "error"]]


def format_frame(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats rounded for display, `param.` prefixes dropped from column names."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    return shown.rename(columns=lambda c: c.removeprefix("param."))

