"""Rewards: verdicts on the fixture cases and real GSM8K references, semantic-density properties, mixes, errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

import rewards
from rewards.semantic import EmbeddingTableEncoder, lcs_length, precision_recall
from rewards.text import extract_final_answer, normalised_tokens, reasoning_part, to_number

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [json.loads(line) for line in (FIXTURES / "answer_cases.jsonl").read_text(encoding="utf-8").splitlines()]
GSM8K = [json.loads(line) for line in (FIXTURES / "gsm8k_test_300.jsonl").read_text(encoding="utf-8").splitlines()]


def test_fixture_set_covers_the_hard_cases():
    assert len(CASES) >= 30
    texts = " ".join(c["completion"] + c["reference"] for c in CASES)
    for needle in ["\\boxed{\\frac{1}{2}}", "1,000", "e3", "-5", "2.5", "٧٢", "#### 10\n"]:
        assert needle in texts
    assert any(len(c["completion"]) >= 20_000 for c in CASES) and any(c["completion"] == "" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['style']}-{i}" for i, c in enumerate(CASES)])
def test_correctness_on_fixture_cases(case):
    score = rewards.get("correctness")(None, [case["completion"]], answer=[case["reference"]])
    assert score == [1.0 if case["correct"] else 0.0]


def test_correctness_on_real_gsm8k_references():
    """Every real reference's `#### N` is a number; the reference scores 1 against itself, N + 1 scores 0."""
    fn = rewards.get("correctness")
    finals = [extract_final_answer(row["answer"]) for row in GSM8K]
    values = [to_number(x) for x in finals]
    assert all(v is not None for v in values), [f for f, v in zip(finals, values) if v is None]
    wrong = [f"The answer is {v + 1:g}" for v in values]
    assert fn(None, [r["answer"] for r in GSM8K], answer=[r["answer"] for r in GSM8K]) == [1.0] * len(GSM8K)
    assert fn(None, wrong, answer=[r["answer"] for r in GSM8K]) == [0.0] * len(GSM8K)


def test_chat_message_completions_are_read():
    messages = [[{"role": "assistant", "content": "24 + 48 = 72\n#### 72"}]]
    assert rewards.get("correctness")(None, messages, answer=["#### 72"]) == [1.0]


def test_format_reward_and_partial_credit():
    fn = rewards.get("format", partial=0.25)
    texts = ["3 + 4 = 7\n#### 7", "#### 7", "3 + 4 = 7\n#### 7\nmore text", "no answer", "3+4\n#### seven"]
    assert fn(None, texts) == [1.0, 0.25, 0.25, 0.0, 0.0]


def test_length_penalty_is_dapo_soft_overlong():
    fn = rewards.get("length", max_length=10, buffer=4)
    ids = [[0] * n for n in (3, 6, 8, 10, 11)]
    assert fn(None, ["x"] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="0 < buffer < max_length"):
        rewards.get("length", max_length=4, buffer=4)


# ------------------------------------------------------------------------------------------------ semantic density
def rouge_l(generated: str, reference: str) -> tuple[float, float]:
    """rouge-score's ROUGE-L with the project's tokenizer (its LCS implementation is the oracle)."""

    class Tokenizer:
        def tokenize(self, text: str) -> list[str]:
            return normalised_tokens(text)

    score = rouge_scorer.RougeScorer(["rougeL"], tokenizer=Tokenizer()).score(reference, generated)["rougeL"]
    return score.precision, score.recall


@pytest.mark.parametrize("row", GSM8K[:60])
def test_lcs_units_equal_rouge_score_on_real_references(row):
    reference = reasoning_part(row["answer"])
    lines = reference.splitlines()
    generated = "\n".join(reversed(lines)) + " extra words 7"  # reordered: LCS < full
    ours = precision_recall("lcs", generated, reference)
    assert ours == pytest.approx(rouge_l(generated, reference))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("a b c 1 2 = + x".split()), max_size=40),
       st.lists(st.sampled_from("a b c 1 2 = + x".split()), max_size=40))
