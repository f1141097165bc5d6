"""Sampled held-out scoring: the counter-based sampler draws from the right distribution (as the reference sampler
trials used before does), its noise depends on (seed, step, token) alone, an item's samples do not depend on its
batch, each prompt is prefilled once and finished rows leave the batch, and per-item pass@k follows from the
samples."""

from __future__ import annotations

import math

import pytest
import torch

import rewards
from harness.config import EvalConfig, ModelConfig, TaskConfig
from harness.tasks import item_id, load_task, prompt_for
from harness.trial.model import build_tiny_model, build_tokenizer
from harness.trial import scoring
from harness.trial.reference_sampler import ReferenceSampler
from harness.trial.scoring import (GREEDY, counter_gumbel, decode, generate, next_tokens, pass_at_k, sample_seed,
                                   score_items)


def harness_tokens(logits: torch.Tensor, rows: int, temperature: float, top_p: float) -> torch.Tensor:
    """The harness sampler's tokens for `rows` copies of `logits` at step 0, each row its own seed."""
    seeds = torch.tensor([sample_seed(0, "dist", r) for r in range(rows)])
    return next_tokens(logits.expand(rows, -1).clone(), seeds, 0, temperature, top_p)


def reference_tokens(logits: torch.Tensor, rows: int, temperature: float, top_p: float) -> torch.Tensor:
    """The reference sampler's (harness.bench) tokens for `rows` copies of `logits`, each row its own stream."""
    sampler = ReferenceSampler([sample_seed(0, "dist", r) for r in range(rows)], temperature, top_p)
    return sampler(torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1)).argmax(dim=-1)


@pytest.mark.parametrize("sampler", [harness_tokens, reference_tokens])
@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8)])
def test_the_harness_and_reference_samplers_draw_from_the_tempered_nucleus(sampler, temperature, top_p):
    logits = torch.tensor([2.0, 1.5, 0.5, 0.0, -1.0, -3.0])
    rows = 20000
    counts = torch.bincount(sampler(logits, rows, temperature, top_p), minlength=len(logits)).double()
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    kept = (probs.cumsum(0) - probs) < top_p  # the nucleus: tokens whose preceding mass is below top_p
    expected = torch.where(kept, probs, torch.zeros_like(probs))
    expected /= expected.sum()
    assert counts[~kept].sum() == 0
    sd = (expected * (1 - expected) / rows).sqrt()
    assert ((counts / rows - expected).abs() <= 4 * sd + 1e-12).all(), (counts / rows, expected)


def test_the_noise_depends_on_seed_step_and_token_alone():
    seeds = torch.tensor([sample_seed(0, "noise", r) for r in range(5)])
    noise = counter_gumbel(seeds, 3, 1000)
    assert torch.equal(counter_gumbel(seeds[[4, 1]], 3, 1000), noise[[4, 1]])  # not on the other rows
    assert torch.equal(counter_gumbel(seeds, 3, 10), noise[:, :10])  # not on the vocabulary's size
    assert not torch.equal(counter_gumbel(seeds, 4, 1000), noise)  # a fresh draw at every step
    gamma = 0.5772156649  # a standard Gumbel's mean (Euler's constant) and variance (pi^2 / 6)
    assert abs(noise.mean().item() - gamma) < 0.05 and abs(noise.var().item() - math.pi**2 / 6) < 0.1


def test_a_greedy_row_takes_the_argmax():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([GREEDY, sample_seed(0, "x", 0), GREEDY])
    tokens = next_tokens(logits.clone(), seeds, 0, 1.0, 1.0)
    assert tokens[[0, 2]].tolist() == logits[[0, 2]].argmax(dim=-1).tolist()


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


def test_without_a_batch_size_the_rows_that_fit_the_kv_budget_decode_together(tiny, monkeypatch):
    """The default batch: as many rows as a KV_CACHE_BYTES cache holds (capped at MAX_ROWS), the same samples as
    any other batch size; a budget of seven rows' cache at the longest prompt makes batches of two prompts' rows."""
    model, tokenizer, records = tiny
    prompts = [prompt_for(r["question"]) for r in records]
    rows = [[sample_seed(0, item_id(r["question"]), j) for j in range(2)] + [GREEDY] for r in records]
    assert scoring.rows_that_fit(model, tokenizer, prompts, 40) == scoring.MAX_ROWS  # a tiny model's rows are small
    per_row = [0]
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: per_row.__setitem__(0, max(per_row[0], kwargs["input_ids"].shape[0])),
        with_kwargs=True)
    try:
        default = decode(model, tokenizer, prompts, rows, 40)
        assert per_row[0] == 3 * len(records)  # one batch
        layers, heads = model.config.num_hidden_layers, model.config.num_key_value_heads
        head_dim = model.config.hidden_size // model.config.num_attention_heads
        longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
        monkeypatch.setattr(scoring, "KV_CACHE_BYTES", 7 * (2 * layers * heads * head_dim * 4) * (longest + 40))
        per_row[0] = 0
        small = decode(model, tokenizer, prompts, rows, 40)
        assert per_row[0] == 6  # two prompts of three rows each
    finally:
        hook.remove()
    assert small == default == decode(model, tokenizer, prompts, rows, 40, batch_size=5)
    assert decode(model, tokenizer, [], [], 40) == []  # a shard of a trial's processes can have no items


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


def test_each_prompt_is_prefilled_once_and_finished_rows_leave_the_batch(tiny):
    """The first forward pass reads each prompt once (not once per sample); later passes read one token for each
    unfinished row, so the batch shrinks as rows stop at <eos> (an untrained policy stops some rows early)."""
    model, tokenizer, records = tiny
    prompts = [prompt_for(r["question"]) for r in records[:3]]
    rows = [[sample_seed(0, item_id(r["question"]), j) for j in range(6)] + [GREEDY] for r in records[:3]]
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        texts = decode(model, tokenizer, prompts, rows, 40, batch_size=21)
    finally:
        hook.remove()
    assert shapes[0][0] == 3 and all(shape[1] == 1 for shape in shapes[1:])
    batch = [shape[0] for shape in shapes[1:]]
    assert batch[0] == 21 and batch == sorted(batch, reverse=True) and batch[-1] < 21
    assert [len(t) for t in texts] == [7, 7, 7]
    assert [t[6] for t in texts] == generate(model, tokenizer, prompts, 40, batch_size=3)  # the greedy rows
