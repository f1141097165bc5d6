"""Benchmarks: `python -m harness.bench {estimators,rewards,train,eval,sweep,all} [--out runs/bench]`.

Each benchmark prints a table and writes `<out>/<name>.json`. Ratios compare figures measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

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


@benchmark("estimators")
def bench_estimators(args: argparse.Namespace) -> dict[str, Any]:
    """Microseconds per call for B=1024 groups and G in {4, 8, 16, 64}, every estimator, CPU (and CUDA if present)."""
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
            timings = {}
            for name in estimators.available():
                est = estimators.get(name)
                timings[name] = time_call(lambda: est(rewards, seq_logprobs=lp, lengths=n), sync=sync) * 1e6
            for name, us in timings.items():
                rows.append(
                    {"device": device, "B": 1024, "G": g, "estimator": name, "us_per_call": round(us, 1),
                     "ratio_to_group_mean": round(us / timings["group_mean"], 2)}
                )
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
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS) + ["all"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for tests of the benchmark itself)")
    args = parser.parse_args(argv)
    names = sorted(BENCHMARKS) if args.name == "all" else [args.name]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        result = BENCHMARKS[name](args) | {"environment": environment()}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=2))
        print_rows(f"{name} -> {path}", result["rows"])


if __name__ == "__main__":
    main()
