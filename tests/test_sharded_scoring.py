"""Held-out scoring sharded across a trial's processes: 2 CPU processes (gloo, set up by accelerate as a launched
trial's are) each decode their share of the items and gather the rest, and write the same eval_items.jsonl and
eval.json, byte for byte, as one process scoring every item; every process returns the whole evaluation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.multiprocessing as mp

import rewards
from harness.config import RunConfig
from harness.tasks import load_task
from harness.trial.model import build_tiny_model, build_tokenizer
from harness.trial.scoring import process_shard
from harness.trial.train import score_held_out
from tests.test_distributed import WORLD, free_port

CONFIG = RunConfig.model_validate({"seed": 5, "eval": {"n_examples": 7, "samples": 3, "max_new_tokens": 16,
                                                       "batch_size": 8}})
"""7 items (4 and 3 per process), 3 samples and the greedy completion each, 2 items to a batch."""


def score(out: Path) -> dict:
    """score_held_out of an untrained tiny policy (diverse samples that stop at different steps) under CONFIG, in
    this process's shard (harness.trial.scoring.process_shard)."""
    tokenizer = build_tokenizer()
    policy = build_tiny_model(CONFIG.model, tokenizer, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    return score_held_out(policy, tokenizer, load_task(CONFIG.task).test, rewards.mix({"correctness": 1.0}), CONFIG,
                          out, process_shard())


def rank_main(rank: int, port: int, out: str) -> None:
    """One of WORLD processes: scores into `out/rank<rank>/` and saves what it returned as `returned.json` there."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), OMP_NUM_THREADS="1")
    from accelerate import PartialState

    state = PartialState(cpu=True)
    assert process_shard()[:2] == (rank, WORLD)
    evaluation = score(Path(out) / f"rank{rank}")
    (Path(out) / f"rank{rank}" / "returned.json").write_text(json.dumps(evaluation))
    state.destroy_process_group()


def test_two_processes_score_their_shards_and_write_what_one_process_writes(tmp_path):
    mp.start_processes(rank_main, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="spawn")
    alone = score(tmp_path / "alone")
    assert process_shard().count == 1
    for name in ("eval_items.jsonl", "eval.json"):
        assert (tmp_path / "rank0" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()
        assert not (tmp_path / "rank1" / name).exists()  # the main process writes the run directory
    for rank in range(WORLD):
        assert json.loads((tmp_path / f"rank{rank}" / "returned.json").read_text()) == json.loads(json.dumps(alone))
    lengths = {json.loads(line)["length"] for line in (tmp_path / "alone" / "eval_items.jsonl").read_text().splitlines()}
    assert len(lengths) > 1  # rows stopped at different steps: the compared batches shrank differently
