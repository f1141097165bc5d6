"""Figures of the report (matplotlib, Agg backend). One colour per estimator in every figure (`colour`), the warm
start dashed black; curves faceted by reward mix (rows) and task (columns); legends outside the axes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from scipy import stats  # noqa: E402

from reports.data import WARM_START  # noqa: E402

PALETTE = {"group_mean": "#0072B2", "attenuated_pairwise": "#009E73", "pairwise_sum": "#E69F00",
           "shuffled": "#CC79A7", "rloo": "#D55E00", "lambdarank": "#56B4E9", "reinforce_pp": "#8C564B",
           "reinforce_pp_baseline": "#C49C94", "opo": "#9467BD", "gpg": "#7F7F7F", "grpo_passk": "#BCBD22",
           WARM_START: "#000000"}
SPARE = ["#17BECF", "#F0E442", "#AEC7E8", "#FF9896", "#98DF8A", "#C5B0D5"]
EMA_ALPHA = 0.2
CURVES = {
    "reward": "Training reward (weighted mix)",
    "accuracy": "Training accuracy (correctness reward)",
    "advantage/zero_group_frac": "Share of groups with all-zero advantages",
    "advantage/abs_mean": "Mean |advantage|",
}


def colour(estimator: str) -> str:
    """The estimator's fixed colour (every registered estimator has one in PALETTE); other names get a spare colour
    chosen by a hash of the name, the same in every figure."""
    if estimator in PALETTE:
        return PALETTE[estimator]
    return SPARE[int(hashlib.sha256(estimator.encode()).hexdigest(), 16) % len(SPARE)]


def save(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Write `fig` as PNG (bounding box grown to hold legends outside the axes) and close it; `tight` lays the axes
    out first (False for seaborn grids, which lay out their own legend)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def legend(fig: plt.Figure, estimators: list[str], warm_start: bool) -> None:
    """A figure legend right of the axes: every estimator drawn (PALETTE order, then by name), the warm start when
    drawn."""
    order = list(PALETTE)
    ranked = sorted(estimators, key=lambda e: (order.index(e) if e in order else len(order), e))
    handles = [Line2D([], [], color=colour(e), lw=2, label=e) for e in ranked]
    if warm_start:
        handles.append(Line2D([], [], color=colour(WARM_START), lw=1.5, ls="--", label="warm start"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def seed_band(values: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per step: mean over seeds and the 95% t-interval half width t_{0.975, n-1} * sd / sqrt(n) (0 for one seed)."""
    summary = values.groupby("step")[column].agg(["mean", "std", "count"])
    half = stats.t.ppf(0.975, summary["count"] - 1) * summary["std"] / np.sqrt(summary["count"])
    return summary.assign(half=np.nan_to_num(half))


def facet_curves(curves: pd.DataFrame, column: str, title: str, path: Path, smooth: bool,
                 warm: dict[str, float] | None = None) -> tuple[str, Path]:
    """Grid rows = reward mix, columns = task; per estimator the mean over seeds (of the per-trial EMA when
    `smooth`) with a 95% band over seeds; `warm[task]` as a dashed line."""
    data = curves.dropna(subset=[column])
    data = data.assign(mix=data["arm"].map(lambda a: a.mix), estimator=data["arm"].map(lambda a: a.estimator))
    if smooth:
        trial = data.groupby(["arm", "seed"], sort=False)[column]
        data[column] = trial.transform(lambda v: v.ewm(alpha=EMA_ALPHA).mean())
    mixes, tasks = sorted(data["mix"].unique()), sorted(data["task"].unique())
    fig, axes = plt.subplots(len(mixes), len(tasks), figsize=(4.2 * len(tasks), 2.8 * len(mixes)),
                             sharex=True, sharey=True, squeeze=False)
    for (r, mix), (c, task) in ((m, t) for m in enumerate(mixes) for t in enumerate(tasks)):
        ax = axes[r][c]
        cell = data[(data["mix"] == mix) & (data["task"] == task)]
        for estimator, group in cell.groupby("estimator"):
            band = seed_band(group, column)
            ax.plot(band.index, band["mean"], color=colour(estimator), lw=1.6)
            ax.fill_between(band.index, band["mean"] - band["half"], band["mean"] + band["half"],
                            color=colour(estimator), alpha=0.2)
        if warm and task in warm:
            ax.axhline(warm[task], color=colour(WARM_START), ls="--", lw=1.2)
        ax.set_title(f"{task} | {mix}", fontsize=9)
        ax.grid(alpha=0.3)
        if r == len(mixes) - 1:
            ax.set_xlabel("step")
        if c == 0:
            ax.set_ylabel(column)
    fig.suptitle(title)
    legend(fig, list(data["estimator"].unique()), bool(warm))
    return title, save(fig, path)


