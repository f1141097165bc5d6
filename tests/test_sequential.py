"""Seeds on demand (reports/sequential.py): alpha spending over looks, the error rates of the sequential procedure by
simulation through its own bookkeeping and the report's decision rule, `lph settle` on a sweep directory, and a
live sequential sweep whose settle.json the replay reproduces and whose rerun trains nothing again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from reports.calibrate import MARGIN, Design, sequential_rates
from reports.sequential import SeedPlan, look_alphas, main as settle_main, replay
from tests.test_claims import ablation_arms, ablation_gain, write_sweep


def test_looks_and_alpha_spending():
    plan = SeedPlan(3, 3, 12)
    assert plan.looks == [3, 6, 9, 12] and SeedPlan(3, 4, 12).looks == [3, 7, 11, 12]
    alphas = look_alphas(plan)
    assert sum(alphas) == pytest.approx(0.05)
    assert alphas[0] == pytest.approx(0.05 * math.log(1 + (math.e - 1) * 0.25))  # Pocock-type A(t)
    assert all(a > 0 for a in alphas) and alphas == sorted(alphas, reverse=True)


@pytest.mark.parametrize("effect", [0.0, 2 * MARGIN])
def test_error_rates_power_and_savings_by_simulation(effect):
    """Claims of 4 rows with the demo's noise (reports/calibrate.py), looks at 3, 6, 9, 12 seeds, through
    reports.sequential.Settle and reports.decision.judge: under no effect at most 5% of rows are decided better or
    worse and at most 5% of claims are called supported or partly supported; with a true gain of twice the margin
    the claims are supported at the last look at the latest, and fewer trials run than the fixed design's."""
    rates = sequential_rates([effect] * 4, SeedPlan(3, 3, 12), Design(3), 200, seed=7)
    print(f"true difference {effect}: {rates}")
    assert rates["mean trials"] < rates["fixed design trials"]
    if effect == 0.0:
        assert rates["rows decided better or worse"] <= 0.05
        assert rates["supported"] + rates["partly supported"] <= 0.05
    else:
        assert rates["supported"] >= 0.9 and rates["refuted"] + rates["partly refuted"] == 0.0


def test_settle_replays_a_sweep_and_writes_settle_json(tmp_path, capsys):
    root = write_sweep(tmp_path / "ablation", "ablation", ablation_arms(), ablation_gain, seeds=5, n_items=120)
    settle_main([str(root), "--start", "2", "--step", "1", "--max", "5", "--claims", "reports/claims.yaml"])
    data = json.loads((root / "settle.json").read_text())
    assert data["plan"] == {"start": 2, "step": 1, "max": 5} and data["trials"] < data["fixed_design_trials"]
    c1 = [r for r in data["rows"] if r["id"] == "C1"]
    assert len(c1) == 4 and {r["decision"] for r in c1} == {"holds", "fails"}
    for row in data["rows"]:
        assert set(row) >= {"id", "candidate", "baseline", "task", "scope", "looks", "stopped_at", "decision"}
        if row["task"] in ("arithmetic", "multihop"):  # per-arm rows (not the share of failed trials)
            assert [look["seeds"] for look in row["looks"]] == list(range(2, row["stopped_at"] + 1))
    assert "rows decided" in capsys.readouterr().out
    # A settle.json already in the directory (a live sweep writes one after every look) must not feed back into the
    # judgement: the claim rows decided after the first look came out "undecided at max" when it did.
    assert any(r["stopped_at"] > 2 for r in c1)
    settle_main([str(root), "--start", "2", "--step", "1", "--max", "5", "--claims", "reports/claims.yaml"])
    assert json.loads((root / "settle.json").read_text()) == data
    with pytest.raises(SystemExit, match="the replay needs --max 6"):
        settle_main([str(root), "--max", "6"])


def test_a_live_sequential_sweep_resumes_and_its_replay_agrees(tmp_path):
    """The smoke sweep with seeds {start: 2, step: 1, max: 3}: settle.json after the looks, the replay of the same
    directory gives the same rows, a rerun trains nothing again, and the report shows the looks."""
    from harness.sweep import run_sweep
    from tests.conftest import SMOKE

    overrides = ["seeds={start: 2, step: 1, max: 3}"]
    root = run_sweep(SMOKE, root=tmp_path / "smoke", overrides=overrides)
    settled = json.loads((root / "settle.json").read_text())
    table = pd.read_parquet(root / "results.parquet")
    assert len(table) == settled["trials"] <= settled["fixed_design_trials"]
    assert replay(root, SeedPlan(2, 1, 3)).summary(settled["fixed_design_trials"]) == settled
    before = {p.name: (p / "result.json").stat().st_mtime for p in (root / "trials").iterdir()}
    run_sweep(SMOKE, root=root, overrides=overrides)
    assert {p.name: (p / "result.json").stat().st_mtime for p in (root / "trials").iterdir()} == before
    assert "## Sequential design" in (root / "report.md").read_text()


def test_claims_rows_carry_the_looks(tmp_path):
    from reports.claims import main as claims_main

    root = write_sweep(tmp_path / "ablation", "ablation", ablation_arms(), ablation_gain, seeds=4, n_items=120)
    settle_main([str(root), "--start", "2", "--step", "1", "--max", "4", "--claims", "reports/claims.yaml"])
    claims_main([str(root), "--out", str(tmp_path / "out")])
    c1 = json.loads((tmp_path / "out" / "claims.json").read_text())["claims"][0]
    assert all(r["looks"] and r["stopped_at"] == r["looks"][-1]["seeds"] for r in c1["evidence"])
    assert Path(tmp_path / "out" / "claims.html").is_file()


def test_a_look_lists_only_its_own_seeds_of_the_arms_still_needed():
    """Look 1 of seeds {start: 2, step: 1, max: 3} lists seed rank 2 of the needed arm and of arms not seen yet, and
    none of look 0's seeds again (they were run and counted by the progress bar at look 0; listing them again counted
    every finished trial once per look: 126 of 108 trials in the first sequential `make claims`)."""
    from harness.sweep.run import look_trials, params_key
    from harness.sweep.spec import load_sweep
    from tests.conftest import SMOKE

    spec, trials = load_sweep(SMOKE, ["seeds={start: 2, step: 1, max: 3}"])
    assert spec.seed_list == [0, 1, 2]
    arms = sorted({params_key(t) for t in trials})
    arm_of = {t.trial_id: params_key(t) for t in trials}  # look 0 finished: every arm is known from its first seeds
    first = look_trials(trials, spec.seed_list, [2, 3], 0, None, {})
    assert sorted(t.seed for t in first) == sorted([0, 1] * len(arms))
    second = look_trials(trials, spec.seed_list, [2, 3], 1, {arms[0]}, arm_of)
    assert [(params_key(t), t.seed) for t in second] == [(arms[0], 2)]
    unknown = look_trials(trials, spec.seed_list, [2, 3], 1, {arms[0]}, {})
    assert sorted(t.seed for t in unknown) == [2] * len(arms)
