"""The estimator registry and its `register` decorator, apart from the package's `__init__` so that the modules of
built-in estimators import it without importing the package that imports them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from estimators.registry import Registry

EstimatorFn = Callable[..., torch.Tensor]
_REGISTRY: Registry[EstimatorFn] = Registry("estimator")


def register(
    name: str, *, needs_logprobs: bool = False, needs_lengths: bool = False, batch_dependent: bool = False,
    needs_greedy_rewards: bool = False, needs_components: bool = False, token_level: bool = False,
) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator registering an advantage estimator under `name` (a clash raises `ValueError`).

    `needs_logprobs`: reads `seq_logprobs` and `lengths`; `needs_lengths`: reads `lengths` only; `batch_dependent`:
    advantages depend on the whole batch, not only on their own group; `needs_greedy_rewards`: reads
    `greedy_rewards` [B] (the reward of one greedy completion per prompt); `needs_components`: reads `components`
    [B, G, K] and `weights` [K] (the reward mix's components and weights); `token_level`: reads `token_logprobs` and
    `sum_pi_squared` [B, G, T], takes the token mask [B, G, T] as `mask` and returns advantages [B, G, T]."""
    return _REGISTRY.register(
        name, needs_logprobs=needs_logprobs, needs_lengths=needs_logprobs or needs_lengths,
        batch_dependent=batch_dependent, needs_greedy_rewards=needs_greedy_rewards,
        needs_components=needs_components, token_level=token_level,
    )
