"""The sweep: expand a spec into trials (`spec`), run them on an executor (`executors`, `payload`) from the driver
(`driver`), record results (`store`), keep the Optuna study (`optuna_search`, `storage`) and resume (`run`).
`python -m harness.sweep SPEC` runs one."""

from harness.sweep.driver import prepare_warm_starts
from harness.sweep.optuna_search import optuna_storage
from harness.sweep.run import run_sweep

__all__ = ["optuna_storage", "prepare_warm_starts", "run_sweep"]
