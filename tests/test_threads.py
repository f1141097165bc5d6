"""Thread counts chosen on purpose (harness.threads): the precedence of LPH_THREADS, OMP_NUM_THREADS and the cores,
bad values named in one line, the local workers' share, and a sweep trial that records the threads it ran with."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.config import ConfigError
from harness.sweep import run_sweep
from harness.threads import chosen_threads, local_trial_threads
from tests.conftest import ROOT, SMOKE


def test_lph_threads_wins_then_omp_then_every_core():
    assert chosen_threads({"LPH_THREADS": "3", "OMP_NUM_THREADS": "5"}) == 3
    assert chosen_threads({"OMP_NUM_THREADS": "5"}) == 5
    assert chosen_threads({"LPH_THREADS": " "}) == chosen_threads({}) == os.cpu_count()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_names_the_variable(value):
    with pytest.raises(ConfigError, match=rf"^LPH_THREADS='{value}': expected a positive integer"):
        chosen_threads({"LPH_THREADS": value})


def test_local_workers_share_the_cores_unless_lph_threads_says():
    cores = os.cpu_count() or 1
    assert local_trial_threads(1, {}) == cores and local_trial_threads(cores + 1, {}) == 1
    assert local_trial_threads(1, {"LPH_THREADS": "1", "OMP_NUM_THREADS": "4"}) == 1


def test_a_bad_lph_threads_stops_lph_bench_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "floor", "--out", str(tmp_path)], cwd=ROOT,
                          env=os.environ | {"LPH_THREADS": "zero"}, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "LPH_THREADS='zero': expected a positive integer (torch's thread count)")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the workers' share is one thread anyway")
def test_a_sweep_trial_records_the_threads_lph_threads_gave_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LPH_THREADS", "1")  # one worker on two or more cores would take them all
    root = run_sweep(SMOKE, root=tmp_path / "smoke", max_trials=1, overrides=["report=false"])
    summaries = [json.loads(p.read_text()) for p in (root / "trials").glob("*/summary.json")]
    assert len(summaries) == 1 and summaries[0]["provenance"]["threads"] == 1
