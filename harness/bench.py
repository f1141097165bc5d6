"""Benchmarks: `python -m harness.bench {estimators,rewards,train,eval,floor,sweep,all} ... [--out runs/bench]
[--threads N]`.

Each benchmark prints a table and writes `<out>/<name>.json`. Ratios compare figures measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from harness.cli import HelpFormatter
from harness.threads import set_threads

BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}


def benchmark(name: str) -> Callable[[Callable[[argparse.Namespace], dict[str, Any]]], Any]:
    """Decorator registering a benchmark function that returns its JSON-serialisable results."""

    def decorator(fn: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable[[argparse.Namespace], dict[str, Any]]:
        BENCHMARKS[name] = fn
        return fn

    return decorator


def time_call(fn: Callable[[], Any], *, min_seconds: float = 0.2, sync: Callable[[], None] | None = None) -> float:
    """Median seconds per call of `fn` over repeats filling about `min_seconds` (after one warm-up call)."""
    fn()
    samples: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < 5:
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block; the thread count before it is restored after (the benchmarks that run
    next keep the machine's threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@benchmark("estimators")
def bench_estimators(args: argparse.Namespace) -> dict[str, Any]:
    """Microseconds per call for B=1024 groups and G in {4, 8, 16, 64}, every registered estimator with its default
    parameters and the inputs it reads (a mix of 2 rewards; token-level ones over T = 49 tokens), CPU (and CUDA if
    present). The estimators are timed in turn, three rounds,
    and each keeps its fastest round: load on a shared machine inflates a round, never deflates it."""
    import estimators

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else None
        for g in (4, 8, 16, 64):
            gen = torch.Generator().manual_seed(0)
            rewards = (torch.rand(1024, g, generator=gen) < 0.5).float().to(device)
            lp = (-20 * torch.rand(1024, g, generator=gen)).to(device)
            n = torch.randint(5, 50, (1024, g), generator=gen).float().to(device)
            tokens = torch.arange(int(n.max()), device=device) < n.unsqueeze(-1)  # [B, G, T] completion tokens
            extra = {"greedy_rewards": rewards[:, 0], "weights": torch.tensor([1.0, 0.5], device=device),
                     "components": torch.stack([rewards, torch.rand(1024, g, generator=gen).to(device)], dim=-1),
                     "token_logprobs": (-3 * torch.rand(tokens.shape, generator=gen)).to(device),
                     "sum_pi_squared": torch.rand(tokens.shape, generator=gen).to(device)}
            calls = {}
            for name in estimators.available():
                est = estimators.get(name)
                inputs = {"seq_logprobs": lp} if est.needs_logprobs else {}
                inputs |= {"lengths": n} if est.needs_lengths else {}
                inputs |= {key: extra[key] for key in est.extra_inputs} | ({"mask": tokens} if est.token_level else {})
                calls[name] = lambda est=est, inputs=inputs: est(rewards, **inputs)
            timings = {name: float("inf") for name in calls}
            for _ in range(1 if args.quick else 3):
                for name, call in calls.items():
                    timings[name] = min(timings[name], time_call(call, sync=sync) * 1e6)
            for name, us in timings.items():
                rows.append(
                    {"device": device, "B": 1024, "G": g, "estimator": name, "us_per_call": round(us, 1),
                     "ratio_to_group_mean": round(us / timings["group_mean"], 2)}
                )
    return {"rows": rows}


@benchmark("rewards")
def bench_rewards(args: argparse.Namespace) -> dict[str, Any]:
    """Completions per second of every reward (and semantic-density unit) on one core, on 3-step arithmetic
    solutions with one wrong step."""
    import rewards
    from harness.trial.model import build_tokenizer
    from harness.tasks.arithmetic import generate_arithmetic
    from rewards.semantic import EmbeddingTableEncoder

    records = generate_arithmetic(2000, steps=3, digits=2, seed=0)
    references = [r["answer"] for r in records]
    completions = [r["answer"].replace("=", "= 1 +", 1) for r in records]
    tokenizer = build_tokenizer()
    encoder = EmbeddingTableEncoder(torch.nn.Embedding(len(tokenizer), 64), tokenizer)
    variants = {"correctness": {}, "format": {}, "length": {}, "semantic_density:lcs": {"units": "lcs"},
                "semantic_density:tokens": {"units": "tokens"}, "semantic_density:steps": {"units": "steps"},
                "semantic_density:embedding": {"units": "embedding", "encoder": encoder}}
    count = 200 if args.quick else len(completions)
    rows = []
    with one_thread():
        for label, params in variants.items():
            fn = rewards.get(label.split(":")[0], **params)
            seconds = time_call(lambda: fn(None, completions[:count], answer=references[:count]), min_seconds=0.5)
            rows.append({"reward": label, "completions_per_second": round(count / seconds)})
    return {"rows": rows}


@benchmark("train")
def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per step and tokens/s of plain TRL GRPOTrainer and of the harness trainer (group_mean, and the
    attenuated estimator that needs one extra log-prob pass) on the same model, data and config, in one run."""
    from harness.config import RunConfig
    from harness.tasks import load_task
    from harness.trial.model import WARM_START_MARKER, ensure_warm_start
    from harness.trial.train import build_trainer

    steps = 5 if args.quick else 30
    rows = []
    for label, estimator in [("plain GRPOTrainer", "group_mean"), ("harness group_mean", "group_mean"),
                             ("harness attenuated_pairwise", "attenuated_pairwise")]:
        config = RunConfig.model_validate({"trainer": {"max_steps": steps, "per_device_train_batch_size": 32},
                                           "estimator": {"name": estimator, "scale": "group"}})
        trainer = build_trainer(config, args.out / "train-bench", load_task(config.task, config.rewards),
                                plain=label.startswith("plain")).trainer
        started = time.perf_counter()
        trainer.train()
        seconds = (time.perf_counter() - started) / steps
        tokens = trainer.state.log_history[-2].get("num_tokens", 0.0)
        rows.append({"trainer": label, "seconds_per_step": round(seconds, 4),
                     "tokens_per_second": round(tokens / (seconds * steps))})
    warm_seconds = json.loads((ensure_warm_start(config.model, config.task) / WARM_START_MARKER).read_text())["seconds"]
    for row in rows:
        row["ratio_to_plain"] = round(row["seconds_per_step"] / rows[0]["seconds_per_step"], 3)
    return {"rows": rows, "warm_start_seconds": round(warm_seconds, 1)}


