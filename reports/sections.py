"""The sections of a sweep report, from an `Analysis`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from reports import figures, tables
from reports.analysis import Analysis
from reports.render import Section
from reports.stats import MAX_SEEDS
from reports.verdicts import verdict_lines

if TYPE_CHECKING:
    import optuna


def verdict_section(analysis: Analysis) -> Section:
    """One sentence per comparison the claims rest on."""
    margin = analysis.options.equivalence_margin
    section = Section("Verdict", [
        f"Primary metric, held-out {analysis.metric}: {analysis.source}. Differences are candidate - baseline on the "
        "same seeds (and the same items). The claim comparisons are one family: each interval is the simultaneous "
        "95% interval over them (Bonferroni; each control is a family of its own), and every verdict is read from "
        "it (reports/decision.py): better/worse when it excludes 0, equivalent when it lies inside "
        f"+-{margin} ({analysis.options.margin_reason}), otherwise inconclusive, with the smallest difference "
        "detectable at 80% power and the seeds that would detect the observed one."])
    section.bullets = verdict_lines(analysis.comparisons, margin)
    if not section.bullets:
        section.text.append("No claim comparison could be made: each needs both arms (e.g. group_mean and "
                            "attenuated_pairwise, or group_mean and warm_start) finished on the same task.")
    return section


def arms_section(analysis: Analysis, out_dir: Path) -> Section:
    """Each arm's mean held-out metric with its interval, table and figure."""
    section = Section(f"Held-out {analysis.metric} by arm")
    if analysis.arms.empty:
        section.text.append("No trial has finished yet.")
        return section
    section.text.append(f"{len(analysis.trials)} finished trials of {len(analysis.results)}. Mean with its 95% "
                        "interval over seeds and items (seeds only where `noise` says so).")
    section.tables.append(tables.format_frame(analysis.arms, tables.ARM_COLUMNS))
    section.figures.append(figures.arm_figure(analysis.arms, analysis.trials, analysis.metric, out_dir))
    return section


def comparisons_section(analysis: Analysis, out_dir: Path) -> Section:
    """Every planned comparison: table and forest plot."""
    section = Section("Paired comparisons")
    if analysis.comparisons.empty:
        section.text.append("No comparison: no two arms of the comparison plan finished on the same task.")
        return section
    section.text.append(
        "Every estimator vs group_mean with the same other parameters, group_mean vs warm_start, shuffled vs "
        "group_mean and semantic density > 0 vs 0, per task. interval and p (adjusted): simultaneous over every claim "
        "comparison of the report (Bonferroni; the controls, group_mean vs warm_start and shuffled vs group_mean, are "
        "each a family of their own). mde80: "
        "smallest difference detectable at 80% power (two-sided 0.05). seeds to detect: seeds (same items) needed "
        f"to detect the observed difference at 80% power; blank when more than {MAX_SEEDS}.")
    section.tables.append(tables.format_frame(analysis.comparisons, tables.COMPARISON_COLUMNS))
    section.figures.append(figures.forest_figure(analysis.comparisons, analysis.options.equivalence_margin, analysis.metric,
                                                  out_dir))
    return section


def efficiency_section(analysis: Analysis, out_dir: Path) -> Section:
    """Area under the held-out curve and steps to threshold, compared; the held-out curves."""
    section = Section("Sample efficiency")
    if analysis.eval_curves.empty:
        section.text.append(f"No eval_curve.jsonl of held-out {analysis.metric} in the trial directories: sample "
                            "efficiency skipped.")
        return section
    source = ("configured (report.threshold)" if analysis.options.threshold is not None
              else f"warm-start {analysis.metric} + half of the best final gain")
    limits = ", ".join(f"{task} {value:.3f}" for task, value in analysis.thresholds.items())
    section.text.append(
        f"auc: held-out {analysis.metric} (fixed subset) integrated over training steps / steps, i.e. its mean during "
        "training. steps: first evaluated step reaching the threshold (censored at the last step; reached: "
        "candidate/baseline trials that reached it). Paired by seed, family-level intervals over seeds within each metric (reports/decision.py); "
        f"fewer steps is better. Threshold, {source}: {limits}.")
    if not analysis.efficiency.empty:
        section.tables.append(tables.format_frame(analysis.efficiency, tables.EFFICIENCY_COLUMNS))
    section.figures.append(figures.eval_curve_figure(analysis.eval_curves, analysis.metric, out_dir))
    return section