def test_bit_parallel_lcs_equals_dynamic_programming(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
    assert lcs_length(a, b) == table[-1][-1]


text_units = st.lists(st.sampled_from(["3 + 4 = 7", "7 * 2 = 14", "she has 5 apples", "14 - 5 = 9", "so 9 left"]),
                      max_size=6).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(text_units, text_units, st.sampled_from(["lcs", "tokens", "steps"]))
def test_semantic_density_bounds_and_swap_symmetry(generated, reference, units):
    precision, recall = precision_recall(units, generated, reference)
    swapped = precision_recall(units, reference, generated)
    assert 0.0 <= precision <= 1.0 and 0.0 <= recall <= 1.0
    assert swapped == pytest.approx((recall, precision))
    fn = rewards.get("semantic_density", units=units)
    f1 = fn(None, [generated + "\n#### 1"], answer=[reference + "\n#### 1"])[0]
    assert 0.0 <= f1 <= 1.0
    assert f1 == pytest.approx(fn(None, [reference], answer=[generated])[0])


@pytest.mark.parametrize("units", ["lcs", "tokens", "steps"])
def test_semantic_density_grows_as_reference_steps_are_added(units):
    fn = rewards.get("semantic_density", units=units)
    for row in GSM8K[:40]:
        steps = reasoning_part(row["answer"]).splitlines()
        scores = [fn(None, ["\n".join(steps[:k]) + "\n#### 0"], answer=[row["answer"]])[0] for k in range(len(steps) + 1)]
        assert all(b >= a - 1e-12 for a, b in zip(scores, scores[1:])), scores
        assert scores[0] == 0.0 and scores[-1] == pytest.approx(1.0)


def test_semantic_density_extremes_and_beta():
    ref = "5 + 3 = 8\n8 * 2 = 16\n#### 16"
    for units in ["lcs", "tokens", "steps"]:
        fn = rewards.get("semantic_density", units=units)
        assert fn(None, [ref, "", "#### 16", "zebra\nquokka"], answer=[ref] * 4) == [1.0, 0.0, 0.0, 0.0]
    half = "5 + 3 = 8\n#### 16"  # precision 1, recall < 1: F_beta falls as beta (the weight of recall) grows
    scores = [rewards.get("semantic_density", beta=b)(None, [half], answer=[ref])[0] for b in (0.5, 1.0, 2.0)]
    assert scores[0] > scores[1] > scores[2]


def test_embedding_units_with_an_embedding_table():
    """BERTScore-style matching with a real embedding table: identical text scores 1, idf changes weights."""

    class CharTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(ch) % 97 for ch in text]}

    encoder = EmbeddingTableEncoder(torch.nn.Embedding(97, 16, _weight=torch.randn(97, 16, generator=torch.Generator().manual_seed(0))), CharTokenizer())
    ref = "5 + 3 = 8\n8 * 2 = 16\n#### 16"
    plain = rewards.get("semantic_density", units="embedding", encoder=encoder)
    weighted = rewards.get("semantic_density", units="embedding", encoder=encoder, idf=True)
    same, other, empty = plain(None, [ref, "zzzz qqq\n#### 16", ""], answer=[ref] * 3)
    assert same == pytest.approx(1.0) and 0.0 <= other < same and empty == 0.0
    refs = [ref, "1 + 1 = 2\n#### 2"]
    assert weighted(None, ["5 + 3", "5 + 3"], answer=refs) != plain(None, ["5 + 3", "5 + 3"], answer=refs)
    with pytest.raises(ValueError, match="encoder='policy' needs the trainer"):
        rewards.get("semantic_density", units="embedding")
    with pytest.raises(ValueError, match="is not a local model directory"):
        rewards.get("semantic_density", units="embedding", encoder="/nonexistent/encoder")


# ------------------------------------------------------------------------------------------ robustness and errors
def test_rewards_never_raise_on_model_output_and_count_failures():
    fn = rewards.get("correctness")
    nasty = ["", "\x00\uffff", "\\boxed{" * 500, "#### " + "9" * 5000, "٣" * 100, None, 42, [{"content": None}]]
    scores = fn(None, nasty, answer=["#### 3"] * len(nasty))
    assert len(scores) == len(nasty) and all(s in (0.0, 1.0) for s in scores)

    @rewards.register("test_only_fragile")
    def fragile(samples, *, limit: int = 3):
        """1.0 per completion shorter than `limit`; raises on long ones, NaN on the empty one."""
        if any(len(c) >= limit for c in samples.completions):
            raise RuntimeError("too long")
        return [math.nan if c == "" else 1.0 for c in samples.completions]

    fragile_fn = rewards.get("test_only_fragile")
    assert fragile_fn(None, ["ok", "much too long", ""]) == [1.0, 0.0, 0.0]
    assert fragile_fn.failures == 2


def test_mix_weights_components_and_logging():
    mix = rewards.mix({"correctness": 1.0, "semantic_density": 0.5, "format": 0.0}, {"semantic_density": {"units": "tokens"}})
    completions = ["5 + 3 = 8\n#### 8", "#### 9"]
    total = mix(None, completions, answer=["5 + 3 = 8\n#### 8"] * 2)
    parts = mix.last_components
    assert set(parts) == {"correctness", "semantic_density", "format"}
    for i in range(2):
        assert total[i] == pytest.approx(parts["correctness"][i] + 0.5 * parts["semantic_density"][i])
    assert parts["correctness"] == [1.0, 0.0] and parts["format"] == [1.0, 0.5]


def test_configuration_errors_are_clear():
    with pytest.raises(ValueError, match="unknown reward 'nope'; available: correctness, format"):
        rewards.get("nope")
    with pytest.raises(ValueError, match="allowed values: 'lcs', 'tokens', 'steps', 'embedding'"):
        rewards.get("semantic_density", units="words")
    with pytest.raises(ValueError, match="weight of reward 'correctness' must be a finite number"):
        rewards.mix({"correctness": float("inf")})
    with pytest.raises(ValueError, match="weight of reward 'correctness' must be a finite number"):
        rewards.mix({"correctness": "1"})
    with pytest.raises(ValueError, match="does not use"):
        rewards.mix({"correctness": 1.0}, {"format": {"partial": 0.1}})
    with pytest.raises(ValueError, match="needs the dataset column 'answer'"):
        rewards.get("correctness")(None, ["#### 1"], question=["q"])
    with pytest.raises(ValueError, match="already registered"):
        rewards.register("correctness")(lambda samples: [])


def test_random_unicode_never_breaks_any_reward():
    rng = random.Random(0)
    alphabet = "0123456789 +-*/=#\\{}boxed$.,\n٣٤ßé→" + "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(50))
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300))) for _ in range(100)]
    for name in ["correctness", "format", "length", "semantic_density"]:
        scores = rewards.get(name)(None, texts, answer=texts[::-1])
        assert len(scores) == 100 and all(math.isfinite(s) for s in scores)
