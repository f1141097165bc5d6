"""Ship a sweep's warm starts with the project: `python -m harness.trial.ship SPEC [--force]` (`make warm-starts`).

Trains the warm start of every distinct tiny-model (model, task) pair of the spec's trials with this machine's CPU
kernels and saves it under `harness/warm_starts/warm-<key>/` (key: harness.trial.model.warm_start_key), where
`ensure_warm_start` finds it before any cache: every machine then starts RL from the same bytes. The warm-start
recipe is chaotic (measured on the default ablation: the same 700-step recipe gives sampled pass@1 0.179 and 0.278
on `arithmetic`, 0.202 and 0.114 on `multihop`, under torch's AVX512 and generic kernels of one machine), so a
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


def ship(spec: Path, force: bool = False, out: Path = SHIPPED_DIR, overrides: tuple[str, ...] = ()) -> list[Path]:
    """Train and save the spec's distinct tiny-model warm starts into `out` (existing ones kept unless `force`), each
    with `warm_start.json` recording how and where it was trained and its held-out sampled pass@1 and greedy
    accuracy (the spec's eval settings, seed 0); returns their directories."""
    import rewards
    from harness.sweep.spec import load_sweep
    from harness.tasks import load_task
    from harness.trial.model import load_policy
    from harness.trial.scoring import mean_outcomes, score_items

    _, trials = load_sweep(spec, overrides)
    configs = {(t.config.model.model_dump_json(), t.config.task.model_dump_json()): t.config
               for t in trials if t.config.model.path is None}
    shipped = []
    for config in configs.values():
        target = out / f"warm-{warm_start_key(config.model, config.task)}"
        if force or not (target / WARM_START_MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)
            train_warm_start(config.model, config.task, target)
            policy, tokenizer, _ = load_policy(config.model.model_copy(update={"path": str(target)}), config.task)
            test = load_task(config.task).test[: config.eval.n_examples]
            items, _ = score_items(policy, tokenizer, test, rewards.mix({"correctness": 1.0}), config.eval, seed=0,
                                   prompt=config.task.prompt)
            info = json.loads((target / WARM_START_MARKER).read_text())
            info |= {"task": config.task.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
                     "trained_on": provenance(), "held_out": {"n": len(items), **mean_outcomes(items)}}
            (target / WARM_START_MARKER).write_text(json.dumps(info, indent=2) + "\n")
        shipped.append(target)
    return shipped


def main(argv: list[str] | None = None) -> None:
    """CLI: ship the warm starts of a sweep spec."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial.ship", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--force", action="store_true", help="train again the warm starts already there")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="where to save them")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="override a key of the spec, as in lph sweep")
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        for path in ship(args.spec, args.force, args.out, tuple(args.overrides or ())):
            held_out = json.loads((path / WARM_START_MARKER).read_text()).get("held_out", {})
            print(path, json.dumps({k: round(v, 4) for k, v in held_out.items()}))
    except ConfigError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
