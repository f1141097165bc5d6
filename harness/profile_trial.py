"""Where one trial of a sweep spends its time: `python -m harness.profile_trial [SPEC] [--task T] [--estimator E]
[--set KEY=VALUE ...]`.

Runs the first grid trial of SPEC (default sweeps/ablation.yaml) with that task and estimator, seed 0, on one thread
(as a demo worker runs it) under cProfile, and writes the cumulative seconds of each part of the trial (the parts
README's Performance section lists) to runs/bench/trial_profile.json. cProfile's own overhead is included, so the
parts are comparable between commits, not to a trial's wall time in a sweep.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

PARTS = {
    "warm-start load": ("harness/trial/model.py", "load_policy"),
    "task": ("harness/tasks/__init__.py", "load_task"),
    "trainer set-up": ("harness/trial/train.py", "build_trainer"),
    "training (all)": ("transformers/trainer.py", "train"),
    "training: generation (TRL)": ("trl/trainer/grpo_trainer.py", "_generate"),
    "training: rewards": ("trl/trainer/grpo_trainer.py", "_calculate_rewards"),
    "training: loss forward": ("trl/trainer/grpo_trainer.py", "compute_loss"),
    "training: backward": ("torch/_tensor.py", "backward"),
    "training: optimizer": ("torch/optim/adam.py", "step"),
    "training: held-out curve": ("harness/trial/train.py", "on_step_end"),
    "final scoring": ("harness/trial/train.py", "score_held_out"),
    "held-out decoding (curve and final)": ("harness/trial/scoring.py", "decode"),
}
"""Part of a trial -> (the end of its function's file path, the function's name)."""


def part_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each of PARTS in `stats` (0.0 for a part that never ran)."""
    seconds = dict.fromkeys(PARTS, 0.0)
    for (file, _, function), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for part, (suffix, name) in PARTS.items():
            if function == name and file.endswith(suffix):
                seconds[part] += cumulative
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Profile one trial and print and write its parts."""
    parser = argparse.ArgumentParser(prog="python -m harness.profile_trial", description=__doc__)
    parser.add_argument("spec", type=Path, nargs="?", default=Path("sweeps/ablation.yaml"))
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--estimator", default="group_mean")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key, as `python -m harness.sweep --set` (e.g. base.eval.batch_size=100)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/trial_profile.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from harness.sweep.spec import grid_trials, load_spec
    from harness.threads import set_threads
    from harness.trial.train import run_trial

    imports = time.perf_counter() - started
    set_threads(1)
    trial = next((t for t in grid_trials(load_spec(args.spec, args.overrides), args.spec)
                  if t.seed == 0 and t.config.task.name == args.task and t.config.estimator.name == args.estimator),
                 None)
    if trial is None:
        parser.error(f"{args.spec}: no trial of seed 0 with task {args.task} and estimator {args.estimator}")
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        profile.runcall(run_trial, trial.config, Path(tmp) / "run")
        total = time.perf_counter() - started
    parts = {"importing the training stack": imports, **part_seconds(pstats.Stats(profile)), "run_trial": total}
    result = {"spec": str(args.spec), "overrides": args.overrides, "params": trial.params, "threads": 1,
              "seconds": {part: round(value, 2) for part, value in parts.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for part, value in result["seconds"].items():
        print(f"{part:40s} {value:8.2f} s")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
