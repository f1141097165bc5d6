"""The paper's setting in miniature (issue #22): chat prompts rendered by one function everywhere, benchmark files as
published, offline benchmark scoring with lm-eval, bf16 on the CPU, and `sweeps/paper-mini.yaml` end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import estimators
import rewards
from harness import paper_mini
from harness.config import ModelConfig, PromptConfig, RunConfig, TaskConfig
from harness.tasks import load_task, prompt_for, render_prompt, render_prompts
from harness.tasks.jsonl import load_benchmark, read_rows
from harness.trial.evaluate import check_offline_tasks, evaluate_run, score_generations
from harness.trial.model import load_policy, load_tokenizer, supervised_batch
from harness.trial.train import grpo_dataset, write_run_config
from harness.trial.trl_hooks import sequence_logprobs

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "tests" / "fixtures" / "benchmarks"
GSM8K = ROOT / "tests" / "fixtures" / "gsm8k_test_300.jsonl"
CHAT = PromptConfig(chat=True, system="You are a careful mathematician.",
                    chat_template_kwargs={"enable_thinking": False})


def jsonl_task(path: Path, train: Path | None = None, **prompt: object) -> TaskConfig:
    return TaskConfig(name="jsonl", path=str(path), train_path=str(train or path), prompt=prompt or {})


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper-mini policy: random-init Qwen3 architecture in bf16, local tokenizer with a chat template."""
    return paper_mini.build(tmp_path_factory.mktemp("paper-mini") / "policy")


# --- 1. prompts ------------------------------------------------------------------------------------------------------

def test_the_default_prompt_is_still_the_question_and_a_newline():
    record = {"question": "  Compute 1+2. ", "answer": "1+2=3\n#### 3"}
    assert render_prompt(record) == prompt_for(record["question"]) == "Compute 1+2.\n"
    assert render_prompt(record, TaskConfig().prompt) == "Compute 1+2.\n"
    assert TaskConfig().model_dump() == TaskConfig(prompt={}).model_dump()
    assert "prompt" not in TaskConfig().model_dump()  # default prompt: trial ids of existing sweeps unchanged
    assert render_prompt(record, PromptConfig(template="Q: {question}\n{instruction}\nA:", instruction="Be brief.",
                                              system="Sys")) == "Sys\nQ: Compute 1+2.\nBe brief.\nA:"


def test_chat_prompts_are_byte_identical_in_training_warm_start_scoring_and_lm_eval(policy_dir, tmp_path):
    """One record, `task.prompt.chat: true`: the prompt TRL trains on (and the ids it tokenizes it to), the prompt
    the warm start supervises after, the one the harness's scoring renders (`render_prompts(records,
    config.task.prompt, tokenizer)`, the call of harness.trial.scoring) and the context lm-eval generates from."""
    config = RunConfig.model_validate({"task": jsonl_task(BENCHMARKS / "minerva_math.jsonl").model_dump()
                                       | {"prompt": CHAT.model_dump()}, "model": {"path": str(policy_dir)},
                                       "eval": {"max_new_tokens": 4}})
    records = load_task(config.task).test[:3]
    model, tokenizer, _ = load_policy(config.model, config.task)
    expected = [render_prompt(r, config.task.prompt, tokenizer) for r in records]
    assert expected[0].startswith("<|im_start|>system\nYou are a careful mathematician.<|im_end|>\n<|im_start|>user\n")
    assert expected[0].endswith("within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")

    training = list(grpo_dataset(records, config.task.prompt, tokenizer)["prompt"])
    assert training == expected
    assert tokenizer(text=training)["input_ids"] == [tokenizer(p, add_special_tokens=False)["input_ids"]
                                                     for p in expected]  # TRL's tokenization: nothing added

    batch = supervised_batch(records, tokenizer, config.task.prompt)
    for row, labels, prompt in zip(batch["input_ids"], batch["labels"], expected):
        prompt_ids = row[: int((labels == -100).long().argmin())].tolist()  # labels -100 until the solution starts
        assert prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(prompt_ids) == prompt

    assert render_prompts(records, config.task.prompt, tokenizer) == expected  # the harness's scoring

    run = tmp_path / "run"
    shutil.copytree(policy_dir, run / "checkpoint")
    write_run_config(config, run)
    result = evaluate_run(run, ["lph_test"], limit=3)
    contexts = [sample["arguments"][0][0] if isinstance(sample["arguments"][0], (list, tuple))
                else sample["arguments"]["gen_args_0"]["arg_0"] for sample in result["samples"]["lph_test"]]
    assert contexts == expected