def curve_figures(curves: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """Training curves (EMA-smoothed, seed bands) for each metric present, reward components included."""
    if curves.empty:
        return []
    components = sorted(c for c in curves.columns if c.startswith("rewards/") and c.endswith("/mean"))
    wanted = CURVES | {c: f"Reward component {c.split('/')[1]}" for c in components}
    return [facet_curves(curves, column, f"{title} (EMA alpha {EMA_ALPHA}; bands: 95% over seeds)",
                         out_dir / f"curve_{column.replace('/', '_')}.png", smooth=True)
            for column, title in wanted.items() if column in curves and curves[column].notna().any()]


def eval_curve_figure(curves: pd.DataFrame, metric: str, out_dir: Path) -> tuple[str, Path]:
    """Held-out `metric` during training (unsmoothed), warm start = its mean at step 0 for the task, dashed."""
    first = curves[curves["step"] == 0]
    warm = first.groupby("task")["accuracy"].mean().to_dict()
    return facet_curves(curves, "accuracy", f"Held-out {metric} during training (bands: 95% over seeds)",
                        out_dir / "eval_curve.png", smooth=False, warm=warm)


def arm_figure(arms: pd.DataFrame, trials: pd.DataFrame, metric: str, out_dir: Path) -> tuple[str, Path]:
    """Per task: each arm's mean held-out `metric` with its 95% interval (seeds x items), seeds as dots, the warm
    start as a dashed vertical line."""
    tasks = sorted(arms["task"].unique())
    heights = [max(1.2, 0.4 * (arms["task"] == t).sum() + 0.8) for t in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(8, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    scores = trials.assign(label=trials["arm"].map(lambda a: a.label))
    for ax, task in zip(axes[:, 0], tasks):
        rows = arms[arms["task"] == task].reset_index(drop=True)
        for y, row in rows.iterrows():
            seeds = scores[(scores["task"] == task) & (scores["label"] == row["arm"])]["score"]
            ax.plot(seeds, np.full(len(seeds), y), "o", color=colour(row["estimator"]), alpha=0.4, ms=4)
            ax.errorbar(row["mean"], y, xerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                        fmt="D", color=colour(row["estimator"]), capsize=3, ms=6)
            if row["estimator"] == WARM_START:
                ax.axvline(row["mean"], color=colour(WARM_START), ls="--", lw=1)
        ax.set_yticks(range(len(rows)), rows["arm"], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(task, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"held-out {metric}")
    fig.suptitle(f"Held-out {metric} by arm (diamonds: mean, bars: 95% interval; dots: seeds)")
    legend(fig, list(set(arms["estimator"]) - {WARM_START}), WARM_START in set(arms["estimator"]))
    return f"Held-out {metric} by arm", save(fig, out_dir / "accuracy_by_arm.png")


def forest_figure(comparisons: pd.DataFrame, margin: float, metric: str, out_dir: Path) -> tuple[str, Path]:
    """Every paired difference with its family-level 95% interval (reports/decision.py; colour: candidate
    estimator), zero line, +-margin band shaded, the verdict at the right."""
    rows = comparisons.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.4))
    ax.axvspan(-margin, margin, color="0.85")
    ax.axvline(0, color="k", lw=0.8)
    for y, row in rows.iterrows():
        ax.errorbar(row["diff"], y, xerr=[[row["diff"] - row["ci_low"]], [row["ci_high"] - row["diff"]]],
                    fmt="o", color=colour(row["estimator"]), capsize=3)
    for y in np.flatnonzero(rows["task"].ne(rows["task"].shift()).to_numpy())[1:]:
        ax.axhline(y - 0.5, color="0.6", lw=0.6)
    ax.set_yticks(range(len(rows)), [f"{r.task}: {r.comparison}" for r in rows.itertuples()], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(len(rows)), list(rows["verdict"]), fontsize=8)
    ax.set_xlabel(f"difference in held-out {metric} (candidate - baseline), family-level 95% interval; "
                  f"grey: +-{margin}")
    ax.set_title("Paired differences (same seed, same items)")
    return "Paired differences", save(fig, out_dir / "forest.png")


def optuna_history_figure(values: pd.DataFrame, out_dir: Path) -> tuple[str, Path]:
    """Objective value per Optuna trial and the best value so far."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(values["number"], values["value"], "o", label="trial")
    ax.plot(values["number"], values["best"], "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.legend()
    ax.set_title("Optuna optimisation history")
    return "Optuna optimisation history", save(fig, out_dir / "optuna_history.png")
