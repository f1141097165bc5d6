"""Confidence-attenuated pairwise estimators: LambdaPO's attenuated pairwise sum and the LambdaRank lambda.

For completions i, j of one group the policy scores s_i (mean or summed token log-prob under the sampling policy)
give P_ab = sigmoid(beta * (s_a - s_b)), the policy's confidence that a beats b, for the pair's reward-preferred
order a > b. Pairs the policy already orders correctly with high confidence get small weights.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F

from estimators.base import register
from estimators.ops import (
    Normalize,
    Scale,
    apply_scale,
    in_row_blocks,
    normalize_pairs,
    pair_differences,
    policy_scores,
    preference_logits,
)

Attenuation = Literal["ranknet", "log", "none"]
Magnitude = Literal["reward", "sign"]


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
    magnitude: Magnitude = "reward",
    normalize: Normalize = "g-1",
    scale: Scale = "none",
) -> torch.Tensor:
    """LambdaPO: A_i = sum_j D_ij * w_ij / (n - 1) (`normalize="g-1"`) with D_ij = r_i - r_j (`magnitude="reward"`)
    or sign(r_i - r_j) (`"sign"`: reward magnitudes dropped), w_ij = 1 - P_ab (`attenuation="ranknet"`), -log P_ab
    (`"log"`) or 1 (`"none"`: the plain pairwise sum), P_ab = sigmoid(beta * (s_a - s_b)) for the reward-preferred
    order a > b of the pair. w is symmetric, so the advantages of a group sum to zero."""
    scores = policy_scores(seq_logprobs, lengths, score)
    weighted = partial(weighted_pair_sums, beta=beta, attenuation=attenuation, magnitude=magnitude)
    summed = in_row_blocks(weighted, rewards, scores, mask)
    return apply_scale(normalize_pairs(summed, mask, normalize), rewards, mask, scale)


def weighted_pair_sums(
    rewards: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    attenuation: Attenuation,
    magnitude: Magnitude,
) -> torch.Tensor:
    """sum_j D_ij * w_ij of `attenuated_pairwise_advantage` (before normalisation and scaling), shape [B, G]."""
    pairs = pair_differences(rewards, mask)
    if magnitude == "sign":
        pairs.sign_()
    if attenuation == "ranknet":
        return ranknet_weighted_sum(pairs, scores, beta)
    if attenuation == "log":
        return (pairs * F.softplus(preference_logits(pairs, scores, beta).neg_())).sum(dim=-1)  # w = -log P_ab
    return pairs.sum(dim=-1)


def ranknet_weighted_sum(pairs: torch.Tensor, scores: torch.Tensor, beta: float) -> torch.Tensor:
    """sum_j D_ij (1 - P_ab), shape [B, G], for pair values D [B, G, G] whose sign says which of i, j is the better
    one, a (D is overwritten; masked partners must be zero). With P_ij = sigmoid(beta (s_i - s_j)), whichever is
    better, D_ij (1 - P_ab) = D_ij / 2 - |D_ij| (P_ij - 1/2): one sigmoid per pair and no sign."""
    half_sums = pairs.sum(dim=-1).div_(2)
    scaled = beta * scores
    centred = (scaled.unsqueeze(-1) - scaled.unsqueeze(-2)).sigmoid_().sub_(0.5)
    return half_sums.sub_(centred.mul_(pairs.abs_()).sum(dim=-1))


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
    signed = pair_differences(rewards, mask).sign_().mul_(delta_ndcg)
    summed = ranknet_weighted_sum(signed, scores, beta)
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
