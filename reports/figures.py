"""Figures of the report (seaborn, Agg backend): learning curves with 95% confidence bands over seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

CURVES = {
    "reward": "Training reward (weighted mix)",
    "accuracy": "Training accuracy (correctness reward)",
    "advantage/zero_group_frac": "Share of groups with all-zero advantages",
    "advantage/abs_mean": "Mean |advantage|",
}


def save(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Write `fig` as PNG and close it (`tight=False` for seaborn grids, which lay out their own legend)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def curve_figures(curves: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """One line per arm against step, band = 95% CI over seeds, for each metric present (and reward components)."""
    if curves.empty:
        return []
    components = sorted(c for c in curves.columns if c.startswith("rewards/") and c.endswith("/mean"))
    wanted = CURVES | {c: f"Reward component {c.split('/')[1]}" for c in components}
    figures = []
    for column, title in wanted.items():
        if column not in curves or curves[column].dropna().empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        sns.lineplot(data=curves, x="step", y=column, hue="arm", errorbar=("ci", 95), ax=ax)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="best")
        name = column.replace("/", "_")
        figures.append((title, save(fig, out_dir / f"curve_{name}.png")))
    return figures


def accuracy_figure(results: pd.DataFrame, label_column: str, metric: str, out_dir: Path) -> tuple[str, Path]:
    """Held-out accuracy per arm: points per seed and the mean with its 95% CI."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * results[label_column].nunique() + 1.5))
    sns.pointplot(data=results, y=label_column, x=metric, errorbar=("ci", 95), linestyle="none", ax=ax, color="k")
    sns.stripplot(data=results, y=label_column, x=metric, ax=ax, alpha=0.5)
    ax.set_title("Held-out accuracy by arm (points: seeds; bars: 95% CI)")
    ax.set_ylabel("")
    return "Held-out accuracy by arm", save(fig, out_dir / "accuracy_by_arm.png")


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
