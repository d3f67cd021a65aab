"""harness.stats.multiplicity: Holm's step-down correction on a vector worked by hand, and the exact
conditional minP adjustment (Fisher's test for a single table; family-wise error by simulation)."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import multiplicity as M


def test_holm_adjust_and_levels_on_a_known_vector():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06.
    assert M.holm_adjust(p) == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-15)
    # 0.005 < .05/4 and 0.01 < .05/3 are rejected; 0.03 >= .05/2 stops: it and 0.04 get 1 - .05/2.
    assert M.holm_levels(p) == pytest.approx([1 - 0.05 / 3, 0.975, 0.975, 1 - 0.05 / 4], rel=1e-15)
    adj = M.holm_adjust([0.2, np.nan, 0.01])                  # nan stays nan but counts in m
    assert adj[0] == pytest.approx(0.4, rel=1e-15) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.03, rel=1e-15)
    assert M.holm_adjust([0.6, 0.7]).tolist() == [1.0, 1.0]   # capped at 1


def test_conditional_minp_is_fishers_test_for_one_table_and_ignores_tables_without_information():
    for k1, n1, k2, n2 in [(0, 10, 6, 10), (2, 10, 7, 10), (1, 5, 4, 5)]:
        fisher = stats.fisher_exact([[k1, k2], [n1 - k1, n2 - k2]]).pvalue
        assert M.conditional_minp_adjust([(k1, n1, k2, n2)], "fisher")[0] == pytest.approx(fisher, rel=1e-9)
    alone = M.conditional_minp_adjust([(0, 10, 6, 10)])[0]
    # All-or-nothing configurations (and one with a single success) cannot give a small p-value: no cost.
    with_more = M.conditional_minp_adjust([(0, 10, 6, 10), (0, 10, 0, 10), (10, 10, 10, 10), (0, 10, 1, 10)])
    assert with_more[0] == pytest.approx(alone, rel=1e-12) and list(with_more[1:3]) == [1.0, 1.0]
    # A configuration that could give a small p-value does cost: the adjusted value grows, below Bonferroni.
    two = M.conditional_minp_adjust([(0, 10, 6, 10), (5, 10, 5, 10)])
    assert alone < two[0] < 2 * alone


def test_conditional_minp_holds_the_family_wise_error_rate():
    """Simulated: 15 configurations with the bench's kind of rates, both folders drawn at the same rates;
    the share of draws in which any adjusted p-value is below 0.05 stays below 0.05 (3 standard errors)."""
    rng = np.random.default_rng(0)
    rates = [1.0] * 6 + [0.0] * 6 + [0.3, 0.5, 0.8]
    n, draws, hits = 10, 300, 0
    for _ in range(draws):
        tables = [(int(rng.binomial(n, r)), n, int(rng.binomial(n, r)), n) for r in rates]
        hits += bool((M.conditional_minp_adjust(tables) < 0.05).any())
    assert hits / draws < 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_holm_decided_signs_and_holms_correction():
    assert M.holm_decided([(12, 12, 0, 12), (0, 12, 12, 12), (6, 12, 6, 12)]).tolist() == [1, -1, 0]
    # 12/12 against 7/12: Boschloo p = 0.0174 and the exact interval excludes 0, so decided alone and
    # with one more such row (Holm 0.035); with four, Holm's 4 x 0.0174 = 0.07 leaves all undecided.
    assert M.holm_decided([(12, 12, 7, 12)] * 2).tolist() == [1, 1]
    assert M.holm_decided([(12, 12, 7, 12)] * 4).tolist() == [0, 0, 0, 0]
    assert M.holm_decided([]).size == 0
