"""lm-eval scoring: real lm-eval runs on the warm-started tiny model agree with the harness's own scoring."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import pytest

import rewards
from harness.config import EvalConfig, ModelConfig, RunConfig, TaskConfig
from harness.trial.evaluate import TEMPLATES, check_offline_tasks, evaluate_run, render_task, score_generations
from harness.trial.model import ensure_warm_start, load_policy
from harness.trial.scoring import generate_greedy, greedy_accuracy, pass_at_k, score_items
from harness.tasks import load_task, prompt_for
from harness.trial.train import write_run_config

CASES = [json.loads(line) for line in
         (Path(__file__).parent / "fixtures" / "answer_cases.jsonl").read_text(encoding="utf-8").splitlines()]


def test_pass_at_k_is_the_unbiased_estimator():
    """pass@k equals the share of k-subsets of the n samples that hold a correct one (brute force)."""
    for n, correct in [(4, 0), (4, 1), (6, 2), (8, 5), (5, 5)]:
        samples = [True] * correct + [False] * (n - correct)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            assert pass_at_k(n, correct, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_evaluation_grades_exactly_like_the_correctness_reward_on_the_fixture_cases():
    reward = rewards.get("correctness")
    for case in CASES:
        trained = reward(None, [case["completion"]], answer=[case["reference"]])[0]
        assert score_generations(case["reference"], [case["completion"]])["exact_match"] == trained


def test_hub_tasks_offline_give_a_clear_error():
    with pytest.raises(ValueError, match=r"gsm8k download their data from the Hugging Face hub.*--tasks lph_local --data PATH"):
        check_offline_tasks(["gsm8k"])
    with pytest.raises(ValueError, match=r"aime24.*Presets: aime24 -> aime24, aime25 -> aime25, math500"):
        check_offline_tasks(["aime24"])
    assert check_offline_tasks(["lph_test", "lph_gsm8k_local"]) == ["lph_test", "lph_gsm8k_local"]


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose checkpoint is the default warm start (28% greedy accuracy on its test split)."""
    config = RunConfig.model_validate({"eval": {"n_examples": 24}})
    run = tmp_path_factory.mktemp("warm-run")
    shutil.copytree(ensure_warm_start(config.model, config.task), run / "checkpoint")
    write_run_config(config, run)
    return run


def test_lm_eval_greedy_exact_match_equals_the_harness_scoring(warm_run):
    result = evaluate_run(warm_run, ["lph_test"], limit=24)
    model, tokenizer, _ = load_policy(ModelConfig(), TaskConfig())
    records = load_task(TaskConfig()).test[:24]
    ours = greedy_accuracy(model, tokenizer, records, max_new_tokens=48, batch_size=24)
    assert result["metrics"]["lph_test"]["exact_match"] == pytest.approx(ours["accuracy"])
    assert 0 < ours["accuracy"] < 1  # a real mix of right and wrong answers, not a trivial agreement
    generations = [s["filtered_resps"][0][0] for s in result["samples"]["lph_test"]]
    assert [g.strip() for g in generations] == [c.strip() for c in ours["completions"]]
    assert json.loads((warm_run / "eval.json").read_text())["lm_eval"]["lph_test"]["exact_match"] == pytest.approx(
        ours["accuracy"])


def test_lm_eval_pass_at_k_matches_its_own_samples(warm_run):
    result = evaluate_run(warm_run, ["lph_test_sampled"], limit=6, samples=4)
    metrics = result["metrics"]["lph_test_sampled"]
    per_doc = []
    for sample in result["samples"]["lph_test_sampled"]:
        generations = sample["filtered_resps"][0]
        assert len(generations) == 4
        per_doc.append(score_generations(sample["doc"]["answer"], generations))
    for key in ["pass@1", "pass@2", "pass@4"]:
        assert metrics[key] == pytest.approx(sum(d[key] for d in per_doc) / len(per_doc))
    assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"]


