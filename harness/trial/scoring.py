"""The project's own held-out scoring: k sampled completions per test item (and optionally the greedy one), graded by
the `correctness` reward.

Sampled pass@1 (the mean over k samples of each item's correctness) is a smooth function of the policy, where greedy
accuracy flips with the argmax of near-tied choices. Sampling is seeded per (trial seed, item, sample index): an
item's samples do not depend on the batch it is scored in, on which other items are scored, or on the arm, so arms
of one seed share their random numbers (paired comparisons see less sampling noise) and a rerun is byte-identical.
Completions are graded by the mix's `correctness` reward; lm-eval's tasks grade with `score_generations`
(harness.trial.evaluate), which grades as that reward does, so both agree on the same generations (tested).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

import rewards
from harness.config import EvalConfig, PromptConfig
from harness.tasks import Record, item_id, render_prompts

PASS_AT = (1, 2, 4, 8, 16, 32, 64)
"""The k of pass@k reported whenever at least k samples were drawn."""


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples with `correct` right (Chen et al., 2021): 1 - C(n - c, k) / C(n, k)."""
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def sample_seed(seed: int, item: str, sample: int) -> int:
    """The random stream of one sample: the first 60 bits of sha256("seed/item_id/sample")."""
    return int(hashlib.sha256(f"{seed}/{item}/{sample}".encode()).hexdigest()[:15], 16)


class SeededSampler(LogitsProcessor):
    """Makes greedy decoding draw exact samples with an independent random stream per row (the Gumbel-max trick):

        next token = argmax_v [ log q(v) + G_v ],   G_v = -log(-log U_v),  U_v ~ Uniform(0, 1) from the row's stream

    where q = softmax(logits / temperature) restricted to the smallest set of tokens whose probability reaches `top_p`
    (renormalised; the most likely token is always kept). The argmax is then distributed as q."""

    def __init__(self, row_seeds: list[int], temperature: float, top_p: float) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in row_seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_q = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_log_q, order = log_q.sort(dim=-1, descending=True)
            mass_before = sorted_log_q.exp().cumsum(dim=-1) - sorted_log_q.exp()
            outside = torch.zeros_like(order, dtype=torch.bool).scatter(-1, order, mass_before >= self.top_p)
            log_q = log_q.masked_fill(outside, -math.inf)
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-300, max=1.0 - 1e-16)))
        return log_q.double() + gumbel.to(scores.device)


def generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int,
             row_seeds: list[int] | None = None, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """One completion per prompt (left-padded batches, stopping at <eos>): greedy without `row_seeds`, else a sample
    of each row's own seeded stream (SeededSampler)."""
    outputs: list[str] = []
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        processors = LogitsProcessorList()
        if row_seeds is not None:
            processors.append(SeededSampler(row_seeds[start : start + batch_size], temperature, top_p))
        with torch.no_grad():
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_k=None,
                                       top_p=None, temperature=None, logits_processor=processors,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                       # the main process scores alone; under ZeRO-3 transformers would
                                       # otherwise sync every token with processes that never join
                                       synced_gpus=False)
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs


def generate_greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions of `prompts`."""
    return generate(model, tokenizer, prompts, max_new_tokens, batch_size)


def greedy_accuracy(model: Any, tokenizer: Any, records: list[Record], max_new_tokens: int,
                    batch_size: int) -> dict[str, Any]:
    """`{"accuracy": mean correctness of greedy completions, "completions": [...], "n"}` over `records`."""
    completions = generate_greedy(model, tokenizer, render_prompts(records), max_new_tokens, batch_size)
    scores = rewards.get("correctness")(None, completions, answer=[r["answer"] for r in records])
    return {"accuracy": sum(scores) / max(len(scores), 1), "completions": completions, "n": len(scores)}


def score_items(model: Any, tokenizer: Any, records: list[Record], mix: rewards.RewardMix, config: EvalConfig,
                seed: int, greedy: bool | None = None,
                prompt: PromptConfig | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-item outcomes and the completions (samples first, item by item, then the greedy ones).

    With `config.samples` = k > 0 each item gets `{"item_id", "samples": k, "pass@1": c / k, "pass@j": unbiased
    pass@j for j in PASS_AT up to k, "reward": mean of the mix's weighted reward, "length": mean completion tokens}`
    from k samples seeded by (`seed`, item, j), c of them correct; with `greedy` (default `config.greedy`, forced
    when k = 0) also `"greedy": 0|1`, the correctness of the greedy completion (and its reward and length when
    k = 0). Prompts are rendered under `prompt` (the task's `task.prompt`; default the bare question). `mix` must
    have a `correctness` component (as the trainer's mix always has)."""
    greedy = config.greedy if greedy is None else greedy
    prompts = render_prompts(records, prompt or PromptConfig(), tokenizer)
    ids = [item_id(r["question"]) for r in records]
    answers = [r["answer"] for r in records]
    items: list[dict[str, Any]] = [{"item_id": i} for i in ids]
    completions: list[str] = []
    k = config.samples
    if k > 0:
        repeated = [p for p in prompts for _ in range(k)]
        sampled = generate(model, tokenizer, repeated, config.max_new_tokens, config.batch_size,
                           [sample_seed(seed, i, j) for i in ids for j in range(k)], config.temperature, config.top_p)
        correct, reward, length = grade(mix, tokenizer, repeated, sampled, [a for a in answers for _ in range(k)])
        for n, item in enumerate(items):
            hits = int(sum(correct[n * k : (n + 1) * k]))
            item |= {"samples": k, **{f"pass@{j}": pass_at_k(k, hits, j) for j in PASS_AT if j <= k},
                     "reward": sum(reward[n * k : (n + 1) * k]) / k, "length": sum(length[n * k : (n + 1) * k]) / k}
        completions += sampled
    if greedy or k == 0:
        decoded = generate_greedy(model, tokenizer, prompts, config.max_new_tokens, config.batch_size)
        correct, reward, length = grade(mix, tokenizer, prompts, decoded, answers)
        for item, c, r, n in zip(items, correct, reward, length):
            item["greedy"] = int(c)
            if k == 0:
                item |= {"reward": r, "length": n}
        completions += decoded
    return items, completions


def grade(mix: rewards.RewardMix, tokenizer: Any, prompts: list[str], completions: list[str],
          answers: list[str]) -> tuple[list[float], list[float], list[int]]:
    """(correctness, the mix's weighted reward, completion tokens) of each completion."""
    totals = mix(prompts, completions, answer=answers)
    lengths = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    return [float(c) for c in mix.last_components["correctness"]], [float(t) for t in totals], lengths


def mean_outcomes(items: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of every numeric per-item outcome (pass@j, greedy, reward, length) over `items`."""
    keys = [key for key in items[0] if key not in ("item_id", "samples")] if items else []
    return {key: sum(float(item[key]) for item in items) / len(items) for key in keys}
