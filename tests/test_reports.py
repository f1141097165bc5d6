"""Reports from a synthetic sweep directory (the sweep's data contract): numbers against independent computations,
the comparison plan, report.json's schema, sample efficiency, figures, HTML in headless Chromium."""

from __future__ import annotations

import hashlib
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

from reports.__main__ import main
from reports.decision import direction

TASKS = {"arithmetic": 0.40, "multihop": 0.25}
GAINS = {"group_mean": 0.20, "attenuated_pairwise": 0.28, "shuffled": -0.05}  # over the warm start
DENSITY_GAIN = 0.03
WEIGHTS = (0.0, 0.5)
SEEDS = (0, 1, 2, 3, 4)
N_ITEMS = 200
FLIPPED = 0.005  # pairwise_sum = group_mean's outcomes with 0.5% of the items flipped: equivalent at the family level
STEPS = list(range(0, 61, 10))


def item_ids(task: str) -> list[str]:
    return [hashlib.sha256(f"{task} question {k}".encode()).hexdigest()[:16] for k in range(N_ITEMS)]


def write_trial(root: Path, trial_id: str, correct: np.ndarray, task: str, curve: list[float] | None,
                items: bool = True) -> Path:
    """A trial directory with eval_items.jsonl (when `items`), and eval_curve.jsonl and metrics.jsonl (when
    `curve`)."""
    run_dir = root / "trials" / trial_id
    run_dir.mkdir(parents=True)
    if items:
        rows = [{"item_id": i, "samples": 8, "pass@1": float(c), "greedy": int(round(float(c))), "reward": float(c),
                 "length": 12} for i, c in zip(item_ids(task), correct)]
        (run_dir / "eval_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if curve is not None:
        (run_dir / "eval_curve.jsonl").write_text("".join(
            json.dumps({"step": s, "metric": "pass@1", "accuracy": a, "n": 50}) + "\n" for s, a in zip(STEPS, curve)))
        rows = [{"step": s, "reward": curve[-1] * s / 30 + 0.01 * (s % 3), "accuracy": curve[-1] * s / 30,
                 "advantage/abs_mean": 0.4, "advantage/zero_group_frac": 0.5 - s / 80, "loss": 0.1,
                 "rewards/correctness/mean": curve[-1] * s / 30, "rewards/semantic_density/mean": 0.6}
                for s in range(1, 31)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def row(trial_id: str, task: str, seed: int, run_dir: Path, estimator: str, weight: float, correct: np.ndarray,
        curve: list[float] | None) -> dict:
    """A results.parquet row as the sweep writes it."""
    return {"trial_id": trial_id, "status": "done", "seed": seed, "wall_seconds": 10.0 + seed, "error": None,
            "run_dir": str(run_dir), "task": task, "param.estimator.name": estimator,
            "param.rewards.semantic_density": weight, "param.task.name": task,
            "train.reward": curve[-1] if curve else np.nan, "eval.accuracy": float(np.mean(correct))}


def write_sweep(root: Path, report: object = True, items: bool = True) -> pd.DataFrame:
    """2 tasks x 4 estimators x 2 semantic-density weights x 5 seeds, warm_start rows per (task, seed) and one
    failed trial. P(correct) = task level + gain of the estimator (+ DENSITY_GAIN at weight 0.5) + item effect +
    seed effect; held-out curves rise to the final gain, attenuated_pairwise's faster."""
    rng = np.random.default_rng(0)
    rows = []
    for task, level in TASKS.items():
        item_effect = rng.uniform(-0.2, 0.2, N_ITEMS)
        for seed in SEEDS:
            seed_effect = rng.normal(0, 0.01)
            warm = rng.random(N_ITEMS) < level + item_effect + seed_effect
            run_dir = write_trial(root, f"warm-{task}-{seed}", warm, task, None, items)
            rows.append(row(f"warm-{task}-{seed}", task, seed, run_dir, "warm_start", np.nan, warm, None))
            for weight in WEIGHTS:
                outcomes = {}
                for estimator, gain in GAINS.items():
                    gain += DENSITY_GAIN if weight > 0 else 0.0
                    p = level + gain + item_effect + seed_effect + rng.normal(0, 0.01)
                    outcomes[estimator] = rng.random(N_ITEMS) < p
                outcomes["pairwise_sum"] = outcomes["group_mean"] ^ (rng.random(N_ITEMS) < FLIPPED)
                for estimator, correct in outcomes.items():
                    final = float(np.mean(correct))
                    speed = 30 if estimator == "attenuated_pairwise" else 50
                    curve = [level + (final - level) * min(1.0, s / speed) + rng.normal(0, 0.005) for s in STEPS]
                    trial_id = f"{task}-{estimator}-{weight}-{seed}"
                    run_dir = write_trial(root, trial_id, correct, task, curve, items)
                    rows.append(row(trial_id, task, seed, run_dir, estimator, weight, correct, curve))
    rows.append({"trial_id": "broken", "status": "failed", "seed": 9, "wall_seconds": 1.0, "run_dir": None,
                 "error": "ValueError: bad batch\nmore", "task": "arithmetic", "param.estimator.name": "rloo",
                 "param.rewards.semantic_density": 0.0, "param.task.name": "arithmetic"})
    table = pd.DataFrame(rows)
    table.to_parquet(root / "results.parquet", index=False)
    (root / "spec.json").write_text(json.dumps({"spec": {"name": root.name, "report": report}}))
    return table


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic sweep with its report built by `python -m reports RUN_DIR` (margin from spec.json)."""
    root = tmp_path_factory.mktemp("sweep")
    write_sweep(root, report={"enabled": True, "equivalence_margin": 0.02})
    main([str(root)])
    return root


def report_json(root: Path) -> dict:
    return json.loads((root / "report.json").read_text())


def find(rows: list[dict], **where: object) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def outcomes(root: Path, task: str, estimator: str, weight: float | None) -> pd.DataFrame:
    """Seeds x item_id table of `pass@1`, read straight from the trial directories."""
    frames = {}
    for seed in SEEDS:
        name = f"warm-{task}-{seed}" if weight is None else f"{task}-{estimator}-{weight}-{seed}"
        lines = (root / "trials" / name / "eval_items.jsonl").read_text().splitlines()
        frames[seed] = pd.Series({json.loads(x)["item_id"]: json.loads(x)["pass@1"] for x in lines})
    return pd.DataFrame(frames).T


def two_way_interval(y: pd.DataFrame) -> tuple[float, float, float]:
    """Written out independently: sums of squares of y ~ seed + item, Var = (SS_seed/(S-1) + max(MS_item - MS_res,
    0)) / (S I), Satterthwaite df floored at S - 1 and pulled towards it; returns (mean, low, high)."""
    s, i = y.shape
    grand = y.to_numpy().mean()
    ss_seed = i * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_item = s * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((y.to_numpy() - grand) ** 2).sum()
    ms_seed, ms_item = ss_seed / (s - 1), ss_item / (i - 1)
    ms_res = (ss_total - ss_seed - ss_item) / ((s - 1) * (i - 1))
    item = max(ms_item - ms_res, 0.0)
    variance = (ms_seed + item) / (s * i)
    parts = (ms_seed / (s * i)) ** 2 / (s - 1)
    if item > 0:
        parts += (ms_item / (s * i)) ** 2 / (i - 1) + (ms_res / (s * i)) ** 2 / ((s - 1) * (i - 1))
    satterthwaite = max(variance**2 / parts, s - 1)
    share = ms_seed / (s * i) / variance  # the pull towards S - 1 (reports.stats.VarianceComponents.df)
    df = 1 / (share / (s - 1) + (1 - share) / satterthwaite)
    half = stats.t.ppf(0.975, df) * np.sqrt(variance)
    return grand, grand - half, grand + half


def test_report_json_schema_and_comparison_plan(sweep):
    report = report_json(sweep)
    assert report["metric"] == "pass@1" and report["equivalence_margin"] == 0.02
    arms = report["arms"]
    assert len(arms) == len(TASKS) * (len(WEIGHTS) * 4 + 1)
    for arm in arms:
        assert set(arm) >= {"arm", "task", "params", "n_seeds", "n_items", "mean", "ci_low", "ci_high"}
        assert arm["n_seeds"] == len(SEEDS) and arm["n_items"] == N_ITEMS
        assert arm["ci_low"] < arm["mean"] < arm["ci_high"]
    warm = find(arms, task="multihop", arm="warm_start")
    assert warm["params"] == {"estimator.name": "warm_start"}
    arm = find(arms, task="multihop", arm="estimator=group_mean|rewards.semantic_density=0.5")
    assert arm["params"] == {"estimator.name": "group_mean", "rewards.semantic_density": 0.5}

    comparisons = report["comparisons"]
    per_task = {"estimator": 4, "control: shuffled": 2, "control: RL": 2, "semantic density": 3}
    for kind, count in per_task.items():
        assert sum(c["kind"] == kind for c in comparisons) == count * len(TASKS)
    for c in comparisons:
        assert set(c) >= {"candidate", "baseline", "task", "n_seeds", "n_items", "diff", "ci_low", "ci_high",
                          "p_value", "p_adjusted", "mde80", "verdict", "margin"}
        assert direction(c["verdict"]) in {"better", "worse", "equivalent", "non-inferior", "non-superior",
                                           "inconclusive"} and c["p_adjusted"] >= c["p_value"]
    density = [c for c in comparisons if c["kind"] == "semantic density"]
    assert all(c["candidate"].endswith("semantic_density=0.5") and c["baseline"].endswith("semantic_density=0.0")
               and c["candidate"].split("|")[0] == c["baseline"].split("|")[0] for c in density)
    assert not any(c["candidate"].startswith("estimator=shuffled") for c in density)
    rl = find(comparisons, task="arithmetic", kind="control: RL",
              candidate="estimator=group_mean|rewards.semantic_density=0.0")
    assert rl["baseline"] == "warm_start"


def test_numbers_against_an_independent_computation(sweep):
    report = report_json(sweep)
    y = outcomes(sweep, "multihop", "attenuated_pairwise", 0.5)
    mean, low, high = two_way_interval(y)
    arm = find(report["arms"], task="multihop", arm="estimator=attenuated_pairwise|rewards.semantic_density=0.5")
    assert (arm["mean"], arm["ci_low"], arm["ci_high"]) == pytest.approx((mean, low, high))
    warm = outcomes(sweep, "arithmetic", "warm_start", None)
    mean, low, high = two_way_interval(outcomes(sweep, "arithmetic", "group_mean", 0.0) - warm)
    rl = find(report["comparisons"], task="arithmetic", kind="control: RL",
              candidate="estimator=group_mean|rewards.semantic_density=0.0")
    assert (rl["diff"], rl["ci_low"], rl["ci_high"]) == pytest.approx((mean, low, high))  # a control: family of 1
    claims = [c for c in report["comparisons"] if not c["kind"].startswith("control")]
    controls = [c for c in report["comparisons"] if c["kind"].startswith("control")]
    assert claims and controls
    m = len(claims)  # the claim comparisons are one family: Bonferroni intervals and p-values
    assert all(c["family_size"] == m and c["p_adjusted"] == pytest.approx(min(1.0, m * c["p_value"])) for c in claims)
    assert [c["p_adjusted"] for c in controls] == [c["p_value"] for c in controls]  # each control is tested alone
    y = outcomes(sweep, "multihop", "attenuated_pairwise", 0.5) - outcomes(sweep, "multihop", "group_mean", 0.5)
    mean, low, high = two_way_interval(y)
    found = find(claims, task="multihop", kind="estimator",
                 candidate="estimator=attenuated_pairwise|rewards.semantic_density=0.5")
    widen = stats.t.ppf(1 - 0.05 / (2 * m), found["df"]) / stats.t.ppf(0.975, found["df"])
    assert (found["ci95_low"], found["ci95_high"]) == pytest.approx((low, high))
    assert (found["ci_low"], found["ci_high"]) == pytest.approx((mean - widen * (mean - low),
                                                                 mean + widen * (high - mean)))


def test_verdicts_and_controls(sweep):
    report = report_json(sweep)
    verdicts = {(c["task"], c["kind"], c["candidate"]): c["verdict"] for c in report["comparisons"]}
    for task in TASKS:
        for weight in WEIGHTS:
            mix = f"rewards.semantic_density={weight}"
            assert direction(verdicts[(task, "control: RL", f"estimator=group_mean|{mix}")]) == "better"
            assert direction(verdicts[(task, "control: shuffled", f"estimator=shuffled|{mix}")]) == "worse"
    assert "equivalent" in {v for (_, kind, c), v in verdicts.items() if c.startswith("estimator=pairwise_sum|")}
    for c in report["comparisons"]:
        if c["verdict"] == "inconclusive":
            assert c["mde80"] > 0
    text = (sweep / "report.md").read_text()
    assert text.index("## Verdict") < text.index("## Held-out pass@1 by arm") < text.index("## Paired")
    verdict = text.split("## Verdict")[1].split("\n## ")[0]
    assert verdict.count("Control passed") == 2 * len(TASKS) * len(WEIGHTS) and "CONTROL FAILED" not in verdict
    assert "attenuated_pairwise vs group_mean" in verdict and "pairwise_sum vs group_mean" in verdict
    assert "semantic_density 0.5 vs 0" in verdict
    assert re.search(r"about \d+ seeds would detect|no number of seeds", verdict)


def test_sample_efficiency(sweep):
    report = report_json(sweep)
    curves = {}
    for name in ("arithmetic-attenuated_pairwise-0.0", "arithmetic-group_mean-0.0"):
        for seed in SEEDS:
            lines = (sweep / "trials" / f"{name}-{seed}" / "eval_curve.jsonl").read_text().splitlines()
            curve = pd.DataFrame([json.loads(x) for x in lines])
            curves[(name, seed)] = np.trapezoid(curve["accuracy"], curve["step"]) / (STEPS[-1] - STEPS[0])
    diffs = [curves[("arithmetic-attenuated_pairwise-0.0", s)] - curves[("arithmetic-group_mean-0.0", s)]
             for s in SEEDS]
    auc = find(report["sample_efficiency"], task="arithmetic", metric="auc", kind="estimator",
               candidate="estimator=attenuated_pairwise|rewards.semantic_density=0.0")
    interval = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert (auc["diff"], auc["ci95_low"], auc["ci95_high"]) == pytest.approx((np.mean(diffs), interval.low,
                                                                              interval.high))
    assert direction(auc["verdict"]) == "better"
    steps = find(report["sample_efficiency"], task="arithmetic", metric="steps", kind="estimator",
                 candidate="estimator=attenuated_pairwise|rewards.semantic_density=0.0")
    assert steps["diff"] <= 0 and steps["verdict"] in {"better", "inconclusive"}
    assert set(report["thresholds"]) == set(TASKS)
    assert all(TASKS[t] < v < TASKS[t] + GAINS["attenuated_pairwise"] for t, v in report["thresholds"].items())


def test_across_tasks(sweep):
    report = report_json(sweep)
    shuffled = find(report["across_tasks"], kind="control: shuffled",
                    candidate="estimator=shuffled|rewards.semantic_density=0.0")
    assert shuffled["n_tasks"] == 2 and shuffled["p_improvement"] == 0.0
    assert shuffled["p_improvement_low"] == shuffled["p_improvement_high"] == 0.0
    table = pd.read_parquet(sweep / "results.parquet")
    accuracy = table[(table["param.estimator.name"] == "shuffled") & (table["param.rewards.semantic_density"] == 0)]
    assert shuffled["iqm_candidate"] == pytest.approx(stats.trim_mean(accuracy["eval.accuracy"], 0.25))
    assert shuffled["iqm_candidate_low"] <= shuffled["iqm_candidate"] <= shuffled["iqm_candidate_high"]


def test_seed_only_fallback_without_eval_items(tmp_path):
    from reports.analysis import ReportOptions, analyse
    from reports.analysis import report_json as as_json

    table = write_sweep(tmp_path, items=False)
    result = as_json(analyse(table, tmp_path, ReportOptions()))
    assert "intervals over seeds only" in result["source"]
    arm = find(result["arms"], task="arithmetic", arm="estimator=group_mean|rewards.semantic_density=0.0")
    assert arm["n_items"] is None and arm["noise"] == "seeds"
    c = find(result["comparisons"], task="arithmetic", kind="estimator",
             candidate="estimator=attenuated_pairwise|rewards.semantic_density=0.0")
    pick = lambda e: table[(table["task"] == "arithmetic") & (table["param.estimator.name"] == e)  # noqa: E731
                           & (table["param.rewards.semantic_density"] == 0.0)].set_index("seed")["eval.accuracy"]
    test = stats.ttest_rel(pick("attenuated_pairwise"), pick("group_mean").loc[pick("attenuated_pairwise").index])
    interval = test.confidence_interval(0.95)
    assert (c["p_value"], c["ci95_low"], c["ci95_high"]) == pytest.approx((test.pvalue, interval.low,
                                                                            interval.high))


def test_a_moved_sweep_directory_still_finds_its_trials(tmp_path):
    from reports.analysis import ReportOptions, analyse

    write_sweep(tmp_path / "before")
    moved = (tmp_path / "before").rename(tmp_path / "after")
    analysis = analyse(pd.read_parquet(moved / "results.parquet"), moved, ReportOptions())
    assert set(analysis.arms["noise"]) == {"seeds+items"} and not analysis.eval_curves.empty


@pytest.mark.parametrize("report, margin", [(True, 0.02), (False, 0.02), ({"equivalence_margin": 0.05}, 0.05)])
def test_report_options_from_spec(report, margin):
    from reports.analysis import ReportOptions

    assert ReportOptions.from_spec({"report": report}).equivalence_margin == margin


def test_plan_matches_every_other_parameter():
    from reports.compare import plan
    from reports.data import make_arm

    arms = [make_arm("t", {"estimator.name": e, "estimator.beta": b, "rewards.semantic_density": w})
            for e in ("group_mean", "attenuated_pairwise") for b in (1.0, 2.0) for w in (0.0, 0.5)]
    arms.append(make_arm("t", {"estimator.name": "warm_start", "estimator.beta": np.nan}))
    pairs = plan(arms)
    for pair in pairs:
        if pair.kind != "control: RL":
            assert dict(pair.candidate.params)["estimator.beta"] == dict(pair.baseline.params)["estimator.beta"]
    assert sum(p.kind == "estimator" for p in pairs) == 4 and sum(p.kind == "control: RL" for p in pairs) == 4
    assert sum(p.kind == "semantic density" for p in pairs) == 4


def test_figures_and_markdown(sweep):
    text = (sweep / "report.md").read_text()
    assert "1 trial(s) failed" in text and "ValueError: bad batch" in text
    names = {f.name for f in (sweep / "figures").glob("*.png")}
    assert {"accuracy_by_arm.png", "forest.png", "eval_curve.png", "curve_reward.png", "curve_accuracy.png",
            "curve_advantage_zero_group_frac.png", "curve_rewards_semantic_density_mean.png"} <= names
    figures = list((sweep / "figures").glob("*.png"))
    assert all(f.stat().st_size > 5_000 and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    html = (sweep / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(re.findall(r"!\[", text)) == len(figures)


def test_one_colour_per_estimator():
    from reports.figures import PALETTE, colour

    assert len(set(PALETTE.values())) == len(PALETTE)
    assert colour("group_mean") == PALETTE["group_mean"] and colour("my_new_estimator") == colour("my_new_estimator")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_opens_in_headless_chromium_with_every_figure(sweep, tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = """<script>window.addEventListener('load', () => {
      const images = [...document.images];
      const ok = images.filter(i => i.complete && i.naturalWidth > 0).length;
      document.title = `images ${ok}/${images.length}`;
    });</script></body>"""
    page = tmp_path / "probe.html"
    page.write_text((sweep / "report.html").read_text().replace("</body>", probe))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    found = re.search(r"<title>images (\d+)/(\d+)</title>", dom)
    assert found, dom[:500]
    loaded, total = map(int, found.groups())
    assert total >= 8 and loaded == total


def test_estimator_variants_are_compared_with_the_group_mean_of_the_same_mix():
    """A variants sweep sweeps whole estimator mappings: each variant's baseline is the group_mean arm with the same
    non-estimator parameters, whatever the estimators' own parameters."""
    from harness.sweep.spec import flat_params
    from reports.compare import plan
    from reports.data import make_arm

    flat = flat_params({"estimator": {"name": "attenuated_pairwise", "attenuation": "log"}, "rewards.x": 0.5})
    assert flat == {"estimator.name": "attenuated_pairwise", "estimator.attenuation": "log", "rewards.x": 0.5}
    grpo = make_arm("arithmetic", {"estimator.name": "group_mean", "estimator.scale": "group"})
    variants = [make_arm("arithmetic", {"estimator.name": "attenuated_pairwise", "estimator.attenuation": a,
                                        "estimator.scale": "group"}) for a in ("ranknet", "log")]
    pairs = [p for p in plan([grpo, *variants]) if p.kind == "estimator"]
    assert {p.candidate for p in pairs} == set(variants) and {p.baseline for p in pairs} == {grpo}


def fractional_sweep(root: Path, report: object) -> dict[str, np.ndarray]:
    """warm_start and group_mean on one task, 3 seeds x 40 items: per-item pass@1 over 4 samples (fractions) and a
    greedy 0/1 that differs from it; returns each arm's seeds x items pass@1."""
    rng = np.random.default_rng(5)
    rows, values = [], {}
    for arm, level in (("warm_start", 0.3), ("group_mean", 0.6)):
        values[arm] = rng.binomial(4, level, (3, 40)) / 4
        for seed in range(3):
            run_dir = root / "trials" / f"{arm}-{seed}"
            run_dir.mkdir(parents=True)
            lines = [{"item_id": f"item{k}", "samples": 4, "pass@1": float(v), "greedy": int(v > 0.5), "reward": 0.0,
                      "length": 10} for k, v in enumerate(values[arm][seed])]
            (run_dir / "eval_items.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            (run_dir / "summary.json").write_text(json.dumps({"provenance": {"cpu": "AMD EPYC", "threads": 1,
                                                                             "cpu_capability": "AVX512"}}))
            rows.append(row(f"{arm}-{seed}", "t", seed, run_dir, arm, np.nan if arm == "warm_start" else 0.0,
                            values[arm][seed], None))
    pd.DataFrame(rows).to_parquet(root / "results.parquet", index=False)
    (root / "spec.json").write_text(json.dumps({"spec": {"name": root.name, "report": report}}))
    return values


