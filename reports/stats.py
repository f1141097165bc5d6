"""Statistics of the report: confidence intervals over seeds and paired comparisons against the baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval mean +- t_{0.975, n-1} * s / sqrt(n) (NaN bounds for fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else math.nan
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def bootstrap_ci(differences: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of paired differences (resampling pairs, seeded)."""
    differences = np.asarray(differences, dtype=float)
    if differences.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, differences.size, (BOOTSTRAP_RESAMPLES, differences.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, 0.5 + CONFIDENCE / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """Candidate minus baseline over the seeds both finished."""

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def verdict(self) -> str:
        """"better"/"worse" only when the bootstrap interval excludes zero."""
        if self.n >= 2 and self.ci_low > 0:
            return "better"
        if self.n >= 2 and self.ci_high < 0:
            return "worse"
        return f"no detectable difference with {self.n} seeds"


def paired_comparison(candidate: np.ndarray, baseline: np.ndarray) -> PairedComparison:
    """Mean of candidate - baseline, its bootstrap interval and the two-sided paired t-test's p-value
    (p = 1 when every difference is equal to zero, NaN with fewer than 2 pairs)."""
    differences = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    low, high = bootstrap_ci(differences)
    if differences.size < 2:
        p_value = math.nan
    elif np.allclose(differences, differences[0]):
        p_value = 1.0 if differences[0] == 0 else 0.0
    else:
        p_value = float(stats.ttest_rel(candidate, baseline).pvalue)
    mean = float(differences.mean()) if differences.size else math.nan
    return PairedComparison(int(differences.size), mean, low, high, p_value)
