"""Task families: seeded disjoint splits, correct references, the shortcut mixture of the warm start, stable ids."""

from __future__ import annotations

import re

import pytest

from harness.config import ConfigError, RunConfig, TaskConfig, validate
from harness.tasks import item_id, load_task, warm_start_target
from harness.tasks.multihop import generate_multihop
from rewards.builtin import answers_match
from rewards.text import extract_final_answer


def test_family_defaults_fill_what_the_config_leaves_out():
    assert (TaskConfig().ops, TaskConfig().shortcut_share) == ("+-", 0.5)
    hard = TaskConfig(name="arithmetic_hard")
    assert (hard.ops, hard.shortcut_share) == ("+-*", 0.0)
    assert TaskConfig(name="arithmetic", shortcut_share=0.2).shortcut_share == 0.2  # an explicit key wins
    with pytest.raises(ConfigError, match=r"task.shortcut_share: Input should be less than or equal to 1"):
        validate(RunConfig, {"task": {"shortcut_share": 1.5}}, "spec.yaml")
    with pytest.raises(ConfigError, match=r"(?s)spec.yaml: .*task.name: Input should be 'arithmetic', 'arithmetic_hard'"):
        validate(RunConfig, {"task": {"name": "kinship"}}, "spec.yaml")


def evaluate_chain(question: str) -> int:
    """Independent solver: resolve every `X=Y+d` fact of the question, then read the asked entity."""
    facts = dict(fact.split("=") for fact in question.split("? ")[0].split(". ")[:-1])
    values: dict[str, int] = {}
    while len(values) < len(facts):
        for name, rule in facts.items():
            match = re.fullmatch(r"(\w+)([+-])(\d)", rule)
            if match is None:
                values[name] = int(rule)
            elif match.group(1) in values:
                base, sign, step = values[match.group(1)], match.group(2), int(match.group(3))
                values[name] = base + step if sign == "+" else base - step
    return values[question.removesuffix("?").rsplit(" ", 1)[1]]


def test_multihop_questions_are_answered_by_their_references():
    records = generate_multihop(400, hops=3, distractors=2, seed=3)
    assert records == generate_multihop(400, hops=3, distractors=2, seed=3)
    assert len({r["question"] for r in records}) == 400
    for record in records:
        assert answers_match(extract_final_answer(record["answer"]), str(evaluate_chain(record["question"])))
        assert len(record["answer"].splitlines()) == 3 + 2  # start fact, three hops, the final line
        assert not answers_match(extract_final_answer(record["shortcut"]), extract_final_answer(record["answer"]))
    with pytest.raises(ValueError, match="steps \\(hops\\) >= 2"):
        generate_multihop(5, hops=1, distractors=0, seed=0)


@pytest.mark.parametrize("name", ["arithmetic", "multihop"])
def test_the_warm_start_learns_a_seeded_mixture_of_full_and_shortcut_solutions(name):
    config = TaskConfig(name=name, n_train=1000, n_test=200)
    splits = load_task(config)
    assert not {r["question"] for r in splits.train} & {r["question"] for r in splits.test}
    shortcuts = [warm_start_target(r) == r["shortcut"] for r in splits.train]
    assert 0.45 < sum(shortcuts) / len(shortcuts) < 0.55
    assert all(r["answer"] != r["shortcut"] for r in splits.train)  # a shortcut is never the full solution
    assert [warm_start_target(r) for r in splits.train] == [warm_start_target(r) for r in load_task(config).train]
    plain = load_task(TaskConfig(name=name, n_train=1000, n_test=200, shortcut_share=0.0))
    assert all(warm_start_target(r) == r["answer"] for r in plain.train)


def test_item_ids_are_stable_and_distinct():
    test = load_task(TaskConfig()).test
    ids = [item_id(r["question"]) for r in test]
    assert len(set(ids)) == len(ids) == 500
    assert ids == [item_id(r["question"]) for r in load_task(TaskConfig()).test]
    assert item_id(" " + test[0]["question"] + "\n") == ids[0] and re.fullmatch(r"[0-9a-f]{16}", ids[0])