def test_a_missing_chat_template_is_a_load_time_error_naming_the_model(policy_dir, tmp_path):
    bare = tmp_path / "no-template"
    shutil.copytree(policy_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((bare / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(settings))
    task = jsonl_task(BENCHMARKS / "aime24.jsonl", chat=True)
    with pytest.raises(ValueError, match=rf"tokenizer of the model {bare} has no chat template"):
        load_policy(ModelConfig(path=str(bare)), task)
    with pytest.raises(ValueError, match=r"the tiny model: model.path unset\) has no chat template"):
        load_policy(ModelConfig(), TaskConfig(prompt={"chat": True}))
    load_policy(ModelConfig(path=str(bare)), jsonl_task(BENCHMARKS / "aime24.jsonl"))  # chat: false needs none


# --- 2. benchmark files as published ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["aime24.jsonl", "aime25.jsonl", "amc23.parquet", "minerva_math.jsonl",
                                  "math500.json"])
def test_published_files_load_as_jsonl_and_grade_as_the_reward_grades_their_references(name):
    """The `correctness` reward gives the same verdict against a record's `answer` as against the file's own
    reference (its solution when that ends in \\boxed{}, else its final answer), for right, wrong and differently
    written completions. (Against a bare LaTeX answer such as MATH-500's `\\frac{1}{2}` the reward alone reads the
    last number, 2; the record's `#### \\frac{1}{2}` line grades it right.)"""
    path = BENCHMARKS / name
    splits = load_task(jsonl_task(path))
    rows = read_rows(path)
    assert len(splits.test) == len(rows) and len(splits.train) == len(rows)
    reward = rewards.get("correctness")
    for row, record in zip(rows, splits.test):
        assert record["question"] == row["problem"]
        boxed = "\\boxed{" in row.get("solution", "")
        published = row["solution"] if boxed else str(row["answer"])  # the reward reads a bare "\\frac{1}{2}" as 2
        final = str(row["answer"]) if "answer" in row else published.rsplit("\\boxed{", 1)[1].rsplit("}", 1)[0]
        completions = [f"So the answer is \\boxed{{{final}}}.", f"#### {final}", "\\boxed{99999}", "I give up."]
        ours = reward(None, completions, answer=[record["answer"]] * len(completions))
        assert ours == reward(None, completions, answer=[published] * len(completions)) == [1.0, 1.0, 0.0, 0.0]


def test_gsm8k_files_load_the_same_under_jsonl():
    as_gsm8k = load_task(TaskConfig(name="gsm8k", path=str(GSM8K), train_path=str(GSM8K), n_test=50))
    as_jsonl = load_task(jsonl_task(GSM8K).model_copy(update={"n_test": 50}))
    assert [(r["question"], r["answer"]) for r in as_jsonl.test] == [(r["question"], r["answer"]) for r in as_gsm8k.test]


def test_semantic_density_without_reference_solutions_is_a_load_time_error_naming_the_file():
    amc = jsonl_task(BENCHMARKS / "amc23.parquet")
    with pytest.raises(ValueError, match=r"amc23.parquet: 4 of 4 records have no reference solution"):
        load_task(amc, {"correctness": 1.0, "semantic_density": 0.5})
    assert len(load_task(amc, {"correctness": 1.0, "semantic_density": 0.0}).test) == 4
    assert len(load_task(jsonl_task(BENCHMARKS / "aime24.jsonl"), {"semantic_density": 0.5}).test) == 5


def test_field_names_and_errors():
    records = load_benchmark(BENCHMARKS / "math500.json", answer_field="unique_id")
    assert records[0]["answer"].endswith("#### made-up/0.json")
    with pytest.raises(ValueError, match=r"aime25.jsonl:1: no question \(looked for statement\)"):
        load_benchmark(BENCHMARKS / "aime25.jsonl", question_field="statement")
    with pytest.raises(ValueError, match=r"missing.jsonl: no such file"):
        load_benchmark(BENCHMARKS / "missing.jsonl")


# --- 3. offline benchmark scoring ------------------------------------------------------------------------------------

def test_multiple_choice_is_graded_by_its_letter():
    records = load_benchmark(BENCHMARKS / "gpqa_diamond.csv")
    assert [r["answer"] for r in records] == [r["answer"] for r in load_benchmark(BENCHMARKS / "gpqa_diamond.csv")]
    assert "(A) " in records[0]["question"] and "(D) " in records[0]["question"]
    letter = records[0]["answer"].removeprefix("#### ")
    wrong = next(x for x in "ABCD" if x != letter)
    for text in [f"\\boxed{{{letter}}}", f"\\boxed{{({letter})}}", f"#### {letter}", f"The answer is ({letter}).",
                 f"\\boxed{{\\text{{{letter}}}}}"]:
        assert score_generations(records[0]["answer"], [text])["exact_match"] == 1.0, text
    for text in [f"\\boxed{{{wrong}}}", "\\boxed{Alpha}", "no idea"]:
        assert score_generations(records[0]["answer"], [text])["exact_match"] == 0.0, text


