"""The project's own held-out scoring: greedy generation on test records, graded by the `correctness` reward.

lm-eval scoring (harness.trial.evaluate) must agree with these numbers on the same generations.
"""

from __future__ import annotations

from typing import Any

import torch

import rewards
from harness.tasks import Record, item_id, prompt_for


def generate_greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions of `prompts` (left-padded batches, stopping at <eos>)."""
    outputs: list[str] = []
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        with torch.no_grad():
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs


def greedy_accuracy(model: Any, tokenizer: Any, records: list[Record], max_new_tokens: int,
                    batch_size: int) -> dict[str, Any]:
    """`{"accuracy": mean correctness of greedy completions, "completions": [...]}` over `records`."""
    completions = generate_greedy(model, tokenizer, [prompt_for(r["question"]) for r in records], max_new_tokens,
                                  batch_size)
    scores = rewards.get("correctness")(None, completions, answer=[r["answer"] for r in records])
    return {"accuracy": sum(scores) / max(len(scores), 1), "completions": completions, "n": len(scores)}


def score_items(model: Any, tokenizer: Any, records: list[Record], mix: rewards.RewardMix, max_new_tokens: int,
                batch_size: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-item outcomes of greedy completions, `{"item_id", "correct": 0|1, "reward": the mix's weighted reward,
    "length": completion tokens}` for each record, and the completions. `mix` must have a `correctness` component
    (as the trainer's mix always has)."""
    prompts = [prompt_for(r["question"]) for r in records]
    completions = generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size)
    totals = mix(prompts, completions, answer=[r["answer"] for r in records])
    correct = mix.last_components["correctness"]
    lengths = [len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]]
    items = [{"item_id": item_id(r["question"]), "correct": int(c), "reward": float(t), "length": n}
             for r, c, t, n in zip(records, correct, totals, lengths)]
    return items, completions
