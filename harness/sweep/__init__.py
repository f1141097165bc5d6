"""The sweep: expand a spec into trials (`spec`), run them on an executor (`executors`, `payload`), record results
(`store`) and resume (`run`). `python -m harness.sweep SPEC` runs one."""

from harness.sweep.run import optuna_storage, prepare_warm_starts, run_sweep

__all__ = ["optuna_storage", "prepare_warm_starts", "run_sweep"]
