"""Confidence-attenuated pairwise estimators: LambdaPO's attenuated pairwise sum and the LambdaRank lambda.

For completions i, j of one group the policy scores s_i (mean or summed token log-prob under the sampling policy)
give P_ab = sigmoid(beta * (s_a - s_b)), the policy's confidence that a beats b, for the pair's reward-preferred
order a > b. Pairs the policy already orders correctly with high confidence get small weights.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from estimators import register
from estimators.ops import (
    Normalize,
    Scale,
    apply_scale,
    normalize_pairs,
    pair_differences,
    policy_scores,
    preference_logits,
)

Attenuation = Literal["ranknet", "log", "none"]


def pair_weights(logits: torch.Tensor, attenuation: Attenuation) -> torch.Tensor:
    """w_ab from z = logit of P_ab (overwrites z): `"ranknet"` 1 - P_ab = sigmoid(-z); `"log"` -log P_ab = softplus(-z); `"none"` 1."""
    if attenuation == "ranknet":
        return logits.neg_().sigmoid_()
    if attenuation == "log":
        return F.softplus(logits.neg_())
    return torch.ones_like(logits)


@register("attenuated_pairwise", needs_logprobs=True)
def attenuated_pairwise_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 1.0,
    score: Literal["mean", "sum"] = "mean",
    attenuation: Attenuation = "ranknet",
    normalize: Normalize = "g-1",
    scale: Scale = "none",
) -> torch.Tensor:
    """LambdaPO: A_i = sum_j (r_i - r_j) * w_ij / (n - 1) (`normalize="g-1"`), w_ij = 1 - P_ab (`"ranknet"`),
    -log P_ab (`"log"`) or 1 (`"none"`, the plain pairwise sum), P_ab = sigmoid(beta * (s_a - s_b)) for the
    reward-preferred order a > b of the pair. w is symmetric, so the advantages of a group sum to zero."""
    scores = policy_scores(seq_logprobs, lengths, score)
    differences = pair_differences(rewards, mask)
    if attenuation != "none":
        differences.mul_(pair_weights(preference_logits(differences, scores, beta), attenuation))
    summed = differences.sum(dim=-1)
    return apply_scale(normalize_pairs(summed, mask, normalize), rewards, mask, scale)


@register("lambdarank", needs_logprobs=True)
def lambdarank_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 1.0,
    score: Literal["mean", "sum"] = "mean",
    normalize: Normalize = "g-1",
    scale: Scale = "none",
) -> torch.Tensor:
    """LambdaRank lambda: A_i = sum_j sign(r_i - r_j) * |dNDCG_ij| * (1 - P_ab) / (n - 1), with
    |dNDCG_ij| = |g_i - g_j| * |d(rank_i) - d(rank_j)| / IDCG, gains g = 2^r - 1, discount d(k) = 1 / log2(1 + k),
    ranks by descending policy score s (ties by index, rank 1 first), IDCG = sum_k g_(k) d(k) over gains sorted by
    reward (|dNDCG| = 0 when IDCG <= 0; rewards are expected non-negative)."""
    scores = policy_scores(seq_logprobs, lengths, score)
    gains = torch.where(mask, torch.exp2(rewards) - 1, torch.zeros_like(rewards))
    discounts = _rank_discounts(scores, mask)
    idcg = _ideal_dcg(gains, mask)
    delta_ndcg = (gains.unsqueeze(-1) - gains.unsqueeze(-2)).abs() * (
        discounts.unsqueeze(-1) - discounts.unsqueeze(-2)
    ).abs()
    delta_ndcg = torch.where(idcg.unsqueeze(-1) > 0, delta_ndcg / idcg.unsqueeze(-1).clamp(min=1e-12), 0)
    differences = pair_differences(rewards, mask)
    weights = pair_weights(preference_logits(differences, scores, beta), "ranknet")
    summed = (torch.sign(differences) * delta_ndcg * weights).sum(dim=-1)
    return apply_scale(normalize_pairs(summed, mask, normalize), rewards, mask, scale)


def _ideal_dcg(gains: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IDCG_b = sum_k g_(k) / log2(1 + k) over the valid gains sorted descending, shape [B, 1]."""
    ordered = torch.where(mask, gains, torch.full_like(gains, -math.inf)).sort(dim=-1, descending=True).values
    ordered = torch.where(torch.isinf(ordered), torch.zeros_like(ordered), ordered)
    positions = torch.arange(1, gains.shape[-1] + 1, device=gains.device, dtype=gains.dtype)
    return (ordered / torch.log2(1 + positions)).sum(dim=-1, keepdim=True)


def _rank_discounts(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """d(rank_i) = 1 / log2(1 + rank_i), rank by descending score among valid entries (stable: ties by index)."""
    keyed = torch.where(mask, scores, torch.full_like(scores, -math.inf))
    order = torch.argsort(keyed, dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order))
    return 1.0 / torch.log2(1.0 + ranks.to(scores.dtype))
