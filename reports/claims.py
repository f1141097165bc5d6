"""The claims report: `lph claims RUN_DIR [RUN_DIR ...] [--out DIR] [--spec FILE]`.

For every claim of the claims specification (reports/claims.yaml) it collects the evidence rows from the run
directories given (sweeps and `lph diagnose` outputs), adjusts their p-values with Holm's method over the claim's
rows, gives each row the report's verdict and whether the paper's prediction holds on it, and concludes:

  supported        every row holds
  refuted          some row fails (worse, or equivalent where a gain is predicted) and none holds
  mixed            rows hold in some places (task families, settings) and fail or are not detectable in others,
                   each named
  not detectable   no row is decisive at this power (the MDE80 range and the seeds that would detect the observed
                   differences are given)
  not tested here  no run given bears on the claim (the sweep that would test it is named)
  by construction  a claim true by construction (its code check, if any, passed)

Writes DIR/claims.json (`{"claims": [{"id", "text", "source", "conclusion", "summary", "evidence": [rows]}]}`),
claims.md and a self-contained claims.html with a figure per claim (DIR default runs/claims).
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
from reports.stats import MAX_SEEDS, holm, verdict
from reports.tables import format_frame

CONCLUSIONS = ("supported", "refuted", "mixed", "not detectable", "not tested here", "by construction")
HOLDS = {"better": {"better"}, "not_worse": {"better", "equivalent"}, "differs": {"higher", "lower"}}
FAILS = {"better": {"worse", "equivalent"}, "not_worse": {"worse"}, "differs": {"equivalent"}}
ROW_FIELDS = ["evidence", "metric", "sweep", "task", "scope", "candidate", "baseline", "n_seeds", "n_items",
              "candidate_mean", "baseline_mean", "diff", "ci_low", "ci_high", "p_value", "p_holm", "mde80",
              "seeds_to_detect", "verdict", "predict", "outcome", "margin", "scale", "noise", "run_dir"]
TABLE_COLUMNS = ["evidence", "sweep", "scope", "n_seeds", "n_items", "candidate_mean", "baseline_mean", "diff", "ci",
                 "p_holm", "mde80", "seeds_to_detect", "verdict", "outcome"]


def judge_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The claim's rows with `p_holm` (Holm over the claim's rows), `verdict` and `outcome` (holds, fails, not
    detectable)."""
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p_value"].to_numpy(dtype=float))
    verdicts, outcomes = [], []
    for row in frame.itertuples():
        oriented = row.higher_is_better if row.higher_is_better is not None else True
        found = "inconclusive" if pd.isna(row.ci_low) or pd.isna(row.p_holm) else \
            verdict(row.ci_low, row.ci_high, row.p_holm, None if pd.isna(row.margin) else row.margin, oriented)
        if row.higher_is_better is None:
            found = {"better": "higher", "worse": "lower"}.get(found, found)
        verdicts.append(found)
        outcomes.append("holds" if found in HOLDS[row.predict] else
                        "fails" if found in FAILS[row.predict] else "not detectable")
    return frame.assign(verdict=verdicts, outcome=outcomes)


def place(row: pd.Series) -> str:
    """Where a row was measured: `ablation: multihop | rewards.semantic_density=0.5 (attenuated_pairwise vs ...)`."""
    return f"{row['sweep']}: {row['scope']} ({row['evidence']})"


def power(rows: pd.DataFrame) -> str:
    """MDE80 range and the seeds that would detect the observed differences."""
    mde = rows["mde80"].dropna()
    text = f"MDE80 {mde.min():.3g}-{mde.max():.3g}" if len(mde) > 1 and mde.min() < mde.max() else (
        f"MDE80 {mde.iloc[0]:.3g}" if len(mde) else "too few replicates to estimate the noise")
    seeds = ["?" if pd.isna(s) and pd.isna(m) else f">{MAX_SEEDS}" if pd.isna(s) else str(int(s))
             for s, m in zip(rows["seeds_to_detect"], rows["mde80"])]
    counted = [s for s in seeds if s != "?"]
    return text + (f"; seeds to detect the observed differences: {', '.join(counted)}" if counted else "")


def conclude(rows: pd.DataFrame) -> tuple[str, str]:
    """(conclusion, summary sentence) of judged rows (see the module docstring)."""
    holds, fails, unclear = (rows[rows["outcome"] == o] for o in ("holds", "fails", "not detectable"))
    parts = []
    if len(holds):
        parts.append("holds on " + "; ".join(place(r) for _, r in holds.iterrows()))
    if len(fails):
        parts.append("fails on " + "; ".join(f"{place(r)}: {r['verdict']}" for _, r in fails.iterrows()))
    if len(unclear):
        parts.append("not detectable on " + "; ".join(place(r) for _, r in unclear.iterrows())
                     + f" ({power(unclear)})")
    if len(holds) and not len(fails) and not len(unclear):
        conclusion = "supported"
    elif len(fails) and not len(holds):
        conclusion = "refuted"
    elif len(holds):
        conclusion = "mixed"
    else:
        conclusion = "not detectable"
    return conclusion, ". ".join(p[0].upper() + p[1:] for p in parts) + "."


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
    return {"conclusion": conclusion, "summary": summary, "evidence": [], "untested": []}


