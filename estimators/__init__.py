"""Registry of advantage estimators over `[B, G]` reward tensors (B groups of G completions of one prompt).

    import estimators
    estimators.available()
    est = estimators.get("attenuated_pairwise", beta=1.0, score="mean")
    A = est(rewards, seq_logprobs=lp, lengths=n, mask=m)      # all [B, G] -> float [B, G]

    @estimators.register("my_estimator")
    def my_estimator(rewards, seq_logprobs, lengths, mask, *, my_param: float = 1.0) -> torch.Tensor: ...

A registered function receives validated tensors with masked entries zeroed (`mask` always given; `seq_logprobs` and
`lengths` when the estimator was registered with `needs_logprobs=True`, `lengths` alone with `needs_lengths=True`) and
its configuration as keyword-only parameters. `batch_dependent=True` declares that an advantage depends on other groups of the batch
(whitening, batch-level coefficients): the caller must then pass the whole batch in one call (the trainer gathers it
across processes first). The `Estimator` returned by `get` exposes these flags, checks shapes and dtypes, runs without
autograd and zeroes masked entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from estimators.base import _REGISTRY, register

__all__ = ["Estimator", "_REGISTRY", "available", "get", "parameters", "register"]


def available() -> list[str]:
    """Sorted names of the registered estimators."""
    return _REGISTRY.available()


def parameters(name: str) -> dict[str, Any]:
    """Default configuration of estimator `name`."""
    return _REGISTRY.bind(name)


def get(name: str, **params: Any) -> Estimator:
    """The estimator `name` configured by `params` (unknown names or parameters raise `ValueError`)."""
    resolved = _REGISTRY.bind(name, **params)
    flags = _REGISTRY.metadata(name)
    return Estimator(name, resolved, flags["needs_logprobs"], flags["needs_lengths"], flags["batch_dependent"])


@dataclass(frozen=True)
class Estimator:
    """A configured estimator: `est(rewards, seq_logprobs=..., lengths=..., mask=...) -> advantages [B, G]`.

    `needs_logprobs` / `needs_lengths`: which of `seq_logprobs` and `lengths` must be given (`needs_logprobs` implies
    `needs_lengths`); `batch_dependent`: call it once on the whole (gathered) batch, never on parts of it."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    needs_logprobs: bool = False
    needs_lengths: bool = False
    batch_dependent: bool = False

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
            seq_logprobs = _zero_masked(seq_logprobs.to(rewards.dtype), mask)
        if self.needs_lengths:
            if lengths is None:
                raise ValueError(f"estimator {self.name!r} needs lengths (the completions' token counts)")
            _check_tensor("lengths", lengths, rewards.shape)
            lengths = _zero_masked(lengths.to(rewards.dtype), mask)
        fn = _REGISTRY.function(self.name)
        with torch.no_grad():
            advantages = fn(_zero_masked(rewards, mask), seq_logprobs, lengths, mask, **self.params)
            advantages = torch.nan_to_num(advantages, nan=0.0, posinf=0.0, neginf=0.0)
            return _zero_masked(advantages, mask).to(rewards.dtype)


def _zero_masked(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`tensor` with masked entries set to 0 (whatever they held: padding, NaN, inf), detached."""
    return torch.where(mask, tensor.detach(), 0.0)


def _check_tensor(name: str, tensor: Any, shape: torch.Size | None) -> None:
    """Raise `ValueError` unless `tensor` is a 2-D `[B, G]` tensor (of `shape`, when given)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, G], got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape [B, G], got {tuple(tensor.shape)}")
    if shape is not None and tensor.shape != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} like rewards")


from estimators import baselines, controls, pairwise, peers  # noqa: E402,F401  (registers the built-in estimators)