def test_prompt_format_is_shared(tmp_path):
    render_task(tmp_path, "lph_check", tmp_path / "data.jsonl", 1, 48)
    text = (tmp_path / "lph_check.yaml").read_text()
    assert 'doc_to_text: "{{prompt}}"' in text  # each document's prompt, rendered by harness.tasks.render_prompt
    assert 'until: ["\\n\\n\\n"]' in text
    assert prompt_for("  Compute 1+2. ") == "Compute 1+2.\n"
    model, tokenizer, _ = load_policy(ModelConfig(), TaskConfig())
    question = load_task(TaskConfig()).train[0]["question"]
    assert re.search(r"\n#### -?\d+$", generate_greedy(model, tokenizer, [prompt_for(question)], 48, 1)[0])


def test_the_warm_start_lands_in_the_pass_rate_band():
    """RL starts from a policy that solves some but not most test problems: 20% to 60% greedy accuracy."""
    model, tokenizer, _ = load_policy(ModelConfig(), TaskConfig())
    accuracy = greedy_accuracy(model, tokenizer, load_task(TaskConfig()).test, 48, 50)["accuracy"]
    assert 0.2 <= accuracy <= 0.6, accuracy


def test_lm_eval_grades_the_harness_samples_as_the_harness_does(warm_run):
    """The same sampled generations through the lm-eval task's `process_results` (lph_test_sampled's grading) give
    the harness's per-item pass@1 and pass@k."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lph_task_utils", TEMPLATES / "utils.py")
    task_utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task_utils)
    model, tokenizer, _ = load_policy(ModelConfig(), TaskConfig())
    records = load_task(TaskConfig()).test[:12]
    config = EvalConfig(samples=4, greedy=False)
    items, completions = score_items(model, tokenizer, records, rewards.mix({"correctness": 1.0}), config, seed=0)
    for n, (item, record) in enumerate(zip(items, records)):
        graded = task_utils.process_results(record, [completions[4 * n : 4 * n + 4]])
        assert {k: graded[k] for k in ("pass@1", "pass@2", "pass@4")} == {k: item[k] for k in ("pass@1", "pass@2",
                                                                                                  "pass@4")}
    assert 0 < sum(i["pass@1"] for i in items) < len(items)  # right and wrong samples: not a trivial agreement


def lm_eval_task_utils():
    """The lm-eval tasks' `utils.py` (copied next to each run's task files), loaded as lm-eval loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lph_task_utils", TEMPLATES / "utils.py")
    task_utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task_utils)
    return task_utils


def test_gpqa_is_graded_by_one_letter_in_training_the_harness_scorer_and_lm_eval():
    """GPQA records (`#### <letter>`): the `correctness` reward as TRL calls it, the harness's scorer
    (harness.trial.scoring.grade on the trainer's mix) and the lm-eval tasks' `process_results` give the same verdict
    on every completion: the letter its final answer starts with. (Before: the reward compared letters with
    math-verify, which took `#### b` for B and `#### B) 42 kJ` for wrong, while lm-eval read the letter.)"""
    from harness.tasks.jsonl import load_benchmark
    from harness.trial.model import build_tokenizer
    from harness.trial.scoring import grade

    record = load_benchmark(Path(__file__).parent / "fixtures" / "benchmarks" / "gpqa_diamond.csv")[0]
    letter = record["answer"].removeprefix("#### ")
    wrong = next(x for x in "ABCD" if x != letter)
    right = [f"#### {letter}", f"\\boxed{{{letter}}}", f"\\boxed{{({letter})}}", f"The answer is ({letter}).",
             f"\\boxed{{\\text{{{letter}}}}}", f"Reasoning.\n#### {letter}) the second option"]
    wrong_ones = [f"#### {wrong}", f"#### {letter.lower()}", "\\boxed{Alpha}", f"It could be {letter}",
                  f"\\boxed{{{wrong}}} not {letter}"]
    completions = right + wrong_ones
    answers = [record["answer"]] * len(completions)
    prompts = [record["question"]] * len(completions)
    training = rewards.get("correctness")(prompts, completions, answer=answers)
    scorer, _, _ = grade(rewards.mix({"correctness": 1.0}), build_tokenizer(), prompts, completions, answers)
    process_results = lm_eval_task_utils().process_results
    lm_eval = [process_results(record, [[text]])["exact_match"] for text in completions]
    assert training == scorer == lm_eval == [1.0] * len(right) + [0.0] * len(wrong_ones)

