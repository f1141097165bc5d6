"""Statistics of the report: intervals over training seeds and eval items, and power. The decision rule that turns
them into verdicts (one family-level adjustment for every outcome) is reports/decision.py.

Model of one outcome matrix Y (S seeds x I items; for an arm Y[s, i] = correct, for a paired comparison the
difference candidate - baseline on the same seed and item):

    Y[s, i] = mu + a_s + b_i + e_si,   a_s ~ (0, sa2) seeds,  b_i ~ (0, sb2) items,  e_si ~ (0, se2) residual

The target is mu, the mean over the population of training seeds and of eval items. The two-way crossed ANOVA gives

    MS_seed  = I * sum_s (Ybar_s. - Ybar)^2 / (S - 1)                E = se2 + I * sa2
    MS_item  = S * sum_i (Ybar_.i - Ybar)^2 / (I - 1)                E = se2 + S * sb2
    MS_resid = sum_si (Y - Ybar_s. - Ybar_.i + Ybar)^2 / ((S-1)(I-1)) E = se2

and Var(Ybar) = sa2/S + sb2/I + se2/(S*I), estimated without bias by MS_seed/(S*I) + max(MS_item - MS_resid, 0)/(S*I)
(only the item component is truncated at zero). The interval is Ybar +- t_{0.975, df} * SE with df from
Satterthwaite, floored at S - 1 and pulled towards S - 1 by the seed part's share of the variance
(`VarianceComponents.df`): S - 1 when seeds dominate, large when items do.

Outcomes may be fractional: sampled pass@1 is the share of an item's k samples that is correct. The samples'
binomial noise is independent across (seed, item) cells, so it is part of the residual e_si: it enters the three
mean squares as the model says, and the interval needs no term of its own (coverage checked by simulation in
tests/test_stats.py with 0/1 outcomes and with 8 samples per item drawn with common random numbers across arms). An S x 1 matrix (one score per
seed) gives the ordinary t-interval over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
MAX_SEEDS = 1000


Array = float | np.ndarray


@dataclass(frozen=True)
class VarianceComponents:
    """Mean squares of the two-way seeds x items ANOVA of an S x I matrix (MS_item = MS_resid = 0 when I = 1);
    arrays when the matrices carry leading batch axes."""

    n_seeds: int
    n_items: int
    ms_seed: Array
    ms_item: Array
    ms_resid: Array

    @property
    def item_variance(self) -> Array:
        """sb2 = max(MS_item - MS_resid, 0) / S."""
        return np.maximum(np.subtract(self.ms_item, self.ms_resid), 0.0) / self.n_seeds

    def variance(self, n_seeds: Array | None = None) -> Array:
        """Var of the grand mean with `n_seeds` seeds (default: the observed count) and the same items:
        MS_seed / (S' I) + sb2 / I (E[MS_seed] does not depend on the number of seeds)."""
        s = self.n_seeds if n_seeds is None else n_seeds
        return self.ms_seed / (s * self.n_items) + self.item_variance / self.n_items

    def df(self, n_seeds: Array | None = None) -> Array:
        """Degrees of freedom of `variance(n_seeds)`: Satterthwaite's V^2 / (A^2/(S'-1) + B-part) with A =
        MS_seed/(S'I) and B-part = (MS_item'/(S'I))^2/(I-1) + (MS_resid/(S'I))^2/((S'-1)(I-1)), MS_item' = MS_resid +
        S' sb2, when sb2 > 0 (else 0), floored at S' - 1 (the estimate is at least A, which has S' - 1 df, while the
        difference MS_item - MS_resid near zero would drive the formula far below), then pulled towards S' - 1 by
        the seed part's share w = A / V of the estimate: 1/df = w/(S'-1) + (1-w)/df_Satterthwaite. With few seeds
        Satterthwaite's df is liberal where the seed part dominates (an MS_seed that happens to be small both
        narrows the interval and raises the df); the pull keeps the coverage at 0.95-0.97 in tests/test_stats.py's
        simulations, 0/1 and fractional (pass@1 of 8 samples) outcomes, where Satterthwaite alone fell to 0.92."""
        s = np.asarray(self.n_seeds if n_seeds is None else n_seeds, dtype=float)
        i = self.n_items
        seed_part = self.ms_seed / (s * i)
        denominator = seed_part**2 / (s - 1)
        if i > 1:
            ms_item = self.ms_resid + s * self.item_variance
            item_part = (ms_item / (s * i)) ** 2 / (i - 1) + (self.ms_resid / (s * i)) ** 2 / ((s - 1) * (i - 1))
            denominator = denominator + np.where(self.item_variance > 0, item_part, 0.0)
        variance = self.variance(s)
        with np.errstate(divide="ignore", invalid="ignore"):
            satterthwaite = np.maximum(np.where(denominator > 0, variance**2 / denominator, s - 1), s - 1)
            seed_share = np.where(variance > 0, seed_part / variance, 1.0)
        return scalar(1.0 / (seed_share / (s - 1) + (1.0 - seed_share) / satterthwaite))


def scalar(value: np.ndarray) -> Array:
    """A 0-d array as a float, other arrays unchanged."""
    return float(value) if np.ndim(value) == 0 else value


def decompose(matrix: np.ndarray) -> VarianceComponents:
    """The ANOVA mean squares (module docstring) of an S x I matrix with S >= 2, or of each (..., S, I) matrix."""
    y = np.asarray(matrix, dtype=float)
    s, i = y.shape[-2:]
    grand = y.mean(axis=(-2, -1), keepdims=True)
    seed_means = y.mean(axis=-1, keepdims=True)
    item_means = y.mean(axis=-2, keepdims=True)
    ms_seed = scalar(i * ((seed_means - grand) ** 2).sum(axis=(-2, -1)) / (s - 1))
    if i == 1:
        return VarianceComponents(s, i, ms_seed, 0.0, 0.0)
    ms_item = scalar(s * ((item_means - grand) ** 2).sum(axis=(-2, -1)) / (i - 1))
    ms_resid = scalar(((y - seed_means - item_means + grand) ** 2).sum(axis=(-2, -1)) / ((s - 1) * (i - 1)))
    return VarianceComponents(s, i, ms_seed, ms_item, ms_resid)


@dataclass(frozen=True)
class Estimate:
    """Mean of an outcome matrix with its 95% interval, the two-sided t-test of mean = 0 and the 80%-power MDE
    (arrays for a batch of matrices)."""

    n_seeds: int
    n_items: int
    mean: Array
    se: Array
    df: Array
    ci_low: Array
    ci_high: Array
    p_value: Array
    mde80: Array
    components: VarianceComponents | None

    def seeds_to_detect(self, effect: float | None = None) -> int | None:
        """Fewest seeds (same items) whose MDE80 is <= |effect| (default: the observed mean) for one matrix; None
        when no count up to MAX_SEEDS suffices (the item sample limits the power) or the effect is zero."""
        effect = abs(self.mean if effect is None else effect)
        if self.components is None or not effect > 0:
            return None
        seeds = np.arange(2, MAX_SEEDS + 1)
        enough = np.flatnonzero(mde(self.components, seeds) <= effect)
        return int(seeds[enough[0]]) if enough.size else None


def mde(components: VarianceComponents, n_seeds: Array | None = None) -> Array:
    """Minimum detectable effect at 80% power, two-sided alpha 0.05: (t_{1-alpha/2, df} + t_{power, df}) * SE."""
    df = components.df(n_seeds)
    return scalar((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)) * np.sqrt(components.variance(n_seeds)))


def estimate(matrix: np.ndarray) -> Estimate:
    """Mean, SE, Satterthwaite df, t-interval, p-value (t = mean/SE; 1 or 0 when SE = 0) and MDE80 of an S x I
    matrix, or of each matrix of a (..., S, I) batch; NaN statistics with fewer than 2 seeds."""
    y = np.asarray(matrix, dtype=float)
    s, i = y.shape[-2:] if y.ndim >= 2 else (0, 0)
    mean = scalar(y.mean(axis=(-2, -1))) if y.size else math.nan
    if s < 2 or i < 1:
        return Estimate(s, i, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, None)
    components = decompose(y)
    se = np.sqrt(components.variance())
    df = components.df()
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = np.where(se > 0, 2 * stats.t.sf(np.abs(mean) / se, df), np.where(np.equal(mean, 0), 1.0, 0.0))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    return Estimate(s, i, mean, scalar(se), df, scalar(mean - half), scalar(mean + half), scalar(p_value),
                    mde(components), components)
