"""Which arms are compared, and the per-arm and paired held-out accuracy tables.

Comparisons of one task, each paired by seed and by item:
  - "estimator":  every estimator vs `group_mean` with the same other parameters (reward mix, ...);
  - "control: shuffled": `shuffled` vs `group_mean` (must come out worse);
  - "control: RL": every `group_mean` arm vs `warm_start` (must come out better: RL learned);
  - "semantic density": rewards.semantic_density > 0 vs == 0 with the same estimator (not the shuffled control)
    and other parameters.
The verdicts follow reports/decision.py: one family of the claim comparisons (every kind but the controls), each
control a family of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.data import (
    BASELINE,
    ESTIMATOR,
    SEMANTIC_DENSITY,
    SHUFFLED,
    WARM_START,
    Arm,
    make_arm,
    outcome_matrix,
    paired_matrix,
)
from reports.decision import ALPHA, judge
from reports.stats import Estimate, estimate

EXPECTED = {"control: shuffled": "worse", "control: RL": "better"}


@dataclass(frozen=True)
class Pair:
    """One planned comparison: candidate - baseline."""

    kind: str
    candidate: Arm
    baseline: Arm


def plan(arms: list[Arm]) -> list[Pair]:
    """The comparisons of the module docstring among `arms` (both arms must exist), sorted by task and label."""
    present = set(arms)
    pairs = []
    for arm in arms:
        if arm.estimator == WARM_START:
            continue
        if arm.estimator == BASELINE:
            pairs.append(Pair("control: RL", arm, make_arm(arm.task, {ESTIMATOR: WARM_START})))
        else:
            kind = "control: shuffled" if arm.estimator == SHUFFLED else "estimator"
            pairs.append(Pair(kind, arm, baseline_of(arm, present)))
        weight = dict(arm.params).get(SEMANTIC_DENSITY)
        if isinstance(weight, (int, float)) and weight > 0 and arm.estimator != SHUFFLED:
            pairs.append(Pair("semantic density", arm, arm.replace(SEMANTIC_DENSITY, 0.0)))
    kept = [p for p in pairs if p.candidate in present and p.baseline in present]
    return sorted(kept, key=lambda p: (p.candidate.task, p.kind, p.candidate.label, p.baseline.label))


def baseline_of(arm: Arm, arms: set[Arm]) -> Arm:
    """The `group_mean` arm of `arms` with the same task and non-estimator parameters (the estimators' own
    parameters, e.g. `estimator.attenuation` of a variants sweep, may differ); the plain `group_mean` arm when there
    is none (the pair is then dropped)."""
    def others(a: Arm) -> tuple[tuple[str, object], ...]:
        return tuple((key, value) for key, value in a.params if not key.startswith("estimator."))

    matches = [a for a in arms if a.estimator == BASELINE and a.task == arm.task and others(a) == others(arm)]
    return matches[0] if len(matches) == 1 else arm.replace(ESTIMATOR, BASELINE)


def describe(pair: Pair) -> str:
    """Short name of a comparison: `attenuated_pairwise vs group_mean [rewards.semantic_density=0.5]`."""
    candidate, baseline = pair.candidate, pair.baseline
    if pair.kind == "semantic density":
        weight = dict(candidate.params)[SEMANTIC_DENSITY]
        rest = "|".join(f"{k}={v}" for k, v in candidate.others if k != SEMANTIC_DENSITY)
        return f"{candidate.estimator}: semantic_density {weight} vs 0" + (f" [{rest}]" if rest else "")
    return f"{candidate.estimator} vs {baseline.estimator}" + (f" [{candidate.mix}]" if candidate.others else "")


def arm_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm: mean held-out accuracy with its 95% interval over seeds and items (seeds only without eval_items)."""
    rows = []
    for arm, group in trials.groupby("arm", sort=False):
        matrix, noise = outcome_matrix(group)
        result = estimate(matrix)
        rows.append({"task": arm.task, "arm": arm.label, "estimator": arm.estimator, "mix": arm.mix,
                     "params": dict(arm.params), "n_seeds": result.n_seeds,
                     "n_items": result.n_items if noise == "seeds+items" else None,
                     "mean": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high, "noise": noise})
    columns = ["task", "arm", "estimator", "mix", "params", "n_seeds", "n_items", "mean", "ci_low", "ci_high", "noise"]
    return pd.DataFrame(rows, columns=columns).sort_values(["task", "arm"], ignore_index=True)


def comparison_row(pair: Pair, result: Estimate, noise: str) -> dict:
    """The table row of one comparison before the decision rule (reports.decision.judge)."""
    return {"task": pair.candidate.task, "kind": pair.kind, "comparison": describe(pair),
            "candidate": pair.candidate.label,
            "baseline": pair.baseline.label, "estimator": pair.candidate.estimator, "n_seeds": result.n_seeds,
            "n_items": result.n_items if noise == "seeds+items" else None, "diff": result.mean,
            "se": result.se, "df": result.df, "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value, "mde80": result.mde80,
            "seeds_to_detect": result.seeds_to_detect(), "noise": noise}


def comparison_table(trials: pd.DataFrame, pairs: list[Pair], margin: float, alpha: float = ALPHA) -> pd.DataFrame:
    """Each pair's paired difference (candidate - baseline), family-level interval, adjusted p-value and verdict."""
    by_arm = {arm: group for arm, group in trials.groupby("arm", sort=False)}
    rows = []
    for pair in pairs:
        matrix, noise = paired_matrix(by_arm[pair.candidate], by_arm[pair.baseline])
        rows.append(comparison_row(pair, estimate(matrix), noise))
    return with_verdicts(pd.DataFrame(rows), margin, higher_is_better=True, alpha=alpha)


def with_verdicts(table: pd.DataFrame, margin: float | None, higher_is_better: bool,
                  alpha: float = ALPHA) -> pd.DataFrame:
    """The table judged by reports.decision.judge (family-level interval, `p_adjusted`, `verdict`): the claim
    comparisons (every kind but the controls) form one family; each control (`kind` "control: ...") is a single
    pre-specified check that the sweep could see an effect, a family of its own."""
    if table.empty:
        return table
    table = table.assign(margin=margin, higher_is_better=higher_is_better)
    controls = table["kind"].astype(str).str.startswith("control")
    families = [judge(table[~controls], alpha)] + [judge(table.loc[[index]], alpha) for index in table.index[controls]]
    return pd.concat([f for f in families if not f.empty]).loc[table.index]
