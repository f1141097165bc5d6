"""The claims report (`lph claims`, reports/claims.py) on sweep directories written in the sweep's data contract
(results.parquet, spec.json, each trial's eval_items.jsonl and metrics.jsonl) and an `lph diagnose` output
(diagnostics.parquet): every conclusion reached by a case, the numbers against the sweep report's own and
independent computations, the claims section of a sweep report, the claims file's validation, and one real smoke
sweep for the data contract of the trainer."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import build_report
from reports.claims import main as claims_main
from reports.claims_spec import ClaimsSpecError, load_claims
from tests.conftest import ROOT

TASKS = {"arithmetic": 0.35, "multihop": 0.30}
ESTIMATORS = ("group_mean", "pairwise_sum", "attenuated_pairwise", "shuffled")
WEIGHTS = (0.0, 0.5)


def item_ids(task: str, n: int) -> list[str]:
    return [hashlib.sha256(f"{task} {k}".encode()).hexdigest()[:16] for k in range(n)]


def write_trial(root: Path, trial_id: str, task: str, correct: np.ndarray, length: np.ndarray,
                metrics: dict[str, float]) -> Path:
    """eval_items.jsonl (the outcome under every name a report reads: correct, greedy, pass@1) and metrics.jsonl
    (10 steps of the given per-step values)."""
    run_dir = root / "trials" / trial_id
    run_dir.mkdir(parents=True)
    items = [{"item_id": i, "correct": int(c), "greedy": int(c), "pass@1": float(c), "reward": float(c),
              "length": float(n)} for i, c, n in zip(item_ids(task, len(correct)), correct, length)]
    (run_dir / "eval_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    rows = [{"step": s, "loss": 0.1, **metrics} for s in range(1, 11)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def write_sweep(root: Path, name: str, arms: list[dict], gain, seeds: int = 4, n_items: int = 200,
                shared: bool = True, metrics=None, length=None, failed: list[dict] = ()) -> Path:
    """A sweep of `arms` (param dicts) x TASKS x seeds. P(correct) = task level + item effect + gain(task, params);
    with `shared` every arm of a seed draws the same uniforms (common random numbers: differences are the gains
    alone, up to the items' discreteness). `metrics(params, seed)` and `length(params)` give the trial's training
    metrics and held-out lengths; `failed` adds failed trial rows."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for task, level in TASKS.items():
        item_effect = rng.uniform(-0.2, 0.2, n_items)
        uniforms = {seed: rng.random(n_items) for seed in range(seeds)}
        for seed in range(seeds):
            for params in [{"estimator.name": "warm_start"}, *arms]:
                p = level + item_effect + (gain(task, params) if params["estimator.name"] != "warm_start" else -0.1)
                draw = uniforms[seed] if shared else rng.random(n_items)
                correct = draw < p
                lengths = np.full(n_items, length(params) if length else 20.0) + rng.integers(0, 3, n_items)
                values = metrics(params, seed) if metrics else {"entropy": 1.0, "grad_norm": 0.5,
                                                                 "advantage/zero_group_frac": 0.4}
                trial_id = f"{task}-{'-'.join(map(str, params.values()))}-{seed}"
                run_dir = write_trial(root, trial_id, task, correct, lengths, values)
                rows.append({"trial_id": trial_id, "status": "done", "seed": seed, "wall_seconds": 1.0,
                             "error": None, "run_dir": str(run_dir), "task": task, "param.task.name": task,
                             **{f"param.{k}": v for k, v in params.items()}, "eval.accuracy": correct.mean()})
    for k, params in enumerate(failed):
        rows.append({"trial_id": f"failed-{k}", "status": "failed", "seed": 100 + k, "wall_seconds": 1.0,
                     "error": "NonFiniteLoss: loss is nan at step 3", "run_dir": None, "task": "arithmetic",
                     "param.task.name": "arithmetic", **{f"param.{k}": v for k, v in params.items()}})
    pd.DataFrame(rows).to_parquet(root / "results.parquet", index=False)
    (root / "spec.json").write_text(json.dumps({"spec": {"name": name, "report": True}}))
    return root


def ablation_arms() -> list[dict]:
    return [{"estimator.name": e, "rewards.semantic_density": w} for e in ESTIMATORS for w in WEIGHTS]


def ablation_gain(task: str, params: dict) -> float:
    """attenuated_pairwise +0.15 on arithmetic, -0.15 on multihop; pairwise_sum = group_mean; shuffled -0.25;
    semantic density changes no accuracy."""
    estimator = params["estimator.name"]
    if estimator == "attenuated_pairwise":
        return 0.15 if task == "arithmetic" else -0.15
    return -0.25 if estimator == "shuffled" else 0.0


def ablation_metrics(params: dict, seed: int) -> dict:
    """Semantic density lowers the share of all-zero groups by 0.3; entropy and gradient norm equal (+ seed noise)."""
    weight = params.get("rewards.semantic_density", 0.0)
    return {"advantage/zero_group_frac": 0.5 - 0.3 * (weight > 0) + 0.01 * seed, "entropy": 1.0 + 0.001 * seed,
            "grad_norm": 0.5 + 0.001 * seed}


def write_diagnostics(root: Path) -> Path:
    """diagnostics.parquet of `lph diagnose`: attenuated_pairwise vs group_mean on 8 testbed cells at G = 8 (and a
    G = 4 row that must be ignored): the same cosine up to noise, 5x the relative norm error, twice the SNR."""
    root.mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(1)
    for policy in ("tabular", "linear"):
        for rewards in ("binary", "graded"):
            for start in ("uniform", "confident_wrong"):
                cell = {"policy": policy, "rewards": rewards, "start": start}
                cosine, error, snr = 0.99 + rng.uniform(0, 0.005), 0.1 + rng.uniform(0, 0.02), rng.uniform(1, 3)
                for group in (4, 8):
                    rows.append(cell | {"estimator": "group_mean", "G": group, "cosine": cosine,
                                        "relative_norm_error": error, "relative_variance": 1.0, "snr": snr})
                    rows.append(cell | {"estimator": "attenuated_pairwise", "G": group,
                                        "cosine": cosine + (rng.normal(0, 0.001) if group == 8 else -0.5),
                                        "relative_norm_error": 5 * error, "relative_variance": 1.0,
                                        "snr": 2 * snr * (1 + rng.uniform(-0.01, 0.01))})
    pd.DataFrame(rows).to_parquet(root / "diagnostics.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ablation-like sweep, a cohort sweep, a noisy sweep, diagnostics, and `lph claims` over the first three
    and the diagnostics (the noisy one serves the custom-spec tests)."""
    base = tmp_path_factory.mktemp("claims")
    ablation = write_sweep(base / "ablation", "ablation", ablation_arms(), ablation_gain, metrics=ablation_metrics,
                           length=lambda p: 20.0 + 5.0 * (p.get("rewards.semantic_density", 0) > 0),
                           failed=[{"estimator.name": "attenuated_pairwise", "rewards.semantic_density": 0.0}])
    cohort = write_sweep(base / "cohort", "cohort",
                         [{"estimator.name": e, "trainer.num_generations": g}
                          for e in ("group_mean", "attenuated_pairwise") for g in (2, 4, 8)],
                         lambda task, p: 0.15 if p["estimator.name"] == "attenuated_pairwise" else 0.0)
    noisy = write_sweep(base / "noisy", "noisy", [{"estimator.name": e} for e in ("group_mean", "rloo")],
                        lambda task, p: 0.02 if p["estimator.name"] == "rloo" else 0.0, seeds=2, n_items=40,
                        shared=False)
    diagnostics = write_diagnostics(base / "diagnostics")
    out = base / "claims"
    claims_main([str(ablation), str(cohort), str(diagnostics), "--out", str(out)])
    return {"ablation": ablation, "cohort": cohort, "noisy": noisy, "diagnostics": diagnostics, "out": out,
            "base": base}


def claims(out: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}


def rows(claim: dict, **where: object) -> list[dict]:
    return [r for r in claim["evidence"] if all(r.get(k) == v for k, v in where.items())]


def test_schema_and_every_claim_concluded(runs):
    data = json.loads((runs["out"] / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == [f"C{k}" for k in range(1, 8)]
    for claim in data["claims"]:
        assert {"id", "text", "source", "conclusion", "headline", "summary", "evidence"} <= set(claim)
        assert claim["text"] and claim["source"]
        for row in claim["evidence"]:
            assert {"diff", "ci_low", "ci_high", "p_value", "p_adjusted", "mde80", "seeds_to_detect", "verdict",
                    "task", "outcome", "sweep", "scope", "margin", "margin_reason"} <= set(row)
            assert row["margin"] is None or row["margin_reason"]
    found = {c["id"]: c["conclusion"] for c in data["claims"]}
    assert found == {"C1": "mixed", "C2": "mixed", "C3": "mixed", "C4": "supported", "C5": "supported",
                     "C6": "mixed", "C7": "by construction"}


def test_mixed_names_the_task_families(runs):
    c1 = claims(runs["out"])["C1"]
    assert len(c1["evidence"]) == 4  # 2 tasks x 2 reward mixes, the ablation only (C1 names its sweep)
    assert {r["sweep"] for r in c1["evidence"]} == {"ablation"}
    for row in c1["evidence"]:
        assert row["outcome"] == ("holds" if row["task"] == "arithmetic" else "fails")
        assert row["verdict"] == ("better" if row["task"] == "arithmetic" else "worse") + ", beyond +-0.02"
        assert row["margin"] == 0.02 and row["rl_gain"] == pytest.approx(0.1, abs=0.02)  # the sweep's own RL gain
    summary = c1["summary"]
    assert re.search(r"Holds on ablation: arithmetic \| rewards.semantic_density=0.0", summary)
    assert re.search(r"Fails on ablation: multihop \| rewards.semantic_density=0.0 .*: worse, beyond", summary)
    assert re.search(r"margin 0.02 = \d+% of the RL gain", summary)
    assert c1["headline"].startswith("**mixed**: 2 of 4 rows hold, 2 fail, 0 undecided")


def test_rows_carry_the_sweep_reports_statistics(runs):
    """C1's rows are the report's attenuated_pairwise vs group_mean comparisons (same diff, unadjusted interval,
    p-value); the claim is its own family of 4 rows (Bonferroni), the sweep report's family is its claim
    comparisons."""
    build_report(runs["ablation"])
    report = json.loads((runs["ablation"] / "report.json").read_text())
    c1 = claims(runs["out"])["C1"]
    for row in c1["evidence"]:
        match = [r for r in report["comparisons"] if r["candidate"] == row["candidate"]
                 and r["baseline"] == row["baseline"] and r["task"] == row["task"]]
        assert len(match) == 1
        for key in ("diff", "ci95_low", "ci95_high", "p_value", "mde80", "n_seeds", "n_items"):
            assert row[key] == pytest.approx(match[0][key], rel=1e-12, abs=1e-15), key
        assert row["family_size"] == 4 and match[0]["family_size"] > 4
        assert row["ci_low"] < row["ci95_low"] and row["ci_high"] > row["ci95_high"]
    assert [r["p_adjusted"] for r in c1["evidence"]] == pytest.approx([min(1, 4 * r["p_value"])
                                                                       for r in c1["evidence"]])


def outcome_matrix(root: Path, task: str, label: str, seeds: int = 4) -> pd.DataFrame:
    """Seeds x item table of `correct`, read straight from the trial files."""
    frames = {}
    for seed in range(seeds):
        lines = (root / "trials" / f"{task}-{label}-{seed}" / "eval_items.jsonl").read_text().splitlines()
        frames[seed] = pd.Series({json.loads(x)["item_id"]: json.loads(x)["correct"] for x in lines})
    return pd.DataFrame(frames).T


def test_comparison_of_two_non_baseline_estimators(runs):
    """C2: attenuated_pairwise vs pairwise_sum, a pair the sweep report does not make, paired by seed and item;
    lambdarank is not in these runs and is named as not tested."""
    c2 = claims(runs["out"])["C2"]
    row = rows(c2, task="arithmetic", candidate="estimator=attenuated_pairwise|rewards.semantic_density=0.0")[0]
    assert row["baseline"] == "estimator=pairwise_sum|rewards.semantic_density=0.0"
    expected = (outcome_matrix(runs["ablation"], "arithmetic", "attenuated_pairwise-0.0")
                - outcome_matrix(runs["ablation"], "arithmetic", "pairwise_sum-0.0")).to_numpy().mean()
    assert row["diff"] == pytest.approx(expected)
    assert row["n_seeds"] == 4 and row["n_items"] == 200
    assert "Not tested here: lambdarank vs pairwise_sum (rank weights)" in c2["summary"]


def test_sparsity_from_training_metrics_and_held_out_length(runs):
    found = claims(runs["out"])
    c3 = found["C3"]
    sparsity = rows(c3, metric="train:advantage/zero_group_frac")
    held_out = [r for r in c3["evidence"] if r["metric"] != "train:advantage/zero_group_frac"]
    assert len(sparsity) == 6 and len(held_out) == 6  # 3 estimators (shuffled excluded) x 2 tasks
    assert all(r["diff"] == pytest.approx(-0.3) and r["verdict"] == "better, beyond +-0.02" and r["outcome"] == "holds"
               and r["noise"] == "seeds" for r in sparsity)
    assert all(r["candidate_mean"] == pytest.approx(0.215) for r in sparsity)  # 0.2 + 0.01 * mean seed 1.5
    assert all(r["verdict"] == "equivalent" and r["outcome"] == "fails" for r in held_out)
    assert not any("shuffled" in r["scope"] for r in c3["evidence"])
    c4 = found["C4"]
    assert len(c4["evidence"]) == 6
    assert all(r["verdict"] == "higher, beyond +-1" and r["diff"] == pytest.approx(5.0, abs=0.3)
               for r in c4["evidence"])


def test_cohort_rows_per_group_size(runs):
    c5 = claims(runs["out"])["C5"]
    same = rows(c5, evidence="attenuated_pairwise vs group_mean at the same G")
    assert sorted(r["scope"] for r in same if r["task"] == "arithmetic") == [
        f"arithmetic | trainer.num_generations={g}" for g in (2, 4, 8)]
    small = rows(c5, evidence="attenuated_pairwise at small G vs group_mean at G = 8")
    assert sorted(r["scope"] for r in small if r["task"] == "multihop") == [
        f"multihop | trainer.num_generations={g} vs 8" for g in (2, 4)]
    assert all(r["baseline"] == "estimator=group_mean|trainer.num_generations=8" for r in small)
    assert all(r["outcome"] == "holds" for r in c5["evidence"])


def test_diagnostics_and_training_stability(runs):
    c6 = claims(runs["out"])["C6"]
    cosine, error, snr = (rows(c6, metric=f"diagnostics:{m}")[0] for m in ("cosine", "relative_norm_error", "snr"))
    assert cosine["n_seeds"] == 8 and cosine["verdict"] == "equivalent" and cosine["outcome"] == "holds"
    assert abs(cosine["diff"]) < 0.002  # the G = 4 rows (-0.5) are not used
    assert error["verdict"] == "worse, beyond +-0.05" and error["outcome"] == "fails"
    assert snr["diff"] == pytest.approx(np.log(2), abs=0.01) and snr["outcome"] == "holds"
    failures = rows(c6, metric="failures")
    assert [r["sweep"] for r in failures] == ["ablation", "cohort"]
    assert failures[0]["scope"].endswith("| share of trials failed")  # the same at every look of a sequential design
    assert tuple(failures[0]["counts"]) == (1, 17, 0, 16)
    assert "(1/17 vs 0/16 trials failed; more trials narrow the interval)" in c6["summary"]  # not "too few replicates"
    assert failures[0]["outcome"] == "undecided"
    assert "metrics.jsonl has no `kl` (TRL logs the KL only when trainer.beta > 0)" in c6["summary"]
    assert {r["verdict"] for r in rows(c6, metric="train:entropy")} == {"equivalent"}


def test_by_construction_is_checked_in_code(runs):
    c7 = claims(runs["out"])["C7"]
    assert c7["evidence"] == [] and "registered estimators take only (rewards, seq_logprobs" in c7["summary"]


def test_html_and_markdown_have_a_figure_per_claim_with_evidence(runs):
    html = (runs["out"] / "claims.html").read_text()
    markdown = (runs["out"] / "claims.md").read_text()
    assert html.count("<img ") == 6 + 1  # C1-C6, plus C4's accuracy vs length
    for claim_id in ("C1", "C2", "C3", "C4", "C5", "C6"):
        assert (runs["out"] / "figures" / f"claim_{claim_id}.png").stat().st_size > 10_000
        assert f"](figures/claim_{claim_id}.png)" in markdown
    assert "## C7: by construction" in markdown


def test_not_tested_here_names_the_sweep(runs, tmp_path):
    claims_main([str(runs["ablation"]), "--out", str(tmp_path)])
    found = claims(tmp_path)
    assert found["C5"]["conclusion"] == "not tested here" and found["C5"]["evidence"] == []
    assert "sweeps/cohort.yaml (make claims) would test it" in found["C5"]["summary"]
    assert found["C1"]["conclusion"] == "mixed"


OTHER_PAPER = """
paper: {title: Another paper, source: a test}
claims:
  - id: X1
    text: Shuffled advantages beat the group mean.
    source: nowhere
    evidence:
      - {metric: accuracy, candidate: {estimator.name: shuffled}, baseline: {estimator.name: group_mean},
         predict: better}
  - id: X2
    text: rloo beats the group mean.
    source: nowhere
    tested_by: a sweep with rloo
    evidence:
      - {metric: accuracy, candidate: {estimator.name: rloo}, baseline: {estimator.name: group_mean},
         predict: better}
  - id: X3
    text: lambdarank beats the group mean.
    source: nowhere
    tested_by: sweeps/lambdarank.yaml
    evidence:
      - {metric: accuracy, candidate: {estimator.name: lambdarank}, baseline: {estimator.name: group_mean},
         predict: better}
"""


def test_another_papers_claims_refuted_and_not_detectable(runs, tmp_path):
    spec = tmp_path / "other.yaml"
    spec.write_text(OTHER_PAPER)
    claims_main([str(runs["ablation"]), str(runs["noisy"]), "--out", str(tmp_path / "out"), "--spec", str(spec)])
    found = claims(tmp_path / "out")
    assert found["X1"]["conclusion"] == "refuted"
    assert {r["verdict"] for r in found["X1"]["evidence"]} == {"worse, beyond +-0.02"}
    x2 = found["X2"]
    assert x2["conclusion"] == "not detectable"
    assert all(r["verdict"] == "inconclusive" and r["n_seeds"] == 2 and r["n_items"] == 40 for r in x2["evidence"])
    assert len(re.findall(r"\(MDE80 0\.\d+ with 2 seeds, (about \d+|>1000) seeds to detect", x2["summary"])) == 2
    assert all(r["mde80"] > abs(r["diff"]) for r in x2["evidence"])
    assert found["X3"]["conclusion"] == "not tested here"
    assert "sweeps/lambdarank.yaml would test it" in found["X3"]["summary"]
    assert "Another paper" in (tmp_path / "out" / "claims.md").read_text()


@pytest.mark.parametrize("text, message", [
    ("claims: []", "non-empty list `claims`"),
    ("claims: [{id: A, text: t, evidence: [{metric: accuracy, candidate: {}, baseline: {}, predict: maybe}]}]",
     "predict 'maybe'"),
    ("claims: [{id: A, text: t, evidence: [{metric: loss, candidate: {}, baseline: {}, predict: better}]}]",
     "metric 'loss'"),
    ("claims: [{id: A, text: t, evidence: [{metric: accuracy, candidate: {}, baseline: {x: '>1'}, "
     "predict: better}]}]", "baseline x: a plain value"),
    ("claims: [{id: A, text: t, colour: red, by_construction: yes}]", "unknown key(s) ['colour']"),
    ("claims: [{id: A, text: t}]", "give `evidence` or `by_construction`"),
    ("claims: [{id: A, text: t, evidence: [{metric: length, candidate: {}, baseline: {}, predict: differs, "
     "margin: 1}]}]", "margin 1 needs a `margin_reason`"),
    ("claims: [{id: A, text: t, evidence: [{metric: length, candidate: {}, baseline: {}, predict: not_worse}]}]",
     "predict not_worse needs a `margin`"),
])
def test_claims_file_errors_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ClaimsSpecError) as error:
        load_claims(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_shipped_claims_file_loads_with_the_seven_claims():
    spec = load_claims()
    assert [c.id for c in spec.claims] == [f"C{k}" for k in range(1, 8)]
    assert (ROOT / "sweeps" / "cohort.yaml").is_file()


def test_sweep_report_opens_with_its_verdicts_and_a_line_per_claim(runs, tmp_path):
    build_report(runs["ablation"])
    report = (runs["ablation"] / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", report, flags=re.M)
    assert sections[:2] == ["Verdict", "Claims"]
    claims_part = report.split("## Claims")[1].split("\n## ")[0]
    lines = [line for line in claims_part.splitlines() if line.startswith("- ")]
    assert [line.split("**")[1] for line in lines] == ["C1", "C2", "C3", "C4", "C6"]
    assert "**mixed**: 2 of 4 rows hold" in lines[0] and "|" not in claims_part  # one line each, no wide table
    other = write_sweep(tmp_path / "other", "other", [{"estimator.name": "group_mean"}], lambda t, p: 0.0, seeds=2,
                        n_items=20)
    build_report(other)
    assert "## Claims" not in (other / "report.md").read_text()


def test_a_real_smoke_sweep_carries_what_the_claims_read(tmp_path):
    """The real runner and trainer on the smoke settings, named `ablation` so the ablation's claims read it: held-out
    rows (C1, C3), the all-zero-group share, entropy and gradient norm from metrics.jsonl (C3, C6), held-out length
    (C4); the KL is named as missing (the smoke trainer has beta 0); the sweep's own report opens with the claims."""
    from harness.sweep import run_sweep
    from tests.conftest import SMOKE

    root = run_sweep(SMOKE, root=tmp_path / "ablation",
                     overrides=["name=ablation", "grid.rewards.semantic_density=[0.0,0.5]"])
    assert re.findall(r"^## (.+)$", (root / "report.md").read_text(), flags=re.M)[:2] == ["Verdict", "Claims"]
    claims_main([str(root), "--out", str(tmp_path / "out")])
    found = claims(tmp_path / "out")
    assert len(found["C1"]["evidence"]) == 2  # correctness only and + semantic density
    # the mechanism check: attenuated_pairwise's advantages against group_mean's on the same rollouts
    # (null where no step of the arm's trials had reward variance: the 2-step smoke trials often have none)
    cosines = [r["mechanism_cosine"] for r in found["C1"]["evidence"] if r["mechanism_cosine"] is not None]
    assert cosines and all(-1 <= c <= 1 for c in cosines)
    assert "Mechanism: on the same rollouts the candidate's advantages agree" in found["C1"]["summary"]
    for metric in ("train:advantage/zero_group_frac", "train:entropy"):
        evidence = rows(found["C3"] if "zero" in metric else found["C6"], metric=metric)
        assert len(evidence) == 2 and all(r["n_seeds"] == 2 for r in evidence), metric
        assert all(np.isfinite(r["candidate_mean"]) and np.isfinite(r["baseline_mean"]) for r in evidence), metric
    # a log ratio needs positive values: a smoke trial without any reward signal has gradient norm 0 and drops out
    assert len(rows(found["C6"], metric="train:grad_norm")) == 2
    lengths = found["C4"]["evidence"]
    assert len(lengths) == 2 and all(r["n_items"] == 8 and r["candidate_mean"] > 0 for r in lengths)
    assert "metrics.jsonl has no `kl`" in found["C6"]["summary"]


def test_a_headline_says_when_a_lower_difference_is_the_better_one():
    """C3's share of all-zero-advantage groups: "better" with a negative difference needs its direction named."""
    from reports.claims import headline

    rows = pd.DataFrame([{"task": "multihop", "verdict": "better, beyond +-0.02", "outcome": "holds", "diff": -0.296,
                          "ci_low": -0.497, "ci_high": -0.095, "higher_is_better": False},
                         {"task": "arithmetic", "verdict": "equivalent", "outcome": "fails", "diff": 0.001,
                          "ci_low": -0.01, "ci_high": 0.012, "higher_is_better": True},
                         {"task": "arithmetic", "verdict": "higher, within +-1", "outcome": "fails", "diff": 0.302,
                          "ci_low": -0.09, "ci_high": 0.694, "higher_is_better": None}])  # C4's length: no direction
    assert headline("mixed", rows) == ("**mixed**: 1 of 3 rows hold, 2 fail, 0 undecided (multihop better, beyond "
                                       "+-0.02 -0.296 [-0.497, -0.095] (lower is better); arithmetic equivalent "
                                       "+0.001 [-0.010, +0.012]; arithmetic higher, within +-1 +0.302 [-0.090, "
                                       "+0.694]).")
