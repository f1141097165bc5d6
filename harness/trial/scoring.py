"""The project's own held-out scoring: k sampled completions per test item (and optionally the greedy one), graded by
the `correctness` reward.

Sampled pass@1 (the mean over k samples of each item's correctness) is a smooth function of the policy, where greedy
accuracy flips with the argmax of near-tied choices. Sampling is seeded per (trial seed, item, sample index) and
decoding step: an item's samples do not depend on the batch it is scored in, on which other items are scored (or by
which process), or on the arm, so arms of one seed share their random numbers (paired comparisons see less sampling
noise) and a rerun is byte-identical. Completions are graded by the mix's `correctness` reward; lm-eval's tasks grade
with `score_generations` (harness.trial.evaluate), which grades as that reward does, so both agree on the same
generations (tested).

Decoding (`decode`) runs on the policy's device: each prompt is encoded and prefilled once and its KV cache repeated
for its rows (its k samples and its greedy completion, decoded together), finished rows leave the batch, and the
sampling noise is computed on the device for the unfinished rows only (`counter_gumbel`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from transformers import DynamicCache

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


def int64(value: int) -> int:
    """The int64 (two's complement) holding the low 64 bits of `value`."""
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN, MIX1, MIX2 = (int64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
"""SplitMix64's increment and finaliser multipliers (Steele, Lea and Flood, 2014)."""


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """The logical right shift of int64 bit patterns (torch's `>>` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser of int64 bit patterns: z ^= z >> 30; z *= MIX1; z ^= z >> 27; z *= MIX2; z ^= z >> 31
    (torch's int64 arithmetic wraps modulo 2^64 on the CPU and on CUDA, as the finaliser needs)."""
    z = (z ^ _shift_right(z, 30)) * MIX1
    z = (z ^ _shift_right(z, 27)) * MIX2
    return z ^ _shift_right(z, 31)


def counter_gumbel(row_seeds: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Gumbel noise [rows, vocab] (float32, on `row_seeds`' device) of a counter-based generator: token v of a row at
    decoding `step` gets the 64 bits b = splitmix64(splitmix64(seed + (step + 1) * GOLDEN) + (v + 1) * GOLDEN)
    (SplitMix64's stream of a key hashed from the row's seed and the step), w = (top 32 bits of b + 0.5) / 2^32,
    E = -log1p(-w) ~ Exp(1) and G = -log E. Every value depends on (seed, step, v) alone: not on the other rows, on
    earlier steps or on the device. The uniform's 2^-32 grid bounds G to [-3.2, 22.9]: a token more than 26 nats below
    the most likely one is never drawn (at most 152k * e^-26 < 1e-6 of the probability at Qwen3's vocabulary)."""
    keys = splitmix64(row_seeds + int64((step + 1) * GOLDEN))
    counters = torch.arange(1, vocab + 1, dtype=torch.int64, device=row_seeds.device) * GOLDEN
    bits = _shift_right(splitmix64(keys[:, None] + counters), 32)
    uniform = (bits.float() + 0.5) * 2.0**-32
    return -torch.log(-torch.log1p(-uniform))


def tempered_nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """log q, q = softmax(logits / temperature) restricted to the smallest set of tokens whose probability reaches
    `top_p` (not renormalised: the argmax below does not need it; the most likely token is always kept)."""
    log_q = torch.log_softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_log_q, order = log_q.sort(dim=-1, descending=True)
        mass_before = sorted_log_q.exp().cumsum(dim=-1) - sorted_log_q.exp()
        outside = torch.zeros_like(order, dtype=torch.bool).scatter(-1, order, mass_before >= top_p)
        log_q = log_q.masked_fill(outside, -math.inf)
    return log_q


def next_tokens(logits: torch.Tensor, row_seeds: torch.Tensor, step: int, temperature: float,
                top_p: float) -> torch.Tensor:
    """The next token of each row: the argmax of `logits` for a greedy row (seed -1), else an exact draw from the
    tempered nucleus q (Gumbel-max: argmax_v log q(v) + G_v, with G the row's `counter_gumbel` at `step`)."""
    tokens = logits.argmax(dim=-1)
    sampled = (row_seeds >= 0).nonzero().flatten()
    if sampled.numel():
        log_q = tempered_nucleus(logits[sampled], temperature, top_p)
        noise = counter_gumbel(row_seeds[sampled], step, logits.shape[-1])
        tokens[sampled] = (log_q + noise).argmax(dim=-1)
    return tokens


GREEDY = -1
"""The row seed of a greedy row in `decode`."""


MAX_ROWS = 1024
"""The most rows `decode` runs together when no batch size is given. Measured on the 2-core CPU (default tiny model,
500 items x 9 rows, one thread): 900 rows per batch decoded 1.5x as fast as 100, 1,350 no faster; the samples are
the same at every batch size."""
KV_CACHE_BYTES = 1 << 30
"""The KV cache `decode` may fill when no batch size is given (1 GiB)."""


def head_dim(config: Any) -> int:
    """A transformer config's attention head width: `head_dim` where the config sets it, else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rows_that_fit(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> int:
    """Rows whose KV cache fits in KV_CACHE_BYTES, at most MAX_ROWS: a row holds 2 (keys and values) x layers x
    key-value heads x head dim x bytes per element at each of (longest prompt + `max_new_tokens`) positions (no
    prompts, as a shard with no items has: MAX_ROWS)."""
    if not prompts:
        return MAX_ROWS
    config = model.config.get_text_config()
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    per_position = 2 * config.num_hidden_layers * kv_heads * head_dim(config) * next(model.parameters()).element_size()
    longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])
    return max(1, min(MAX_ROWS, KV_CACHE_BYTES // (per_position * (longest + max_new_tokens))))


def decode(model: Any, tokenizer: Any, prompts: list[str], rows: list[list[int]], max_new_tokens: int,
           batch_size: int | None = None, temperature: float = 1.0, top_p: float = 1.0) -> list[list[str]]:
    """The completions of every prompt's rows (`rows[p]`: one seed per row, `sample_seed` for a sample, GREEDY for
    the greedy completion), each stopping at <eos> or after `max_new_tokens`, in the order given.

    Prompts are taken in order into batches of at most `batch_size` rows (default `rows_that_fit`; at least one
    prompt). A batch's prompts are encoded once (left-padded) and prefilled once on the policy's device; the KV cache
    of each is repeated for its rows, which then decode together (`next_tokens`), a row leaving the batch at its
    <eos>."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or rows_that_fit(model, tokenizer, prompts, max_new_tokens)
    completions: list[list[str]] = []
    start = 0
    while start < len(prompts):
        stop = start + 1
        while stop < len(prompts) and sum(map(len, rows[start : stop + 1])) <= batch_size:
            stop += 1
        tokens = decode_batch(model, tokenizer, prompts[start:stop], rows[start:stop], max_new_tokens, device,
                              temperature, top_p)
        texts = iter(tokenizer.batch_decode(tokens, skip_special_tokens=True))
        completions += [[next(texts) for _ in seeds] for seeds in rows[start:stop]]
        start = stop
    return completions


@torch.no_grad()
def decode_batch(model: Any, tokenizer: Any, prompts: list[str], rows: list[list[int]], max_new_tokens: int,
                 device: torch.device, temperature: float, top_p: float) -> torch.Tensor:
    """The new tokens of every row of one batch [rows, max_new_tokens], rows in order (`decode`): <eos> and then
    padding after a row's last token. Positions follow the
    attention mask, as `generate` sets them: 0 on the left padding, then 0, 1, 2, ... from each prompt's first
    token."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    mask = batch["attention_mask"]
    cache = DynamicCache(config=model.config)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    owner = torch.arange(len(prompts), device=device).repeat_interleave(torch.tensor([len(r) for r in rows],
                                                                                     device=device))
    cache.batch_select_indices(owner)  # every row starts from its prompt's cache
    logits, mask, position = logits[owner], mask[owner], positions[owner, -1]
    seeds = torch.tensor([seed for seeds in rows for seed in seeds], dtype=torch.int64, device=device)
    alive = torch.arange(len(seeds), device=device)  # the rows still decoding, by their index
    generated = torch.full((len(seeds), max_new_tokens), tokenizer.pad_token_id, device=device)
    for step in range(max_new_tokens):
        chosen = next_tokens(logits, seeds[alive], step, temperature, top_p)
        generated[alive, step] = chosen
        going = chosen != tokenizer.eos_token_id
        if step + 1 == max_new_tokens or not going.any():
            break
        if not going.all():
            cache.batch_select_indices(going.nonzero().flatten())
            alive, chosen, mask, position = alive[going], chosen[going], mask[going], position[going]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=-1)
        position = position + 1
        logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache,
                       use_cache=True).logits[:, -1]
    return generated


class Shard(NamedTuple):
    """This process's share of the items scored by `count` processes: items `index`, `index + count`, ...; `gather`
    concatenates every process's list in process order (accelerate's `gather_object`; the identity alone)."""

    index: int
    count: int
    gather: Callable[[list[Any]], list[Any]]


ALONE = Shard(0, 1, lambda objects: objects)


def process_shard() -> Shard:
    """The shard of this process among the trial's processes (accelerate's PartialState)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    return Shard(state.process_index, state.num_processes, gather_object) if state.num_processes > 1 else ALONE


def sharded_decode(model: Any, tokenizer: Any, prompts: list[str], rows: list[list[int]], config: EvalConfig,
                   shard: Shard) -> list[list[str]]:
    """`decode` of this process's share of the prompts on its own device, and every prompt's completions gathered
    from all processes, in the order of `prompts` (the same lists as one process decoding them all)."""
    mine = list(range(shard.index, len(prompts), shard.count))
    texts = decode(model, tokenizer, [prompts[n] for n in mine], [rows[n] for n in mine], config.max_new_tokens,
                   config.batch_size, config.temperature, config.top_p)
    gathered = dict(shard.gather(list(zip(mine, texts))))
    return [gathered[n] for n in range(len(prompts))]


def generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int | None = None,
             row_seeds: list[int] | None = None, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """One completion per prompt (stopping at <eos>): greedy without `row_seeds`, else a sample of each row's own
    seeded stream (`decode`)."""
    seeds = row_seeds if row_seeds is not None else [GREEDY] * len(prompts)
    texts = decode(model, tokenizer, prompts, [[s] for s in seeds], max_new_tokens, batch_size, temperature, top_p)
    return [text for (text,) in texts]


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
                seed: int, greedy: bool | None = None, prompt: PromptConfig | None = None,
                shard: Shard = ALONE) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-item outcomes and the completions (samples first, item by item, then the greedy ones).

    With `config.samples` = k > 0 each item gets `{"item_id", "samples": k, "pass@1": c / k, "pass@j": unbiased
    pass@j for j in PASS_AT up to k, "reward": mean of the mix's weighted reward, "length": mean completion tokens}`
    from k samples seeded by (`seed`, item, j), c of them correct; with `greedy` (default `config.greedy`, forced
    when k = 0) also `"greedy": 0|1`, the correctness of the greedy completion (and its reward and length when
    k = 0). An item's samples and greedy completion decode in one pass (`decode`). Prompts are rendered under
    `prompt` (the task's `task.prompt`; default the bare question). `mix` must have a `correctness` component (as
    the trainer's mix always has). Under `shard` this process decodes its share of the items and every process
    grades all of them (the same outcomes, and the same reward-failure counts, as one process)."""
    greedy = config.greedy if greedy is None else greedy
    prompts = render_prompts(records, prompt or PromptConfig(), tokenizer)
    ids = [item_id(r["question"]) for r in records]
    answers = [r["answer"] for r in records]
    items: list[dict[str, Any]] = [{"item_id": i} for i in ids]
    k = config.samples
    with_greedy = greedy or k == 0
    rows = [[sample_seed(seed, i, j) for j in range(k)] + [GREEDY] * with_greedy for i in ids]
    texts = sharded_decode(model, tokenizer, prompts, rows, config, shard)
    sampled = [text for item_texts in texts for text in item_texts[:k]]
    decoded = [item_texts[k] for item_texts in texts] if with_greedy else []
    if k > 0:
        repeated = [p for p in prompts for _ in range(k)]
        correct, reward, length = grade(mix, tokenizer, repeated, sampled, [a for a in answers for _ in range(k)])
        for n, item in enumerate(items):
            hits = int(sum(correct[n * k : (n + 1) * k]))
            item |= {"samples": k, **{f"pass@{j}": pass_at_k(k, hits, j) for j in PASS_AT if j <= k},
                     "reward": sum(reward[n * k : (n + 1) * k]) / k, "length": sum(length[n * k : (n + 1) * k]) / k}
    if with_greedy:
        correct, reward, length = grade(mix, tokenizer, prompts, decoded, answers)
        for item, c, r, n in zip(items, correct, reward, length):
            item["greedy"] = int(c)
            if k == 0:
                item |= {"reward": r, "length": n}
    return items, sampled + decoded


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
