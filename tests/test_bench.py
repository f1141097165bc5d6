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


def test_bench_sets_and_records_its_threads_and_the_floor_rows(tmp_path):
    threads = torch.get_num_threads()
    try:
        main(["floor", "--quick", "--threads", "1", "--out", str(tmp_path)])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "floor.json").read_text())
    assert result["environment"]["threads"] == 1
    large, decode_shape, sampler = result["rows"]
    assert large["gflop"] == round(2 * 1024**3 / 1e9, 4) and large["gflop_per_second"] > 0
    assert sampler["utilisation"] == round(sampler["gflop_per_second"] / large["gflop_per_second"], 4)
    assert 0 < sampler["utilisation"] < 1 and result["tokens_per_second"] > 0


def test_forward_flops_per_token_counts_every_linear_weight_twice_plus_attention():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from harness.bench import forward_flops_per_token

    config = Qwen2Config(vocab_size=50, hidden_size=8, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    per_layer = 8 * 8 + 8 * 4 + 8 * 4 + 8 * 8 + 3 * 8 * 24  # q, k, v (one KV head of 4), o; gate, up, down
    linear = 2 * per_layer + 8 * 50  # the tied LM head is a Linear too
    assert forward_flops_per_token(model, 10) == 2 * linear + 4 * 2 * 10 * 8


def test_the_machinery_split_puts_each_gap_where_it_falls():
    from harness.bench import machinery_split

    records = [{"started_at": 14.0, "finished_at": 20.0}, {"started_at": 10.0, "finished_at": 13.0},
               {"started_at": 20.5, "finished_at": 30.0}]  # in the store's order, not the start order
    assert machinery_split(records, began=7.0, ended=33.5) == {"start_s": 3.0, "between_trials_s": 0.75,
                                                                "end_s": 3.5}


def test_the_trial_profile_writes_each_part_of_a_trial_and_takes_overrides(tmp_path, capsys):
    from harness.profile_trial import main as profile_trial

    out = tmp_path / "trial_profile.json"
    profile_trial(["sweeps/smoke.yaml", "--set", "base.eval.every_steps=1", "--set", "base.eval.batch_size=3",
                   "--out", str(out)])
    result = json.loads(out.read_text())
    seconds = result["seconds"]
    assert result["overrides"] == ["base.eval.every_steps=1", "base.eval.batch_size=3"]
    assert result["params"] == {"estimator.name": "group_mean"}
    for part in ("warm-start load", "training (all)", "training: generation (TRL)", "training: backward",
                 "training: held-out curve", "final scoring", "held-out decoding (curve and final)"):
        assert seconds[part] > 0, part
    assert seconds["run_trial"] >= seconds["training (all)"] + seconds["final scoring"]
    assert "-> " + str(out) in capsys.readouterr().out
