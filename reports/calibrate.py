"""Error rates of the claim conclusions, by simulation through the report's own decision code.

`python -m reports.calibrate [--replicates N] [--out FILE]` simulates claims of ROWS evidence rows (a task family or
setting each), every row a paired comparison of two arms on the same seeds and held-out items, scored as sampled
pass@1 (8 samples per item, the two arms of a seed drawing with the same uniforms: the harness's common random
numbers). The noise model is the two-way model of reports/stats.py with the demo's scale: pass@1 near 0.3, item
effects of sd 0.12 (500 items), a seed effect shared by the arms of a seed (sd 0.03) and one per arm and seed
(ARM_SEED_SD), candidate x item effects (sd 0.02). Each replicate's rows go through reports.decision.judge and
reports.decision.conclusion_of, the functions `lph claims` and every sweep report call. It prints and writes, per
design (seeds) and truth (every row's true difference: 0, the margin, twice the margin), the share of replicates
reaching each conclusion; README quotes them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reports.decision import conclusion_of, judge
from reports.stats import estimate

ROWS = 4
MARGIN = 0.02
ARM_SEED_SD = 0.01
CHUNK = 50


@dataclass(frozen=True)
class Design:
    """A sweep's design and noise (module docstring)."""

    n_seeds: int
    n_items: int = 500
    samples: int = 8
    base: float = 0.3
    item_sd: float = 0.12
    shared_seed_sd: float = 0.03
    arm_seed_sd: float = ARM_SEED_SD
    interaction_sd: float = 0.02


def paired_matrices(effect: float, design: Design, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, seeds, items) matrices of candidate - baseline pass@1 with true mean difference `effect`."""
    shape_seed, shape_item = (replicates, design.n_seeds, 1), (replicates, 1, design.n_items)
    half = np.sqrt(3.0)  # uniform(-w, w) has sd w / sqrt(3)
    item = rng.uniform(-half, half, shape_item) * design.item_sd
    interaction = rng.uniform(-half, half, shape_item) * design.interaction_sd
    shared = rng.normal(0, design.shared_seed_sd, shape_seed)
    p_base = design.base + shared + rng.normal(0, design.arm_seed_sd, shape_seed) + item
    p_cand = design.base + effect + shared + rng.normal(0, design.arm_seed_sd, shape_seed) + item + interaction
    uniforms = rng.random((replicates, design.n_seeds, design.n_items, design.samples), dtype=np.float32)
    share = lambda p: (uniforms < np.clip(p, 0, 1)[..., None]).mean(axis=-1, dtype=float)  # noqa: E731
    return share(p_cand) - share(p_base)


def simulated_rows(effects: list[float], design: Design, replicates: int, rng: np.random.Generator,
                   predict: str = "better", margin: float = MARGIN) -> list[pd.DataFrame]:
    """One frame of evidence rows per replicate (the fields reports.decision.judge reads), row k with true
    difference effects[k]."""
    columns: list[dict[str, np.ndarray]] = []
    for effect in effects:
        parts = [estimate(paired_matrices(effect, design, min(CHUNK, replicates - start), rng))
                 for start in range(0, replicates, CHUNK)]
        columns.append({key: np.concatenate([np.atleast_1d(getattr(p, key)) for p in parts])
                        for key in ("mean", "se", "df", "p_value")})
    return [pd.DataFrame({"diff": [c["mean"][r] for c in columns], "se": [c["se"][r] for c in columns],
                          "df": [c["df"][r] for c in columns], "p_value": [c["p_value"][r] for c in columns],
                          "margin": margin, "higher_is_better": True, "predict": predict,
                          "ci_low": np.nan, "ci_high": np.nan})
            for r in range(replicates)]


def conclusion_rates(effects: list[float], design: Design, replicates: int, seed: int = 0,
                     predict: str = "better") -> dict[str, float]:
    """Share of replicates reaching each conclusion (reports.decision.CONCLUSIONS' evidence-based ones)."""
    frames = simulated_rows(effects, design, replicates, np.random.default_rng(seed), predict)
    counts = Counter(conclusion_of(judge(frame)["outcome"]) for frame in frames)
    return {name: counts[name] / replicates for name in
            ("supported", "partly supported", "mixed", "partly refuted", "refuted", "not detectable")}


def calibration(replicates: int, seeds: tuple[int, ...] = (3, 10)) -> list[dict[str, object]]:
    """The rates of the module docstring for each design and truth."""
    table = []
    for n_seeds in seeds:
        for label, effect in (("no effect", 0.0), ("+margin", MARGIN), ("+2 margins", 2 * MARGIN)):
            rates = conclusion_rates([effect] * ROWS, Design(n_seeds), replicates, seed=n_seeds)
            table.append({"seeds": n_seeds, "truth": label, "rows": ROWS, "replicates": replicates, **rates})
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reports.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/calibration.json"))
    args = parser.parse_args(argv)
    table = calibration(args.replicates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(pd.DataFrame(table).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
