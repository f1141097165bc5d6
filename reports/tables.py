"""Display tables of the report: column choices, rounding, failed trials."""

from __future__ import annotations

import pandas as pd

from reports.data import arm_columns

ARM_COLUMNS = ["task", "arm", "n_seeds", "n_items", "mean", "ci", "noise"]
COMPARISON_COLUMNS = ["task", "comparison", "n_seeds", "n_items", "diff", "ci", "p_adjusted", "mde80",
                      "seeds_to_detect", "verdict"]
EFFICIENCY_COLUMNS = ["task", "metric", "comparison", "n_seeds", "reached", "diff", "ci", "p_adjusted", "mde80",
                      "verdict"]
ACROSS_COLUMNS = ["comparison", "tasks", "iqm_candidate", "iqm_baseline", "p_improvement"]
HEADERS = {"n_seeds": "seeds", "n_items": "items", "ci": "interval", "seeds_to_detect": "seeds to detect",
           "p_adjusted": "p (adjusted)",
           "iqm_candidate": "IQM candidate [95%]", "iqm_baseline": "IQM baseline [95%]",
           "p_improvement": "P(candidate > baseline) [95%]"}


def failed_trials(results: pd.DataFrame) -> pd.DataFrame:
    """Failed trials with the first line of their error."""
    failed = results[results["status"] != "done"].copy()
    if failed.empty:
        return failed
    failed["error"] = failed["error"].fillna("").map(lambda e: str(e).splitlines()[0][:200] if e else "")
    task = ["task"] if "task" in failed else []
    return failed[["trial_id", *task, *arm_columns(results), "seed", "error"]]


def number(value: object, digits: int) -> str:
    """A float rounded to `digits` (blank when missing)."""
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def format_frame(frame: pd.DataFrame, columns: list[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """`columns` of `frame` for display (default all): floats rounded (p-values to 3 significant digits), counts
    whole, missing values blank, a column X with X_low and X_high shown as `X [low, high]` (`ci`: the bounds
    alone; no-break spaces keep an interval on one line), headers from HEADERS and without `param.` prefixes."""
    columns = columns or list(frame.columns)
    shown = pd.DataFrame(index=frame.index)
    for column in columns:
        if f"{column}_low" in frame and f"{column}_high" in frame:
            bounds = [f"[{number(lo, digits)},\N{NO-BREAK SPACE}{number(hi, digits)}]" if pd.notna(lo) else ""
                      for lo, hi in zip(frame[f"{column}_low"], frame[f"{column}_high"])]
            values = frame[column].map(lambda v: number(v, digits) + "\N{NO-BREAK SPACE}") if column in frame else ""
            shown[column] = values + pd.Series(bounds, index=frame.index)
        elif column not in frame:
            continue
        elif column in ("n_seeds", "n_items", "seeds_to_detect"):
            shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif column.startswith("p_"):
            shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        elif pd.api.types.is_float_dtype(frame[column]):
            shown[column] = frame[column].map(lambda v: number(v, digits))
        else:
            shown[column] = frame[column]
    return shown.rename(columns=lambda c: HEADERS.get(c, c.removeprefix("param.")))
