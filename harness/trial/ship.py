"""Ship a sweep's warm starts with the project: `python -m harness.trial.ship SPEC [--force]` (`make warm-starts`).

Trains the warm start of every distinct tiny-model (model, task) pair of the spec's trials with this machine's CPU
kernels and saves it under `harness/warm_starts/warm-<key>/` (key: harness.trial.model.warm_start_key), where
`ensure_warm_start` finds it before any cache: every machine then starts RL from the same bytes. The warm-start
recipe is chaotic (measured on the default ablation: the same 700-step recipe gives sampled pass@1 0.183 and 0.275
on `arithmetic`, 0.189 and 0.109 on `multihop`, under torch's AVX512 and generic kernels of one machine), so a
testbed whose every machine trained its own warm start compared different policies. `warm_start.json` records where
and how each shipped one was trained.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from harness.cli import HelpFormatter
from harness.config import ConfigError
from harness.lock import provenance
from harness.trial.model import SHIPPED_DIR, WARM_START_MARKER, train_warm_start, warm_start_key


def ship(spec: Path, force: bool = False) -> list[Path]:
    """Train and save the spec's distinct tiny-model warm starts into SHIPPED_DIR (existing ones kept unless
    `force`); returns their directories."""
    from harness.sweep.spec import load_sweep

    _, trials = load_sweep(spec)
    pairs = {(t.config.model.model_dump_json(), t.config.task.model_dump_json()): (t.config.model, t.config.task)
             for t in trials if t.config.model.path is None}
    shipped = []
    for model_config, task_config in pairs.values():
        target = SHIPPED_DIR / f"warm-{warm_start_key(model_config, task_config)}"
        if force or not (target / WARM_START_MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)
            train_warm_start(model_config, task_config, target)
            info = json.loads((target / WARM_START_MARKER).read_text())
            info |= {"task": task_config.model_dump(mode="json"), "model": model_config.model_dump(mode="json"),
                     "trained_on": provenance()}
            (target / WARM_START_MARKER).write_text(json.dumps(info, indent=2) + "\n")
        shipped.append(target)
    return shipped


def main(argv: list[str] | None = None) -> None:
    """CLI: ship the warm starts of a sweep spec."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial.ship", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--force", action="store_true", help="train again the warm starts already shipped")
    args = parser.parse_args(argv)
    try:
        for path in ship(args.spec, args.force):
            print(path)
    except ConfigError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
