"""harness.stats.two_rates: exact tests and the exact interval for a difference of two success rates.
scipy is the reference for the p-values; the interval's coverage is enumerated exactly over every
outcome."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import two_rates as X


def test_binomial_probabilities_are_scipys():
    # float64 closed form (log-gamma) against scipy's binomial pmf: 1e-12 relative wherever the
    # probability is not vanishingly small, 1e-15 absolute everywhere.
    ps = np.linspace(0.0, 1.0, 101)
    for n in (1, 5, 16, 40):
        ours = X._binom_pmf(n, ps)
        ref = stats.binom.pmf(np.arange(n + 1)[None, :], n, ps[:, None])
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)
        big = ref > 1e-200
        assert np.all(np.abs(ours[big] - ref[big]) <= 1e-12 * ref[big])


def test_rate_difference_of_five_of_five_against_none():
    r = X.rate_difference(5, 5, 0, 5)
    assert (r.diff, r.high) == (1.0, 1.0)
    # Boschloo, two-sided: twice the one-sided sup over the common rate of pi^5 (1 - pi)^5 = 2 / 4^5.
    assert r.p_value == pytest.approx(2 / 4 ** 5, rel=1e-9)
    assert r.p_value == pytest.approx(stats.boschloo_exact([[5, 0], [0, 5]]).pvalue, rel=1e-12)
    # The lower end is where the one-sided exact test of "difference <= low" stops rejecting at 2.5%.
    assert 0.3 < r.low < 0.5
    assert X._one_sided_p(5, 5, 0, 5, r.low, upper=True) <= 0.025 < X._one_sided_p(5, 5, 0, 5, r.low + 1e-6, True)
    # Swapping the groups mirrors the interval.
    m = X.rate_difference(0, 5, 5, 5)
    assert (m.diff, m.low, m.high) == pytest.approx((-1.0, -r.high, -r.low), rel=1e-12)
    assert r.excludes_zero and not X.rate_difference(3, 5, 2, 5).excludes_zero
    with pytest.raises(ValueError, match="0 <= k <= n"):
        X.rate_difference(6, 5, 0, 5)


@pytest.mark.parametrize("n1,n2", [(5, 5), (3, 6)])
def test_the_interval_covers_at_least_95_percent_for_every_true_pair(n1, n2):
    # Exact coverage: for each true (p1, p2), the probability of the tables whose interval holds p1 - p2.
    low = np.zeros((n1 + 1, n2 + 1))
    high = np.zeros_like(low)
    for a in range(n1 + 1):
        for b in range(n2 + 1):
            r = X.rate_difference(a, n1, b, n2)
            low[a, b], high[a, b] = r.low, r.high
    ps = np.linspace(0.0, 1.0, 41)
    b1, b2 = stats.binom.pmf(np.arange(n1 + 1)[None, :], n1, ps[:, None]), \
        stats.binom.pmf(np.arange(n2 + 1)[None, :], n2, ps[:, None])
    worst, miss_low, miss_high = 1.0, 0.0, 0.0
    for i, p1 in enumerate(ps):
        for j, p2 in enumerate(ps):
            w = np.outer(b1[i], b2[j])
            d = p1 - p2
            worst = min(worst, w[(low <= d + 1e-12) & (high >= d - 1e-12)].sum())
            miss_low, miss_high = max(miss_low, w[low > d + 1e-12].sum()), max(miss_high, w[high < d - 1e-12].sum())
    assert worst >= 0.95 and miss_low <= 0.025 + 1e-9 and miss_high <= 0.025 + 1e-9
    # The Wald interval at the same sizes falls far short: at p1 = 0.1, p2 = 0, the table 0 of n against
    # 0 of n (probability 0.9**n1) gives [0, 0], which misses the true difference 0.1.
    wald = []
    for a in range(n1 + 1):
        for b in range(n2 + 1):
            p, q = a / n1, b / n2
            half = 1.96 * math.sqrt(p * (1 - p) / n1 + q * (1 - q) / n2)
            wald.append((a, b, p - q - half, p - q + half))
    w = np.outer(b1[4], b2[0])                                 # p1 = 0.1, p2 = 0
    assert sum(w[a, b] for a, b, lo, hi in wald if lo <= 0.1 <= hi) < 0.5


def test_two_sample_pvalues_are_scipys():
    assert X.two_sample_pvalue(10, 16, 0, 5) == stats.boschloo_exact([[10, 0], [6, 5]]).pvalue
    assert X.two_sample_pvalue(10, 16, 0, 5, "fisher") == stats.fisher_exact([[10, 0], [6, 5]]).pvalue
    assert X.two_sample_pvalue(0, 5, 0, 7) == X.two_sample_pvalue(4, 4, 9, 9) == 1.0
    with pytest.raises(ValueError, match="test must be one of"):
        X.two_sample_pvalue(1, 2, 1, 2, "barnard")


def test_every_table_at_once_agrees_with_scipy():
    # pvalue_table takes the supremum over a grid of 1001 common rates, scipy optimises: 1e-5 apart.
    for test in ("boschloo", "fisher"):
        table = X.pvalue_table(4, 6, test)
        ref = np.array([[X.two_sample_pvalue(a, 4, b, 6, test) for b in range(7)] for a in range(5)])
        assert table == pytest.approx(ref, abs=1e-5)


def test_seeds_for_power_hand_checked():
    # True rates 1 and 0: every table is n of n against 0 of n, so the power is 1 as soon as that table
    # is rejected. Boschloo: 2 (1/4)^n < 0.05 from n = 3 (0.031; n = 2 gives 0.125). Fisher: 2 / C(2n, n)
    # < 0.05 from n = 4 (2/70 = 0.029; n = 3 gives 2/20 = 0.1).
    assert X.seeds_for_power(1.0, 0.0) == 3
    assert X.seeds_for_power(1.0, 0.0, test="fisher") == 4
    assert X.seeds_for_power(0.5, 0.5) is None                 # the power is the size, at most alpha
    # A case with uncertain outcomes: the exact power at n = 4 is the binomial sum over the tables scipy
    # rejects, computed here table by table.
    n, p1, p2 = 4, 0.9, 0.1
    brute = sum(stats.binom.pmf(a, n, p1) * stats.binom.pmf(b, n, p2)
                for a in range(n + 1) for b in range(n + 1)
                if stats.boschloo_exact([[a, b], [n - a, n - b]]).pvalue < 0.05)
    assert X.exact_power(n, n, p1, p2) == pytest.approx(brute, abs=1e-9)
    need = X.seeds_for_power(p1, p2)
    assert X.exact_power(need, need, p1, p2) >= 0.8 > X.exact_power(need - 1, need - 1, p1, p2)
    assert X.seeds_for_power(0.9, 0.1, test="fisher") >= need   # Boschloo is uniformly more powerful
    assert X.seeds_for_power(0.6, 0.5, cap=10) is None


def test_rate_equivalence_on_hand_values():
    # 0/12 against 0/12: the exact 90% interval is about ±0.221 (each end: (1 - d)^12 = 0.05 nearly),
    # inside ±1/3: equivalent. 4/12 against 0/12 lies at the margin by its estimate: not equivalent.
    e = X.rate_equivalence(0, 12, 0, 12, 1 / 3)
    assert e.equivalent and e.high == pytest.approx(0.221, abs=0.003) and e.low == pytest.approx(-e.high)
    e = X.rate_equivalence(4, 12, 0, 12, 1 / 3)
    assert not e.equivalent and e.diff == pytest.approx(1 / 3) and e.low > 0.05 and e.high > 0.6
    assert not X.rate_equivalence(4, 12, 0, 12, 0.6).equivalent     # its interval reaches past 0.6
    assert X.rate_equivalence(12, 12, 12, 12, 1 / 3).alpha == 0.05
    with pytest.raises(ValueError, match="margin"):
        X.rate_equivalence(1, 5, 1, 5, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        X.rate_equivalence(1, 5, 1, 5, 0.3, alpha=0.5)


def test_rate_equivalence_says_equivalent_at_most_alpha_when_the_rates_differ_by_the_margin():
    # Enumerated exactly at 6 runs a group, margin 0.5: the chance of "equivalent" when p1 - p2 = ±margin.
    n, margin = 6, 0.5
    eq = np.array([[X.rate_equivalence(a, n, b, n, margin).equivalent for b in range(n + 1)] for a in range(n + 1)])
    assert eq[0, 0] and eq[n, n] and not eq[n, 0]             # not a test that never says equivalent
    for p1, p2 in ((0.5, 0.0), (0.75, 0.25), (1.0, 0.5), (0.6, 0.1), (0.2, 0.7)):
        size = stats.binom.pmf(np.arange(n + 1), n, p1) @ eq.astype(float) @ stats.binom.pmf(np.arange(n + 1), n, p2)
        assert size <= 0.05 + 1e-9, (p1, p2, size)
