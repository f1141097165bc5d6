"""The estimator registry and its `register` decorator, apart from the package's `__init__` so that the modules of
built-in estimators import it without importing the package that imports them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from estimators.registry import Registry

EstimatorFn = Callable[..., torch.Tensor]
_REGISTRY: Registry[EstimatorFn] = Registry("estimator")


def register(
    name: str, *, needs_logprobs: bool = False, needs_lengths: bool = False, batch_dependent: bool = False
) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator registering an advantage estimator under `name` (a clash raises `ValueError`).

    `needs_logprobs`: reads `seq_logprobs` and `lengths`; `needs_lengths`: reads `lengths` only; `batch_dependent`:
    advantages depend on the whole batch, not only on their own group."""
    return _REGISTRY.register(
        name, needs_logprobs=needs_logprobs, needs_lengths=needs_logprobs or needs_lengths,
        batch_dependent=batch_dependent,
    )
