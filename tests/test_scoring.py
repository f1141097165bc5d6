"""Sampled held-out scoring: the seeded sampler draws from the right distribution, an item's samples do not depend on
its batch, and per-item pass@k follows from the samples."""

from __future__ import annotations

import math

import pytest
import torch

import rewards
from harness.config import EvalConfig, ModelConfig, TaskConfig
from harness.tasks import item_id, load_task, prompt_for
from harness.trial.model import build_tiny_model, build_tokenizer
from harness.trial.scoring import SeededSampler, generate, pass_at_k, sample_seed, score_items


def sampled_tokens(logits: torch.Tensor, rows: int, temperature: float, top_p: float) -> torch.Tensor:
    """The argmax of SeededSampler's scores for `rows` copies of `logits`, each row its own stream."""
    sampler = SeededSampler([sample_seed(0, "dist", r) for r in range(rows)], temperature, top_p)
    return sampler(torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1)).argmax(dim=-1)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8)])
def test_the_seeded_sampler_draws_from_the_tempered_nucleus(temperature, top_p):
    logits = torch.tensor([2.0, 1.5, 0.5, 0.0, -1.0, -3.0])
    rows = 20000
    counts = torch.bincount(sampled_tokens(logits, rows, temperature, top_p), minlength=len(logits)).double()
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    kept = (probs.cumsum(0) - probs) < top_p  # the nucleus: tokens whose preceding mass is below top_p
    expected = torch.where(kept, probs, torch.zeros_like(probs))
    expected /= expected.sum()
    assert counts[~kept].sum() == 0
    sd = (expected * (1 - expected) / rows).sqrt()
    assert ((counts / rows - expected).abs() <= 4 * sd + 1e-12).all(), (counts / rows, expected)


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, object, list[dict[str, str]]]:
    """An untrained tiny policy (its samples are diverse) and arithmetic test records."""
    tokenizer = build_tokenizer()
    return build_tiny_model(ModelConfig(), tokenizer, seed=0), tokenizer, load_task(TaskConfig()).test[:7]


def test_an_items_samples_do_not_depend_on_its_batch_or_neighbours(tiny):
    model, tokenizer, records = tiny
    prompts = [prompt_for(r["question"]) for r in records]
    seeds = [sample_seed(3, item_id(r["question"]), 0) for r in records]
    together = generate(model, tokenizer, prompts, 12, batch_size=7, row_seeds=seeds)
    alone = [generate(model, tokenizer, [p], 12, batch_size=1, row_seeds=[s])[0] for p, s in zip(prompts, seeds)]
    assert together == alone
    other_seed = generate(model, tokenizer, prompts, 12, batch_size=7,
                          row_seeds=[sample_seed(4, item_id(r["question"]), 0) for r in records])
    assert other_seed != together


def test_per_item_pass_at_k_follows_from_the_items_samples(tiny):
    model, tokenizer, records = tiny
    config = EvalConfig(samples=4, max_new_tokens=12, batch_size=5)
    mix = rewards.mix({"correctness": 1.0})
    items, completions = score_items(model, tokenizer, records, mix, config, seed=1)
    assert len(completions) == len(records) * 4 + len(records)  # samples, then the greedy ones
    correctness = rewards.get("correctness")
    for n, (item, record) in enumerate(zip(items, records)):
        hits = int(sum(correctness(None, completions[4 * n : 4 * n + 4], answer=[record["answer"]] * 4)))
        assert item["pass@1"] == hits / 4
        assert item["pass@4"] == pass_at_k(4, hits, 4) == float(hits > 0)
        assert item["greedy"] == correctness(None, [completions[4 * len(records) + n]], answer=[record["answer"]])[0]
        assert item["samples"] == 4 and math.isfinite(item["length"])
    again, _ = score_items(model, tokenizer, records, mix, config, seed=1)
    assert again == items
