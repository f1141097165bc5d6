"""Baseline-subtraction estimators: GRPO's group mean (and Dr. GRPO), RLOO and the plain pairwise sum.

Inputs are `[B, G]` with masked rewards already zeroed; `seq_logprobs`/`lengths` are unused here.
"""

from __future__ import annotations

import torch

from estimators.base import register
from estimators.ops import Normalize, Scale, apply_scale, group_mean, group_size, normalize_pairs


@register("group_mean")
def group_mean_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    scale: Scale = "group",
) -> torch.Tensor:
    """GRPO: A_i = (r_i - mean_j r_j) / (std + 1e-4), std the group's unbiased reward std (`scale="group"`, TRL's
    default), the batch's (`"batch"`), or no division at all (`"none"`, Dr. GRPO)."""
    return apply_scale(rewards - group_mean(rewards, mask), rewards, mask, scale)


@register("rloo")
def rloo_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    scale: Scale = "none",
) -> torch.Tensor:
    """REINFORCE leave-one-out: A_i = r_i - (sum_{j != i} r_j) / (n - 1) (0 for a group of one), then `scale`."""
    n = group_size(mask, rewards.dtype)
    others_mean = (rewards.sum(dim=-1, keepdim=True) - rewards) / (n - 1).clamp(min=1)
    advantages = torch.where(n > 1, rewards - others_mean, torch.zeros_like(rewards))
    return apply_scale(advantages, rewards, mask, scale)


@register("pairwise_sum")
def pairwise_sum_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    normalize: Normalize = "g-1",
    scale: Scale = "none",
) -> torch.Tensor:
    """Unattenuated pairwise sum: A_i = sum_j (r_i - r_j) = n * (r_i - mean r), divided by (n - 1) for
    `normalize="g-1"` (then it equals RLOO), then `scale`. Computed in closed form, O(G) per group."""
    n = group_size(mask, rewards.dtype)
    summed = n * rewards - rewards.sum(dim=-1, keepdim=True)
    return apply_scale(normalize_pairs(summed, mask, normalize), rewards, mask, scale)
