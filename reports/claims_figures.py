"""Figures of the claims report (matplotlib, as reports.figures): per claim, each evidence comparison's rows with
their 95% intervals (one panel per comparison, its equivalence margin shaded, colour = outcome); for a claim with a
length comparison also held-out accuracy against completion length per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.figures import colour, plt, save
from reports.data import WARM_START, SEMANTIC_DENSITY

OUTCOME_COLOURS = {"holds": "#009E73", "fails": "#D55E00", "not detectable": "#7F7F7F"}


def claim_figure(claim_id: str, rows: pd.DataFrame, out_dir: Path) -> tuple[str, Path]:
    """One panel per evidence comparison: every row's difference and 95% interval, zero line, +-margin band."""
    labels = list(dict.fromkeys(rows["evidence"]))
    heights = [0.42 * (rows["evidence"] == label).sum() + 1.0 for label in labels]
    fig, axes = plt.subplots(len(labels), 1, figsize=(9.5, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, label in zip(axes[:, 0], labels):
        part = rows[rows["evidence"] == label].reset_index(drop=True)
        margin = part["margin"].dropna()
        if not margin.empty:
            ax.axvspan(-float(margin.iloc[0]), float(margin.iloc[0]), color="0.88")
        ax.axvline(0, color="k", lw=0.8)
        for y, row in part.iterrows():
            low, high = row["ci_low"], row["ci_high"]
            error = None if pd.isna(low) else [[row["diff"] - low], [high - row["diff"]]]
            ax.errorbar(row["diff"], y, xerr=error, fmt="o", capsize=3,
                        color=OUTCOME_COLOURS.get(row["outcome"], "#000000"))
        ax.set_yticks(range(len(part)), [f"{r.sweep}: {r.scope}" for r in part.itertuples()], fontsize=8)
        ax.set_ylim(len(part) - 0.5, -0.5)
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(range(len(part)), [f"{r.verdict} ({r.outcome})" for r in part.itertuples()], fontsize=8)
        unit = "log ratio" if (part["scale"] == "log ratio").all() else "difference"
        ax.set_title(f"{label} [{part['metric'].iloc[0]}, {unit}]", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("candidate - baseline, family-level 95% interval (grey band: margin; colour: outcome)")
    fig.suptitle(f"{claim_id}: the evidence")
    return f"{claim_id}: evidence rows with 95% intervals", save(fig, out_dir / f"claim_{claim_id}.png")


def length_figure(claim_id: str, trials: list[tuple[str, pd.DataFrame]], out_dir: Path) -> tuple[str, Path] | None:
    """Held-out score against mean completion length, one point per trial (colour: estimator; filled: semantic
    density > 0), one panel per (sweep, task)."""
    panels = [(name, task, group) for name, frame in trials for task, group in frame.groupby("task")]
    panels = [p for p in panels if p[2]["length"].notna().any()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (name, task, group) in zip(axes[0], panels):
        for row in group.itertuples():
            weight = dict(row.arm.params).get(SEMANTIC_DENSITY)
            filled = isinstance(weight, (int, float)) and weight > 0
            estimator = row.arm.estimator
            ax.plot(row.length, row.score, "o", ms=6, color=colour(estimator),
                    markerfacecolor=colour(estimator) if filled else "none")
        ax.set_title(f"{name}: {task}", fontsize=9)
        ax.set_xlabel("mean held-out completion length (tokens)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("held-out score")
    estimators = sorted({row.arm.estimator for _, _, g in panels for row in g.itertuples()})
    handles = [plt.Line2D([], [], color=colour(e), marker="o", ls="", label=e) for e in estimators]
    handles.append(plt.Line2D([], [], color="0.3", marker="o", ls="", markerfacecolor="none",
                              label="open: semantic density 0"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{claim_id}: held-out score vs completion length, one point per trial")
    return f"{claim_id}: accuracy vs length", save(fig, out_dir / f"claim_{claim_id}_length.png")


def length_table(trials: pd.DataFrame, lengths: list[Any]) -> pd.DataFrame:
    """Trials (warm start left out) with their mean held-out completion length."""
    frame = trials.assign(length=[np.nan if s is None else float(s.mean()) for s in lengths])
    return frame[frame["arm"].map(lambda a: a.estimator != WARM_START)]
