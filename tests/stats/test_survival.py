"""harness.stats.survival: Kaplan-Meier and its log-log band against the 6-MP leukaemia data's published
numbers and a float64 hand computation, the median with the Brookmeyer-Crowley interval against R, and
the interval's coverage by simulation."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from harness.stats import survival as S

Z = stats.norm.ppf(0.975)

# Freireich et al. (1963) leukaemia remission data, the textbook example of Kaplan-Meier (Klein &
# Moeschberger, table 1.1; Kleinbaum & Klein, ch. 2).
MP_T = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
MP_E = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
PLACEBO_T = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
PLACEBO_E = [1] * 21


def band_by_hand(times, reached, z=Z):
    """(event times, S, lower, upper) from the Kaplan-Meier table in float64: a run censored at t is at
    risk at t; the band is S ** exp(±z sqrt(sum d/(n(n-d))) / |log S|), 0 where S is 0."""
    t, e = np.asarray(times, float), np.asarray(reached, bool)
    u = np.unique(t[e])
    n = np.array([(t >= x).sum() for x in u], float)
    d = np.array([((t == x) & e).sum() for x in u], float)
    s = np.cumprod(1 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.cumsum(np.where(n > d, d / (n * (n - d)), np.inf))
        se = np.sqrt(g) / np.abs(np.log(s))
        lower = np.where(s > 0, s ** np.exp(z * se), 0.0)
        upper = np.where(s > 0, s ** np.exp(-z * se), 0.0)
    return u, s, lower, upper


def test_kaplan_meier_on_the_6mp_data():
    km = S.kaplan_meier(MP_T, MP_E)
    assert km.times.tolist() == [6, 7, 10, 13, 16, 22, 23]
    factors = [Fraction(18, 21), Fraction(16, 17), Fraction(14, 15), Fraction(11, 12), Fraction(10, 11),
               Fraction(6, 7), Fraction(5, 6)]
    expected = np.cumprod([float(f) for f in factors])
    assert km.survival == pytest.approx(expected, rel=1e-12)


def test_log_log_band_gives_the_published_greenwood_errors():
    # The band's ends give back se(log(-log S)), hence Greenwood's standard error of S, S |log S| se:
    # as published for 6-MP (Klein & Moeschberger, example 4.1), to 4 decimals.
    times, s, lower, _ = S.km_band(MP_T, MP_E)
    se = (np.log(-np.log(lower)) - np.log(-np.log(s))) / Z
    greenwood = s * np.abs(np.log(s)) * se
    assert greenwood == pytest.approx([0.0764, 0.0869, 0.0963, 0.1068, 0.1141, 0.1282, 0.1346], abs=6e-5)
    # At t = 13 by hand: [0.4316, 0.8491].
    i = times.tolist().index(13)
    assert (lower[i], S.km_band(MP_T, MP_E)[3][i]) == pytest.approx((0.4316, 0.8491), abs=1e-4)


def test_band_is_the_hand_computation_with_ties_censoring_and_a_curve_that_reaches_zero():
    rng = np.random.default_rng(0)
    cases = [(MP_T, MP_E), (PLACEBO_T, PLACEBO_E), ([3, 3, 5, 5, 5, 8], [1, 0, 1, 1, 0, 1])]
    cases += [(rng.integers(1, 12, size=m).astype(float), rng.random(m) < 0.7) for m in rng.integers(1, 30, 200)]
    for times, reached in cases:
        ours, ref = S.km_band(times, reached), band_by_hand(times, reached)
        assert ours[0].tolist() == ref[0].tolist()
        for a, b in zip(ours[1:], ref[1:]):          # products and powers of a few terms: 1e-12 relative
            assert a == pytest.approx(b, rel=1e-12, abs=1e-300)
        assert S.kaplan_meier(times, reached).survival == pytest.approx(ref[1], rel=1e-12, abs=1e-300)


def test_edges():
    assert S.kaplan_meier([], []).times.size == 0 and S.km_band([], [])[0].size == 0
    assert S.km_median([], []) == (None, None, None)
    assert S.kaplan_meier([4, 5], [0, 0]).times.size == 0          # every run censored: no event
    assert S.km_median([4, 5], [0, 0]) == (None, None, None)
    _, s, lower, upper = S.km_band([4, 5], [1, 1])                  # S reaches 0: the band is 0 there
    assert s.tolist() == [0.5, 0.0] and lower[1] == upper[1] == 0.0 and 0.0 < lower[0] < 0.5 < upper[0]
    with pytest.raises(ValueError, match="finite"):
        S.kaplan_meier([1, np.inf], [1, 0])
    with pytest.raises(ValueError, match="shape"):
        S.kaplan_meier([1, 2], [1])


def test_km_median_and_brookmeyer_crowley_interval():
    # R: survfit(Surv(time, status) ~ 1, conf.type = "log-log") gives 23 [13, NA] for 6-MP.
    assert S.km_median(MP_T, MP_E) == (23.0, 13.0, None)
    # Placebo, no censoring: S = r/21 with r still at risk, Greenwood sum = 1/r - 1/21. The band's
    # lower curve first falls to 0.5 at t=4 (r=14), its upper curve at t=11 (r=6).
    assert S.km_median(PLACEBO_T, PLACEBO_E) == (8.0, 4.0, 11.0)
    # S exactly 0.5 from t=2 to the next event at 4: the median is the middle, as in R.
    assert S.km_median([1, 2, 3, 4], [1, 1, 0, 1]).median == 3.0
    assert S.km_median([5, 6, 7], [0, 1, 0]).median is None    # S stays at 0.5 to the end
    # S = 2/3 never reaches 0.5, but its band's lower curve does: the median lies beyond 6.
    assert S.km_median([5, 6, 7, 8], [0, 1, 0, 0]) == (None, 6.0, None)


def test_km_median_interval_coverage():
    # Exponential(1) times, uniform(0, 4) censoring, 60 runs: the 95% interval covers log 2 in 93-97% of
    # 2,000 data sets (binomial standard error 0.5%).
    rng = np.random.default_rng(15)
    hits = 0
    for _ in range(2000):
        t, c = rng.exponential(1.0, 60), rng.uniform(0.0, 4.0, 60)
        _, low, high = S.km_median(np.minimum(t, c), t <= c)
        hits += (low is None or low <= math.log(2)) and (high is None or math.log(2) <= high)
    assert 0.93 <= hits / 2000 <= 0.97
