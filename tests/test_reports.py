"""Reports from a results fixture: table numbers against pandas, figures, statistics, HTML in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.sweep.store import results_frame
from reports import build_report
from reports.stats import bootstrap_ci, mean_ci, paired_comparison
from reports.tables import headline, paired_table

ESTIMATORS = {"group_mean": 0.30, "attenuated_pairwise": 0.38, "pairwise_sum": 0.30}


def write_fixture(root: Path) -> pd.DataFrame:
    """A sweep directory: 3 estimators x 2 reward mixes x 4 seeds with metrics.jsonl, plus one failed trial."""
    rng = np.random.default_rng(0)
    records = []
    for estimator, level in ESTIMATORS.items():
        for weight in (0.0, 0.5):
            for seed in range(4):
                trial_id = f"{estimator}-{weight}-{seed}"
                run_dir = root / "trials" / trial_id
                run_dir.mkdir(parents=True)
                steps = [{"step": s, "reward": level * s / 10 + rng.normal(0, 0.02), "accuracy": level * s / 10,
                          "advantage/zero_group_frac": 0.5 - s / 40, "advantage/abs_mean": 0.4,
                          "rewards/correctness/mean": level * s / 10, "rewards/semantic_density/mean": 0.6}
                         for s in range(1, 11)]
                (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in steps) + "\n")
                seed_effect = 0.02 * seed  # shared by every arm of a seed: pairing removes it
                records.append({"trial_id": trial_id, "status": "done", "seed": seed, "run_dir": str(run_dir),
                                "wall_seconds": 10.0 + seed, "params": {"estimator.name": estimator,
                                                                         "rewards.semantic_density": weight},
                                "final": {"reward": level}, "eval": {"accuracy": level + seed_effect +
                                                                      rng.normal(0, 0.005)}})
    records.append({"trial_id": "broken", "status": "failed", "seed": 9, "error": "ValueError: bad batch\nmore",
                    "params": {"estimator.name": "rloo", "rewards.semantic_density": 0.0}})
    table = results_frame(records)
    table.to_parquet(root / "results.parquet", index=False)
    return table


def test_statistics_helpers_against_scipy():
    values = np.array([0.2, 0.25, 0.31, 0.22, 0.27])
    mean, low, high = mean_ci(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(expected)
    differences = np.array([0.05, 0.07, 0.04, 0.06])
    low, high = bootstrap_ci(differences)
    assert differences.min() <= low < differences.mean() < high <= differences.max()
    result = paired_comparison(np.array([0.5, 0.6, 0.55, 0.65]), np.array([0.45, 0.53, 0.51, 0.59]))
    assert result.p_value == pytest.approx(stats.ttest_rel([0.5, 0.6, 0.55, 0.65], [0.45, 0.53, 0.51, 0.59]).pvalue)
    assert result.verdict == "better"
    noisy = paired_comparison(np.array([0.5, 0.4, 0.6]), np.array([0.45, 0.5, 0.55]))
    assert noisy.verdict == "no detectable difference with 3 seeds"


def test_report_numbers_match_pandas(tmp_path):
    table = write_fixture(tmp_path)
    report = build_report(tmp_path)
    done = table[table["status"] == "done"]
    summary = headline(table, "eval.accuracy").set_index(["param.estimator.name", "param.rewards.semantic_density"])
    for (estimator, weight), group in done.groupby(["param.estimator.name", "param.rewards.semantic_density"]):
        accuracy = group["eval.accuracy"]
        half = stats.t.ppf(0.975, len(group) - 1) * accuracy.std(ddof=1) / np.sqrt(len(group))
        row = summary.loc[(estimator, weight)]
        assert row["mean"] == pytest.approx(accuracy.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((accuracy.mean() - half, accuracy.mean() + half))
        assert row["n_seeds"] == 4 and row["wall_seconds"] == pytest.approx(group["wall_seconds"].mean())
        assert f"{accuracy.mean():.3f}" in report.read_text()

    paired = paired_table(table, "eval.accuracy").set_index(["param.estimator.name", "param.rewards.semantic_density"])
    base = done[done["param.estimator.name"] == "group_mean"].set_index(["param.rewards.semantic_density", "seed"])
    for (estimator, weight), row in paired.iterrows():
        arm = done[(done["param.estimator.name"] == estimator) & (done["param.rewards.semantic_density"] == weight)]
        diffs = arm.set_index("seed")["eval.accuracy"] - base.loc[weight]["eval.accuracy"]
        assert row["mean_diff"] == pytest.approx(diffs.mean()) and row["n_pairs"] == 4
    assert paired.loc[("attenuated_pairwise", 0.5), "verdict"] == "better"
    assert paired.loc[("pairwise_sum", 0.0), "verdict"].startswith(("no detectable", "better", "worse"))

    text = report.read_text()
    assert "1 trial(s) failed" in text and "ValueError: bad batch" in text and "more" not in text.split("Failed")[1].split("Environment")[0]
    figures = sorted((tmp_path / "figures").glob("*.png"))
    names = {f.name for f in figures}
    assert {"accuracy_by_arm.png", "curve_reward.png", "curve_accuracy.png", "curve_advantage_zero_group_frac.png",
            "curve_rewards_semantic_density_mean.png"} <= names
    assert all(f.stat().st_size > 5_000 and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(re.findall(r"!\[", text))


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_opens_in_headless_chromium_with_every_figure(tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    write_fixture(tmp_path)
    build_report(tmp_path)
    probe = """<script>window.addEventListener('load', () => {
      const images = [...document.images];
      const ok = images.filter(i => i.complete && i.naturalWidth > 0).length;
      document.title = `images ${ok}/${images.length}`;
    });</script></body>"""
    page = tmp_path / "probe.html"
    page.write_text((tmp_path / "report.html").read_text().replace("</body>", probe))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    found = re.search(r"<title>images (\d+)/(\d+)</title>", dom)
    assert found, dom[:500]
    loaded, total = map(int, found.groups())
    assert total >= 6 and loaded == total
