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

from reports.decision import conclusion_of, direction, judge
from reports.sequential import SeedPlan, Settle
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


def look_frames(effects: list[float], plan: SeedPlan, design: Design, replicates: int,
                rng: np.random.Generator, predict: str = "better") -> list[list[pd.DataFrame]]:
    """frames[look][replicate]: the evidence rows of each replicate at each look, row k's estimate on the first
    n_look seeds of its own max-seed matrices (rows have arms of their own)."""
    design = Design(**{**design.__dict__, "n_seeds": plan.max})
    estimates = []  # [row][look] -> dict of arrays over replicates
    for effect in effects:
        matrices = np.concatenate([paired_matrices(effect, design, min(CHUNK, replicates - start), rng)
                                   for start in range(0, replicates, CHUNK)])
        estimates.append([{key: np.atleast_1d(getattr(result, key)) for key in ("mean", "se", "df", "p_value")}
                          for result in (estimate(matrices[:, :n]) for n in plan.looks)])
    return [[pd.DataFrame({"diff": [e[look]["mean"][r] for e in estimates],
                           "se": [e[look]["se"][r] for e in estimates], "df": [e[look]["df"][r] for e in estimates],
                           "p_value": [e[look]["p_value"][r] for e in estimates], "margin": MARGIN,
                           "higher_is_better": True, "predict": predict, "ci_low": np.nan, "ci_high": np.nan})
             for r in range(replicates)] for look in range(len(plan.looks))]


def settle_replicate(frames: list[pd.DataFrame], plan: SeedPlan) -> tuple[Settle, list[str]]:
    """One replicate through reports.sequential.Settle (the live driver's and `lph settle`'s bookkeeping), each
    look's rows judged by reports.decision.judge at the look's alpha; returns the state and each row's direction
    (better / worse / ...) at its stopping look."""
    state = Settle(plan)
    arms = {f"{side}{k}" for k in range(len(frames[0])) for side in "cb"}
    directions: dict[int, str] = {}
    for look, alpha in enumerate(state.alphas):
        state.advance(look, arms)
        judged = judge(frames[look], alpha)
        state.look(look, [{"id": "X", "evidence": "e", "candidate": f"c{k}", "baseline": f"b{k}", "task": "t",
                           "scope": str(k), "arms": [f"c{k}", f"b{k}"], "n_seeds": plan.looks[look],
                           "decision": o if o != "undecided" else None}
                          for k, o in enumerate(judged["outcome"])])
        for k, found in enumerate(judged["verdict"]):
            row = state.rows[("X", "e", f"c{k}", f"b{k}", "t", str(k))]
            if row.stopped_at == plan.looks[look] and k not in directions:
                directions[k] = direction(found)
        if state.finish():
            break
    return state, [directions[k] for k in sorted(directions)]


def sequential_rates(effects: list[float], plan: SeedPlan, design: Design, replicates: int,
                     seed: int = 0) -> dict[str, float]:
    """Over replicates of a sequential claim: the share of claims reaching each conclusion, the share of rows
    decided better / worse (a false statement when the truth is 0), and the mean trials against the fixed design
    at plan.max seeds (2 arms per row)."""
    frames = look_frames(effects, plan, design, replicates, np.random.default_rng(seed))
    counts: Counter[str] = Counter()
    directed, trials = 0, 0
    for r in range(replicates):
        state, directions = settle_replicate([frames[look][r] for look in range(len(plan.looks))], plan)
        outcomes = [row.decision if row.decision in ("holds", "fails") else "undecided"
                    for row in state.rows.values()]
        counts[conclusion_of(outcomes)] += 1
        directed += sum(d in ("better", "worse") for d in directions)
        trials += sum(state.arm_seeds.values())
    fixed = 2 * len(effects) * plan.max
    return {**{name: counts[name] / replicates for name in
               ("supported", "partly supported", "mixed", "partly refuted", "refuted", "not detectable")},
            "rows decided better or worse": directed / (replicates * len(effects)),
            "mean trials": trials / replicates, "fixed design trials": fixed}


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
