"""The benchmark command runs the benchmarks it is given and writes their results (figures are not asserted: timings
belong in the benchmark files, not in tests)."""

from __future__ import annotations

import json

import torch

import estimators
from harness.bench import main


def test_named_benchmarks_each_write_their_rows(tmp_path, capsys):
    threads = torch.get_num_threads()
    main(["rewards", "estimators", "rewards", "--quick", "--out", str(tmp_path)])
    assert torch.get_num_threads() == threads  # the one-core rewards benchmark leaves the others their threads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estimators.json", "rewards.json"]  # each named once
    rows = json.loads((tmp_path / "estimators.json").read_text())["rows"]
    assert {(r["G"], r["estimator"]) for r in rows} == {(g, e) for g in (4, 8, 16, 64) for e in estimators.available()}
    assert all(r["us_per_call"] > 0 for r in rows)
    assert {r["ratio_to_group_mean"] for r in rows if r["estimator"] == "group_mean"} == {1.0}
    scored = json.loads((tmp_path / "rewards.json").read_text())
    assert [r["reward"] for r in scored["rows"]][:3] == ["correctness", "format", "length"]
    assert all(r["completions_per_second"] > 0 for r in scored["rows"]) and scored["environment"]
    out = capsys.readouterr().out
    assert out.count("rewards ->") == out.count("estimators ->") == 1
    assert out.index("rewards ->") < out.index("estimators ->")  # in the order given
