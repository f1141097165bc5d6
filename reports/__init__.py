"""Comparison reports: `python -m reports RUN_DIR` (also run at the end of every sweep).

Reads `RUN_DIR/results.parquet`, `RUN_DIR/spec.json` and each trial's eval_items.jsonl, eval_curve.jsonl and
metrics.jsonl; writes `report.md`, a self-contained `report.html` (figures embedded), `report.json` and
`figures/*.png`. The statistics are in `reports.stats`, the comparison plan in `reports.compare`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from reports import sections as build
from reports.analysis import ReportOptions, analyse, report_json
from reports.render import Section, render_html, render_markdown

__all__ = ["ReportOptions", "Section", "build_report", "environment_section"]


def build_report(root: Path | str) -> Path:
    """Write the report of the sweep in `root` (report.md, report.html, report.json, figures/); returns report.md."""
    root = Path(root)
    path = root / "results.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results table (run a sweep into {root} first)")
    spec_file = root / "spec.json"
    spec = json.loads(spec_file.read_text()).get("spec", {}) if spec_file.is_file() else {}
    analysis = analyse(pd.read_parquet(path), root, ReportOptions.from_spec(spec))
    out = root / "figures"
    from reports.claims import report_section

    claims = report_section(root, analysis)
    sections = [build.verdict_section(analysis), *([claims] if claims else []), *build.sequential_section(root),
                build.arms_section(analysis, out),
                build.comparisons_section(analysis, out), build.efficiency_section(analysis, out),
                *build.across_section(analysis), build.curves_section(analysis, out), *build.optuna_sections(root),
                build.failures_section(analysis.results), environment_section(analysis.results, analysis.provenance)]
    title = f"Sweep report: {root.name}"
    (root / "report.md").write_text(render_markdown(title, sections, root))
    (root / "report.html").write_text(render_html(title, sections))
    (root / "report.json").write_text(json.dumps(report_json(analysis), indent=2, allow_nan=False) + "\n")
    return root / "report.md"


def environment_section(results: pd.DataFrame | None = None, trials: dict[str, list[str]] | None = None) -> Section:
    """Where the report was built (date, commit, machine, package versions), the environment lock(s) the trials
    ran on (the `lock` hash each trial recorded: `requirements.lock`'s sha256 prefix, see harness/lock.py) and the
    trials' provenance: CPU model, torch's CPU capability and threads per trial (harness.lock.provenance)."""
    locks = sorted(results["lock"].dropna().unique()) if results is not None and "lock" in results else []
    trials = trials or {}
    versions = {name: _version(name) for name in
                ["torch", "transformers", "trl", "lm-eval", "optuna", "pandas", "numpy", "scipy", "matplotlib",
                 "seaborn", "submitit", "math-verify"]}
    section = Section("Environment")
    facts = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git commit": _git_commit(),
             "python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor()}".strip(),
             "cpus": os.cpu_count(), "gpu": _gpu(),
             "environment lock of the trials": ", ".join(map(str, locks)) or "not recorded",
             "CPU of the trials": ", ".join(trials.get("cpu", [])) or "not recorded",
             "torch CPU capability of the trials": ", ".join(trials.get("cpu_capability", [])) or "not recorded",
             "threads per trial": ", ".join(trials.get("threads", [])) or "not recorded", **versions}
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
