"""Advantages of one process's completions when a training batch is split across processes.

TRL hands each process a contiguous slice of the batch: process p holds completions `[p * n, (p + 1) * n)` of the
`n * processes` completions, in groups of G consecutive completions of one prompt (a group may straddle two
processes when n is not a multiple of G). `process_advantages` assembles the whole batch, runs the estimator once
over it (as `batch_dependent` estimators require) and slices this process's rows back out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from estimators import Estimator

Gather = Callable[[torch.Tensor], torch.Tensor]
"""Concatenates every process's tensor along dim 0 in process order (`accelerator.gather`); the identity for one
process."""


class BatchAdvantages(NamedTuple):
    """`local`: this process's advantages, shape [n]; `advantages`, `mask` and the `rewards` they were computed from:
    the whole batch's, shape [B, G]."""

    local: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor


def process_advantages(estimator: Estimator, rewards: torch.Tensor, mask: torch.Tensor, *, group: int,
                       process_index: int, gather: Gather, seq_logprobs: torch.Tensor | None = None,
                       lengths: torch.Tensor | None = None) -> BatchAdvantages:
    """The estimator's advantages for this process's `n` completions (all inputs shape [n], `mask` bool).

    Every given input is gathered across processes and viewed as [B, G] (G = `group`), the estimator runs on the
    whole batch and the advantages of process 0 are gathered once more and used by every process: an estimator
    that draws random numbers (`shuffled` without a seed) then agrees across processes even when their random
    states differ, so a group split across two processes still gets one permutation. This process keeps rows
    `[process_index * n, (process_index + 1) * n)`."""
    n = rewards.shape[0]
    inputs = {"rewards": rewards, "mask": mask, "seq_logprobs": seq_logprobs, "lengths": lengths}
    batch = {key: gather(value.to(rewards.dtype)).view(-1, group) for key, value in inputs.items()
             if value is not None}  # the mask travels as 0/1 floats: one dtype for every collective
    batch["mask"] = batch["mask"] > 0.5
    advantages = estimator(**batch)
    advantages = gather(advantages.flatten())[: advantages.numel()].view_as(advantages)  # process 0's
    return BatchAdvantages(advantages.flatten()[process_index * n:(process_index + 1) * n], advantages, batch["mask"],
                           batch["rewards"])