@pytest.mark.parametrize("metric", [None, "greedy"])
def test_the_report_is_on_fractional_pass_at_1_or_the_chosen_metric(tmp_path, metric):
    values = fractional_sweep(tmp_path, {"metric": metric} if metric else True)
    main([str(tmp_path)])
    report = report_json(tmp_path)
    assert report["metric"] == (metric or "pass@1")
    arm = find(report["arms"], task="t", arm="warm_start")
    expected = (values["warm_start"] > 0.5).mean() if metric == "greedy" else values["warm_start"].mean()
    assert arm["mean"] == pytest.approx(expected) and arm["n_items"] == 40
    gain = find(report["comparisons"], task="t", kind="control: RL")
    assert gain["ci_low"] < gain["diff"] < gain["ci_high"] and direction(gain["verdict"]) == "better"
    assert report["environment"] == {"cpu": ["AMD EPYC"], "cpu_capability": ["AVX512"], "threads": ["1"]}
    assert f"Held-out {metric or 'pass@1'} by arm" in (tmp_path / "report.md").read_text()


def test_greedy_only_trial_files_of_earlier_versions_read_as_greedy(tmp_path):
    """eval_items.jsonl written before sampled scoring named the greedy outcome `correct`."""
    (tmp_path / "eval_items.jsonl").write_text('{"item_id": "a", "correct": 1}\n{"item_id": "b", "correct": 0}\n')
    from reports.data import default_metric, item_outcomes

    assert default_metric([str(tmp_path)]) == "greedy"
    assert item_outcomes(str(tmp_path), "greedy").to_dict() == {"a": 1.0, "b": 0.0}
    assert item_outcomes(str(tmp_path), "pass@1") is None


