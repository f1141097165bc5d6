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
across processes first). Estimators that read more than the group's rewards and sequence statistics declare it and
receive those inputs by keyword (`Estimator.extra_inputs` names them): `needs_greedy_rewards=True` (`greedy_rewards`
[B]), `needs_components=True` (`components` [B, G, K], `weights` [K]) and `token_level=True` (`token_logprobs`,
`sum_pi_squared` and `mask`, all [B, G, T]; the advantages are then [B, G, T], one per completion token). The
`Estimator` returned by `get` exposes these flags, checks shapes and dtypes, runs without autograd and zeroes masked
entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from estimators.base import _REGISTRY, register

__all__ = ["INPUTS", "Estimator", "_REGISTRY", "available", "get", "parameters", "register"]

TOKEN_INPUTS = ("token_logprobs", "sum_pi_squared")
INPUTS = {
    "rewards": "each completion's (mixed) reward, shape [B, G]",
    "seq_logprobs": "the completions' summed token log-probs under the sampling policy, shape [B, G]",
    "lengths": "the completions' token counts, shape [B, G]",
    "mask": "which completions (token-level estimators: which completion tokens) count, bool [B, G] ([B, G, T])",
    "greedy_rewards": "the reward of one greedy completion of each prompt, shape [B]",
    "components": "each reward of the mix scored separately, shape [B, G, K]",
    "weights": "the mix's weight of each reward, shape [K]",
    "token_logprobs": "each completion token's log-prob under the sampling policy, shape [B, G, T]",
    "sum_pi_squared": "sum_v pi_v^2 of the policy's next-token distribution at each completion token, shape [B, G, T]",
}
"""Every input an estimator may read, and what it holds: rewards and statistics of the sampling policy only, no
value estimate."""


def available() -> list[str]:
    """Sorted names of the registered estimators."""
    return _REGISTRY.available()


def parameters(name: str) -> dict[str, Any]:
    """Default configuration of estimator `name`."""
    return _REGISTRY.bind(name)


def get(name: str, **params: Any) -> Estimator:
    """The estimator `name` configured by `params` (unknown names or parameters raise `ValueError`)."""
    resolved = _REGISTRY.bind(name, **params)
    return Estimator(name, resolved, **_REGISTRY.metadata(name))


@dataclass(frozen=True)
class Estimator:
    """A configured estimator: `est(rewards, seq_logprobs=..., lengths=..., mask=...) -> advantages [B, G]`.

    `needs_logprobs` / `needs_lengths`: which of `seq_logprobs` and `lengths` must be given (`needs_logprobs` implies
    `needs_lengths`); `batch_dependent`: call it once on the whole (gathered) batch, never on parts of it;
    `needs_greedy_rewards`, `needs_components`, `token_level`: the further inputs of `extra_inputs` must be given
    (for `token_level`, `mask` is the token mask [B, G, T] and the advantages are [B, G, T])."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    needs_logprobs: bool = False
    needs_lengths: bool = False
    batch_dependent: bool = False
    needs_greedy_rewards: bool = False
    needs_components: bool = False
    token_level: bool = False

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """The keyword inputs beyond rewards, seq_logprobs, lengths and mask that this estimator reads."""
        return ((("greedy_rewards",) if self.needs_greedy_rewards else ())
                + (("components", "weights") if self.needs_components else ())
                + (TOKEN_INPUTS if self.token_level else ()))

    def __call__(
        self,
        rewards: torch.Tensor,
        seq_logprobs: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        **extra: torch.Tensor | None,
    ) -> torch.Tensor:
        _check_tensor("rewards", rewards, None)
        if not rewards.is_floating_point():
            raise ValueError(f"rewards must be a floating-point tensor, got dtype {rewards.dtype}")
        unknown = sorted(set(extra) - set(INPUTS))
        if unknown:
            raise ValueError(f"unknown input(s) {', '.join(unknown)}; allowed: {', '.join(INPUTS)}")
        token_mask = self._token_mask(mask, rewards) if self.token_level else None
        mask = token_mask.any(dim=-1) if token_mask is not None else mask
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
        inputs = self._extra(rewards, mask, token_mask, extra)
        valid = mask if token_mask is None else token_mask
        fn = _REGISTRY.function(self.name)
        with torch.no_grad():
            advantages = fn(_zero_masked(rewards, mask), seq_logprobs, lengths, valid, **inputs, **self.params)
            advantages = torch.nan_to_num(advantages, nan=0.0, posinf=0.0, neginf=0.0)
            return _zero_masked(advantages, valid).to(rewards.dtype)

    def _token_mask(self, mask: torch.Tensor | None, rewards: torch.Tensor) -> torch.Tensor:
        """The token mask [B, G, T] a token-level estimator must be given as `mask`."""
        if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or mask.shape[:2] != rewards.shape:
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"token-level estimator {self.name!r} needs mask of shape [B, G, T] (B, G as rewards: "
                             f"{tuple(rewards.shape)}), the completion tokens that count; got {got}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        return mask

    def _extra(self, rewards: torch.Tensor, mask: torch.Tensor, token_mask: torch.Tensor | None,
               given: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """The validated `extra_inputs`, as `rewards.dtype`, padding (masked completions or tokens) zeroed."""
        missing = [name for name in self.extra_inputs if given.get(name) is None]
        if missing:
            raise ValueError(f"estimator {self.name!r} needs "
                             + "; ".join(f"{name} ({INPUTS[name]})" for name in missing))
        inputs = {name: given[name] for name in self.extra_inputs}
        if "components" in inputs:
            _check_tensor("weights", inputs["weights"], None, dims=1)
            shape = (*rewards.shape, inputs["weights"].shape[0])
            _check_tensor("components", inputs["components"], torch.Size(shape))
        if "greedy_rewards" in inputs:
            _check_tensor("greedy_rewards", inputs["greedy_rewards"], rewards.shape[:1])
        if token_mask is not None:
            for name in TOKEN_INPUTS:
                _check_tensor(name, inputs[name], token_mask.shape)
        masks = {"components": mask.unsqueeze(-1), **{name: token_mask for name in TOKEN_INPUTS}}
        return {name: _zero_masked(value.to(rewards.dtype), masks[name]) if name in masks else
                value.detach().to(rewards.dtype) for name, value in inputs.items()}


def _zero_masked(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`tensor` with masked entries set to 0 (whatever they held: padding, NaN, inf), detached."""
    return torch.where(mask, tensor.detach(), 0.0)


def _check_tensor(name: str, tensor: Any, shape: torch.Size | None, dims: int = 2) -> None:
    """Raise `ValueError` unless `tensor` is a tensor of `shape` (when given; else of `dims` dimensions, [B, G])."""
    layout = "[B, G]" if dims == 2 else f"{dims} dimensions"
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if shape is None and tensor.dim() != dims:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(tensor.shape)}")
    if shape is not None and tensor.shape != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)} ({INPUTS[name]})")


from estimators import baselines, controls, pairwise, peers, recent  # noqa: E402,F401  (registers the built-ins)
