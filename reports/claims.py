"""The claims report: `lph claims RUN_DIR [RUN_DIR ...] [--out DIR] [--spec FILE]`.

For every claim of the claims specification (reports/claims.yaml) it collects the evidence rows from the run
directories given (sweeps and `lph diagnose` outputs), judges them as one family with the decision rule of
reports/decision.py (one family-level interval per row, from which every verdict and whether the paper's
prediction holds, fails or is undecided are read) and concludes: supported, refuted, mixed, partly supported,
partly refuted, not detectable (reports.decision.conclusion_of), not tested here (no run given bears on the claim:
the sweep that would test it is named) or by construction (a claim true by construction; its code check, if any,
passed). The summary names the undecided rows with what they would need (MDE80, seeds to detect); next to
estimator comparisons it reports the mechanism check (the candidate's advantages against the baseline estimator's
on the same rollouts, metrics.jsonl `mechanism/*`).

Writes DIR/claims.json (`{"claims": [{"id", "text", "source", "conclusion", "headline", "summary", "evidence":
[rows]}]}`), claims.md and a self-contained claims.html (per claim: one line, a compact table, the figure; the long
text in a detail section) (DIR default runs/claims).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from reports.analysis import plain
from reports.claims_evidence import Source, evidence_rows, item_values, load_source
from reports.claims_figures import claim_figure, length_figure, length_table
from reports.claims_spec import Claim, ClaimsSpec, ClaimsSpecError, load_claims
from reports.render import Section, render_html, render_markdown
from reports.decision import ALPHA, OUTCOMES, conclusion_of, judge
from reports.stats import MAX_SEEDS
from reports.tables import format_frame

ROW_FIELDS = ["evidence", "metric", "sweep", "task", "scope", "candidate", "baseline", "n_seeds", "n_items", "counts",
              "candidate_mean", "baseline_mean", "diff", "ci_low", "ci_high", "ci95_low", "ci95_high", "family_size",
              "p_value", "p_adjusted", "mde80", "seeds_to_detect", "verdict", "predict", "outcome", "margin",
              "margin_reason", "rl_gain", "mechanism_cosine", "mechanism_scale_cv", "looks", "stopped_at", "scale",
              "noise", "run_dir"]
TABLE_COLUMNS = ["evidence", "sweep", "scope", "n_seeds", "n_items", "candidate_mean", "baseline_mean", "diff", "ci",
                 "margin", "p_adjusted", "mde80", "seeds_to_detect", "verdict", "outcome"]
MECHANISM_RESCALING = 0.99  # mean cosine with the baseline's advantages above which an arm is a rescaling of it


def judge_rows(rows: list[dict[str, Any]], alpha: float = ALPHA) -> pd.DataFrame:
    """The claim's rows judged as one family by reports.decision.judge at family-wise level `alpha`:
    family-level interval, `p_adjusted`, `verdict` and `outcome` (holds, fails, undecided)."""
    return judge(pd.DataFrame(rows), alpha)


def place(row: pd.Series) -> str:
    """Where a row was measured: `ablation: multihop | rewards.semantic_density=0.5 (attenuated_pairwise vs ...)`."""
    return f"{row['sweep']}: {row['scope']} ({row['evidence']})"


def numbers(row: pd.Series) -> str:
    """`-0.001 [-0.004, +0.003]` (the family-level interval)."""
    if pd.isna(row["ci_low"]):
        return f"{row['diff']:+.3f}"
    return f"{row['diff']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def margin_text(row: pd.Series) -> str:
    """`margin 0.02 = 16% of the RL gain +0.128` (the share only for rows with the sweep's RL gain)."""
    if pd.isna(row.get("margin")):
        return "no margin"
    text = f"margin {row['margin']:g}"
    gain = row.get("rl_gain")
    if gain is not None and not pd.isna(gain) and gain > 0:
        text += f" = {row['margin'] / gain:.0%} of the RL gain {gain:+.3f}"
    return text


def seeds_text(row: pd.Series) -> str:
    """What an undecided row would need: its MDE80 and the seeds (same items) that would detect its difference; for
    a count of failed trials, the counts (its interval narrows with more trials)."""
    counts = row.get("counts")
    if isinstance(counts, (list, tuple)):
        x1, n1, x2, n2 = counts
        return f"{x1}/{n1} vs {x2}/{n2} trials failed; more trials narrow the interval"
    if pd.isna(row["mde80"]):
        return "too few replicates to estimate the noise"
    seeds = row["seeds_to_detect"]
    need = "" if row["diff"] == 0 else (f", >{MAX_SEEDS} seeds to detect {row['diff']:+.3f}" if pd.isna(seeds)
                                        else f", about {int(seeds)} seeds to detect {row['diff']:+.3f}")
    return f"MDE80 {row['mde80']:.3g} with {int(row['n_seeds'])} seeds{need}"


def lower_is_better(row: pd.Series) -> bool:
    """Whether the row's metric is better lower: `higher_is_better` False (None: a row without a direction, judged
    "higher"/"lower", as reports/decision.oriented reads it)."""
    value = row.get("higher_is_better")
    return value is not None and not pd.isna(value) and not value


def headline(conclusion: str, rows: pd.DataFrame) -> str:
    """One line: the conclusion, the counts of rows that hold / fail / are undecided, and the decisive numbers (the
    deciding rows' differences with their family-level intervals, at most three)."""
    counts = {o: int((rows["outcome"] == o).sum()) for o in OUTCOMES}
    line = (f"**{conclusion}**: {counts['holds']} of {len(rows)} rows hold, {counts['fails']} fail, "
            f"{counts['undecided']} undecided")
    decided = rows[rows["outcome"] != "undecided"]
    shown = [f"{r['task']} {r['verdict']} {numbers(r)}" + (" (lower is better)" if lower_is_better(r) else "")
             for _, r in decided.head(3).iterrows()]
    more = f" and {len(decided) - 3} more" if len(decided) > 3 else ""
    return line + (f" ({'; '.join(shown)}{more})" if shown else "") + "."


def details(rows: pd.DataFrame) -> str:
    """The long summary: every row by outcome, each with its verdict, numbers and margin; undecided rows with what
    they would need."""
    parts = []
    for found, label in (("holds", "Holds on"), ("fails", "Fails on")):
        chosen = rows[rows["outcome"] == found]
        if len(chosen):
            parts.append(f"{label} " + "; ".join(f"{place(r)}: {r['verdict']}, {numbers(r)}, {margin_text(r)}"
                                                 for _, r in chosen.iterrows()))
    undecided = rows[rows["outcome"] == "undecided"]
    if len(undecided):
        parts.append("Undecided on " + "; ".join(f"{place(r)}: {numbers(r)} ({seeds_text(r)})"
                                                 for _, r in undecided.iterrows()))
    return ". ".join(parts) + "."


def mechanism(rows: pd.DataFrame) -> str:
    """What the mechanism check says about the estimator comparisons among `rows`: the mean cosine between the
    candidate's advantages and the baseline estimator's on the same rollouts (metrics.jsonl `mechanism/cosine`),
    and whether the candidate acts as a per-batch rescaling of the baseline (cosine >= MECHANISM_RESCALING), which
    Adam's normalisation makes the same algorithm."""
    if "mechanism_cosine" not in rows:
        return ""
    measured = rows.dropna(subset=["mechanism_cosine"]).drop_duplicates(["sweep", "task", "candidate"])
    if measured.empty:
        return ""
    cosine = measured["mechanism_cosine"]
    spread = measured["mechanism_scale_cv"].dropna()
    text = (f"Mechanism: on the same rollouts the candidate's advantages agree with the baseline estimator's to "
            f"cosine {cosine.min():.4f}-{cosine.max():.4f}" if len(cosine) > 1 and cosine.min() < cosine.max()
            else f"Mechanism: on the same rollouts the candidate's advantages agree with the baseline estimator's to "
                 f"cosine {cosine.iloc[0]:.4f}")
    if len(spread):
        text += f" (per-group scale ratios vary by a coefficient of variation up to {spread.max():.3f})"
    if cosine.min() >= MECHANISM_RESCALING:
        return text + ": here the attenuation acts as a rescaling of the group-mean advantage, which Adam's " \
                      "per-parameter normalisation largely removes, so equal held-out results are what to expect."
    return text + ": the candidate changes the direction of the advantages, not only their scale."


def conclude(rows: pd.DataFrame) -> tuple[str, str, str]:
    """(conclusion, one-line headline, long summary) of judged rows (reports.decision.conclusion_of)."""
    found = conclusion_of(rows["outcome"])
    return found, headline(found, rows), " ".join(filter(None, [details(rows), mechanism(rows)]))


def by_construction(claim: Claim) -> dict[str, Any]:
    """A claim true by construction: its statement and the result of its code check."""
    summary = claim.by_construction
    conclusion = "by construction"
    if claim.check:
        module, _, name = claim.check.partition(":")
        ok, fact = getattr(importlib.import_module(module), name)()
        summary += f" Checked in code ({claim.check}): {fact}."
        if not ok:
            conclusion = "refuted"
    return {"conclusion": conclusion, "headline": f"**{conclusion}**.", "summary": summary, "evidence": [],
            "untested": []}


def judge_claim(claim: Claim, sources: list[Source], alpha: float = ALPHA, settled: bool = True) -> dict[str, Any]:
    """One claim's entry of claims.json, its rows judged at family-wise level `alpha`; with `settled`, rows that a
    sequential sweep settled take its decision (`with_looks`). The sequential procedure itself judges a look with
    `settled` False, so that the settle.json of its earlier looks does not stand in for the look's own judgement."""
    head = {"id": claim.id, "text": claim.text, "source": claim.source, "tested_by": claim.tested_by}
    if claim.by_construction:
        return head | by_construction(claim)
    rows, notes, untested = [], [], []
    for evidence in claim.evidence:
        found = []
        for source in sources:
            new, missing = evidence_rows(source, evidence)
            found += new
            notes += missing
        rows += found
        if not found:
            untested.append(evidence.label)
    if not rows:
        why = f" ({'; '.join(notes)})" if notes else ""
        return head | {"conclusion": "not tested here", "untested": untested, "evidence": [],
                       "headline": f"**not tested here**: {claim.tested_by or 'a sweep of its arms'} would test it.",
                       "summary": f"No run given bears on it{why}; {claim.tested_by or 'a sweep of its arms'} "
                                  "would test it."}
    judged = judge_rows(rows, alpha)
    judged = with_looks(claim.id, judged, sources) if settled else judged
    conclusion, line, summary = conclude(judged)
    if untested:
        summary += (f" Not tested here: {'; '.join(untested)}"
                    + (f" ({'; '.join(notes)})" if notes else "") + f"; {claim.tested_by} would test it.")
    evidence = [{field: whole(field, plain(row[field])) for field in ROW_FIELDS if field in judged}
                for _, row in judged.iterrows()]
    return head | {"conclusion": conclusion, "headline": line, "summary": summary, "untested": untested,
                   "evidence": evidence}


def with_looks(claim_id: str, judged: pd.DataFrame, sources: list[Source]) -> pd.DataFrame:
    """Rows that a sequential sweep settled (reports/sequential.py) take its decision as their `outcome` (the
    procedure's error control covers its looks; a fixed-sample judgement of the final data does not), with their
    `looks` and `stopped_at`; `verdict` and the interval stay those of all the row's seeds."""
    settled = {key: row for source in sources for key, row in source.settled().items()}
    if not settled:
        return judged
    looks, stopped, outcomes = [], [], []
    for _, row in judged.iterrows():
        found = settled.get((claim_id, row["evidence"], row["candidate"], row["baseline"], row["task"],
                             row["scope"]))
        looks.append(found["looks"] if found else None)
        stopped.append(found["stopped_at"] if found else None)
        decision = found["decision"] if found else row["outcome"]
        outcomes.append(decision if decision in OUTCOMES else "undecided")
    return judged.assign(looks=looks, stopped_at=stopped, outcome=outcomes)


def whole(field: str, value: Any) -> Any:
    """Counts as int (pandas turns a column of counts with gaps into floats)."""
    return int(value) if field in ("n_seeds", "n_items", "seeds_to_detect") and value is not None else value


def evaluate(spec: ClaimsSpec, sources: list[Source]) -> dict[str, Any]:
    """claims.json's content."""
    return {"paper": {"title": spec.title, "source": spec.source}, "spec": str(spec.path),
            "runs": [{"name": s.name, "run_dir": str(s.root)} for s in sources],
            "claims": [judge_claim(claim, sources) for claim in spec.claims]}


def summary_table(result: dict[str, Any]) -> pd.DataFrame:
    """One line per claim: id, conclusion and its headline."""
    return pd.DataFrame([{"id": c["id"], "conclusion": c["conclusion"],
                          "in one line": c["headline"].removeprefix(f"**{c['conclusion']}**").lstrip(":. ")
                          or c["summary"]} for c in result["claims"]])


def compact_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by comparison (evidence label), cells (sweep | task | settings) as columns, each entry the
    difference and the outcome: `+0.005 fails`."""
    sweeps = rows["sweep"].nunique() > 1
    cells = [f"{r['sweep']}: {r['scope']}" if sweeps else r["scope"] for _, r in rows.iterrows()]
    entries = [f"{r['diff']:+.3f}\N{NO-BREAK SPACE}{r['outcome']}" if pd.notna(r["diff"]) else r["outcome"]
               for _, r in rows.iterrows()]
    frame = pd.DataFrame({"comparison": rows["evidence"], "cell": cells, "entry": entries})
    table = frame.pivot_table(index="comparison", columns="cell", values="entry", aggfunc="first", sort=False)
    return table.fillna("").reset_index().rename_axis(columns=None)


def claim_sections(result: dict[str, Any], sources: list[Source], out_dir: Path,
                   figures: bool = True) -> tuple[list[Section], list[Section]]:
    """Per claim a short section (the claim, its one-line conclusion, the compact table, the figure) and a detail
    section (the long summary and every row's statistics)."""
    short, detail = [], []
    for claim in result["claims"]:
        section = Section(f"{claim['id']}: {claim['conclusion']}", [
            f"**Claim.** {claim['text']} (source: {claim['source']})", claim["headline"]])
        more = Section(f"{claim['id']} in detail", [claim["summary"]])
        if claim["evidence"]:
            rows = pd.DataFrame(claim["evidence"])
            section.tables.append(compact_table(rows))
            more.tables.append(format_frame(rows, TABLE_COLUMNS))
            if figures:
                section.figures.append(claim_figure(claim["id"], rows, out_dir))
                if (rows["metric"] == "length").any():
                    extra = length_figure(claim["id"], length_trials(sources, set(rows["sweep"])), out_dir)
                    section.figures += [extra] if extra else []
        short.append(section)
        detail.append(more)
    return short, detail


def length_trials(sources: list[Source], names: set[str]) -> list[tuple[str, pd.DataFrame]]:
    """(sweep name, trials with mean held-out length) of the sweeps named."""
    found = []
    for source in sources:
        if source.name in names and source.analysis is not None:
            trials = source.analysis.trials
            found.append((source.name, length_table(trials, [item_values(r, "length") for r in trials["run_dir"]])))
    return found


def explanation(result: dict[str, Any]) -> str:
    runs = ", ".join(f"{r['name']} ({r['run_dir']})" for r in result["runs"])
    return (f"Paper: {result['paper']['title']} ({result['paper']['source']}). Claims from {result['spec']}; runs: "
            f"{runs}. Each evidence row is candidate - baseline on the same seeds (and items, for held-out "
            "metrics). The rows of a claim are one family: each row's interval is the simultaneous 95% interval "
            "over the family (Bonferroni), and every verdict (better, worse, within or beyond the margin, "
            "equivalent, non-inferior) and every outcome (the paper's prediction holds, fails or is undecided) is "
            "read from it, so a refutation needs as much evidence as a confirmation (reports/decision.py). Each "
            "row's margin is the smallest difference that matters, with its reason in the detail section.")


def write_claims(spec: ClaimsSpec, sources: list[Source], out_dir: Path) -> dict[str, Any]:
    """Evaluate the claims over `sources` and write claims.json, claims.md, claims.html and figures/ in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate(spec, sources)
    (out_dir / "claims.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    overview = Section("Claims", [explanation(result)], tables=[summary_table(result)])
    short, detail = claim_sections(result, sources, out_dir / "figures")
    sections = [overview, *short, *detail]
    title = f"Claims report: {spec.title}" if spec.title else "Claims report"
    (out_dir / "claims.md").write_text(render_markdown(title, sections, out_dir))
    (out_dir / "claims.html").write_text(render_html(title, sections))
    return result


def report_section(root: Path, analysis: Any) -> Section | None:
    """The "Claims" box of a sweep's own report: one line per shipped claim that this sweep's runs bear on, with
    its conclusion from this sweep alone; None when it bears on none."""
    source = load_source(root, analysis)
    tested = [judge_claim(claim, [source]) for claim in load_claims().claims if not claim.by_construction]
    tested = [c for c in tested if c["evidence"]]
    if not tested:
        return None
    section = Section("Claims", [
        "The paper's claims (reports/claims.yaml) that this sweep's runs bear on, concluded from this sweep alone "
        f"with the decision rule of reports/decision.py; `lph claims {root}` writes the tables, figures and details "
        "(and combines several sweeps and the exact-gradient diagnostics)."])
    section.bullets = [f"**{c['id']}** {c['text']} {c['headline']}" for c in tested]
    return section


def main(argv: list[str] | None = None) -> None:
    from harness.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m reports.claims", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="sweep directories (results.parquet) and lph diagnose outputs (diagnostics.parquet)")
    parser.add_argument("--out", type=Path, default=Path("runs/claims"), help="output directory")
    parser.add_argument("--spec", type=Path, default=None, help="claims file (default: the shipped reports/claims.yaml)")
    args = parser.parse_args(argv)
    try:
        spec = load_claims(args.spec)
        sources = [load_source(root) for root in args.run_dirs]
    except (ClaimsSpecError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    result = write_claims(spec, sources, args.out)
    for claim in result["claims"]:
        print(f"{claim['id']}: {claim['conclusion']}")
    print(f"report: {args.out / 'claims.html'}")


if __name__ == "__main__":
    main()
