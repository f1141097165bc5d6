"""Configuration errors name the file, the key and the allowed values; the GSM8K loader reads real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import ConfigError, load_run_config
from harness.sweep.spec import load_spec
from harness.tasks import load_task
from harness.tasks.arithmetic import generate_arithmetic
from harness.tasks.gsm8k import load_gsm8k_jsonl
from rewards.text import extract_final_answer, to_number

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,expected",
    [
        ("estimator: {name: nope}", r"estimator: unknown estimator 'nope'; available: attenuated_pairwise"),
        ("estimator: {name: attenuated_pairwise, score: max}", r"allowed values: 'mean', 'sum'"),
        ("trainer: {learning_rat: 0.1}", r"trainer: unknown GRPOConfig field 'learning_rat'; did you mean learning_rate"),
        ("task: {name: arithmetic, stepz: 2}", r"task.stepz: Extra inputs are not permitted; allowed keys: name, n_train"),
        ("modle: {}", r"modle: Extra inputs are not permitted; allowed keys: seed, task, model"),
        ("task: {name: mmlu}", r"task.name: Input should be 'arithmetic', 'arithmetic_hard', 'multihop', 'gsm8k' or 'jsonl'"),
        ("rewards: {correctness: .nan}", r"rewards / reward_params: weight of reward .correctness. must be a finite number"),
        ("rewards: {accuracy: 1.0}", r"unknown reward 'accuracy'; available: correctness, format, length"),
        ("task: {name: gsm8k}", r"task 'gsm8k' needs path"),
        ("- a\n- b", r"expected a mapping of keys at the top level"),
        ("a: [", r"invalid YAML"),
    ],
)
def test_run_config_errors_name_file_key_and_allowed_values(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_run_config(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_run_config(tmp_path / "missing.yaml")


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parent.parent / "sweeps"
    load_run_config(root / "single.yaml")
    for name in ["smoke", "ablation", "tune", "variants", "loss"]:
        load_spec(root / f"{name}.yaml")


def test_arithmetic_task_is_seeded_disjoint_and_correct():
    records = generate_arithmetic(300, steps=3, digits=2, seed=7)
    assert records == generate_arithmetic(300, steps=3, digits=2, seed=7)
    assert records != generate_arithmetic(300, steps=3, digits=2, seed=8)
    assert len({r["question"] for r in records}) == 300
    for record in records[:50]:
        expression = record["question"].removeprefix("Compute ").removesuffix(".")
        assert eval(expression) == to_number(extract_final_answer(record["answer"]))  # noqa: S307
        assert len(record["answer"].splitlines()) == 4  # three steps and the final line
    with pytest.raises(ValueError, match="only .* distinct problems exist"):
        generate_arithmetic(1000, steps=1, digits=1, seed=0)


def test_gsm8k_loader_on_real_data(tmp_path):
    records = load_gsm8k_jsonl(FIXTURES / "gsm8k_test_300.jsonl")
    assert len(records) == 300 and records[0]["answer"].endswith("#### 18")
    from harness.config import TaskConfig

    path = str(FIXTURES / "gsm8k_test_300.jsonl")
    splits = load_task(TaskConfig(name="gsm8k", path=path, train_path=path, n_train=200, n_test=50))
    assert len(splits.train) == 200 and len(splits.test) == 50
    bad = write(tmp_path, json.dumps({"question": "q"}) + "\n", "bad.jsonl")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing string field\(s\) answer"):
        load_gsm8k_jsonl(bad)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_gsm8k_jsonl(write(tmp_path, "{oops\n", "broken.jsonl"))
