"""Do the headline numbers travel to another CPU? `python -m harness.repro [SPEC]` (`make repro`, `lph repro`).

Runs the spec's warm_start controls and its `group_mean` arm (correctness reward only) twice on this machine: with
torch's best CPU kernels and with `ATEN_CPU_CAPABILITY=default` (the generic kernels: the same arithmetic rounded
differently, as on another CPU), each into its own sweep directory with its own warm starts (the warm-start cache
is keyed by the kernel path). Then prints, per task family, each path's warm-start value and group_mean's gain over
it with their 95% intervals (the report's statistics on its primary metric), whether the two paths agree, and
whether each meets the learning bar (gain >= LEARNING_BAR with the interval above zero). Agreement: the paths'
difference lies within its own 95% interval, |a - b| <= sqrt(h_a^2 + h_b^2) for half-widths h_a, h_b.
Writes both tables to `<runs-dir>/repro.json`; exits 1 when a number disagrees or misses the bar.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.cli import HelpFormatter

KERNEL_PATHS = {"native": None, "default": "default"}
"""Name of each run -> the ATEN_CPU_CAPABILITY it sets (None: torch's best for this CPU)."""
LEARNING_BAR = 0.10
REDUCTION = ("grid.estimator.name=[group_mean]", "grid.rewards.semantic_density=[0.0]")


def run_path(spec: Path, runs_dir: Path, path: str, extra: list[str]) -> Path:
    """Run the reduced sweep under one kernel path into `runs_dir/<path>`; returns its directory."""
    out = runs_dir / path
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if KERNEL_PATHS[path]:
        env["ATEN_CPU_CAPABILITY"] = KERNEL_PATHS[path]
    command = [sys.executable, "-m", "harness.sweep", str(spec), "--runs-dir", str(out)]
    for item in (*REDUCTION, *extra):
        command += ["--set", item]
    subprocess.run(command, env=env, check=True)
    return out


def headline(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: the warm start's mean and interval, group_mean's gain over it and interval (report.json rows)."""
    rows: dict[str, dict[str, Any]] = {}
    for arm in report["arms"]:
        if arm["arm"] == "warm_start":
            rows.setdefault(arm["task"], {})["warm_start"] = [arm["mean"], arm["ci_low"], arm["ci_high"]]
    for comparison in report["comparisons"]:
        if comparison["kind"] == "control: RL":
            rows.setdefault(comparison["task"], {})["gain"] = [comparison["diff"], comparison["ci_low"],
                                                              comparison["ci_high"]]
    return rows


def agree(a: list[float], b: list[float]) -> bool:
    """Two estimates [mean, low, high] agree: |a - b| <= sqrt(h_a^2 + h_b^2) (95% interval of the difference)."""
    half = lambda x: (x[2] - x[1]) / 2  # noqa: E731
    return abs(a[0] - b[0]) <= math.hypot(half(a), half(b))


def compare(tables: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], bool]:
    """Side-by-side lines of the paths' headline numbers and whether everything agrees and meets the bar."""
    fmt = lambda x: f"{x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}]" if x else "missing"  # noqa: E731
    paths = list(tables)
    lines = [f"{'task':<12} {'quantity':<11} " + " ".join(f"{p:<26}" for p in paths) + " agree  bar"]
    ok = True
    for task in sorted({t for table in tables.values() for t in table}):
        for quantity in ("warm_start", "gain"):
            values = [tables[p].get(task, {}).get(quantity) for p in paths]
            same = all(v is not None for v in values) and agree(values[0], values[-1])
            bar = quantity != "gain" or all(v is not None and v[0] >= LEARNING_BAR and v[1] > 0 for v in values)
            ok &= same and bar
            lines.append(f"{task:<12} {quantity:<11} " + " ".join(f"{fmt(v):<26}" for v in values)
                         + f" {'yes' if same else 'NO':<6} {'' if quantity != 'gain' else 'yes' if bar else 'NO'}")
    return lines, ok


def main(argv: list[str] | None = None) -> None:
    """CLI: run both kernel paths, print and write the comparison."""
    parser = argparse.ArgumentParser(prog="python -m harness.repro", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("spec", type=Path, nargs="?", default=Path("sweeps/ablation.yaml"), help="sweep spec")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/repro"),
                        help="the two sweep directories (native/, default/) and repro.json")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="further overrides of the spec for both runs")
    args = parser.parse_args(argv)
    tables = {}
    for path in KERNEL_PATHS:
        out = run_path(args.spec, args.runs_dir, path, args.overrides or [])
        tables[path] = headline(json.loads((out / "report.json").read_text()))
    lines, ok = compare(tables)
    (args.runs_dir / "repro.json").write_text(json.dumps({"paths": tables, "agree_and_learn": ok}, indent=2) + "\n")
    print("\n".join(lines))
    print(f"written to {args.runs_dir / 'repro.json'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
