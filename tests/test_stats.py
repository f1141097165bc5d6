"""reports.stats: the seeds x items interval against independent computations, its coverage in simulated sweeps,
and power (the decision rule built on them: tests/test_decision.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.aggregate import iqm, probability_of_improvement
from reports.stats import estimate

SIMULATIONS = 4000
N_ITEMS = 150
EFFECT = 0.05


def satterthwaite_by_hand(y: np.ndarray) -> tuple[float, float, float]:
    """Independent computation (statsmodels OLS ANOVA y ~ C(seed) + C(item)): (mean, SE, df) of the grand mean
    with Var = MS_seed/(SI) + (MS_item - MS_resid)/(SI), Satterthwaite's df pulled towards S - 1 by the seed part's
    share w of Var: 1/df = w/(S-1) + (1-w)/df_Satterthwaite."""
    sm = pytest.importorskip("statsmodels.formula.api")
    anova_lm = pytest.importorskip("statsmodels.stats.anova").anova_lm
    s, i = y.shape
    frame = pd.DataFrame({"y": y.ravel(), "seed": np.repeat(np.arange(s), i), "item": np.tile(np.arange(i), s)})
    table = anova_lm(sm.ols("y ~ C(seed) + C(item)", frame).fit())
    ms = table["sum_sq"] / table["df"]
    ms_seed, ms_item, ms_resid = ms["C(seed)"], ms["C(item)"], ms["Residual"]
    assert ms_item > ms_resid  # the fixture has item variance: no truncation
    a, b, c = ms_seed / (s * i), ms_item / (s * i), ms_resid / (s * i)
    variance = a + b - c
    satterthwaite = max(variance**2 / (a**2 / (s - 1) + b**2 / (i - 1) + c**2 / ((s - 1) * (i - 1))), s - 1)
    share = a / variance
    return float(y.mean()), float(np.sqrt(variance)), float(1 / (share / (s - 1) + (1 - share) / satterthwaite))


def test_two_way_interval_matches_an_anova_by_statsmodels():
    rng = np.random.default_rng(3)
    p = 0.5 + rng.normal(0, 0.05, (4, 1)) + rng.uniform(-0.3, 0.3, (1, 60))
    y = (rng.random((4, 60)) < p).astype(float)
    mean, se, df = satterthwaite_by_hand(y)
    result = estimate(y)
    assert (result.mean, result.se, result.df) == pytest.approx((mean, se, df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * se
    assert (result.ci_low, result.ci_high) == pytest.approx((mean - half, mean + half))
    assert result.p_value == pytest.approx(2 * stats.t.sf(mean / se, df))
    assert result.mde80 == pytest.approx((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se)


def test_one_score_per_seed_is_the_paired_t_test():
    candidate, baseline = np.array([0.52, 0.61, 0.55, 0.66]), np.array([0.45, 0.53, 0.51, 0.59])
    result = estimate((candidate - baseline)[:, None])
    test = stats.ttest_rel(candidate, baseline)
    interval = test.confidence_interval(0.95)
    assert result.p_value == pytest.approx(test.pvalue) and result.df == 3
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))


def test_df_never_below_the_seed_count_when_items_add_nothing():
    """Paired 0/1 differences without any item effect: MS_item ~ MS_resid, so Satterthwaite's formula would give
    df < 1 and an interval many times too wide; the floor keeps df >= S - 1."""
    rng = np.random.default_rng(2)
    y = (rng.random((5, 200)) < 0.5).astype(float) - (rng.random((5, 200)) < 0.5)
    result = estimate(y)
    assert result.df >= 4
    assert result.ci_high - result.ci_low <= 2 * stats.t.ppf(0.975, 4) * result.se + 1e-12


def test_degenerate_matrices():
    assert np.isnan(estimate(np.ones((1, 10))).ci_low)  # one seed: no interval
    same = estimate(np.zeros((3, 10)))
    assert (same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 1.0)
    assert same.seeds_to_detect() is None


def simulate(n_seeds: int, rng: np.random.Generator, samples: int = 1) -> tuple[np.ndarray, np.ndarray, float, float]:
    """SIMULATIONS sweeps of one task: candidate and baseline per-item outcomes on the same N_ITEMS items (drawn
    afresh per sweep) and seeds. P(correct) = 0.5 + shared seed effect (sd 0.03) + arm seed effect (sd 0.02)
    + item effect (uniform, sd 0.12) + candidate x item effect (uniform, sd 0.02) + EFFECT for the candidate.
    An outcome is 0/1 (`samples` = 1) or, as in sampled pass@1, the share of `samples` draws that are correct, the
    two arms of a seed drawing with the same uniforms per item and sample (the harness's seeded streams: common
    random numbers). Returns (baseline, candidate, true baseline mean, true difference)."""
    half_width = np.sqrt(3)  # uniform(-w, w) has sd w / sqrt(3)
    item = rng.uniform(-half_width, half_width, (SIMULATIONS, 1, N_ITEMS)) * 0.12
    interaction = rng.uniform(-half_width, half_width, (SIMULATIONS, 1, N_ITEMS)) * 0.02
    shared = rng.normal(0, 0.03, (SIMULATIONS, n_seeds, 1))
    p_base = 0.5 + shared + rng.normal(0, 0.02, (SIMULATIONS, n_seeds, 1)) + item
    p_cand = 0.5 + EFFECT + shared + rng.normal(0, 0.02, (SIMULATIONS, n_seeds, 1)) + item + interaction
    assert p_base.min() > 0 and p_cand.max() < 1  # the additive model holds exactly: E[y] = p
    if samples == 1:
        shape = (SIMULATIONS, n_seeds, N_ITEMS)
        return (rng.random(shape) < p_base).astype(float), (rng.random(shape) < p_cand).astype(float), 0.5, EFFECT
    uniforms = rng.random((SIMULATIONS, n_seeds, N_ITEMS, samples), dtype=np.float32)
    share = lambda p: (uniforms < p[..., None]).mean(axis=-1, dtype=float)  # noqa: E731
    return share(p_base), share(p_cand), 0.5, EFFECT


@pytest.mark.parametrize(("n_seeds", "samples"), [(3, 1), (5, 1), (10, 1), (3, 8), (5, 8), (10, 8)])
def test_interval_coverage_in_simulated_sweeps(n_seeds, samples):
    """The 95% intervals of the arm mean and of the paired difference cover the truth 93-97% of the time, with 0/1
    outcomes and with fractional ones (pass@1 over 8 samples). The samples' binomial noise is independent across
    (seed, item) cells, so it is part of the residual e_si of the two-way model (reports.stats): it enters MS_seed,
    MS_item and MS_resid as the model says and the interval needs no term of its own."""
    baseline, candidate, mean, effect = simulate(n_seeds, np.random.default_rng(n_seeds), samples)
    arm, paired = estimate(baseline), estimate(candidate - baseline)
    arm_coverage = np.mean((arm.ci_low <= mean) & (mean <= arm.ci_high))
    paired_coverage = np.mean((paired.ci_low <= effect) & (effect <= paired.ci_high))
    print(f"seeds {n_seeds}, samples {samples}: arm mean coverage {arm_coverage:.3f}, paired difference coverage "
          f"{paired_coverage:.3f}")
    assert 0.93 <= arm_coverage <= 0.97
    assert 0.93 <= paired_coverage <= 0.97


def test_mde80_is_the_effect_detected_four_times_in_five():
    """Sweeps whose true difference is the MDE80 of their design (true SE, typical df) reject H0 75-85% of the
    time; a pilot's MDE80 is reached with its own seed count and not with fewer."""
    baseline, candidate, _, _ = simulate(5, np.random.default_rng(11))
    null = candidate - baseline - EFFECT  # the same outcomes with the difference shifted to 0 (a location model)
    result = estimate(null)
    df, true_se = np.median(result.df), np.std(result.mean)
    design_mde = (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * true_se
    rejections = np.mean(estimate(null + design_mde).p_value < 0.05)
    print(f"rejection rate at the MDE80: {rejections:.3f}")
    assert 0.75 <= rejections <= 0.85
    pilot = estimate(null[0])
    assert pilot.seeds_to_detect(pilot.mde80 * 1.001) <= 5 < pilot.seeds_to_detect(pilot.mde80 * 0.95)


def test_seeds_to_detect_is_limited_by_the_items():
    """With items fixed, the SE has a floor sqrt(item variance / I): effects below it need more than MAX_SEEDS."""
    rng = np.random.default_rng(5)
    y = rng.normal(0, 1, (4, 30)) + rng.normal(0, 3, (1, 30))
    result = estimate(y)
    floor = np.sqrt(result.components.item_variance / 30)
    assert result.seeds_to_detect(2 * floor) is None
    assert result.seeds_to_detect(10 * floor) is not None


def test_iqm_and_probability_of_improvement_by_hand():
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])  # sorted: drop 0.1, 0.2 and 0.7, 0.9
    assert iqm(scores) == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.6]))
    x, y = [np.array([0.5, 0.7]), np.array([0.1])], [np.array([0.5, 0.6, 0.2]), np.array([0.3])]
    pairs = [(a, b) for a in x[0] for b in y[0]]
    task_one = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert probability_of_improvement(x, y) == pytest.approx((task_one + 0.0) / 2)
