"""Semantic density: precision/recall alignment between a completion's reasoning and the reference solution.

precision = share of the generated reasoning's units that align with the reference, recall = share of the
reference's units covered, reward = F_beta = (1 + beta^2) P R / (beta^2 P + R) in [0, 1] (0 when P = R = 0).
The reasoning excludes the final-answer line and `<<...>>` calculator notes. Units:
- `lcs` (ROUGE-L, the LamPO paper's choice): normalised tokens, aligned by their longest common subsequence;
- `tokens`: normalised tokens, multiset matching;
- `steps`: one unit per line stating a number, matched (as a multiset) by the numeric result it states;
- `embedding`: BERTScore-style greedy cosine matching of token embeddings, optionally idf-weighted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from rewards.base import Samples, register
from rewards.text import NUMBER, canonical_number, normalised_tokens, reasoning_part, to_number

Units = Literal["lcs", "tokens", "steps", "embedding"]
PrecisionRecall = tuple[float, float]


def f_beta(precision: float, recall: float, beta: float) -> float:
    """(1 + beta^2) P R / (beta^2 P + R), 0 when both are 0."""
    denominator = beta**2 * precision + recall
    return 0.0 if denominator <= 0 else (1 + beta**2) * precision * recall / denominator


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one big-integer update per token of
    `b`, V <- (V + (V & M[t])) | (V - (V & M[t])) over the match masks M of `a`; LCS = zero bits of V."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for position, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << position)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def lcs_precision_recall(generated: list[str], reference: list[str]) -> PrecisionRecall:
    """ROUGE-L: P = LCS / |generated|, R = LCS / |reference|."""
    common = lcs_length(reference, generated)
    return _ratios(common, common, len(generated), len(reference))


def multiset_precision_recall(generated: list[str], reference: list[str]) -> PrecisionRecall:
    """Bag-of-units overlap m = sum_t min(count_gen(t), count_ref(t)): P = m / |generated|, R = m / |reference|."""
    matched = sum((Counter(generated) & Counter(reference)).values())
    return _ratios(matched, matched, len(generated), len(reference))


def _ratios(matched_generated: float, matched_reference: float, n_generated: int, n_reference: int) -> PrecisionRecall:
    precision = matched_generated / n_generated if n_generated else 0.0
    recall = matched_reference / n_reference if n_reference else 0.0
    return precision, recall


def step_results(reasoning: str) -> list[str]:
    """One unit per line that states a number: the canonical value after the line's last `=`, else its last number."""
    results = []
    for line in reasoning.splitlines():
        after_equals = line.rsplit("=", 1)[1] if "=" in line else None
        numbers = NUMBER.findall(after_equals) if after_equals is not None else NUMBER.findall(line)[-1:]
        value = to_number(numbers[0]) if numbers else None
        if value is not None:
            results.append(canonical_number(repr(value)))
    return results


class Encoder(Protocol):
    """Token embeddings of texts: `encode(texts) -> list of (token ids [n], embeddings [n, d])`."""

    def encode(self, texts: list[str]) -> list[tuple[list[int], torch.Tensor]]: ...


class EmbeddingTableEncoder:
    """Encoder reading a model's input-embedding table (the policy's, by default) through its tokenizer."""

    def __init__(self, embeddings: torch.nn.Module, tokenizer: Any) -> None:
        self.embeddings, self.tokenizer = embeddings, tokenizer

    def encode(self, texts: list[str]) -> list[tuple[list[int], torch.Tensor]]:
        out = []
        weight = self.embeddings.weight
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:4096]
            with torch.no_grad():
                out.append((ids, weight[torch.tensor(ids, dtype=torch.long, device=weight.device)].float().cpu()))
        return out


