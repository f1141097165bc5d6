"""The one entry point from a sweep into a trial: `runner(control)` is the function that trains and evaluates a
trial (`control` None) or runs a control in its place (`Control.WARM_START`: the untrained policy scored on the
trial's held-out items), writing the run directory and returning its summary."""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config import RunConfig

TrialRun = Callable[[RunConfig, Path], dict[str, Any]]
"""`run(config, run_dir) -> summary` (summary.json's content)."""


class Control(str, enum.Enum):
    """A control run in place of a training trial (its value is what results record as `estimator.name`)."""

    WARM_START = "warm_start"


def runner(control: Control | None) -> TrialRun:
    """The function running a trial of `control` (None: train and evaluate). The training stack is imported here,
    so that a caller can import it before a deadline starts (an alarm inside an import leaves half-initialised
    modules behind)."""
    from harness.trial.train import run_trial, score_warm_start

    return score_warm_start if control is Control.WARM_START else run_trial
