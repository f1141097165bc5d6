"""Optuna on a real PostgreSQL server (.ci/postgres-up.sh, LPH_POSTGRES_URL set): two drivers share one study and
every suggestion x seed finishes exactly once."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from tests.test_sweep import assert_each_suggestion_ran_once, run_optuna_drivers, tune_spec


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("LPH_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI runs the PostgreSQL tests: .ci/run starts the server with .ci/postgres-up.sh")
        pytest.skip("LPH_POSTGRES_URL is not set: eval \"$(.ci/postgres-up.sh)\" starts a private PostgreSQL server")
    return url


def test_two_drivers_share_one_postgresql_study(tmp_path, postgres_url):
    import optuna

    from harness.sweep import optuna_storage
    from harness.sweep.spec import load_spec

    name = f"pg-{uuid.uuid4().hex[:8]}"  # the database outlives the test: a study of its own
    path = tune_spec(tmp_path, n_trials=4, seeds=2, workers=1, storage=postgres_url, name=name)
    storage = optuna_storage(load_spec(path), tmp_path / "shared")
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.url.startswith("postgresql+psycopg://")
    try:
        run_optuna_drivers(path, tmp_path / "shared")
        assert_each_suggestion_ran_once(path, tmp_path / "shared", storage)
    finally:
        with contextlib.suppress(KeyError):  # no study when the drivers failed before creating it
            optuna.delete_study(study_name=name, storage=storage)