class HiddenStateEncoder:
    """Encoder taking the last hidden states of a local Hugging Face encoder directory (no hub access)."""

    def __init__(self, path: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        if not Path(path).is_dir():
            raise ValueError(f"semantic_density encoder {path!r} is not a local model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def encode(self, texts: list[str]) -> list[tuple[list[int], torch.Tensor]]:
        out = []
        for text in texts:
            batch = self.tokenizer(text, return_tensors="pt", truncation=True, add_special_tokens=False)
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state[0]
            out.append((batch["input_ids"][0].tolist(), hidden.float()))
        return out


def embedding_precision_recall(
    generated: tuple[list[int], torch.Tensor], reference: tuple[list[int], torch.Tensor], idf: dict[int, float] | None
) -> PrecisionRecall:
    """BERTScore greedy matching: P = sum_i w_i max_j cos(x_i, y_j) / sum_i w_i over generated tokens x,
    R likewise over reference tokens y; w = idf weights (1 without idf); cosines clipped at 0."""
    (gen_ids, x), (ref_ids, y) = generated, reference
    if not gen_ids or not ref_ids:
        return 0.0, 0.0
    sim = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T
    sim = sim.clamp(min=0)

    def weighted(best: torch.Tensor, ids: list[int]) -> float:
        w = torch.tensor([idf.get(t, 1.0) if idf else 1.0 for t in ids])
        return float((best * w).sum() / w.sum()) if float(w.sum()) > 0 else 0.0

    return weighted(sim.max(dim=1).values, gen_ids), weighted(sim.max(dim=0).values, ref_ids)


def inverse_document_frequency(references: list[list[int]]) -> dict[int, float]:
    """idf(t) = log((M + 1) / (1 + df(t))) over the M reference texts of the batch (BERTScore's definition)."""
    df: Counter[int] = Counter(t for ids in references for t in set(ids))
    return {t: math.log((len(references) + 1) / (1 + n)) for t, n in df.items()}


TOKEN_UNITS: dict[str, Callable[[str], list[str]]] = {"lcs": normalised_tokens, "tokens": normalised_tokens,
                                                      "steps": step_results}
TOKEN_ALIGNMENT: dict[str, Callable[[list[str], list[str]], PrecisionRecall]] = {
    "lcs": lcs_precision_recall,
    "tokens": multiset_precision_recall,
    "steps": multiset_precision_recall,
}


def precision_recall(units: Units, generated: str, reference: str) -> PrecisionRecall:
    """Precision and recall of the `generated` reasoning against the `reference` reasoning for text units."""
    split = TOKEN_UNITS[units]
    return TOKEN_ALIGNMENT[units](split(generated), split(reference))


@register("semantic_density", needs_reference=True)
def semantic_density(
    samples: Samples,
    *,
    units: Units = "lcs",
    beta: float = 1.0,
    idf: bool = False,
    encoder: Any = "policy",
) -> list[float]:
    """F_beta of the precision/recall alignment between each completion's reasoning and its reference's reasoning.
    `idf` and `encoder` apply to `units="embedding"`: `encoder` is a local model directory, an `Encoder`, or
    "policy" (the trainer substitutes the policy's input-embedding table)."""
    assert samples.references is not None
    generated = [reasoning_part(c) for c in samples.completions]
    references = [reasoning_part(r) for r in samples.references]
    if units != "embedding":
        return [f_beta(*precision_recall(units, g, r), beta) for g, r in zip(generated, references)]
    resolved = _resolve_encoder(encoder)  # also on the empty batch of `rewards.get`: bad encoders fail at once
    gen_encoded, ref_encoded = resolved.encode(generated), resolved.encode(references)
    weights = inverse_document_frequency([ids for ids, _ in ref_encoded]) if idf else None
    return [f_beta(*embedding_precision_recall(g, r, weights), beta) for g, r in zip(gen_encoded, ref_encoded)]


_ENCODERS: dict[str, HiddenStateEncoder] = {}


def _resolve_encoder(encoder: Any) -> Encoder:
    """An `Encoder` object as is, a directory path loaded once, or an error for an unbound "policy"."""
    if not isinstance(encoder, (str, Path)):
        return encoder
    if encoder == "policy":
        raise ValueError(
            "semantic_density units='embedding' with encoder='policy' needs the trainer to bind the policy; "
            "outside training pass encoder=<local model directory> or an Encoder object"
        )
    if encoder not in _ENCODERS:
        _ENCODERS[str(encoder)] = HiddenStateEncoder(str(encoder))
    return _ENCODERS[str(encoder)]