def test_presets_run_offline_from_a_data_directory(policy_dir, tmp_path):
    presets = ["aime24", "aime25", "math500", "gpqa_diamond"]
    assert check_offline_tasks(presets, BENCHMARKS) == presets
    with pytest.raises(ValueError, match=r"aime24.*--data-dir DIR \(eval.data_dir\).*not found in"):
        check_offline_tasks(["aime24"], tmp_path)
    config = RunConfig.model_validate({"task": jsonl_task(BENCHMARKS / "minerva_math.jsonl").model_dump()
                                       | {"prompt": {"chat": True}}, "model": {"path": str(policy_dir)},
                                       "eval": {"max_new_tokens": 8}})
    run = tmp_path / "run"
    shutil.copytree(policy_dir, run / "checkpoint")
    write_run_config(config, run)
    result = evaluate_run(run, presets + ["lph_local"], limit=2, data=BENCHMARKS / "amc23.parquet",
                          data_dir=BENCHMARKS)
    offline = [f"lph_{preset}" for preset in presets]  # the harness's prompt and grading: not the hub tasks' names
    assert set(result["metrics"]) == set(offline) | {"lph_local"}
    tokenizer = load_tokenizer(run / "checkpoint")
    for task in offline:
        samples = result["samples"][task]
        assert len(samples) == 2
        for sample in samples:  # lm-eval's number is the harness's grading of the same generation
            doc = sample["doc"]
            assert doc["prompt"] == render_prompt(doc, config.task.prompt, tokenizer)
            verdict = score_generations(doc["answer"], sample["filtered_resps"][0])
            assert sample["exact_match"] == verdict["exact_match"]
    assert json.loads((run / "eval.json").read_text())["lm_eval"]["lph_gpqa_diamond"]["exact_match"] == \
        result["metrics"]["lph_gpqa_diamond"]["exact_match"]


# --- 4. bf16 on the CPU ----------------------------------------------------------------------------------------------

def test_attenuated_advantages_from_a_bf16_policy_match_float32(policy_dir):
    """The same completions scored by the policy in bf16 and in float32: sequence log-probs summed in float32
    (harness.trial.trl_hooks.sequence_logprobs) give attenuated advantages within 0.01 (absolute; mean |A| is about
    0.25-0.3 here) of the float32 policy's, closer than a bf16 sum of the same bf16 token log-probs."""
    from transformers import AutoModelForCausalLM

    generator = torch.Generator().manual_seed(0)
    groups, size, prompt_len, length = 16, 8, 20, 64
    ids = torch.randint(3, 600, (groups * size, prompt_len + length), generator=generator)
    lengths = torch.randint(8, length + 1, (groups * size,), generator=generator)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()

    def token_logprobs(dtype: torch.dtype) -> torch.Tensor:
        model = AutoModelForCausalLM.from_pretrained(policy_dir, local_files_only=True, dtype=dtype)
        with torch.no_grad():
            logits = model(ids).logits[:, prompt_len - 1 : -1]
        return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_len:, None]).squeeze(-1)

    full, half = token_logprobs(torch.float32), token_logprobs(torch.bfloat16)
    assert half.dtype == torch.bfloat16
    reference, summed = sequence_logprobs(full, mask), sequence_logprobs(half, mask)
    assert summed.dtype == torch.float32
    bf16_sum = (half * mask.to(half.dtype)).sum(dim=1).float()
    rewards_ = torch.randint(0, 2, (groups, size), generator=generator).float()
    valid = torch.ones(groups, size, dtype=torch.bool)
    for score in ("mean", "sum"):
        estimator = estimators.get("attenuated_pairwise", beta=1.0, score=score)
        advantages = [estimator(rewards_, seq_logprobs=s.view(groups, size), lengths=lengths.view(groups, size).float(),
                                mask=valid) for s in (reference, summed, bf16_sum)]
        error, error_bf16_sum = ((a - advantages[0]).abs().max().item() for a in advantages[1:])
        assert error < 0.01, (score, error)
        assert error < error_bf16_sum, (score, error, error_bf16_sum)


def test_a_bf16_trial_finishes_on_the_cpu(tmp_path):
    from tests.conftest import smoke_config
    from harness.trial.train import run_trial

    config = smoke_config(**{"trainer.bf16": True})
    summary = run_trial(config, tmp_path / "bf16")
    rows = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == config.trainer["max_steps"] and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert "accuracy" in summary["eval"]
    assert (summary["param_dtype"], summary["autocast_dtype"]) == ("float32", "bfloat16")  # fp32 master weights


