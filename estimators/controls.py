"""Negative controls: estimators with the magnitudes of a real one and none of its information.

A training run with a control tells how much of an estimator's effect comes from the reward signal at all: its
advantages are as large as GRPO's but assigned to completions at random.
"""

from __future__ import annotations

import torch

from estimators.base import register
from estimators.baselines import group_mean_advantage
from estimators.ops import Scale


@register("shuffled")
def shuffled_advantage(
    rewards: torch.Tensor,
    seq_logprobs: torch.Tensor | None,
    lengths: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    scale: Scale = "group",
    seed: int | None = None,
) -> torch.Tensor:
    """A_i = GM_{pi(i)}: the group's `group_mean` advantages GM (with the same `scale`) permuted within the group's
    valid entries by a uniformly random permutation pi, drawn independently for every group. Same multiset of values
    per group (so still zero-sum), no information on which completion earned which.

    Randomness from torch's global RNG (a seeded trainer gives a reproducible run) or, with `seed`, from a generator
    seeded with it on every call (the same permutations for every call of the same shape)."""
    advantages = group_mean_advantage(rewards, seq_logprobs, lengths, mask, scale=scale)
    return advantages.gather(-1, random_valid_permutation(mask, seed))


def random_valid_permutation(mask: torch.Tensor, seed: int | None) -> torch.Tensor:
    """Source index [B, G] of each position: the valid positions of a group draw from one another in uniformly random
    order (the k-th valid position from the k-th of a random ordering); masked positions are their own source."""
    generator = None if seed is None else torch.Generator(device=mask.device).manual_seed(seed)
    keys = torch.rand(mask.shape, generator=generator, device=mask.device)
    shuffled = torch.where(mask, keys, 2.0).argsort(dim=-1)  # the valid positions first, in random order
    rank = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # k for the k-th valid position
    identity = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask, shuffled.gather(-1, rank), identity)