def timed(label: str, completions: int, fn: Callable[[], Any]) -> dict[str, Any]:
    """`{scorer: label, completions, seconds, completions_per_second}` of one call of `fn`."""
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    return {"scorer": label, "completions": completions, "seconds": round(seconds, 2),
            "completions_per_second": round(completions / seconds, 1)}


def noise_rows(vocab: int = 151_936, rows: int = 8) -> list[dict[str, Any]]:
    """Milliseconds per row per decoding step of the Gumbel noise alone at `vocab` tokens on the CPU: the reference
    sampler's (per-row generators, float64) and the harness's (`counter_gumbel`, all rows at once)."""
    from harness.trial.reference_sampler import ReferenceSampler
    from harness.trial.scoring import counter_gumbel, sample_seed

    seeds = [sample_seed(0, "noise", r) for r in range(rows)]
    reference = ReferenceSampler(seeds, 1.0, 1.0)
    keys = torch.tensor(seeds)
    timings = {"reference sampler": time_call(lambda: reference.noise(vocab), min_seconds=1.0),
               "harness sampler": time_call(lambda: counter_gumbel(keys, 0, vocab), min_seconds=1.0)}
    return [{"noise": label, "vocab": vocab, "rows": rows, "ms_per_row_step": round(seconds / rows * 1e3, 3)}
            for label, seconds in timings.items()]


OLD_ROWS = 100
"""eval.batch_size before the default became `rows_that_fit` (harness.trial.scoring)."""


