"""The claims specification (reports/claims.yaml, format in its header): claims, their evidence comparisons, and the
matching of a comparison's candidate / baseline / exclude conditions against a sweep's arms."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reports.data import ESTIMATOR, Arm, make_arm
from reports.decision import NEEDS_MARGIN, PREDICTIONS

SPEC = Path(__file__).with_name("claims.yaml")
AGGREGATES = ("mean", "last", "max", "min")
COMPARATORS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
CONDITION = re.compile(r"^\s*(>=|<=|!=|>|<)\s*(-?[0-9.eE+-]+)\s*$")


class ClaimsSpecError(ValueError):
    """A claims file that does not follow the format of reports/claims.yaml's header."""


@dataclass(frozen=True)
class Evidence:
    """One comparison that tests a claim (see the header of reports/claims.yaml)."""

    label: str
    metric: str
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    predict: str
    exclude: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool | None = True
    margin: float | None = None
    margin_reason: str = ""
    log: bool = False
    agg: str = "mean"
    group_size: int = 8
    sweeps: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """accuracy | length | train | diagnostics | failures."""
        return self.metric.split(":", 1)[0]

    @property
    def key(self) -> str:
        """The metrics.jsonl key (train:KEY) or diagnostics column (diagnostics:COLUMN); else the metric."""
        return self.metric.split(":", 1)[-1]

    def counts(self, sweep: str) -> bool:
        """Whether runs of the sweep named `sweep` bear on this comparison."""
        return not self.sweeps or sweep in self.sweeps


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    source: str
    tested_by: str = ""
    evidence: tuple[Evidence, ...] = ()
    by_construction: str = ""
    check: str = ""


@dataclass(frozen=True)
class ClaimsSpec:
    title: str
    source: str
    claims: tuple[Claim, ...]
    path: Path


