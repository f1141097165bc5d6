"""The decision rule of every report: the sweep report's comparisons, the claims report's evidence rows, and the
claim conclusions. Nothing else in the project decides an outcome.

A row is one comparison, candidate - baseline, with its estimate d (reports.stats.estimate: mean, SE and
Satterthwaite df over seeds and items; or, for shares of failed trials, the two counts). Rows are judged in a
family of m rows (a claim's evidence rows; the claim comparisons of a sweep report; each control of a sweep report
alone). Every row gets one interval, the simultaneous (Bonferroni) interval at family level 1 - alpha:

    [L, U] = d -+ t_{1 - alpha / (2m), df} * SE         (counts: Newcombe's interval at z_{1 - alpha / (2m)})

and every outcome is read from [L, U], oriented so that "better" is higher when higher is better, and from the
row's margin delta (the smallest difference that matters, stated with its reason):

    better / worse            L > 0 / U < 0                 (superiority / inferiority)
    ..., beyond +-delta       L > delta / U < -delta        (better or worse by more than the margin)
    ..., within +-delta       -delta <= L and U <= delta    (a real difference smaller than the margin)
    equivalent                -delta <= L and U <= delta, 0 inside (TOST at alpha / (2m) per side)
    non-inferior              L > -delta, 0 inside, U > delta (one-sided)
    non-superior              U < delta, 0 inside, L < -delta (one-sided)
    inconclusive              none of these
(without orientation: higher / lower instead of better / worse).

Every statement is a one-sided test at level alpha / (2m) of one boundary (0, +delta or -delta) and rejects only
when the family-level interval misses that boundary, so the chance that any statement of any row is false is at
most alpha, whatever the truth: one adjustment for every outcome, and two rows with the same interval and margin
always get the same verdict. `p_adjusted` = min(1, m * p) is the Bonferroni-adjusted two-sided p of d = 0 (< alpha
exactly when [L, U] excludes 0 for t-based rows).

A prediction (a claim's `predict`) holds, fails or is undecided on a row; holding and failing each reject one
boundary at the same level, so a refutation needs as much evidence as a confirmation:

    better             holds: L > 0            fails: U < delta (no gain as large as the margin), L <= 0
    better_by_margin   holds: L > delta        fails: U < delta
    not_worse          holds: L > -delta       fails: U < -delta (worse by more than the margin)
    differs            holds: L > 0 or U < 0   fails: -delta <= L and U <= delta, 0 inside
    differs_by_margin  holds: L > delta or U < -delta   fails: -delta <= L and U <= delta

A claim concludes from its rows: supported (every row holds), refuted (every row fails), mixed (some hold, some
fail), partly supported (some hold, none fails, the rest undecided), partly refuted (some fail, none holds, the rest
undecided), not detectable (none decided). Error rates of the claim conclusions, by simulation through this code:
reports/calibrate.py and README.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from reports.stats import ALPHA
PREDICTIONS = ("better", "better_by_margin", "not_worse", "differs", "differs_by_margin")
NEEDS_MARGIN = ("better_by_margin", "not_worse", "differs_by_margin")
OUTCOMES = ("holds", "fails", "undecided")
CONCLUSIONS = ("supported", "refuted", "mixed", "partly supported", "partly refuted", "not detectable",
               "not tested here", "by construction")


def critical_t(df: float, m: int, alpha: float = ALPHA) -> float:
    """t_{1 - alpha/(2m), df}: the half-width multiplier of the family-level interval."""
    return float(stats.t.ppf(1 - alpha / (2 * m), df))


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion x/n at normal quantile z."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) of p1 - p2 at normal quantile z."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson(x1, n1, z), wilson(x2, n2, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def family_interval(row: pd.Series | dict, m: int, alpha: float = ALPHA) -> tuple[float, float]:
    """[L, U] of one row at family level 1 - alpha over m rows: from its counts (`counts` = (x1, n1, x2, n2)) by
    Newcombe's interval, else from `diff`, `se`, `df` by the t distribution; NaN without an estimate."""
    counts = row.get("counts")
    if isinstance(counts, (list, tuple)) and len(counts) == 4:
        return newcombe(*map(int, counts), z=float(stats.norm.ppf(1 - alpha / (2 * m))))
    mean, se, df = (float(row.get(k, math.nan)) for k in ("diff", "se", "df"))
    if any(math.isnan(v) for v in (mean, se, df)):
        return math.nan, math.nan
    half = critical_t(df, m, alpha) * se
    return mean - half, mean + half


def oriented(low: float, high: float, higher_is_better: bool | None) -> tuple[float, float]:
    """The interval with better = higher (flipped when lower is better)."""
    return (-high, -low) if higher_is_better is False else (low, high)


