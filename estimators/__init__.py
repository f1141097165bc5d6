"""Registry of advantage estimators over `[B, G]` reward tensors (B groups of G completions of one prompt).

    import estimators
    estimators.available()
    est = estimators.get("attenuated_pairwise", beta=1.0, score="mean")
    A = est(rewards, seq_logprobs=lp, lengths=n, mask=m)      # all [B, G] -> float [B, G]

    @estimators.register("my_estimator")
    def my_estimator(rewards, seq_logprobs, lengths, mask, *, my_param: float = 1.0) -> torch.Tensor: ...

A registered function receives validated tensors (`mask` always given, `seq_logprobs`/`lengths` given when the
estimator was registered with `needs_logprobs=True`) and its configuration as keyword-only parameters. The
`Estimator` returned by `get` checks shapes and dtypes, runs without autograd and zeroes masked entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from estimators.registry import Registry

EstimatorFn = Callable[..., torch.Tensor]
_REGISTRY: Registry[EstimatorFn] = Registry("estimator")


def register(name: str, *, needs_logprobs: bool = False) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator registering an advantage estimator under `name` (a clash raises `ValueError`)."""
    return _REGISTRY.register(name, needs_logprobs=needs_logprobs)


def available() -> list[str]:
    """Sorted names of the registered estimators."""
    return _REGISTRY.available()


def parameters(name: str) -> dict[str, Any]:
    """Default configuration of estimator `name`."""
    return _REGISTRY.bind(name)


def get(name: str, **params: Any) -> Estimator:
    """The estimator `name` configured by `params` (unknown names or parameters raise `ValueError`)."""
    resolved = _REGISTRY.bind(name, **params)
    return Estimator(name, resolved, bool(_REGISTRY.metadata(name)["needs_logprobs"]))


@dataclass(frozen=True)
class Estimator:
    """A configured estimator: `est(rewards, seq_logprobs=..., lengths=..., mask=...) -> advantages [B, G]`."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    needs_logprobs: bool = False

    def __call__(
        self,
        rewards: torch.Tensor,
        seq_logprobs: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_tensor("rewards", rewards, None)
        if not rewards.is_floating_point():
            raise ValueError(f"rewards must be a floating-point tensor, got dtype {rewards.dtype}")
        if mask is None:
            mask = torch.ones_like(rewards, dtype=torch.bool)
        _check_tensor("mask", mask, rewards.shape)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        if self.needs_logprobs:
            if seq_logprobs is None or lengths is None:
                raise ValueError(
                    f"estimator {self.name!r} needs seq_logprobs and lengths (the completions' summed token "
                    "log-probs under the sampling policy and their token counts)"
                )
            _check_tensor("seq_logprobs", seq_logprobs, rewards.shape)
            _check_tensor("lengths", lengths, rewards.shape)
            seq_logprobs = seq_logprobs.to(rewards.dtype)
            lengths = lengths.to(rewards.dtype)
        fn = _REGISTRY.function(self.name)
        with torch.no_grad():
            safe_rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
            advantages = fn(safe_rewards, seq_logprobs, lengths, mask, **self.params)
            advantages = torch.nan_to_num(advantages, nan=0.0, posinf=0.0, neginf=0.0)
            return torch.where(mask, advantages, torch.zeros_like(advantages)).to(rewards.dtype).detach()


def _check_tensor(name: str, tensor: Any, shape: torch.Size | None) -> None:
    """Raise `ValueError` unless `tensor` is a 2-D `[B, G]` tensor (of `shape`, when given)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, G], got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape [B, G], got {tuple(tensor.shape)}")
    if shape is not None and tensor.shape != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} like rewards")


from estimators import baselines, pairwise  # noqa: E402,F401  (registers the built-in estimators)