def load_claims(path: Path | str | None = None) -> ClaimsSpec:
    """Read and validate a claims file (default: the shipped reports/claims.yaml); errors name the file and claim."""
    path = Path(path) if path is not None else SPEC
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ClaimsSpecError(f"{path}: cannot read the claims file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list) or not data["claims"]:
        raise ClaimsSpecError(f"{path}: expected a mapping with a non-empty list `claims`")
    paper = data.get("paper") or {}
    claims = tuple(parse_claim(entry, f"{path}: claims[{k}]") for k, entry in enumerate(data["claims"]))
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ClaimsSpecError(f"{path}: claim ids must be unique, got {ids}")
    return ClaimsSpec(str(paper.get("title", "")), str(paper.get("source", "")), claims, path)


def parse_claim(entry: Any, where: str) -> Claim:
    allowed = {"id", "text", "source", "tested_by", "evidence", "by_construction", "check"}
    if not isinstance(entry, dict) or not {"id", "text"} <= set(entry):
        raise ClaimsSpecError(f"{where}: a claim needs at least `id` and `text`")
    where = f"{where} ({entry['id']})"
    unknown(entry, allowed, where)
    evidence = entry.get("evidence") or []
    if not isinstance(evidence, list):
        raise ClaimsSpecError(f"{where}: `evidence` must be a list")
    if not evidence and not entry.get("by_construction"):
        raise ClaimsSpecError(f"{where}: give `evidence` or `by_construction`")
    return Claim(str(entry["id"]), " ".join(str(entry["text"]).split()), str(entry.get("source", "")),
                 str(entry.get("tested_by", "")),
                 tuple(parse_evidence(e, f"{where}: evidence[{k}]") for k, e in enumerate(evidence)),
                 " ".join(str(entry.get("by_construction", "")).split()), str(entry.get("check", "")))


def parse_evidence(entry: Any, where: str) -> Evidence:
    allowed = {"label", "metric", "candidate", "baseline", "exclude", "predict", "higher_is_better", "margin",
               "margin_reason", "log", "agg", "G", "sweeps"}
    if not isinstance(entry, dict):
        raise ClaimsSpecError(f"{where}: expected a mapping")
    unknown(entry, allowed, where)
    for key in ("metric", "candidate", "baseline", "predict"):
        if key not in entry:
            raise ClaimsSpecError(f"{where}: missing `{key}`")
    metric = str(entry["metric"])
    kind = metric.split(":", 1)[0]
    if kind not in ("accuracy", "length", "failures", "train", "diagnostics") or (
            kind in ("train", "diagnostics") and ":" not in metric):
        raise ClaimsSpecError(f"{where}: metric {metric!r}: expected accuracy, length, failures, train:KEY or "
                              "diagnostics:COLUMN")
    if entry["predict"] not in PREDICTIONS:
        raise ClaimsSpecError(f"{where}: predict {entry['predict']!r}: expected one of {', '.join(PREDICTIONS)}")
    for key in ("candidate", "baseline", "exclude"):
        if not isinstance(entry.get(key, {}), dict):
            raise ClaimsSpecError(f"{where}: `{key}` must be a mapping of dotted keys to values")
    for key, value in entry["baseline"].items():
        if isinstance(value, (list, dict)) or condition(value) is not None:
            raise ClaimsSpecError(f"{where}: baseline {key}: a plain value is needed (it replaces the candidate's)")
    higher = entry.get("higher_is_better", False if kind == "failures" else True)
    if higher is None and not entry["predict"].startswith("differs"):
        raise ClaimsSpecError(f"{where}: higher_is_better: null only goes with predict: differs or differs_by_margin")
    if entry.get("margin") is not None and not str(entry.get("margin_reason", "")).strip():
        raise ClaimsSpecError(f"{where}: margin {entry['margin']} needs a `margin_reason` (why a smaller difference "
                              "does not matter)")
    if entry["predict"] in NEEDS_MARGIN and entry.get("margin") is None and kind != "accuracy":
        raise ClaimsSpecError(f"{where}: predict {entry['predict']} needs a `margin` (accuracy rows take the "
                              "sweep's report.equivalence_margin)")
    if entry.get("agg", "mean") not in AGGREGATES:
        raise ClaimsSpecError(f"{where}: agg {entry['agg']!r}: expected one of {', '.join(AGGREGATES)}")
    sweeps = entry.get("sweeps") or []
    return Evidence(str(entry.get("label", metric)), metric, dict(entry["candidate"]), dict(entry["baseline"]),
                    str(entry["predict"]), dict(entry.get("exclude") or {}), higher,
                    None if entry.get("margin") is None else float(entry["margin"]),
                    " ".join(str(entry.get("margin_reason", "")).split()), bool(entry.get("log", False)),
                    str(entry.get("agg", "mean")), int(entry.get("G", 8)), tuple(str(s) for s in sweeps))


def unknown(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ClaimsSpecError(f"{where}: unknown key(s) {extra}; allowed: {', '.join(sorted(allowed))}")


def condition(value: Any) -> tuple[Any, float] | None:
    """(comparator, number) of a string condition such as ">0" or "<=4"; None for anything else."""
    match = CONDITION.match(value) if isinstance(value, str) else None
    return (COMPARATORS[match.group(1)], float(match.group(2))) if match else None


def value_matches(actual: Any, wanted: Any) -> bool:
    """`actual` (an arm's parameter, None when the arm lacks it) against a scalar, a list or a condition."""
    if isinstance(wanted, list):
        return any(value_matches(actual, w) for w in wanted)
    test = condition(wanted)
    if test is not None:
        number = to_number(actual)
        return number is not None and test[0](number, test[1])
    if actual is None:
        return False
    number, target = to_number(actual), to_number(wanted)
    if number is not None and target is not None:
        return math.isclose(number, target, rel_tol=0, abs_tol=1e-12)
    return str(actual) == str(wanted)


def to_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def matches(params: dict[str, Any], conditions: dict[str, Any]) -> bool:
    """Every condition holds on `params`."""
    return all(value_matches(params.get(key), wanted) for key, wanted in conditions.items())


def excluded(params: dict[str, Any], exclude: dict[str, Any]) -> bool:
    """Any exclude condition holds on `params`."""
    return any(value_matches(params.get(key), wanted) for key, wanted in exclude.items())


def arm_pairs(arms: list[Arm], evidence: Evidence) -> list[tuple[Arm, Arm]]:
    """(candidate, baseline) arms of `arms` for a comparison: each arm matching `candidate` and no `exclude`
    condition, with the baseline = the same arm with `baseline`'s keys set (its other estimator.* keys dropped when
    the estimator is replaced); pairs whose baseline is absent are left out."""
    present = set(arms)
    pairs = []
    for arm in arms:
        params = dict(arm.params)
        if not matches(params, evidence.candidate) or excluded(params, evidence.exclude):
            continue
        target = {k: v for k, v in params.items()
                  if not (ESTIMATOR in evidence.baseline and k.startswith("estimator.") and k != ESTIMATOR)}
        baseline = find_arm(make_arm(arm.task, target | evidence.baseline), present)
        if baseline is not None and baseline != arm:
            pairs.append((arm, baseline))
    return sorted(pairs, key=lambda p: (p[0].task, p[0].label))


def find_arm(target: Arm, arms: set[Arm]) -> Arm | None:
    """`target` when present; else the single arm with its task, parameters (numbers compared as numbers) and
    possibly more estimator.* keys (a variants sweep's group_mean arm)."""
    if target in arms:
        return target
    wanted = dict(target.params)
    found = [a for a in arms if a.task == target.task
             and all(value_matches(dict(a.params).get(k), v) for k, v in wanted.items())
             and all(k in wanted or k.startswith("estimator.") for k in dict(a.params))]
    return found[0] if len(found) == 1 else None
