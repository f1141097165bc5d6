"""Comparison reports: `python -m reports RUN_DIR` (also run at the end of every sweep).

Reads `RUN_DIR/results.parquet` and the trials' `metrics.jsonl`, writes `report.md`, a self-contained `report.html`
(figures embedded) and `figures/*.png`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from reports import figures, tables
from reports.render import render_html, render_markdown


@dataclass
class Section:
    """A report section: paragraphs, tables and figures (title, PNG path), in that order."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def build_report(root: Path | str) -> Path:
    """Write the report of the sweep in `root`; returns the path of report.md."""
    root = Path(root)
    path = root / "results.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results table (run a sweep into {root} first)")
    results = pd.read_parquet(path)
    sections = [headline_section(results, root), paired_section(results), curves_section(results, root)]
    sections += optuna_sections(root) + [failures_section(results), environment_section()]
    title = f"Sweep report: {root.name}"
    (root / "report.md").write_text(render_markdown(title, sections, root))
    (root / "report.html").write_text(render_html(title, sections, root))
    return root / "report.md"


def headline_section(results: pd.DataFrame, root: Path) -> Section:
    done = results[results["status"] == "done"]
    metric = tables.held_out_metric(results)
    section = Section("Held-out accuracy by arm")
    if done.empty or metric not in done:
        section.text.append("No trial has finished yet.")
        return section
    source = "lm-eval greedy exact match" if metric == tables.LM_EVAL_METRIC else "greedy accuracy (harness scoring)"
    section.text.append(f"{len(done)} finished trials of {len(results)}. Mean {source} on the test split with its "
                        "95% t-interval over seeds; wall time in seconds per trial.")
    section.tables.append(tables.format_frame(tables.headline(results, metric)))
    labelled = done.assign(arm=done.apply(tables.arm_label, axis=1, columns=tables.param_columns(results)))
    section.figures.append(figures.accuracy_figure(labelled, "arm", metric, root / "figures"))
    return section


def paired_section(results: pd.DataFrame) -> Section:
    section = Section(f"Paired comparisons against {tables.BASELINE}")
    paired = tables.paired_table(results, tables.held_out_metric(results))
    if paired.empty:
        section.text.append(f"No paired comparison: the sweep has no finished `{tables.BASELINE}` arm to compare with.")
        return section
    section.text.append(
        "Difference in held-out accuracy (candidate - baseline) over seeds both finished, with the same reward mix "
        "and seed. 95% percentile-bootstrap interval of the mean difference; p-value of a two-sided paired t-test. "
        "A verdict of better/worse is given only where the interval excludes zero.")
    section.tables.append(tables.format_frame(paired))
    return section


def curves_section(results: pd.DataFrame, root: Path) -> Section:
    section = Section("Training curves")
    curves = tables.learning_curves(results)
    section.figures = figures.curve_figures(curves, root / "figures")
    section.text.append("Lines: mean over seeds per arm; bands: 95% confidence interval." if section.figures
                        else "No training metrics were found.")
    return section


def optuna_sections(root: Path) -> list[Section]:
    """Best trial, parameter importances and history of an Optuna sweep (none for grid sweeps)."""
    spec_file = root / "spec.json"
    spec = json.loads(spec_file.read_text())["spec"] if spec_file.is_file() else {}
    if not spec.get("optuna"):
        return []
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = spec.get("storage") or optuna.storages.JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    study = optuna.load_study(study_name=spec["name"], storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    section = Section("Optuna search")
    if not complete:
        section.text.append("No Optuna trial has completed.")
        return [section]
    best = study.best_trial
    section.text.append(f"Best trial #{best.number}: objective {best.value:.4f} with {best.params}.")
    if len(complete) >= 2:
        importances = optuna.importance.get_param_importances(study)
        section.tables.append(pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())}))
    values = pd.DataFrame({"number": [t.number for t in complete], "value": [t.value for t in complete]})
    best_so_far = values["value"].cummax() if study.direction.name == "MAXIMIZE" else values["value"].cummin()
    section.figures.append(figures.optuna_history_figure(values.assign(best=best_so_far), root / "figures"))
    return [section]


def failures_section(results: pd.DataFrame) -> Section:
    section = Section("Failed trials")
    failed = tables.failed_trials(results)
    if failed.empty:
        section.text.append("None.")
    else:
        section.text.append(f"{len(failed)} trial(s) failed; their tracebacks are in each trial's result.json.")
        section.tables.append(tables.format_frame(failed))
    return section


def environment_section() -> Section:
    versions = {name: _version(name) for name in
                ["torch", "transformers", "trl", "lm-eval", "optuna", "pandas", "seaborn", "submitit", "math-verify"]}
    section = Section("Environment")
    facts = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git commit": _git_commit(),
             "python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor()}".strip(),
             "cpus": os.cpu_count(), "gpu": _gpu(), **versions}
    section.tables.append(pd.DataFrame({"item": list(facts), "value": [str(v) for v in facts.values()]}))
    return section


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _gpu() -> Any:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
