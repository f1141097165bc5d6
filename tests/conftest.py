"""Shared fixtures: a session-wide warm-start cache and the smoke sweep's run config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.config import RunConfig
from harness.sweep.spec import load_spec, make_trial

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "sweeps" / "smoke.yaml"


@pytest.fixture(scope="session", autouse=True)
def warm_start_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and the subprocesses it starts) caches warm starts in one directory: $HARNESS_CACHE_DIR when set
    (to reuse a cache between runs), else a fresh temporary directory."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        yield Path(os.environ["HARNESS_CACHE_DIR"])
        return
    cache = tmp_path_factory.mktemp("warm-start-cache")
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    yield cache
    os.environ.pop("HARNESS_CACHE_DIR", None)


def smoke_config(**overrides: object) -> RunConfig:
    """The smoke sweep's run config for `estimator.name=group_mean`, seed 0, with dotted-key overrides."""
    spec = load_spec(SMOKE)
    params = {"estimator.name": "group_mean", **overrides}
    return make_trial(spec, params, 0, SMOKE).config