def across_section(analysis: Analysis) -> list[Section]:
    """IQM and probability of improvement across tasks (only when a comparison was made on 2+ tasks)."""
    if analysis.across.empty:
        return []
    section = Section("Across tasks", [
        f"Interquartile mean of per-trial held-out {analysis.metric} pooled over tasks and P(candidate > baseline) averaged "
        "over tasks (Agarwal et al. 2021), 95% stratified-bootstrap intervals (seeds resampled within tasks)."])
    section.bullets = [f"{r.comparison} on {r.tasks}: P(improvement) = {r.p_improvement:.2f} "
                       f"[{r.p_improvement_low:.2f}, {r.p_improvement_high:.2f}]; IQM {r.iqm_candidate:.3f} vs "
                       f"{r.iqm_baseline:.3f}." for r in analysis.across.itertuples()]
    section.tables.append(tables.format_frame(analysis.across, tables.ACROSS_COLUMNS))
    return [section]


def curves_section(analysis: Analysis, out_dir: Path) -> Section:
    """Training curves from metrics.jsonl."""
    section = Section("Training curves")
    section.figures = figures.curve_figures(analysis.train_curves, out_dir)
    section.text.append("Per estimator: mean over seeds of each trial's exponential moving average; bands: 95% "
                        "t-interval over seeds. Rows: reward mix; columns: task." if section.figures
                        else "No training metrics were found.")
    return section


def optuna_sections(root: Path) -> list[Section]:
    """Best trial, parameter importances and history of an Optuna sweep, from the `optuna_trials.json` its search
    writes (none for grid sweeps)."""
    import optuna

    path = root / "optuna_trials.json"  # written by harness.sweep.storage.write_trials
    if not path.is_file():
        return []
    study = completed_study(json.loads(path.read_text()))
    section = Section("Optuna search")
    if not study.trials:
        section.text.append("No Optuna trial has completed.")
        return [section]
    best = study.best_trial
    section.text.append(f"Best trial #{best.user_attrs['number']}: objective {best.value:.4f} with {best.params}.")
    if len(study.trials) >= 2:
        importances = optuna.importance.get_param_importances(study)
        section.tables.append(pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())}))
    values = pd.DataFrame({"number": [t.user_attrs["number"] for t in study.trials],
                           "value": [t.value for t in study.trials]})
    best_so_far = values["value"].cummax() if study.direction.name == "MAXIMIZE" else values["value"].cummin()
    section.figures.append(figures.optuna_history_figure(values.assign(best=best_so_far), root / "figures"))
    return [section]


def completed_study(document: dict[str, Any]) -> optuna.Study:
    """An in-memory study of the completed trials of an `optuna_trials.json` document, in the order of their numbers
    (each trial's number in the file is its user attribute `number`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    study = optuna.create_study(direction=document["direction"].lower())
    for trial in sorted(document["trials"], key=lambda t: t["number"]):
        if trial["state"] == "COMPLETE":
            distributions = {k: optuna.distributions.json_to_distribution(d) for k, d in trial["distributions"].items()}
            study.add_trial(optuna.trial.create_trial(params=trial["params"], distributions=distributions,
                                                      value=trial["value"], user_attrs={"number": trial["number"]}))
    return study


def failures_section(results: pd.DataFrame) -> Section:
    """Failed trials with the first line of their error."""
    section = Section("Failed trials")
    failed = tables.failed_trials(results)
    if failed.empty:
        section.text.append("None.")
    else:
        section.text.append(f"{len(failed)} trial(s) failed; their tracebacks are in each trial's result.json.")
        section.tables.append(tables.format_frame(failed))
    return section


def sequential_section(root: Path) -> list[Section]:
    """The looks of a sequential sweep (RUN_DIR/settle.json, reports/sequential.py): per row the seeds it used and
    why it stopped, per arm the seeds run, the trials against the fixed design; none for a fixed design."""
    path = root / "settle.json"
    if not path.is_file():
        return []
    settle = json.loads(path.read_text())
    plan = settle["plan"]
    alphas = ", ".join(f"{a:.4f}" for a in settle["alphas"])
    section = Section("Sequential design", [
        f"Seeds on demand (reports/sequential.py): looks at {plan['start']} seeds, then every {plan['step']} more, "
        f"up to {plan['max']}; each look spends part of alpha ({alphas}: Pocock-type alpha spending, Lan & DeMets "
        "1983), and a row stops at its first decisive look. "
        f"{settle['trials']} trials run against {settle['fixed_design_trials']} in the fixed design at "
        f"{plan['max']} seeds."])
    rows = pd.DataFrame([{"claim": r["id"] or "", "task": r["task"], "comparison": r["scope"],
                          "seeds used": r["stopped_at"], "decision": r["decision"],
                          "looks": "; ".join(f"{look['seeds']}: {look['decision'] or 'undecided'}"
                                             for look in r["looks"])} for r in settle["rows"]])
    arms = pd.DataFrame([{"arm": arm, "seeds run": seeds} for arm, seeds in settle["arms"].items()])
    section.tables += [rows, arms]
    return [section]
