"""Estimator diagnostics on the exact-gradient testbed: `python -m harness.diagnostics sweeps/diagnostics.yaml`.

For every estimator, testbed (policy x reward kind) and group size G it draws many policy-gradient estimates and
reports, against the exact gradient: the cosine of their mean (direction bias), the relative norm error of their
mean, their variance relative to |grad|^2, and the single-estimate signal-to-noise ratio |E g|^2 / E|g - E g|^2. It
also runs stochastic gradient ascent from several starts and reports the expected reward reached. Writes
`runs/<name>/diagnostics.parquet`, `ascent.parquet`, `report.md`, `report.html` and `figures/`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field

import estimators
from harness.cli import HelpFormatter
from harness.config import ConfigError, Strict, read_yaml, validate
from harness.diagnostics.testbed import Testbed, make_testbed, starting_point

Start = Literal["confident_wrong", "uniform", "nearly_solved"]
MAX_CHUNK_ELEMENTS = 2_000_000


class AscentConfig(Strict):
    """Stochastic gradient ascent with one group of `group_size` draws per prompt per step."""

    group_size: int = Field(8, ge=2)
    steps: int = Field(60, ge=1)
    lr: float = Field(3.0, gt=0)
    repeats: int = Field(4, ge=1)
    starts: list[Start] = ["confident_wrong", "uniform", "nearly_solved"]


class DiagnosticsSpec(Strict):
    """What to measure; `estimators` maps a label to parameters (plus `name` when the label is not the name)."""

    name: str = Field("diagnostics", pattern=r"^[A-Za-z0-9_.-]+$")
    prompts: int = Field(16, ge=1)
    candidates: int = Field(8, ge=2)
    policies: list[Literal["tabular", "linear"]] = ["tabular", "linear"]
    features: int = Field(6, ge=1)
    rewards: list[Literal["binary", "graded"]] = ["binary", "graded"]
    group_sizes: list[int] = [2, 4, 8, 16, 32]
    samples: int = Field(600, ge=2)
    bias_starts: list[Start] = ["uniform", "confident_wrong"]
    ascent: AscentConfig = AscentConfig()
    estimators: dict[str, dict[str, Any]] | None = None
    seed: int = 0

    def configured_estimators(self) -> dict[str, estimators.Estimator]:
        """Label -> configured estimator (every registered one, with defaults, when none are listed)."""
        chosen = self.estimators or {name: {} for name in estimators.available()}
        return {label: estimators.get(params.get("name", label), **{k: v for k, v in params.items() if k != "name"})
                for label, params in chosen.items()}


def gradient_statistics(testbed: Testbed, params: torch.Tensor, estimator: estimators.Estimator, group: int,
                        samples: int, generator: torch.Generator) -> dict[str, float]:
    """Cosine(E g, grad), |E g - grad| / |grad|, E|g - E g|^2 / |grad|^2 and SNR |E g|^2 / E|g - E g|^2."""
    chunk = max(1, MAX_CHUNK_ELEMENTS // (testbed.prompts * group * group))
    parts = [testbed.estimate(params, estimator, group, min(chunk, samples - done), generator)
             for done in range(0, samples, chunk)]
    draws = torch.cat(parts).reshape(samples, -1)
    true = testbed.true_gradient(params).reshape(-1)
    mean = draws.mean(0)
    variance = ((draws - mean) ** 2).sum(-1).mean()
    true_sq = true.pow(2).sum()
    return {
        "cosine": float(torch.nn.functional.cosine_similarity(mean, true, dim=0)),
        "relative_norm_error": float((mean - true).norm() / true.norm()),
        "relative_variance": float(variance / true_sq),
        "snr": float(mean.pow(2).sum() / variance) if variance > 0 else float("inf"),
    }


def ascend(testbed: Testbed, params: torch.Tensor, estimator: estimators.Estimator, config: AscentConfig,
           generator: torch.Generator) -> torch.Tensor:
    """Expected reward [steps + 1, repeats] along `config.repeats` independent runs of stochastic ascent
    params += lr * g from the same start (row 0 = start), all runs advanced together."""
    params = params.expand(config.repeats, *params.shape).clone()
    values = [testbed.expected_reward(params)]
    for _ in range(config.steps):
        params += config.lr * testbed.estimate(params, estimator, config.group_size, config.repeats, generator)
        values.append(testbed.expected_reward(params))
    return torch.stack(values)


def run_diagnostics(spec: DiagnosticsSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The statistics table (estimator x testbed x G) and the ascent curves (estimator x testbed x start x step)."""
    generator = torch.Generator().manual_seed(spec.seed)
    configured = spec.configured_estimators()
    stats_rows, ascent_rows = [], []
    for policy in spec.policies:
        for reward_kind in spec.rewards:
            testbed = make_testbed(spec.prompts, spec.candidates, reward_kind, policy, spec.features, generator)
            where = {"policy": policy, "rewards": reward_kind}
            for label, estimator in configured.items():
                for begin in spec.bias_starts:
                    params = starting_point(testbed, begin)
                    for group in spec.group_sizes:
                        stats = gradient_statistics(testbed, params, estimator, group, spec.samples, generator)
                        stats_rows.append(where | {"start": begin, "estimator": label, "G": group} | stats)
                for begin in spec.ascent.starts:
                    curves = ascend(testbed, starting_point(testbed, begin), estimator, spec.ascent, generator)
                    ascent_rows += [where | {"estimator": label, "start": begin, "repeat": repeat, "step": step,
                                             "expected_reward": float(curves[step, repeat])}
                                    for step in range(curves.shape[0]) for repeat in range(curves.shape[1])]
    return pd.DataFrame(stats_rows), pd.DataFrame(ascent_rows)


