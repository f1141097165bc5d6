"""Outcome-reward advantage estimators of peer RL frameworks, each as verl computes it (the function of
`verl/trainer/ppo/core_algos.py` it reproduces is named in brackets), for one scalar reward per completion.

Conventions shared with verl: a completion's token count L_i is `lengths` (at least 1 here); a group with a single
valid completion has baseline 0, as verl gives a prompt with one response. Masked (unscorable) completions take no
part in any statistic. "Batch" means every valid completion of the call: estimators registered with
`batch_dependent=True` whiten or scale over it, so they must see the whole training batch at once. The trainer
(`harness/trial/trl_hooks.py`) gathers the batch across processes before calling an estimator, so these statistics
are over the global batch, as verl computes them over its whole rollout batch.
"""

from __future__ import annotations

from typing import Literal

import torch

from estimators.base import register
from estimators.ops import group_mean, group_size, group_std

VERL_EPS = 1e-6
"""verl's `epsilon` added to a group's std (`grpo`, `grpo_passk`)."""
WHITEN_EPS = 1e-8
"""verl's `masked_whiten`: (x - mean) * rsqrt(var + 1e-8)."""


@register("reinforce_pp", needs_lengths=True, batch_dependent=True)
def reinforce_pp_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262) [reinforce_plus_plus] with gamma = 1: every response token
    carries the return r_i, whitened over all response tokens of the batch, so completion i weighs L_i:
    A_i = (r_i - mu) / sqrt(var + 1e-8), mu = sum_i L_i r_i / sum_i L_i,
    var = sum_i L_i (r_i - mu)^2 / (sum_i L_i - 1). No group baseline. Batch-dependent.
    OpenRLHF's `reinforce` differs only by the biased variance (/ sum L instead of / (sum L - 1))."""
    return token_whiten(rewards, token_weights(lengths, mask))


@register("reinforce_pp_baseline", needs_lengths=True, batch_dependent=True)
def reinforce_pp_baseline_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """REINFORCE++-baseline (Hu et al. 2025, arXiv 2501.03262) [reinforce_plus_plus_baseline]: subtract the group
    mean, then whiten over all response tokens of the batch as `reinforce_pp` does:
    A_i = whiten_L(r_i - mean_group r). Batch-dependent. OpenRLHF's `reinforce_baseline` differs only by the
    biased variance."""
    return token_whiten(rewards - verl_group_mean(rewards, mask), token_weights(lengths, mask))


@register("opo", needs_lengths=True)
def opo_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """On-Policy RL with Optimal reward baseline (Hao et al. 2025, arXiv 2505.23585) [opo]: the length-weighted
    group baseline b = sum_j L_j r_j / sum_j L_j, A_i = r_i - b (b = 0 for a group of one)."""
    weights = token_weights(lengths, mask)
    baseline = (weights * rewards).sum(dim=-1, keepdim=True) / weights.sum(dim=-1, keepdim=True).clamp(min=1)
    return rewards - torch.where(group_size(mask, rewards.dtype) > 1, baseline, 0.0)


@register("gpg", batch_dependent=True)
def gpg_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Group Policy Gradient (Chu et al. 2025, arXiv 2504.02546) [gpg]: A_i = alpha (r_i - mean_group r) / f_norm
    with f_norm = 1 (verl's default; it computes the group std but does not use it) and
    alpha = N / max(#{i : r_i != 0}, 1), N the batch's valid completions: verl counts the non-zero rewards of the
    batch (the paper motivates alpha by the samples that carry no gradient). Batch-dependent through alpha."""
    valid = rewards[mask]
    alpha = valid.numel() / torch.count_nonzero(valid).clamp(min=1).to(rewards.dtype)
    return alpha * (rewards - verl_group_mean(rewards, mask))


@register("grpo_passk")
def grpo_passk_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    scale: Literal["group", "none"] = "group",
) -> torch.Tensor:
    """Pass@k training (Chen et al. 2025, arXiv 2503.19595) [grpo_passk]: only the group's best completion is
    credited, A_best = (r_max - r_second) / (std + 1e-6) with std the group's unbiased reward std (`scale="group"`,
    verl's `norm_adv_by_std_in_grpo`) or no division (`"none"`); every other A_i = 0. Ties for the best go to the
    first and give 0 anyway; a group of one gives 0 (verl refuses groups under 2)."""
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards)
    top = torch.where(mask, rewards, -torch.inf).topk(2, dim=-1)
    gap = torch.where(group_size(mask, rewards.dtype) > 1, top.values[:, :1] - top.values[:, 1:], 0.0)
    if scale == "group":
        gap = gap / (group_std(rewards, mask) + VERL_EPS)
    return torch.zeros_like(rewards).scatter_(-1, top.indices[:, :1], gap)


def token_weights(lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w_i = max(L_i, 1) for valid completions, 0 for masked ones: how many response tokens carry r_i."""
    return lengths.clamp(min=1) * mask


def token_whiten(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """verl's `masked_whiten` of per-token values when completion i's w_i tokens all carry values_i:
    (x_i - mu) / sqrt(var + 1e-8), mu = sum w x / sum w, var = sum w (x - mu)^2 / (sum w - 1), over the batch."""
    total = weights.sum()
    mean = (weights * values).sum() / total.clamp(min=1)
    variance = (weights * (values - mean) ** 2).sum() / (total - 1).clamp(min=1)
    return (values - mean) * torch.rsqrt(variance + WHITEN_EPS)


def verl_group_mean(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The group mean as verl's baselines use it: mean of the valid rewards, 0 for a group of one, shape [B, 1]."""
    return torch.where(group_size(mask, rewards.dtype) > 1, group_mean(rewards, mask), 0.0)
