"""The SLURM path on a real single-node cluster (.ci/slurm-up.sh, SLURM_CONF set): results equal the local run's,
a failing job is recorded, an array's trials run in parallel."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from harness.sweep import run_sweep
from tests.test_sweep import spec_file

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs the SLURM tests: .ci/run starts the cluster with .ci/slurm-up.sh")
        pytest.skip("no test SLURM cluster: eval \"$(.ci/slurm-up.sh)\" starts one")


def test_smoke_sweep_on_slurm_equals_the_local_run_and_runs_the_array_in_parallel(tmp_path):
    path = spec_file(tmp_path, executor={"cpus_per_trial": 1, "mem_gb": 1, "trial_timeout_min": 10})
    local = pd.read_parquet(run_sweep(path, root=tmp_path / "local") / "results.parquet")
    root = run_sweep(path, executor="slurm", root=tmp_path / "slurm")
    remote = pd.read_parquet(root / "results.parquet")
    columns = ["trial_id", "status", "seed", "eval.accuracy", "train.reward", "train.loss"]
    pd.testing.assert_frame_equal(local[columns].sort_values("trial_id").reset_index(drop=True),
                                  remote[columns].sort_values("trial_id").reset_index(drop=True))
    assert list((root / "submitit").glob("*_log.out")), "submitit wrote no job logs"
    import json

    spans = sorted((r["started_at"], r["finished_at"]) for r in
                   (json.loads(p.read_text()) for p in (root / "trials").glob("*/result.json")))
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), f"no overlap in {spans}"


def test_a_failing_slurm_job_is_recorded(tmp_path):
    path = spec_file(tmp_path, grid={"estimator.name": ["group_mean"], "trainer.num_generations": [4, 3]}, seeds=1,
                     executor={"cpus_per_trial": 1, "mem_gb": 1})
    table = pd.read_parquet(run_sweep(path, executor="slurm", root=tmp_path / "fail") / "results.parquet")
    table = table.set_index("param.trainer.num_generations")
    assert table.loc[4, "status"] == "done"
    assert table.loc[3, "status"] == "failed" and "ValueError" in table.loc[3, "error"]