def judge_claim(claim: Claim, sources: list[Source]) -> dict[str, Any]:
    """One claim's entry of claims.json."""
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
                       "summary": f"No run given bears on it{why}; {claim.tested_by or 'a sweep of its arms'} "
                                  "would test it."}
    judged = judge_rows(rows)
    conclusion, summary = conclude(judged)
    if untested:
        summary += (f" Not tested here: {'; '.join(untested)}"
                    + (f" ({'; '.join(notes)})" if notes else "") + f"; {claim.tested_by} would test it.")
    evidence = [{field: whole(field, plain(row[field])) for field in ROW_FIELDS if field in judged}
                for _, row in judged.iterrows()]
    return head | {"conclusion": conclusion, "summary": summary, "untested": untested, "evidence": evidence}


def whole(field: str, value: Any) -> Any:
    """Counts as int (pandas turns a column of counts with gaps into floats)."""
    return int(value) if field in ("n_seeds", "n_items", "seeds_to_detect") and value is not None else value


def evaluate(spec: ClaimsSpec, sources: list[Source]) -> dict[str, Any]:
    """claims.json's content."""
    return {"paper": {"title": spec.title, "source": spec.source}, "spec": str(spec.path),
            "runs": [{"name": s.name, "run_dir": str(s.root)} for s in sources],
            "claims": [judge_claim(claim, sources) for claim in spec.claims]}


def summary_table(result: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"id": c["id"], "claim": c["text"], "conclusion": c["conclusion"],
                          "evidence rows": len(c["evidence"])} for c in result["claims"]])


def claim_sections(result: dict[str, Any], sources: list[Source], out_dir: Path,
                   figures: bool = True) -> list[Section]:
    """One section per claim: the claim, its source, the conclusion and summary, the evidence table and figures."""
    sections = []
    for claim in result["claims"]:
        section = Section(f"{claim['id']}: {claim['conclusion']}", [
            f"**Claim.** {claim['text']} (source: {claim['source']})",
            f"**Conclusion: {claim['conclusion']}.** {claim['summary']}"])
        if claim["evidence"]:
            rows = pd.DataFrame(claim["evidence"])
            section.tables.append(format_frame(rows, TABLE_COLUMNS))
            if figures:
                section.figures.append(claim_figure(claim["id"], rows, out_dir))
                if (rows["metric"] == "length").any():
                    extra = length_figure(claim["id"], length_trials(sources, set(rows["sweep"])), out_dir)
                    section.figures += [extra] if extra else []
        sections.append(section)
    return sections


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
            "metrics), with its 95% interval; p_holm: Holm's adjustment over the claim's rows; verdicts as in the "
            "sweep report (better/worse: p_holm < 0.05 and the interval excludes 0; equivalent: inside +-margin; "
            "else inconclusive); outcome: whether the paper's prediction (better / not worse / differs) holds, "
            "fails or is not detectable at this power.")


def write_claims(spec: ClaimsSpec, sources: list[Source], out_dir: Path) -> dict[str, Any]:
    """Evaluate the claims over `sources` and write claims.json, claims.md, claims.html and figures/ in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate(spec, sources)
    (out_dir / "claims.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    overview = Section("Claims", [explanation(result)], tables=[summary_table(result)])
    sections = [overview, *claim_sections(result, sources, out_dir / "figures")]
    title = f"Claims report: {spec.title}" if spec.title else "Claims report"
    (out_dir / "claims.md").write_text(render_markdown(title, sections, out_dir))
    (out_dir / "claims.html").write_text(render_html(title, sections))
    return result


def report_section(root: Path, analysis: Any) -> Section | None:
    """The "Claims" section of a sweep's own report: the shipped claims that this sweep's runs bear on, with their
    conclusion from this sweep alone; None when it bears on none."""
    source = load_source(root, analysis)
    tested = [judge_claim(claim, [source]) for claim in load_claims().claims if not claim.by_construction]
    tested = [c for c in tested if c["evidence"]]
    if not tested:
        return None
    section = Section("Claims", [
        "The paper's claims (reports/claims.yaml) that this sweep's runs bear on, concluded from this sweep alone "
        "(`lph claims` combines several sweeps and the exact-gradient diagnostics). Holm's adjustment runs over "
        "each claim's rows; verdicts as below."])
    section.bullets = [f"**{c['id']} {c['conclusion']}**: {c['text']} {c['summary']}" for c in tested]
    rows = pd.DataFrame([r | {"claim": c["id"]} for c in tested for r in c["evidence"]])
    section.tables.append(format_frame(rows, ["claim", *TABLE_COLUMNS]))
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
