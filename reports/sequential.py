"""Seeds on demand: the group-sequential design of a sweep whose spec says `seeds: {start, step, max}`.

Looks are planned at n_1 = start, n_2 = start + step, ... up to max seeds per arm (the last look at max). At look k
every comparison the sweep report makes, and every claim row when the spec names a claims file (`claims: FILE`), is
judged by the report's decision rule (reports/decision.py: one family-level interval per row) at family-wise level
alpha_k, the part of the report's alpha that look k spends. A row stops at the first look where it is decided
(a comparison: any verdict but inconclusive, i.e. better, worse, equivalent, non-inferior or non-superior; a claim
row: its prediction holds or fails) or at max; only the arms of rows still undecided get the next `step` seeds (an
arm shared by several rows runs while any of them needs it).

Error control over looks (alpha spending, Lan & DeMets 1983, Biometrika 70(3): 659-663, with the Pocock-type
spending function of Lan & DeMets): A(t) = alpha * ln(1 + (e - 1) t) at information fraction t = n_k / max, and look
k spends alpha_k = A(t_k) - A(t_{k-1}). A false statement anywhere in the procedure is a false statement at some
look, so by the union bound its probability is at most sum_k alpha_k = A(1) = alpha, whatever the looks' correlation
(conservative: group-sequential boundaries that use the correlation, as AdaStop's permutation scheme does, would
spend the same alpha with narrower intervals).

`Settle` holds the procedure's state and is the one code path of the live driver (harness/sweep/run.py, which runs
the arms `needed()` names before each look) and of the replay, `lph settle RUN_DIR [--claims FILE]` (an existing
sweep with at least `max` seeds, its seeds taken in order as if they had arrived look by look), which writes
RUN_DIR/settle.json: {"plan", "alphas", "arms": {arm: seeds run}, "trials", "fixed_design_trials", "rows": [{"id",
"evidence", "candidate", "baseline", "task", "scope", "looks": [{"seeds", "decision"}], "stopped_at", "decision"}]}.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from reports.analysis import ReportOptions, analyse
from reports.data import result_arms
from reports.decision import direction
from reports.stats import ALPHA

SETTLE_FILE = "settle.json"


@dataclass(frozen=True)
class SeedPlan:
    """`seeds: {start, step, max}` of a sweep spec."""

    start: int
    step: int
    max: int

    @property
    def looks(self) -> list[int]:
        """Seeds per arm at each look: start, start + step, ..., capped at and ending with max."""
        counts = list(range(self.start, self.max, self.step)) if self.step > 0 else [self.start]
        return [n for n in counts if n < self.max] + [self.max]


def look_alphas(plan: SeedPlan, alpha: float = ALPHA) -> list[float]:
    """alpha_k = A(t_k) - A(t_{k-1}), A(t) = alpha ln(1 + (e - 1) t), t_k = n_k / max (module docstring)."""
    spent = [alpha * math.log(1 + (math.e - 1) * n / plan.max) for n in plan.looks]
    return [b - a for a, b in zip([0.0, *spent], spent)]


def arm_key(task: str, label: str) -> str:
    """The identity of an arm across looks: `task | label`."""
    return f"{task} | {label}"


@dataclass
class Row:
    """One comparison or claim row across looks."""

    id: str | None
    evidence: str
    candidate: str
    baseline: str
    task: str
    scope: str
    arms: tuple[str, ...]
    looks: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: int | None = None
    decision: str | None = None

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "arms"}


@dataclass
class Settle:
    """The state of the sequential procedure (module docstring)."""

    plan: SeedPlan
    alpha: float = ALPHA
    arm_seeds: dict[str, int] = field(default_factory=dict)
    rows: dict[tuple, Row] = field(default_factory=dict)

    @property
    def alphas(self) -> list[float]:
        return look_alphas(self.plan, self.alpha)

    def needed(self) -> set[str] | None:
        """Arms that need the next look's seeds: every arm before the first look (None), then the arms of rows still
        undecided (rows without arms, e.g. over all trials, need none)."""
        if not self.rows:
            return None
        return {arm for row in self.rows.values() if row.decision is None for arm in row.arms}

    def advance(self, look: int, arms: set[str]) -> None:
        """Give the arms that need it (all of `arms` before the first look) the seeds of look `look`."""
        needed = self.needed()
        for arm in arms if needed is None else arms & needed:
            self.arm_seeds[arm] = self.plan.looks[look]

    def subset(self, table: pd.DataFrame) -> pd.DataFrame:
        """The results rows the procedure has seen: each arm's first `arm_seeds` seeds (in seed order)."""
        keys = [arm_key(arm.task, arm.label) for arm in result_arms(table)]
        rank = table.groupby(pd.Series(keys, index=table.index))["seed"].rank(method="dense") - 1
        allowed = pd.Series([self.arm_seeds.get(k, 0) for k in keys], index=table.index)
        return table[rank < allowed]

    def look(self, look: int, judged: list[dict[str, Any]]) -> None:
        """Record look `look`'s judged rows (`row_records`); a row is decided at its first decisive look, and at
        the last look every undecided row stops."""
        last = look == len(self.plan.looks) - 1
        for record in judged:
            key = (record["id"], record["evidence"], record["candidate"], record["baseline"], record["task"],
                   record["scope"])
            row = self.rows.setdefault(key, Row(*key, arms=tuple(record["arms"])))
            if row.stopped_at is not None:
                continue
            seeds = record["n_seeds"]
            row.looks.append({"seeds": seeds, "decision": record["decision"]})
            if record["decision"] is not None or last:
                row.stopped_at, row.decision = seeds, record["decision"] or "undecided at max"

    def finish(self) -> bool:
        """True when no arm needs more seeds; then every row still open (rows over all trials, such as shares of
        failed trials, need no arm) stops at its last look, undecided."""
        if self.needed():
            return False
        for row in self.rows.values():
            if row.stopped_at is None:
                row.stopped_at = row.looks[-1]["seeds"] if row.looks else 0
                row.decision = "undecided"
        return True

    def summary(self, fixed_trials: int | None = None) -> dict[str, Any]:
        """settle.json's content."""
        return {"plan": asdict(self.plan), "alphas": self.alphas, "arms": dict(sorted(self.arm_seeds.items())),
                "trials": sum(self.arm_seeds.values()),
                "fixed_design_trials": fixed_trials or len(self.arm_seeds) * self.plan.max,
                "rows": [row.public() for row in self.rows.values()]}


