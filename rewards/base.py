"""The reward registry, its `register` decorator and the `Samples` a reward scores, apart from the package's
`__init__` so that the modules of built-in rewards import them without importing the package that imports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from estimators.registry import Registry


@dataclass(frozen=True)
class Samples:
    """A batch to score: completion texts, reference solutions (or None) and completion lengths (tokens when the
    trainer passes `completion_ids`, else whitespace-separated words)."""

    completions: list[str]
    references: list[str] | None
    lengths: list[int]

    def item(self, index: int) -> Samples:
        """The one-sample batch at `index`."""
        refs = None if self.references is None else [self.references[index]]
        return Samples([self.completions[index]], refs, [self.lengths[index]])


RewardFn = Callable[..., list[float]]
_REGISTRY: Registry[RewardFn] = Registry("reward")


def register(name: str, *, needs_reference: bool = False, minimum: float = 0.0) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering a batch reward `fn(samples, **params) -> list[float]` under `name`."""
    return _REGISTRY.register(name, needs_reference=needs_reference, minimum=minimum)