class Scoring(NamedTuple):
    """What the eval and floor benchmarks score: the default config, its warm start, the prompts of its first test
    items, each item's k sample seeds and the rows per batch `decode` takes by default."""

    config: Any
    model: Any
    tokenizer: Any
    prompts: list[str]
    seeds: list[list[int]]
    batch: int


def default_scoring(n: int) -> Scoring:
    """`Scoring` of the default config's first `n` test items."""
    from harness.config import RunConfig
    from harness.tasks import item_id, load_task, render_prompts
    from harness.trial.model import load_policy
    from harness.trial.scoring import rows_that_fit, sample_seed

    config = RunConfig.model_validate({"eval": {"n_examples": n}})
    model, tokenizer, _ = load_policy(config.model, config.task)
    records = load_task(config.task).test[:n]
    prompts = render_prompts(records, config.task.prompt, tokenizer)
    seeds = [[sample_seed(config.seed, item_id(r["question"]), j) for j in range(config.eval.samples)]
             for r in records]
    batch = config.eval.batch_size or rows_that_fit(model, tokenizer, prompts, config.eval.max_new_tokens)
    return Scoring(config, model, tokenizer, prompts, seeds, batch)


@benchmark("eval")
def bench_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Sampled held-out scoring on the CPU, the same items, policy (the default warm start) and k samples per item
    (eval.samples) and rows per batch (`rows_that_fit`) in one run: the reference sampler (`reference_generate`),
    the harness sampler (harness.trial.scoring.decode; also at OLD_ROWS rows per batch), Hugging Face
    `generate(do_sample=True)` and lm-eval (lph_test_sampled, HF backend), in completions per second; `ratio` = the
    harness sampler's over the reference's. `noise`: the
    Gumbel noise alone at Qwen3's 151,936-token vocabulary (`noise_rows`)."""
    import shutil
    import tempfile

    from harness.trial.evaluate import evaluate_run
    from harness.trial.model import ensure_warm_start
    from harness.trial.reference_sampler import reference_generate
    from harness.trial.scoring import decode
    from harness.trial.train import write_run_config

    n = 4 if args.quick else 100
    config, model, tokenizer, prompts, seeds, batch = default_scoring(n)
    k, tokens = config.eval.samples, config.eval.max_new_tokens
    repeated = [p for p in prompts for _ in range(k)]

    def hf_sample() -> None:
        for start in range(0, n, max(1, batch // k)):
            encoded = tokenizer(prompts[start : start + max(1, batch // k)], return_tensors="pt", padding=True,
                                add_special_tokens=False)
            with torch.no_grad():
                model.generate(**encoded, do_sample=True, num_return_sequences=k, max_new_tokens=tokens,
                               temperature=config.eval.temperature, top_p=config.eval.top_p, top_k=None,
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)

    rows = [timed("reference sampler", n * k, lambda: reference_generate(
                model, tokenizer, repeated, [s for row in seeds for s in row], tokens, batch)),
            timed("harness sampler", n * k, lambda: decode(model, tokenizer, prompts, seeds, tokens, batch)),
            timed(f"harness sampler, {OLD_ROWS} rows per batch", n * k,
                  lambda: decode(model, tokenizer, prompts, seeds, tokens, OLD_ROWS)),
            timed("HF generate(do_sample=True)", n * k, hf_sample)]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        shutil.copytree(ensure_warm_start(config.model, config.task), run / "checkpoint")
        write_run_config(config, run)
        rows.append(timed("lm-eval lph_test_sampled (HF)", n * k,
                          lambda: evaluate_run(run, ["lph_test_sampled"], limit=n, samples=k)))
    ratio = rows[1]["completions_per_second"] / rows[0]["completions_per_second"]
    return {"rows": rows, "ratio": round(ratio, 2), "noise": noise_rows(rows=2 if args.quick else 8)}


def forward_flops_per_token(model: torch.nn.Module, context: float) -> float:
    """Forward FLOPs of one generated token with a KV cache at `context` positions: 2 per weight of every
    `nn.Linear` (projections, MLP, the LM head: one multiply and one add each) plus attention's 4 per layer, position
    and query dimension (scores q.k over `context` keys, then the weighted sum of as many values); embedding
    look-ups, norms and the softmax are left out (under 1% at the tiny model's sizes). Kaplan et al. 2020, eq. 2.1."""
    from harness.trial.scoring import head_dim

    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model.config
    return 2.0 * linear + 4.0 * config.num_hidden_layers * context * config.num_attention_heads * head_dim(config)


def matmul_row(label: str, m: int, k: int, n: int) -> dict[str, Any]:
    """The CPU's float32 matmul throughput `[m, k] @ [k, n]` (2 m k n FLOPs per call, median call of `time_call`)
    on this process's torch threads, as a `floor` row."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    seconds = time_call(lambda: a @ b, min_seconds=1.0)
    return {"row": label, "gflop": round(2 * m * k * n / 1e9, 4), "seconds": round(seconds, 6),
            "gflop_per_second": round(2 * m * k * n / seconds / 1e9, 2), "utilisation": None}


@benchmark("floor")
def bench_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The held-out scorer against the CPU's floor: the harness sampler (harness.trial.scoring.decode) on the eval
    benchmark's items, policy and k samples, in generated tokens/s times `forward_flops_per_token` at the mean
    context (prompt + half the mean completion), as a share (`utilisation`) of the CPU's float32 matmul throughput
    measured in the same run, large (1024^3) and at the policy's own decode shape (the batch's rows x hidden @
    hidden x MLP width)."""
    from harness.trial.scoring import decode

    n = 4 if args.quick else 50
    config, model, tokenizer, prompts, seeds, batch = default_scoring(n)
    k, max_tokens = config.eval.samples, config.eval.max_new_tokens
    started = time.perf_counter()
    completions = decode(model, tokenizer, prompts, seeds, max_tokens, batch)
    seconds = time.perf_counter() - started
    lengths = [min(max_tokens, len(ids) + 1) for row in completions  # + 1: the <eos> that ended a short one
               for ids in tokenizer(row, add_special_tokens=False)["input_ids"]]
    prompt_tokens = sum(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]) / n
    flops = sum(lengths) * forward_flops_per_token(model, prompt_tokens + sum(lengths) / len(lengths) / 2)
    rows = [matmul_row("matmul 1024x1024 @ 1024x1024", 1024, 1024, 1024),
            matmul_row(f"matmul at the decode shape {batch}x{model.config.hidden_size} @ "
                       f"{model.config.hidden_size}x{model.config.intermediate_size}", batch,
                       model.config.hidden_size, model.config.intermediate_size)]
    rows.append({"row": f"harness sampler ({sum(lengths)} tokens, {n * k} completions)",
                 "gflop": round(flops / 1e9, 4), "seconds": round(seconds, 3),
                 "gflop_per_second": round(flops / seconds / 1e9, 3),
                 "utilisation": round(flops / seconds / 1e9 / rows[0]["gflop_per_second"], 4)})
    return {"rows": rows, "flops_per_token": round(forward_flops_per_token(model, prompt_tokens)),
            "tokens_per_second": round(sum(lengths) / seconds, 1),
            "utilisation_at_decode_shape": round(flops / seconds / 1e9 / rows[1]["gflop_per_second"], 4)}


SMOKE_TUNE = ["grid={}", "seeds=1", "base.estimator.name=attenuated_pairwise", "executor.workers=2",
              "optuna={n_trials: 4, sampler: tpe, space: {estimator.beta: {type: float, low: 0.1, high: 10.0}}}"]
"""`--set` overrides turning the smoke sweep into an Optuna search of 4 suggestions x 1 seed on 2 local workers."""


def timed_sweep(executor: str, parallel: int, overrides: list[str]) -> dict[str, Any]:
    """Run the smoke sweep with `overrides` in a temporary directory: wall time, the trials' own time, the machinery's
    overhead per trial (one at a time only), trials per hour and (Optuna) the most suggestions in flight at once.
    The report is built and included."""
    import tempfile

    import optuna

    from harness.sweep import optuna_storage, run_sweep
    from harness.sweep.optuna_search import max_in_flight
    from harness.sweep.spec import load_spec
    from harness.sweep.store import ResultStore

    spec_path = Path("sweeps/smoke.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        started, clock = time.perf_counter(), time.time()
        root = run_sweep(spec_path, root=Path(tmp) / "smoke", overrides=overrides)
        total = time.perf_counter() - started
        records = ResultStore(root).records()
        spec = load_spec(spec_path, overrides)
        in_flight = (max_in_flight(optuna.load_study(study_name=spec.name, storage=optuna_storage(spec, root)))
                     if spec.optuna else None)
    inside = sum(r["wall_seconds"] for r in records)
    return {"executor": executor, "parallel": parallel, "trials": len(records), "sweep_seconds": round(total, 2),
            "trial_seconds": round(inside, 2),
            "overhead_per_trial_s": round((total - inside) / len(records), 2) if parallel == 1 else None,
            **(machinery_split(records, clock, clock + total) if parallel == 1 else {}),
            "trials_per_hour": round(len(records) / total * 3600), "optuna_max_in_flight": in_flight}


def machinery_split(records: list[dict[str, Any]], began: float, ended: float) -> dict[str, float]:
    """Where the machinery's time of a one-worker sweep (`began`..`ended`, epoch seconds) goes: `start_s` before
    the first trial starts (the worker's spawn and imports), `between_trials_s` the mean gap from one trial's end to
    the next one's start (result, table, claim, hand-off), `end_s` after the last trial (the report, the driver's
    last writes)."""
    ordered = sorted(records, key=lambda r: r["started_at"])
    gaps = [b["started_at"] - a["finished_at"] for a, b in zip(ordered, ordered[1:])]
    return {"start_s": round(ordered[0]["started_at"] - began, 2),
            "between_trials_s": round(sum(gaps) / max(1, len(gaps)), 3),
            "end_s": round(ended - ordered[-1]["finished_at"], 2)}


@benchmark("sweep")
def bench_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep machinery on the smoke sweep (the warm start is trained before timing): seconds it adds per trial
    (sweep wall time minus the trials' own, local executor, 1 worker), trials per hour with 1 and 2 local workers
    and, when SLURM_CONF names a cluster, with SLURM array parallelism 2; the most Optuna suggestions in flight at
    once (4 suggestions x 1 seed on 2 local workers)."""
    import os

    from harness.sweep import prepare_warm_starts
    from harness.sweep.spec import grid_trials, load_spec

    spec_path = Path("sweeps/smoke.yaml")
    prepare_warm_starts(grid_trials(load_spec(spec_path), spec_path))
    rows = [timed_sweep("local", 1, []), timed_sweep("local", 2, ["executor.workers=2"])]
    if os.environ.get("SLURM_CONF"):
        rows.append(timed_sweep("slurm", 2, ["executor.kind=slurm", "executor.array_parallelism=2",
                                             "executor.cpus_per_trial=1", "executor.mem_gb=1"]))
    rows.append(timed_sweep("local optuna", 2, SMOKE_TUNE))
    return {"rows": rows}


def environment() -> dict[str, Any]:
    """Hardware and library versions the figures were measured with."""
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    """Print `rows` as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Run the named benchmarks and write their results under --out."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("names", nargs="+", metavar="name", choices=sorted(BENCHMARKS) + ["all"],
                        help=f"one or more of {', '.join(sorted(BENCHMARKS))}, or all")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="directory of the <name>.json results")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for tests of the benchmark itself)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's intra-op threads (default: LPH_THREADS, else OMP_NUM_THREADS, else every core; "
                             "harness.threads); recorded in each result's environment")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: expected a positive integer")
    try:
        set_threads(args.threads)
    except ValueError as error:  # a bad LPH_THREADS or OMP_NUM_THREADS
        parser.error(str(error))
    names = sorted(BENCHMARKS) if "all" in args.names else list(dict.fromkeys(args.names))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        result = BENCHMARKS[name](args) | {"environment": environment()}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2))
        print_rows(f"{name} -> {path}", result["rows"])
        if "noise" in result:
            print_rows(f"{name} noise -> {path}", result["noise"])


if __name__ == "__main__":
    main()
