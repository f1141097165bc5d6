"""Advantages of one process's completions when a training batch is split across processes.

TRL hands each process a contiguous slice of the batch: process p holds completions `[p * n, (p + 1) * n)` of the
`n * processes` completions, in groups of G consecutive completions of one prompt (a group may straddle two
processes when n is not a multiple of G). `process_advantages` assembles the whole batch, runs the estimator once
over it (as `batch_dependent` estimators require) and slices this process's rows back out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch

from estimators import Estimator

Gather = Callable[[torch.Tensor], torch.Tensor]
"""Concatenates every process's tensor along dim 0 in process order (`accelerator.gather`); the identity for one
process."""
UNBATCHED = ("weights",)
"""Inputs that describe the batch rather than its completions: the same on every process, never gathered."""


class BatchAdvantages(NamedTuple):
    """`local`: this process's advantages, shape [n] ([n, T] for a token-level estimator); `advantages`, `mask` and
    the `rewards` they were computed from: the whole batch's, shape [B, G] (a token-level estimator's advantages
    reduced to one per completion: their mean over its valid tokens); `inputs`: everything the estimator was called
    with (the whole batch's)."""

    local: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    inputs: dict[str, torch.Tensor]


def process_advantages(estimator: Estimator, rewards: torch.Tensor, mask: torch.Tensor, *, group: int,
                       process_index: int, gather: Gather, seq_logprobs: torch.Tensor | None = None,
                       lengths: torch.Tensor | None = None,
                       extra: Mapping[str, torch.Tensor] | None = None) -> BatchAdvantages:
    """The estimator's advantages for this process's `n` completions (`rewards`, `seq_logprobs`, `lengths` shape
    [n]; `mask` bool [n], or [n, T] for a token-level estimator; `extra`: the estimator's `extra_inputs`, one row
    per completion, e.g. `components` [n, K], `token_logprobs` [n, T] with T the same on every process, and
    `greedy_rewards` [n] (each completion carries its prompt's), but `weights` [K] as is).

    Every row-wise input is gathered across processes and viewed as [B, G, ...] (G = `group`; `greedy_rewards` then
    as [B], the group's first), the estimator runs on the whole batch and the advantages of process 0 are gathered
    once more and used by every process: an estimator that draws random numbers (`shuffled` without a seed) then
    agrees across processes even when their random states differ, so a group split across two processes still gets
    one permutation. This process keeps rows `[process_index * n, (process_index + 1) * n)`."""
    n = rewards.shape[0]
    rows = {"rewards": rewards, "mask": mask, "seq_logprobs": seq_logprobs, "lengths": lengths, **(extra or {})}
    inputs = {key: gather(value.to(rewards.dtype)).view(-1, group, *value.shape[1:]) for key, value in rows.items()
              if value is not None and key not in UNBATCHED}  # the mask as 0/1 floats: one dtype for every collective
    inputs["mask"] = inputs["mask"] > 0.5
    if "greedy_rewards" in inputs:
        inputs["greedy_rewards"] = inputs["greedy_rewards"][:, 0]
    inputs |= {key: rows[key] for key in UNBATCHED if rows.get(key) is not None}
    advantages = estimator(**inputs)
    advantages = gather(advantages.flatten())[: advantages.numel()].view_as(advantages)  # process 0's
    local = advantages.flatten(0, 1)[process_index * n:(process_index + 1) * n]
    per_completion, completion_mask = per_completion_advantages(advantages, inputs["mask"])
    return BatchAdvantages(local, per_completion, completion_mask, inputs["rewards"], inputs)


def per_completion_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`advantages` and `mask` as [B, G]: as given when they are, else ([B, G, T] token-level) the mean advantage
    over each completion's valid tokens, sum_t m_t A_t / max(sum_t m_t, 1), and whether it has any."""
    if advantages.dim() == 2:
        return advantages, mask
    tokens = mask.to(advantages.dtype)
    return (advantages * tokens).sum(dim=-1) / tokens.sum(dim=-1).clamp(min=1), mask.any(dim=-1)