def margin_value(margin: float | None) -> float:
    """A missing margin counts as 0 (no difference is negligible)."""
    return 0.0 if margin is None or (isinstance(margin, float) and math.isnan(margin)) else float(margin)


def verdict(low: float, high: float, margin: float | None, higher_is_better: bool | None = True) -> str:
    """The statement of the module docstring's first table for a family-level interval [low, high]."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    lo, hi = oriented(low, high, higher_is_better)
    delta = margin_value(margin)
    up, down = ("higher", "lower") if higher_is_better is None else ("better", "worse")
    sign = f"+-{delta:g}"
    inside = -delta <= lo and hi <= delta and delta > 0
    if lo > 0 or hi < 0:
        word = up if lo > 0 else down
        if delta > 0 and (lo > delta or hi < -delta):
            return f"{word}, beyond {sign}"
        return f"{word}, within {sign}" if inside else word
    if inside:
        return "equivalent"
    if delta > 0 and lo > -delta:
        return "non-inferior" if higher_is_better is not None else "inconclusive"
    if delta > 0 and hi < delta:
        return "non-superior" if higher_is_better is not None else "inconclusive"
    return "inconclusive"


def direction(found: str) -> str:
    """better / worse / higher / lower / equivalent / non-inferior / non-superior / inconclusive: the verdict
    without its margin clause."""
    return found.split(",", 1)[0]


def outcome(low: float, high: float, margin: float | None, predict: str,
            higher_is_better: bool | None = True) -> str:
    """holds / fails / undecided of a prediction on a family-level interval (module docstring, second table)."""
    if math.isnan(low) or math.isnan(high):
        return "undecided"
    lo, hi = oriented(low, high, higher_is_better)
    delta = margin_value(margin)
    if predict == "better":
        return "holds" if lo > 0 else "fails" if hi < delta else "undecided"
    if predict == "better_by_margin":
        return "holds" if lo > delta else "fails" if hi < delta else "undecided"
    if predict == "not_worse":
        return "holds" if lo > -delta else "fails" if hi < -delta else "undecided"
    if predict == "differs":
        return "holds" if lo > 0 or hi < 0 else "fails" if -delta <= lo and hi <= delta else "undecided"
    if predict == "differs_by_margin":
        return "holds" if lo > delta or hi < -delta else "fails" if -delta <= lo and hi <= delta else "undecided"
    raise ValueError(f"predict {predict!r}: expected one of {', '.join(PREDICTIONS)}")


def judge(rows: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One family: `rows` (columns diff, se, df or counts, p_value, margin, higher_is_better, optional predict)
    with `family_size`, `ci_low`/`ci_high` replaced by the family-level interval (the unadjusted 95% one kept as
    `ci95_low`/`ci95_high`), `p_adjusted`, `verdict` and, where a prediction is given, `outcome`."""
    if rows.empty:
        return rows
    rows = rows.copy()
    estimable = [not math.isnan(family_interval(r, 1, alpha)[0]) for _, r in rows.iterrows()]
    m = max(sum(estimable), 1)
    intervals = [family_interval(r, m, alpha) for _, r in rows.iterrows()]
    orientation = rows["higher_is_better"] if "higher_is_better" in rows else pd.Series(True, index=rows.index)
    margins = rows["margin"] if "margin" in rows else pd.Series(None, index=rows.index, dtype=object)
    rows["ci95_low"], rows["ci95_high"] = rows.get("ci_low", math.nan), rows.get("ci_high", math.nan)
    rows["ci_low"] = [low for low, _ in intervals]
    rows["ci_high"] = [high for _, high in intervals]
    rows["family_size"] = m
    rows["p_adjusted"] = np.minimum(rows["p_value"].astype(float) * m, 1.0)
    rows["verdict"] = [verdict(low, high, margin, higher) for (low, high), margin, higher
                       in zip(intervals, margins, orientation.map(none_or_bool))]
    if "predict" in rows:
        rows["outcome"] = [outcome(low, high, margin, predict, higher) for (low, high), margin, predict, higher
                           in zip(intervals, margins, rows["predict"], orientation.map(none_or_bool))]
    return rows


def none_or_bool(value: object) -> bool | None:
    """A higher_is_better cell: None (no orientation) or a bool (pandas stores None as NaN in a float column)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def conclusion_of(outcomes: Iterable[str]) -> str:
    """The claim's conclusion from its rows' outcomes (module docstring)."""
    found = list(outcomes)
    holds, fails = found.count("holds"), found.count("fails")
    undecided = len(found) - holds - fails
    if not holds and not fails:
        return "not detectable"
    if holds and fails:
        return "mixed"
    if holds:
        return "supported" if not undecided else "partly supported"
    return "refuted" if not undecided else "partly refuted"
