"""Estimators the field added after GRPO that read more than one scalar reward per completion: ReMax (a greedy
completion's reward as baseline), GDPO (each reward of a mix normalised on its own), MaxRL (the group mean as both
baseline and scale) and OTB (a per-token baseline weighted by the policy's confidence).

Inputs as in `estimators`: `[B, G]` rewards with masked completions zeroed; the further inputs each estimator
declares arrive by keyword, padding zeroed (see `estimators.INPUTS`).
"""

from __future__ import annotations

import torch

from estimators.base import register
from estimators.ops import STD_EPS, batch_std, group_mean, group_std

OTB_EPS = 1e-8
"""verl's `epsilon` added to the summed path weights of `compute_optimal_token_baseline_advantage`."""


@register("remax", needs_greedy_rewards=True)
def remax_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    greedy_rewards: torch.Tensor,
) -> torch.Tensor:
    """ReMax (Li et al., ICML 2024, arXiv 2310.10505): A_i = r_i - r_greedy, r_greedy [B] the reward of one greedy
    completion of the same prompt, generated and scored at the same step. verl: `compute_remax_outcome_advantage`
    (its `reward_baselines`)."""
    return rewards - greedy_rewards.unsqueeze(-1)


@register("gdpo", needs_components=True, batch_dependent=True)
def gdpo_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    components: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """GDPO (group reward-decoupled normalisation, arXiv 2601.05242): each reward component k [B, G, K] is normalised
    within its group, n_ik = (r_ik - mean_k) / (std_k + 1e-4), the weighted sum x_i = sum_k w_k n_ik is whitened
    over the batch's valid completions, A_i = (x_i - mean x) / (std x + 1e-4); both stds are the sample std (n - 1),
    0 below two values. `rewards` (the mixed reward) is not read. TRL: GRPOConfig
    `multi_objective_aggregation="normalize_then_sum"`; also verl (`compute_gdpo_outcome_advantage`) and NeMo-RL.
    Batch-dependent through the whitening."""
    per_reward = components.movedim(-1, 0)  # [K, B, G]: each component's group statistics over the last dim
    normalised = (per_reward - group_mean(per_reward, mask)) / (group_std(per_reward, mask) + STD_EPS)
    summed = torch.einsum("kbg,k->bg", normalised, weights)
    valid = summed[mask]
    mean = valid.mean() if valid.numel() else summed.new_zeros(())
    return (summed - mean) / (batch_std(summed, mask) + STD_EPS)


@register("maxrl")
def maxrl_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
) -> torch.Tensor:
    """MaxRL (maximum-likelihood RL, arXiv 2602.02710): A_i = (r_i - mean r) / mean r over the group's valid
    completions, 0 for a group whose mean is <= 0 (no success: no signal). For binary rewards this averages the score
    functions of the successful completions only. prime-rl: `max_rl_advantage_fn`."""
    mean = group_mean(rewards, mask)
    return torch.where(mean > 0, (rewards - mean) / mean, 0.0)  # the other branch's 0 / 0 is never selected


@register("otb", token_level=True)
def otb_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    token_logprobs: torch.Tensor,
    sum_pi_squared: torch.Tensor,
) -> torch.Tensor:
    """Optimal Token Baseline (arXiv 2602.07078), token level, outcome rewards: with mask m [B, G, T],
    W_t = sum_{j <= t} m_j (1 - 2 pi_j + sum_v pi_v^2) (pi_j = exp(token_logprobs_j), the sampled token's
    probability; 1 - 2 pi_j + sum_v pi_v^2 = |e_j - pi|^2, the squared norm of the score at token j),
    B_t = sum_i G_t^i W_t^i / (sum_i W_t^i + 1e-8) over the group's completions still running at t (m_t = 1),
    0 where fewer than two are, and A_t = (G_t - B_t) m_t with G_t = r_i (the outcome reward is every token's return).
    verl: `compute_optimal_token_baseline_advantage` with its default `handle_zero_tail=True` (a lone longest
    completion's tail past the second-longest gets baseline 0) and no rollout importance weights."""
    running = mask.to(rewards.dtype)
    # W_t, 0 off the mask (in place: one [B, G, T] temporary)
    path = token_logprobs.exp().mul_(-2).add_(sum_pi_squared).add_(1).mul_(running).cumsum_(dim=-1).mul_(running)
    baseline = torch.einsum("bg,bgt->bt", rewards, path).div_(path.sum(dim=1).add_(OTB_EPS))  # sum_i G W / sum_i W
    baseline = torch.where(running.sum(dim=1) > 1, baseline, 0.0).unsqueeze(1)
    return (rewards.unsqueeze(-1) - baseline).mul_(running)  # (G_t - B_t) m_t
