"""Registry of reward functions and weighted reward mixes, with TRL's reward-function signature.

    import rewards
    fn = rewards.get("semantic_density", units="lcs", beta=1.0)
    fn(prompts, completions, answer=answers, **other_columns) -> list[float]
    mix = rewards.mix({"correctness": 1.0, "semantic_density": 0.5})
    mix.last_components                       # name -> list[float] of the last call

    @rewards.register("name", needs_reference=True, minimum=0.0)
    def name(samples: rewards.Samples, *, my_param: float = 1.0) -> list[float]: ...

A registered function scores a whole batch (`Samples`). The `RewardFunction` returned by `get` turns TRL's call into
`Samples`, and never raises on model output: if the batch raises, each sample is scored alone, and a sample that
still raises or scores NaN/inf gets the reward's `minimum` and is counted in `failures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.base import _REGISTRY, Samples, register
from rewards.text import completion_text

__all__ = ["RewardFunction", "RewardMix", "Samples", "available", "get", "mix", "register"]


def available() -> list[str]:
    """Sorted names of the registered rewards."""
    return _REGISTRY.available()


def get(name: str, **params: Any) -> RewardFunction:
    """The reward `name` configured by `params`; unknown names or parameters raise `ValueError`, and so does a
    configuration the function itself rejects (it is called once on an empty batch here)."""
    fn = RewardFunction(name, _REGISTRY.bind(name, **params))
    _REGISTRY.function(name)(Samples([], [], []), **fn.params)
    return fn


@dataclass
class RewardFunction:
    """A configured reward with TRL's signature `fn(prompts, completions, **columns) -> list[float]`."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    failures: int = 0

    @property
    def __name__(self) -> str:  # TRL names the logged reward columns after `__name__`
        return self.name

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any
    ) -> list[float]:
        samples = self.samples(completions, columns)
        try:
            scores = list(_REGISTRY.function(self.name)(samples, **self.params))
        except Exception:  # model output must never crash training: score each sample alone
            scores = [self._score_alone(samples.item(i)) for i in range(len(samples.completions))]
        return [self._checked(score) for score in scores]

    def samples(self, completions: Sequence[Any], columns: Mapping[str, Any]) -> Samples:
        """`Samples` from TRL's arguments; a missing `answer` column raises `ValueError` for rewards needing it."""
        texts = [completion_text(c) for c in completions]
        references = columns.get("answer")
        if references is None and _REGISTRY.metadata(self.name)["needs_reference"]:
            raise ValueError(
                f"reward {self.name!r} needs the dataset column 'answer' (the reference solution); "
                f"columns given: {', '.join(sorted(columns)) or '(none)'}"
            )
        ids = columns.get("completion_ids")
        lengths = [len(x) for x in ids] if ids is not None else [len(t.split()) for t in texts]
        return Samples(texts, None if references is None else [str(r) for r in references], lengths)

    @property
    def minimum(self) -> float:
        """The score given to a sample that cannot be scored."""
        return float(_REGISTRY.metadata(self.name)["minimum"])

    def _score_alone(self, sample: Samples) -> float:
        try:
            return _REGISTRY.function(self.name)(sample, **self.params)[0]
        except Exception:
            return math.nan

    def _checked(self, score: Any) -> float:
        try:
            value = float(score)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            self.failures += 1
            return self.minimum
        return value


@dataclass
class RewardMix:
    """Weighted sum of rewards, `sum_k w_k * reward_k`, with TRL's signature; `last_components` keeps each
    component's scores of the last call (weight 0 computes and logs a component without training on it)."""

    components: list[RewardFunction]
    weights: list[float]
    last_components: dict[str, list[float]] = field(default_factory=dict)
    __name__: str = "mix"

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any
    ) -> list[float]:
        self.last_components = {fn.name: fn(prompts, completions, **columns) for fn in self.components}
        per_sample = zip(*self.last_components.values())
        return [sum(w * s for w, s in zip(self.weights, scores)) for scores in per_sample]


def mix(weights: Mapping[str, float], params: Mapping[str, Mapping[str, Any]] | None = None) -> RewardMix:
    """A `RewardMix` of the rewards named in `weights` (name -> finite weight), each configured by `params[name]`."""
    params = params or {}
    if not weights:
        raise ValueError(f"a reward mix needs at least one reward; available: {', '.join(available())}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"weight of reward {name!r} must be a finite number, got {weight!r}")
    unused = sorted(set(params) - set(weights))
    if unused:
        raise ValueError(f"parameters given for reward(s) {', '.join(unused)} that the mix does not use")
    components = [get(name, **dict(params.get(name, {}))) for name in weights]
    return RewardMix(components, [float(w) for w in weights.values()])


from rewards import builtin, semantic  # noqa: E402,F401  (registers the built-in rewards)