# --- 5. the paper in miniature ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_paper_mini_runs_end_to_end_with_a_report_of_four_arms(tmp_path):
    """`make paper-mini` in miniature: build the policy, run sweeps/paper-mini.yaml (4 estimators x 1 seed, chat
    prompts, bf16, lm-eval presets offline) into a fresh runs directory and read its report. About 1-2 minutes on two
    cores (66 s of sweep with the machine's load at 5)."""
    policy = paper_mini.build(tmp_path / "policy")
    sweep = tmp_path / "sweep"  # --runs-dir: the sweep's own directory
    subprocess.run([sys.executable, "-m", "harness.sweep", "sweeps/paper-mini.yaml", "--runs-dir", str(sweep),
                    "--set", f"base.model.path={policy}"], check=True, cwd=ROOT)
    report = json.loads((sweep / "report.json").read_text())
    trained = [arm for arm in report["arms"] if arm["arm"] != "warm_start"]
    assert len(trained) == 4
    summaries = [json.loads(p.read_text()) for p in (sweep / "trials").glob("*/summary.json")]
    lm_eval_keys = {f"lm_eval_lph_{task}_exact_match" for task in ("aime24", "aime25", "math500", "gpqa_diamond")}
    assert sum(lm_eval_keys <= set(s["eval"]) for s in summaries) == 4


# --- 6. paper-mini is paper.yaml in miniature ------------------------------------------------------------------------

MINI_MAY_DIFFER = {
    # sizes
    "base.trainer.num_generations", "base.trainer.per_device_train_batch_size",
    "base.trainer.gradient_accumulation_steps", "base.trainer.max_steps", "base.trainer.max_completion_length",
    "base.eval.n_examples", "base.eval.max_new_tokens", "base.eval.batch_size", "grid.rewards.semantic_density",
    "seeds",
    # paths and where it runs
    "name", "base.task.path", "base.task.train_path", "base.model.path", "base.eval.data_dir", "executor",
    # what only a GPU or the hub gives: vLLM rollouts, lm-eval's data (local files here, the hub in paper.yaml)
    "base.trainer.use_vllm", "base.eval.lm_eval",
}


def spec_leaves(data: object, prefix: str = "") -> dict[str, object]:
    """A YAML spec as {dotted key: value} (the executor as one key: where the sweep runs)."""
    if isinstance(data, dict) and prefix != "executor.":
        return {key: value for k, v in data.items() for key, value in spec_leaves(v, f"{prefix}{k}.").items()}
    return {prefix.rstrip("."): data}


def test_paper_mini_differs_from_paper_only_in_sizes_and_paths():
    """The task, prompt (Qwen3's thinking included), estimators, rewards and precision keys of sweeps/paper-mini.yaml
    are paper.yaml's; a key that differs, or that one spec has and the other lacks, must be in MINI_MAY_DIFFER."""
    import yaml

    paper, mini = (spec_leaves(yaml.safe_load((ROOT / "sweeps" / name).read_text()))
                   for name in ("paper.yaml", "paper-mini.yaml"))
    differing = {key for key in paper.keys() | mini.keys() if paper.get(key, "(absent)") != mini.get(key, "(absent)")}
    assert differing <= MINI_MAY_DIFFER, sorted(differing - MINI_MAY_DIFFER)
    prompts = [{k: v for k, v in spec.items() if k.startswith("base.task.prompt")} for spec in (paper, mini)]
    assert prompts == [{"base.task.prompt.chat": True}] * 2  # Qwen3's thinking on in both (no enable_thinking)


@pytest.mark.parametrize("reference", ["#### 204", "Adding the terms gives \\boxed{204}."])
def test_a_truncated_trace_scores_wrong_not_as_its_last_number(reference):
    """A thinking trace cut off by the token limit before any answer marker is wrong, even where the last number it
    reached is the reference's (AIME's false hits); the same number stated as an answer, or closing a sentence, is
    right."""
    truncated = ["<think>\nLet me try 17 * 12 = 204, then check", "<think>\nSo m + n = 204",
                 "<think>\n204 could be it but 17 * 12 = 204"]
    stated = ["<think>\n17 * 12 = 204\n</think>\n\nThe answer is \\boxed{204}.", "#### 204", "So m + n = 204."]
    scored = rewards.get("correctness")(None, truncated + stated, answer=[reference] * 6)
    assert scored == [0.0] * 3 + [1.0] * 3
    assert [score_generations(reference, [text])["exact_match"] for text in truncated + stated] == scored
