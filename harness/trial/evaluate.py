"""Scoring with lm-evaluation-harness: `python -m harness.trial.evaluate RUN_DIR [--tasks NAMES] [--limit N]`.

Scores a run's final checkpoint with `lm_eval.simple_evaluate` and merges the metrics into `RUN_DIR/eval.json`
under `lm_eval`. Local tasks (offline) are rendered from the shipped template `lm_eval_tasks/gsm8k_format.yaml`:
- `lph_test`: the run's own test split (the synthetic arithmetic task, or its GSM8K-format file), greedy exact match;
- `lph_test_sampled`: the same with n samples per problem at temperature 1, unbiased pass@k (k <= n);
- `lph_gsm8k_local`: any GSM8K-format jsonl given with `--data PATH`.
Standard and preset tasks (gsm8k, minerva_math, aime24, ...) need the Hugging Face hub: allowed only with
`HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0`, otherwise a clear error says how to use local files.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from string import Template
from typing import Any

from harness.cli import HelpFormatter
from rewards.builtin import answers_match
from rewards.text import extract_final_answer

TEMPLATES = Path(__file__).parent.parent / "lm_eval_tasks"
LOCAL_TASKS = ("lph_test", "lph_test_sampled", "lph_gsm8k_local")
PRESETS = {
    # the paper's benchmarks (companion version arXiv 2605.21235) -> tasks of the installed lm-eval (0.4.13)
    "aime24": "aime24",
    "aime25": "aime25",
    "math500": "minerva_math500",
    "gpqa_diamond": "gpqa_diamond_cot_zeroshot",
}
PASS_AT = (1, 2, 4, 8, 16, 32, 64)


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples with `correct` right (Chen et al., 2021): 1 - C(n - c, k) / C(n, k)."""
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def score_generations(reference: str, generations: list[str]) -> dict[str, float]:
    """`exact_match` of the first generation and, with several, `pass@k` for every k in PASS_AT up to n, all graded
    exactly as the `correctness` reward grades training completions."""
    gold = extract_final_answer(reference)
    verdicts = [answers_match(extract_final_answer(text), gold) for text in generations]
    scores = {"exact_match": float(verdicts[0])}
    if len(generations) > 1:
        scores |= {f"pass@{k}": pass_at_k(len(verdicts), sum(verdicts), k) for k in PASS_AT if k <= len(verdicts)}
    return scores


def render_task(directory: Path, task: str, data_file: Path, samples: int, max_gen_toks: int) -> None:
    """Write `<directory>/<task>.yaml` from the template: greedy for one sample, temperature-1 sampling for several."""
    metrics = ["exact_match"] + ([f"pass@{k}" for k in PASS_AT if k <= samples] if samples > 1 else [])
    metric_list = "\n".join(f"  - metric: \"{m}\"\n    aggregation: mean\n    higher_is_better: true" for m in metrics)
    text = Template((TEMPLATES / "gsm8k_format.yaml").read_text()).substitute(
        task=task, data_file=json.dumps(str(data_file.resolve())), do_sample=str(samples > 1).lower(),
        temperature=1.0 if samples > 1 else 0.0, max_gen_toks=max_gen_toks, repeats=samples, metric_list=metric_list)
    (directory / f"{task}.yaml").write_text(text)


def check_offline_tasks(tasks: list[str]) -> list[str]:
    """Resolve preset names; hub tasks while offline raise `ValueError` saying how to use local files instead."""
    import os

    resolved = [PRESETS.get(task, task) for task in tasks]
    hub = [task for task in resolved if task not in LOCAL_TASKS]
    offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0" or os.environ.get("HF_DATASETS_OFFLINE", "1") != "0"
    if hub and offline:
        raise ValueError(
            f"task(s) {', '.join(hub)} download their data from the Hugging Face hub, and the harness is offline. "
            "Score a local GSM8K-format jsonl with --tasks lph_gsm8k_local --data PATH, or set HF_HUB_OFFLINE=0 "
            "HF_DATASETS_OFFLINE=0 where the hub is reachable. Presets: "
            + ", ".join(f"{k} -> {v}" for k, v in PRESETS.items()) + " (none available offline)."
        )
    return resolved


def evaluate_run(run_dir: Path, tasks: list[str], limit: int | None = None, samples: int = 1,
                 data: Path | None = None, backend: str = "hf", batch_size: int = 32) -> dict[str, Any]:
    """Score `run_dir/checkpoint` on `tasks` with lm-eval; returns `{task: {metric: value}}` and the per-document
    generations under `samples`, and merges the metrics into `run_dir/eval.json`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.config import load_run_config
    from harness.trial.model import load_tokenizer
    from harness.tasks import load_task

    tasks = check_offline_tasks(tasks)
    config = load_run_config(run_dir / "config.yaml")
    include = run_dir / "lm_eval_tasks"
    include.mkdir(exist_ok=True)
    shutil.copy(TEMPLATES / "utils.py", include / "utils.py")
    test_file = include / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in load_task(config.task).test))
    render_task(include, "lph_test", test_file, 1, config.eval.max_new_tokens)
    render_task(include, "lph_test_sampled", test_file, max(samples, 2), config.eval.max_new_tokens)
    if "lph_gsm8k_local" in tasks:
        if data is None:
            raise ValueError("task lph_gsm8k_local needs --data PATH (a GSM8K-format jsonl)")
        render_task(include, "lph_gsm8k_local", data, samples, config.eval.max_new_tokens)
    checkpoint = run_dir / "checkpoint"
    model: Any
    if backend == "vllm":
        model = lm_eval.models.get_model("vllm")(pretrained=str(checkpoint), batch_size="auto")
    else:
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoModelForCausalLM

        policy = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True)
        model = HFLM(pretrained=policy, tokenizer=load_tokenizer(checkpoint), batch_size=batch_size)
    output = lm_eval.simple_evaluate(model=model, tasks=tasks, limit=limit, log_samples=True,
                                     task_manager=TaskManager(include_path=str(include)))
    metrics = {task: {key.split(",")[0]: value for key, value in values.items() if "_stderr" not in key
                      and isinstance(value, (int, float))} for task, values in output["results"].items()}
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
    parser.add_argument("--data", type=Path, default=None, help="GSM8K-format jsonl for lph_gsm8k_local")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf", help="lm-eval model backend (vllm: GPU)")
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.tasks.split(","), args.limit, args.samples, args.data, args.backend)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(result["metrics"], indent=2))


if __name__ == "__main__":
    main()
