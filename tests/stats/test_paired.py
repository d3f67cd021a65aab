"""harness.stats.paired: the t interval and test against Student's sleep data and the closed form, the
sign test, pairs needed at 80% power, the decision rule, Holm across a family, and coverage by
simulation in the regimes the report uses."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import multiplicity as M
from harness.stats import paired as P

N_SIM = 2000

# Cushny & Peebles (1905) as analysed by Student (1908): extra hours of sleep, drug 2 minus drug 1, for
# 10 patients. R's t.test(extra ~ group, data = sleep, paired = TRUE) prints the other sign:
# t = -4.0621, df = 9, p-value = 0.002833, 95 percent confidence interval -2.4598858 -0.7001142.
SLEEP = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]


def covered(lows, highs, truth):
    lo = np.array([-np.inf if v is None else v for v in lows], dtype=float)
    hi = np.array([np.inf if v is None else v for v in highs], dtype=float)
    return float(np.mean((lo <= truth) & (truth <= hi)))


def test_t_interval_and_p_value_on_students_sleep_data():
    mean, low, high, df = P.paired_t_interval(SLEEP)
    assert (mean, df) == (pytest.approx(1.58, rel=1e-12), 9)
    assert (low, high) == pytest.approx((0.7001142, 2.4598858), abs=5e-8)
    assert P.paired_t_pvalue(SLEEP) == pytest.approx(0.002833, abs=5e-7)


def test_t_interval_is_the_closed_form():
    # mean ± t_{n-1, (1+c)/2} sd / sqrt(n), in float64: 1e-12 relative to the half-width.
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.normal(rng.normal(), rng.exponential() + 0.01, size=rng.integers(2, 20))
        conf = float(rng.uniform(0.8, 0.999))
        half = stats.t.ppf(0.5 + conf / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        mean, low, high, df = P.paired_t_interval(x, conf)
        assert df == x.size - 1 and mean == x.mean()
        assert abs(low - (x.mean() - half)) <= 1e-12 * half and abs(high - (x.mean() + half)) <= 1e-12 * half
        tstat = x.mean() / (x.std(ddof=1) / math.sqrt(x.size))
        assert P.paired_t_pvalue(x) == pytest.approx(2 * stats.t.sf(abs(tstat), x.size - 1), rel=1e-12)
    # diffs 1, 2, 3: mean 2, sd 1.
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert P.paired_t_interval([1, 2, 3]) == pytest.approx((2.0, 2 - half, 2 + half, 2), rel=1e-12)


def test_t_interval_and_p_value_edges():
    mean, lo, hi, df = P.paired_t_interval([0.4])
    assert mean == 0.4 and math.isnan(lo) and math.isnan(hi) and df == 0
    assert all(math.isnan(v) for v in P.paired_t_interval([])[:3])
    assert P.paired_t_interval([0.4, np.nan, 0.4]) == (0.4, 0.4, 0.4, 1)         # no spread, nan left out
    assert math.isnan(P.paired_t_pvalue([0.4])) and P.paired_t_pvalue([0.0, 0.0]) == 1.0
    assert P.paired_t_pvalue([2.0, 2.0]) == 0.0


def test_pairs_needed_at_80_percent_power():
    # Effect size 1 (mean 1, sd 1), paired t at 5% two-sided: the textbook answer (G*Power, Cohen) is
    # n = 10 for 80% power (power 0.803 at 10, 0.762 at 9, from the noncentral t).
    assert P.pairs_needed(1.0, 1.0) == 10
    crit = stats.t.ppf(0.975, [8, 9])
    power = stats.nct.sf(crit, [8, 9], np.sqrt([9, 10])) + stats.nct.cdf(-crit, [8, 9], np.sqrt([9, 10]))
    assert power[0] < 0.8 <= power[1]
    assert P.pairs_needed(1.0, 1.0, power=0.5) in (6, 7)
    assert P.pairs_needed(0.0, 1.0) is None
    assert P.pairs_needed(1e-6, 1.0, cap=50) == 50
    # No spread: the n at which that many same-signed differences decide by the sign test (2 / 2**6 < 0.05).
    assert P.pairs_needed(0.3, 0.0) == 6
    assert P.pairs_needed(0.3, 0.0, confidence=0.99) == 8


def test_identical_differences_are_decided_by_the_sign_test_not_a_zero_width_interval():
    # The exact sign test's p-value for n identical non-zero differences is 2 * 0.5**n.
    assert P.sign_test_pvalue([1475] * 5) == pytest.approx(2 * 0.5 ** 5, rel=1e-12)
    assert P.paired_pvalue([1475] * 6) == pytest.approx(2 * 0.5 ** 6, rel=1e-12)
    assert P.sign_test_pvalue([1.0, -1.0, 0.0]) == pytest.approx(1.0, rel=1e-12)   # zeros left out: 1 of 2
    assert P.sign_test_pvalue([0.0, 0.0]) == 1.0 and math.isnan(P.sign_test_pvalue([]))
    assert P.paired_pvalue([1.0, 2.0, 3.0]) == P.paired_t_pvalue([1.0, 2.0, 3.0])
    five = P.decide([1475.0] * 5, 0.95)
    assert not five.claimed and math.isnan(five.low) and math.isnan(five.high)
    assert five.pairs_suggested == 6 and "sign test" in five.reason
    six = P.decide([1475.0] * 6, 0.95)
    assert six.claimed and six.direction == 1 and math.isnan(six.low) and P.replication_probability(six) == 1.0
    assert not P.decide([0.0] * 6, 0.95).claimed
    # Equal up to rounding (sums taken in another order) counts as equal: no zero-width t interval.
    noisy = np.array([0.1 + 0.2, 0.3, 0.3 + 1e-17, 0.15 + 0.15, 0.3, 0.3]) - 0.0
    assert P.all_equal(noisy) and math.isnan(P.decide(noisy, 0.95).low)
    assert not P.all_equal([0.3, 0.3001])
    # In a family the sign test's p-value enters Holm: 6 identical differences and one noisy null row.
    fam = P.corrected_effects([np.full(6, -40.0), np.array([0.1, -0.2, 0.05, 0.0, 0.1, -0.1])])
    assert fam[0].p_value == pytest.approx(2 * 0.5 ** 6, rel=1e-12)
    assert fam[0].p_adjusted == pytest.approx(2 * 2 * 0.5 ** 6, rel=1e-12)
    assert not fam[0].claimed          # Holm at 2 rows: 0.03125 is not below 0.025


def test_decision_rule_needs_interval_and_five_pairs():
    two = P.decide([0.10, 0.12], 0.95)           # 2 seeds: interval (-0.017, 0.237) holds zero
    assert not two.claimed and two.pairs_suggested == 5 and two.more_pairs == 3
    assert two.reason == "interval contains zero"
    three = P.decide([1.0, 1.1, 0.9], 0.95)      # excludes zero, but 3 < 5 pairs
    assert not three.claimed and three.low > 0 and three.more_pairs == 2
    six = P.decide([-1.0, -1.1, -0.9, -1.0, -1.2, -0.8], 0.95)
    assert six.claimed and six.direction == -1 and six.more_pairs is None
    noisy = P.decide([0.05, -0.04, 0.02], 0.95)
    assert not noisy.claimed and noisy.pairs_suggested is not None and noisy.pairs_suggested > 5
    assert P.decide([0.5], 0.95).pairs_suggested is None


def test_effect_undecided():
    assert P.effect_undecided(-0.1, 0.2) and P.effect_undecided(math.nan, math.nan)
    assert not P.effect_undecided(0.01, 0.2) and not P.effect_undecided(-0.3, -0.01)


def test_replication_probability_closed_form():
    # Phi((|mean| - c se) / (sqrt 2 se)), se = half-width / c.
    d = P.EffectDecision(5, 1.0, 0.3, 1.7, 0.95, math.nan, math.nan, True, 1, None, False, "")
    c = stats.t.ppf(0.975, 4)
    se = 0.7 / c
    assert P.replication_probability(d) == pytest.approx(stats.norm.cdf((1.0 - c * se) / (math.sqrt(2) * se)),
                                                         rel=1e-12)


def test_holm_intervals_agree_with_holm_decisions():
    rng = np.random.default_rng(0)
    for _ in range(100):
        rows = [rng.normal(rng.choice([0.0, 0.5, 1.0]), 1.0, size=rng.integers(5, 12)) for _ in range(6)]
        decisions = P.corrected_effects(rows)
        adj = M.holm_adjust([P.paired_t_pvalue(r) for r in rows])
        assert [d.claimed for d in decisions] == (adj < 0.05).tolist()
        assert [d.confidence for d in decisions] == M.holm_levels([P.paired_t_pvalue(r) for r in rows]).tolist()


# ----------------------------------------------------------------------------- coverage by simulation
# Each 95% interval must cover the true value in 93-97% of 2,000 simulated data sets (the binomial
# standard error of a coverage estimate is 0.5%).

def test_t_coverage_at_five_pairs():
    rng = np.random.default_rng(12)
    ivs = [P.paired_t_interval(rng.normal(0.03, 0.05, size=5))[1:3] for _ in range(N_SIM)]
    assert 0.93 <= covered(*zip(*ivs), 0.03) <= 0.97


def _restricted(rng, p_reach, size, tau=940.0):
    """min(T, tau) for runs that reach the target with probability p_reach at a gamma-spread step."""
    reach = rng.random(size) < p_reach
    return np.where(reach, np.minimum(150.0 + rng.gamma(3.0, 80.0, size), tau), tau)


def test_t_interval_over_seed_averages_of_restricted_times_coverage():
    # 4 settings of the other factors, success rates 0.1-0.95 per side; the per-seed average over the
    # settings is near normal, so the t interval holds at 5 and at 8 seeds.
    rng = np.random.default_rng(21)
    p = np.array([[0.9, 0.95], [0.6, 0.9], [0.3, 0.7], [0.1, 0.2]])
    big = 200_000
    truth = np.mean([_restricted(rng, b, big).mean() - _restricted(rng, a, big).mean() for a, b in p])
    for n in (5, 8):
        ivs = []
        for _ in range(N_SIM):
            d = np.mean([_restricted(rng, b, n) - _restricted(rng, a, n) for a, b in p], axis=0)
            ivs.append(P.paired_t_interval(d)[1:3])
        assert 0.93 <= covered(*zip(*ivs), truth) <= 0.97, n


def test_t_interval_over_seed_averages_of_bimodal_accuracy_coverage():
    rng = np.random.default_rng(22)
    p = np.array([[0.9, 0.95], [0.6, 0.9], [0.3, 0.7], [0.1, 0.2]])
    truth = float(np.mean(0.7 * (p[:, 1] - p[:, 0])))            # learn: 0.8, chance: 0.1

    def acc(pr, n):
        return np.where(rng.random(n) < pr, 0.8, 0.1) + rng.normal(0.0, 0.02, n)

    ivs = [P.paired_t_interval(np.mean([acc(b, 5) - acc(a, 5) for a, b in p], axis=0))[1:3] for _ in range(N_SIM)]
    assert 0.93 <= covered(*zip(*ivs), truth) <= 0.97


def test_corrected_effects_family_wise_error_under_the_null():
    # 10 effect rows with no true difference, 8 seeds each: Holm keeps P(any claim) at or below 5%.
    # Claims are read through holm_adjust (fast; corrected_effects' intervals agree with it, tested above),
    # and corrected_effects itself on the first 100 families.
    rng = np.random.default_rng(23)
    x = rng.normal(0, 1, size=(N_SIM, 10, 8))
    p = stats.ttest_1samp(x, 0.0, axis=2).pvalue                    # (N_SIM, 10)
    any_claim = np.array([(M.holm_adjust(row) < 0.05).any() for row in p])
    assert 0.02 <= any_claim.mean() <= 0.06
    for fam, expected in zip(x[:100], any_claim[:100]):
        assert any(d.claimed for d in P.corrected_effects(list(fam))) == expected