def write_report(root: Path, stats: pd.DataFrame, ascent: pd.DataFrame, spec: DiagnosticsSpec) -> Path:
    """Tables and figures in the report format of `reports` (report.md, report.html, figures/)."""
    import seaborn as sns

    from reports import Section, environment_section
    from reports.figures import plt, save
    from reports.render import render_html, render_markdown
    from reports.tables import format_frame

    figures = []
    for metric, log in [("cosine", False), ("snr", True), ("relative_norm_error", False)]:
        grid = sns.relplot(data=stats, x="G", y=metric, hue="estimator", style="start", col="rewards", row="policy",
                           kind="line", marker="o", height=3, aspect=1.2)
        for ax in grid.axes.flat:
            ax.set_xscale("log", base=2)
            ax.set_xticks(spec.group_sizes, [str(g) for g in spec.group_sizes])
            if log:
                ax.set_yscale("log")
        figures.append((f"{metric} against the group size G",
                        save(grid.figure, root / "figures" / f"{metric}.png", tight=False)))
    grid = sns.relplot(data=ascent, x="step", y="expected_reward", hue="estimator", col="start", row="rewards",
                       kind="line", errorbar=("ci", 95), height=3, aspect=1.2)
    figures.append(("Expected reward during stochastic gradient ascent",
                    save(grid.figure, root / "figures" / "ascent.png", tight=False)))
    plt.close("all")
    final = ascent[ascent["step"] == spec.ascent.steps]
    summary = final.groupby(["policy", "rewards", "start", "estimator"], as_index=False)["expected_reward"].mean()
    sections = [
        Section("What the numbers mean", [
            "cosine: cosine between the mean of the estimates and the exact gradient (1 = no direction bias). "
            "relative_norm_error: |E g - grad| / |grad| (a constant scale, such as group_mean's (G-1)/G, shows "
            "here but not in the cosine). relative_variance: E|g - E g|^2 / |grad|^2 for one estimate. snr: "
            "|E g|^2 / E|g - E g|^2, the signal-to-noise ratio of one estimate (higher needs fewer samples). "
            f"Measured at the {', '.join(spec.bias_starts)} starts with {spec.samples} estimates per cell, "
            f"{spec.prompts} prompts "
            f"of {spec.candidates} candidates."]),
        Section(f"Bias and variance at G = {spec.ascent.group_size}",
                tables=[format_frame(stats[stats["G"] == spec.ascent.group_size].drop(columns="G"))],
                figures=figures[:3]),
        Section(f"Expected reward after {spec.ascent.steps} ascent steps (lr {spec.ascent.lr}, "
                f"G = {spec.ascent.group_size}, mean of {spec.ascent.repeats} runs)",
                tables=[format_frame(summary)], figures=figures[3:]),
        Section("All statistics", tables=[format_frame(stats)]),
        environment_section(),
    ]
    title = f"Estimator diagnostics: {spec.name}"
    (root / "report.md").write_text(render_markdown(title, sections, root))
    (root / "report.html").write_text(render_html(title, sections, root))
    return root / "report.md"


def main(argv: list[str] | None = None) -> None:
    """CLI: run the diagnostics of a spec and write its tables and report."""
    parser = argparse.ArgumentParser(prog="python -m harness.diagnostics", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/<name>)")
    args = parser.parse_args(argv)
    try:
        spec = validate(DiagnosticsSpec, read_yaml(args.spec), args.spec)
        spec.configured_estimators()
    except (ConfigError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    started = time.perf_counter()
    stats, ascent = run_diagnostics(spec)
    root = args.out or Path("runs") / spec.name
    root.mkdir(parents=True, exist_ok=True)
    stats.to_parquet(root / "diagnostics.parquet", index=False)
    ascent.to_parquet(root / "ascent.parquet", index=False)
    print(f"report: {write_report(root, stats, ascent, spec)} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