def test_a_metric_the_report_cannot_read_is_a_load_time_error():
    from harness.config import ConfigError
    from harness.sweep.spec import load_sweep

    smoke = Path(__file__).resolve().parent.parent / "sweeps" / "smoke.yaml"
    with pytest.raises(ConfigError, match=r"report.metric: String should match pattern '\^\(greedy\|pass@"):
        load_sweep(smoke, ["report.metric=accuracy"])
    assert load_sweep(smoke, ["report.metric=pass@4"])[0].report.metric == "pass@4"


def test_the_margin_reason_of_a_spec_as_the_sweep_writes_it():
    """spec.json holds every report key, `margin_reason: null` when the spec gives none: the default reason, not
    'None'."""
    from harness.sweep.spec import ReportConfig
    from reports.analysis import DEFAULT_MARGIN_REASON, ReportOptions

    written = ReportConfig().model_dump(mode="json")
    assert ReportOptions.from_spec({"report": written}).margin_reason == DEFAULT_MARGIN_REASON
    given = ReportConfig(margin_reason="half an item in 100").model_dump(mode="json")
    assert ReportOptions.from_spec({"report": given}).margin_reason == "half an item in 100"


def test_a_failed_control_says_what_it_did_not_show():
    """An inconclusive control reads as a failure of what it was to show, not as that meaning ("..., RL learned")."""
    from reports.verdicts import sentence

    row = pd.Series({"task": "arithmetic", "comparison": "group_mean vs warm_start", "verdict": "inconclusive",
                     "kind": "control: RL", "diff": 0.403, "ci_low": -0.833, "ci_high": 1.640, "p_adjusted": 0.296,
                     "n_seeds": 3, "n_items": 50, "mde80": 1.542, "seeds_to_detect": 14})
    failed = sentence(row, 0.02)
    assert failed.startswith("**CONTROL FAILED** (expected better: RL learned not shown): arithmetic: group_mean vs")
    passed = sentence(row.copy().replace({"inconclusive": "better"}), 0.02)
    assert passed.startswith("Control passed, RL learned: arithmetic:")


def test_a_pipe_inside_a_markdown_table_cell_stays_in_its_cell(tmp_path):
    """Arm labels hold `|` (`arithmetic | estimator=group_mean|...`, the sequential design's arm table): unescaped,
    each one split its row into extra columns of report.md."""
    from reports.render import Section, render_markdown

    table = pd.DataFrame([{"arm": "arithmetic | estimator=group_mean|rewards.semantic_density=0.0", "seeds | run": 6}])
    text = render_markdown("t", [Section("s", tables=[table])], tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 3 and {len(re.split(r"(?<!\\)\|", line)) - 2 for line in rows} == {2}
    assert "arithmetic \\| estimator=group_mean\\|rewards" in text