def row_records(table: pd.DataFrame, root: Path, options: ReportOptions, claims: Any = None,
                alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every comparison of the sweep report and every claim row (`claims`: a ClaimsSpec), judged at family-wise
    level `alpha` on the results rows of `table`: identity, the arms it needs, its seeds and its decision (None
    when undecided)."""
    analysis = analyse(table, root, replace(options, alpha=alpha))
    records = []
    for _, r in analysis.comparisons.iterrows():
        decided = direction(r["verdict"]) != "inconclusive"
        records.append({"id": None, "evidence": r["kind"], "candidate": r["candidate"], "baseline": r["baseline"],
                        "task": r["task"], "scope": r["comparison"], "n_seeds": int(r["n_seeds"]),
                        "arms": [arm_key(r["task"], r["candidate"]), arm_key(r["task"], r["baseline"])],
                        "decision": r["verdict"] if decided else None})
    if claims is not None:
        from reports.claims import judge_claim
        from reports.claims_evidence import load_source

        source = load_source(root, analysis)
        for claim in claims.claims:
            if claim.by_construction:
                continue
            for r in judge_claim(claim, [source], alpha, settled=False)["evidence"]:
                per_arm = r["task"] in set(analysis.trials["task"]) and r["metric"] != "failures"
                records.append({"id": claim.id, "evidence": r["evidence"], "candidate": r["candidate"],
                                "baseline": r["baseline"], "task": r["task"], "scope": r["scope"],
                                "n_seeds": int(r["n_seeds"] or 0),
                                "arms": [arm_key(r["task"], r["candidate"]), arm_key(r["task"], r["baseline"])]
                                if per_arm else [],
                                "decision": r["outcome"] if r["outcome"] != "undecided" else None})
    return records


def replay(root: Path, plan: SeedPlan, claims: Any = None, options: ReportOptions | None = None) -> Settle:
    """The procedure on an existing sweep, its seeds taken in order look by look (module docstring)."""
    table = pd.read_parquet(root / "results.parquet")
    done = table[table["status"] == "done"]
    arms = {arm_key(a.task, a.label) for a in result_arms(done)}
    state = Settle(plan)
    for look, alpha in enumerate(state.alphas):
        state.advance(look, arms)
        state.look(look, row_records(state.subset(done), root, options or spec_options(root), claims, alpha))
        if state.finish():
            break
    return state


def spec_options(root: Path) -> ReportOptions:
    """The report options of the sweep's spec.json."""
    spec_file = root / "spec.json"
    spec = json.loads(spec_file.read_text()).get("spec", {}) if spec_file.is_file() else {}
    return ReportOptions.from_spec(spec)


def write_settle(root: Path, state: Settle, fixed_trials: int | None = None) -> Path:
    path = root / SETTLE_FILE
    path.write_text(json.dumps(state.summary(fixed_trials), indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    from harness.cli import HelpFormatter
    from reports.claims_spec import ClaimsSpecError, load_claims

    parser = argparse.ArgumentParser(prog="python -m reports.sequential", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--claims", type=Path, default=None, help="claims file whose rows are settled too")
    parser.add_argument("--start", type=int, default=3, help="seeds per arm at the first look")
    parser.add_argument("--step", type=int, default=3, help="seeds added at each further look")
    parser.add_argument("--max", type=int, default=12, help="seeds per arm at the last look")
    args = parser.parse_args(argv)
    if not (args.run_dir / "results.parquet").is_file():
        raise SystemExit(f"error: {args.run_dir / 'results.parquet'}: no results table (run a sweep first)")
    plan = SeedPlan(args.start, args.step, args.max)
    done = pd.read_parquet(args.run_dir / "results.parquet").query("status == 'done'")
    fewest = done.groupby([a.label for a in result_arms(done)])["seed"].nunique().min() if len(done) else 0
    if fewest < plan.max:
        raise SystemExit(f"error: {args.run_dir}: an arm has {fewest} finished seeds; the replay needs --max "
                         f"{plan.max} (or lower --max)")
    try:
        claims = load_claims(args.claims) if args.claims else None
    except ClaimsSpecError as error:
        raise SystemExit(f"error: {error}") from None
    state = replay(args.run_dir, plan, claims)
    path = write_settle(args.run_dir, state)
    summary = state.summary()
    decided = sum(not r["decision"].startswith("undecided") for r in summary["rows"])
    print(f"{decided} of {len(summary['rows'])} rows decided; {summary['trials']} trials of "
          f"{summary['fixed_design_trials']} in the fixed design; {path}")


if __name__ == "__main__":
    main()
