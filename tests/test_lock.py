"""The environment lock: the installed packages are exactly requirements.lock's, and the checker sees a drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import lock

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_environment_is_the_lock():
    result = subprocess.run([sys.executable, "-m", "harness.lock", "check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_lock_pins_the_packages_the_numbers_depend_on():
    pins = lock.read_lock()
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "numpy", "lm-eval"):
        assert name in pins, name
    assert pins["torch"] == "2.13.0"


def test_a_drift_is_reported_by_package(tmp_path):
    locked = {"torch": "2.13.0", "transformers": "5.23.0", "gone": "1.0"}
    present = {"torch": "2.13.0", "transformers": "5.24.0", "extra": "0.1"}
    assert lock.differences(locked, present) == [
        "extra: locked (not locked), installed 0.1",
        "gone: locked 1.0, installed (missing)",
        "transformers: locked 5.23.0, installed 5.24.0",
    ]
    path = tmp_path / "requirements.lock"
    path.write_text("# comment\nTorch==2.13.0+cpu\n\nmath_verify==0.9.0\n")
    assert lock.read_lock(path) == {"torch": "2.13.0", "math-verify": "0.9.0"}
    path.write_text("torch>=2\n")
    result = subprocess.run([sys.executable, "-m", "harness.lock", "check", str(path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "expected name==version" in result.stderr
