"""Peer-framework estimators (verl's reinforce_plus_plus, reinforce_plus_plus_baseline, opo, gpg, grpo_passk) against
plain-Python oracles written from verl's token-level code, the registry flags, and the trainer hook's lengths path."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer

import estimators
from harness.trial.trl_hooks import EstimatorGRPOTrainer

PEERS = ["reinforce_pp", "reinforce_pp_baseline", "opo", "gpg", "grpo_passk"]
BATCH_DEPENDENT = ["reinforce_pp", "reinforce_pp_baseline", "gpg"]


def random_batch(seed: int, b: int = 9, g: int = 5, binary: bool = False, ragged: bool = True):
    """Rewards (some exactly zero), lengths and a mask that leaves some groups with a single valid completion."""
    gen = torch.Generator().manual_seed(seed)
    if binary:
        rewards = (torch.rand(b, g, generator=gen) < 0.4).double()
    else:
        rewards = torch.rand(b, g, generator=gen).double().where(torch.rand(b, g, generator=gen) > 0.3, 0.0)
    lengths = torch.randint(1, 40, (b, g), generator=gen).double()
    mask = torch.rand(b, g, generator=gen) < 0.7 if ragged else torch.ones(b, g, dtype=torch.bool)
    mask[:, 0] = True
    if ragged:
        mask[1, 1:] = False  # a group of one
    return rewards, lengths, mask


def call(name: str, batch, **params) -> torch.Tensor:
    rewards, lengths, mask = batch
    return estimators.get(name, **params)(rewards, lengths=lengths, mask=mask)


# ------------------------------------------------------------------ oracles: verl's code paths read as plain Python
def completions(batch):
    """(group index, position, reward, length) of every valid completion, in batch order."""
    rewards, lengths, mask = batch
    return [(b, i, rewards[b, i].item(), int(lengths[b, i].item()))
            for b in range(rewards.shape[0]) for i in range(rewards.shape[1]) if mask[b, i]]


def verl_group_means(items):
    """verl's id2mean: the mean of a prompt's scores, 0 for a prompt with one response."""
    scores = defaultdict(list)
    for b, _, r, _ in items:
        scores[b].append(r)
    return {b: statistics.fmean(v) if len(v) > 1 else 0.0 for b, v in scores.items()}


def token_rows(items, values):
    """verl's token-level layout: one row per completion, the outcome value at the last response token, then the
    gamma = 1 return of every token (reward-to-go), kept only on response tokens."""
    rows = []
    for (_, _, _, length), value in zip(items, values):
        token_rewards = [0.0] * (length - 1) + [value]
        returns, running = [], 0.0
        for reward in reversed(token_rewards):
            running = reward + running
            returns.append(running)
        rows.append(returns[::-1])
    return rows


def masked_whiten(rows):
    """verl's masked_whiten over every response token of the batch: mean, Bessel-corrected variance,
    (x - mean) * rsqrt(var + 1e-8)."""
    tokens = [t for row in rows for t in row]
    mean = statistics.fmean(tokens)
    variance = sum((t - mean) ** 2 for t in tokens) / (len(tokens) - 1)
    return [[(t - mean) / math.sqrt(variance + 1e-8) for t in row] for row in rows]


def oracle(name: str, batch, **params) -> torch.Tensor:
    items = completions(batch)
    means = verl_group_means(items)
    if name in ("reinforce_pp", "reinforce_pp_baseline"):
        values = [r - (means[b] if name == "reinforce_pp_baseline" else 0.0) for b, _, r, _ in items]
        whitened = masked_whiten(token_rows(items, values))
        assert all(max(row) - min(row) < 1e-12 for row in whitened)  # gamma = 1: one advantage per completion
        advantages = [row[0] for row in whitened]
    elif name == "opo":
        weighted, total = defaultdict(float), defaultdict(float)
        counts = defaultdict(int)
        for b, _, r, length in items:
            weighted[b] += length * r
            total[b] += length
            counts[b] += 1
        advantages = [r - (weighted[b] / total[b] if counts[b] > 1 else 0.0) for b, _, r, _ in items]
    elif name == "gpg":
        alpha = len(items) / max(sum(1 for _, _, r, _ in items if r != 0), 1)
        advantages = [alpha * (r - means[b]) for b, _, r, _ in items]
    else:
        advantages = passk_oracle(items, params.get("scale", "group"))
    out = torch.zeros_like(batch[0])
    for (b, i, _, _), value in zip(items, advantages):
        out[b, i] = value
    return out


def passk_oracle(items, scale):
    """verl's grpo_passk: the group's first best completion gets (r_max - r_second) / (std + 1e-6), others 0."""
    groups = defaultdict(list)
    for k, (b, _, r, _) in enumerate(items):
        groups[b].append((r, k))
    advantages = [0.0] * len(items)
    for members in groups.values():
        if len(members) < 2:
            continue
        ranked = sorted(members, key=lambda m: (-m[0], m[1]))
        gap = ranked[0][0] - ranked[1][0]
        std = statistics.stdev([r for r, _ in members])
        advantages[ranked[0][1]] = gap / (std + 1e-6) if scale == "group" else gap
    return advantages


@pytest.mark.parametrize("name,params", [(n, {}) for n in PEERS] + [("grpo_passk", {"scale": "none"})])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("binary", [False, True])
def test_peer_estimators_equal_verl_oracles_with_ragged_groups(name, params, seed, binary):
    batch = random_batch(seed, binary=binary)
    torch.testing.assert_close(call(name, batch, **params), oracle(name, batch, **params))


@pytest.mark.parametrize("name", PEERS)
def test_peer_estimators_zero_masked_entries_and_keep_dtype(name):
    rewards, lengths, mask = random_batch(5)
    out = call(name, (rewards.float(), lengths, mask))
    assert out.dtype == torch.float32 and torch.all(out[~mask] == 0)


def test_length_weighting_is_what_separates_the_token_whitened_estimators():
    """Equal lengths: reinforce_pp is the batch z-score of r (token and sequence weighting agree) and opo's
    length-weighted baseline is the group mean."""
    rewards, _, _ = random_batch(6, ragged=False)
    equal = torch.full_like(rewards, 7.0)
    batch = (rewards, equal, torch.ones_like(rewards, dtype=torch.bool))
    n = rewards.numel() * 7
    z = (rewards - rewards.mean()) / torch.sqrt(rewards.var(correction=0) * n / (n - 1) + 1e-8)
    torch.testing.assert_close(call("reinforce_pp", batch), z)
    torch.testing.assert_close(call("opo", batch), call("group_mean", batch, scale="none"))
    uneven = random_batch(6, ragged=False)
    assert not torch.allclose(call("opo", uneven), call("group_mean", uneven, scale="none"))


def test_grpo_passk_credits_only_the_best_and_gpg_scales_by_the_share_of_nonzero_rewards():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    passk = estimators.get("grpo_passk", scale="none")(rewards)
    assert passk.tolist() == [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]  # a tie for the best gives no credit
    gpg = estimators.get("gpg")(rewards)
    torch.testing.assert_close(gpg, (8 / 3) * (rewards - rewards.mean(dim=1, keepdim=True)))


@pytest.mark.parametrize("name", ["reinforce_pp_baseline", "opo", "grpo_passk"])
def test_shift_invariance_of_the_baseline_estimators(name):
    """Groups of two or more (a lone completion keeps verl's baseline 0, so it moves with the shift)."""
    rewards, lengths, mask = random_batch(7, ragged=False)
    torch.testing.assert_close(call(name, (rewards + 2.5, lengths, mask)), call(name, (rewards, lengths, mask)))


# ------------------------------------------------------------------------------------------- registry metadata
def test_registry_flags():
    flags = {name: (e.needs_logprobs, e.needs_lengths, e.batch_dependent)
             for name in estimators.available() for e in [estimators.get(name)]}
    assert flags["attenuated_pairwise"] == (True, True, False)
    assert flags["group_mean"] == flags["shuffled"] == flags["grpo_passk"] == (False, False, False)
    assert flags["opo"] == (False, True, False)
    assert flags["reinforce_pp"] == flags["reinforce_pp_baseline"] == (False, True, True)
    assert flags["gpg"] == (False, False, True)
    with pytest.raises(ValueError, match="'opo' needs lengths"):
        estimators.get("opo")(torch.zeros(2, 4))


# ------------------------------------------------------------ the trainer hook: lengths only, gathered batches
class TwoRankAccelerator:
    """Stands in for accelerate on rank `process_index` of two ranks that split a batch in halves: gathering this
    rank's half of one of the batch's tensors (`whole`, flattened) gives the whole tensor; anything else (the
    whole-batch advantages, the same on both ranks) comes back twice, as rank 0's then rank 1's.
    tests/test_distributed.py runs the same gathers in two real gloo processes."""

    def __init__(self, process_index: int, whole: list[torch.Tensor]) -> None:
        self.process_index = process_index
        self.whole = [t.flatten().float() for t in whole]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        for whole in self.whole:
            half = whole.chunk(2)[self.process_index]
            if half.shape == tensor.shape and torch.equal(half, tensor.float()):
                return whole.to(tensor.dtype)
        return torch.cat([tensor, tensor])


def hooked_advantages(monkeypatch, name: str, batch, process_index: int) -> tuple[torch.Tensor, bool]:
    """Run `EstimatorGRPOTrainer._generate_and_score_completions` as rank `process_index` of two on its half of
    `batch` (TRL's own method replaced by one returning the prepared output); its advantages and whether the
    log-prob pass ran."""
    rewards, lengths, _ = batch
    group = rewards.shape[1]
    halves = [rows.flatten() for rows in lengths.chunk(2)]
    local = halves[process_index]
    completion_mask = (torch.arange(40).unsqueeze(0) < local.unsqueeze(1)).long()
    output = {"completion_ids": torch.zeros_like(completion_mask), "completion_mask": completion_mask,
              "advantages": torch.zeros(len(local))}
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", lambda self, inputs: output)
    trainer = EstimatorGRPOTrainer.__new__(EstimatorGRPOTrainer)
    logprob_pass = []
    trainer.__dict__.update(
        estimator=estimators.get(name), model=torch.nn.Linear(1, 1), num_generations=group,
        reward_weights=torch.ones(1), _rewards_per_func=rewards.flatten().unsqueeze(1).float(),
        accelerator=TwoRankAccelerator(process_index, [rewards, torch.ones_like(rewards), lengths]),
        _metrics={"train": defaultdict(list)}, _sequence_logprobs=lambda *a: logprob_pass.append(1),
    )
    return trainer._generate_and_score_completions({})["advantages"], bool(logprob_pass)


@pytest.mark.parametrize("name", BATCH_DEPENDENT + ["opo"])
def test_hook_passes_gathered_lengths_and_batch_dependent_estimators_see_the_whole_batch(monkeypatch, name):
    """Two ranks, each with half the groups: the hook gathers lengths without a log-prob pass, and the two ranks'
    advantages together equal one call on the whole batch; a batch-dependent estimator called on one half alone
    gives other advantages (so the gather matters)."""
    batch = random_batch(8, b=8, ragged=False)
    rewards, lengths, mask = batch
    ranks = [hooked_advantages(monkeypatch, name, batch, rank) for rank in (0, 1)]
    assert not any(ran for _, ran in ranks)
    whole = call(name, batch)
    torch.testing.assert_close(torch.cat([adv for adv, _ in ranks]), whole.flatten().float())
    half = call(name, (rewards[:4], lengths[:4], mask[:4]))
    assert torch.allclose(half, whole[:4]) is (name not in BATCH_DEPENDENT)


def test_hook_adds_no_inputs_for_estimators_that_need_none(monkeypatch):
    batch = random_batch(9, b=8, ragged=False)
    advantages, ran = hooked_advantages(monkeypatch, "group_mean", batch, 0)
    assert not ran
    torch.testing.assert_close(advantages, call("group_mean", batch)[:4].flatten().float())
