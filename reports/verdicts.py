"""One generated sentence per comparison the paper's claims rest on: attenuated pairwise and pairwise sum vs
group mean, + semantic density vs correctness only, and the two controls (group_mean must beat the warm start;
shuffled must lose to group_mean)."""

from __future__ import annotations

import math

import pandas as pd

from reports.compare import EXPECTED
from reports.decision import direction
from reports.stats import MAX_SEEDS

CLAIM_ESTIMATORS = ("attenuated_pairwise", "pairwise_sum")
CONTROL_MEANING = {"control: RL": "RL learned", "control: shuffled": "shuffled advantages hurt"}


def claim_rows(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The comparisons the claims rest on, controls first."""
    if comparisons.empty:
        return comparisons
    keep = comparisons["kind"].isin([*EXPECTED, "semantic density"]) | (
        (comparisons["kind"] == "estimator") & comparisons["estimator"].isin(CLAIM_ESTIMATORS))
    rows = comparisons[keep].assign(claim=~comparisons["kind"].str.startswith("control"))
    return rows.sort_values(["claim", "task", "kind", "comparison"], kind="stable").drop(columns="claim")


def evidence(row: pd.Series) -> str:
    """`+0.031 [+0.010, +0.052], adjusted p = 0.012, 3 seeds x 500 items` (the family-level interval)."""
    seeds = f"{row['n_seeds']} seed" + ("s" if row["n_seeds"] != 1 else "")
    items = (f" x {int(row['n_items'])} items" if pd.notna(row["n_items"])
             else " (seed-only interval: no per-item outcomes)")
    size = seeds + items
    if math.isnan(row["ci_low"]):
        return f"{row['diff']:+.3f}, no interval with {size}"
    return (f"{row['diff']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], adjusted p = {row['p_adjusted']:.3g}, "
            f"{size}")


def power_note(row: pd.Series) -> str:
    """Why an inconclusive comparison is inconclusive: the MDE80 and the seeds that would detect the difference."""
    if math.isnan(row["mde80"]):
        return "too few seeds to estimate the noise."
    note = f"differences below {row['mde80']:.3f} are not detectable at 80% power"
    seeds = row["seeds_to_detect"]
    if row["diff"] == 0:
        return note + "."
    if pd.isna(seeds):
        items = f"these {int(row['n_items'])} items" if pd.notna(row["n_items"]) else "this setup"
        return note + f"; no number of seeds up to {MAX_SEEDS} would detect {row['diff']:+.3f} with {items}."
    return note + f"; about {int(seeds)} seeds would detect {row['diff']:+.3f}."


def sentence(row: pd.Series, margin: float) -> str:
    """The verdict sentence of one comparison."""
    head = f"{row['task']}: {row['comparison']} is **{row['verdict']}** ({evidence(row)})"
    if row["kind"] in EXPECTED:
        ok = direction(row["verdict"]) == EXPECTED[row["kind"]]
        meaning = CONTROL_MEANING[row["kind"]]
        status = (f"Control passed, {meaning}" if ok
                  else f"**CONTROL FAILED** (expected {EXPECTED[row['kind']]}: {meaning} not shown)")
        head = f"{status}: {head}"
    if row["verdict"] == "equivalent":
        return f"{head}: the interval lies inside +-{margin}."
    if row["verdict"] in ("inconclusive", "non-inferior", "non-superior"):
        return f"{head}: {power_note(row)}"
    return head + "."


def verdict_lines(comparisons: pd.DataFrame, margin: float) -> list[str]:
    """One sentence per claim comparison."""
    return [sentence(row, margin) for _, row in claim_rows(comparisons).iterrows()]
