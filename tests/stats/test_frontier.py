"""harness.stats.frontier: D50 from the logistic fit on log(1 + D), against a generic optimiser and a
symmetric design whose answer is known; brackets for separated outcomes; bootstrap coverage."""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit

from harness.stats import frontier as F
from harness.stats.rates import wilson_interval


def test_d50_symmetric_data_lands_on_the_middle_distance():
    # x = log(1 + D) = 0, log 4, 2 log 4: symmetric about log 4, with 4/5, 2/4, 1/5 reached.
    d = [0] * 5 + [3] * 4 + [15] * 5
    r = [1, 1, 1, 1, 0] + [1, 1, 0, 0] + [1, 0, 0, 0, 0]
    f = F.fit_d50(d, r, n_boot=200)
    assert f.status == "fit" and not f.separated and f.n == 14
    assert f.d50 == pytest.approx(3.0, rel=1e-8)                # Newton to 1e-10 in the coefficients
    assert f.low is None or f.low < 3.0
    assert f.high is None or f.high > 3.0


def test_d50_coefficients_match_a_generic_optimiser():
    d = np.repeat([0, 2, 6, 14, 30], 4)
    r = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    x = np.log1p(d)

    def nll(b):
        eta = b[0] + b[1] * x
        return -(r * eta - np.logaddexp(0, eta)).sum()
    ref = optimize.minimize(nll, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    f = F.fit_d50(d, r, n_boot=100)
    # BFGS stops at a gradient of 1e-10, not at the optimum: 1e-5 in the coefficients.
    assert f.coefficients == pytest.approx(tuple(ref), abs=1e-5)
    assert f.d50 == pytest.approx(math.expm1(-ref[0] / ref[1]), rel=1e-5)


def test_d50_complete_and_quasi_separation_give_a_bracket():
    f = F.fit_d50([0, 0, 4, 4, 16, 16, 64, 64], [1, 1, 1, 1, 0, 0, 0, 0])
    assert f.separated and f.status == "separated" and f.coefficients is None
    assert (f.low, f.high) == (4.0, 16.0)
    assert f.d50 == pytest.approx(math.sqrt(5 * 17) - 1, rel=1e-12)   # midpoint on log(1 + D)
    q = F.fit_d50([0, 0, 4, 4, 16, 16, 64, 64], [1, 1, 1, 1, 1, 0, 0, 0])
    assert q.separated and (q.d50, q.low, q.high) == (16.0, 4.0, 64.0)
    # Only the first split perfectly: the second has a mixed distance (1 of 2 at 16), which the report
    # must not call a bracket; `counts` and `mixed` say why.
    assert f.perfect and not q.perfect
    assert q.counts == ((0.0, 2, 2), (4.0, 2, 2), (16.0, 1, 2), (64.0, 0, 2)) and q.mixed() == [(16.0, 1, 2)]
    assert f.mixed() == [] and not F.fit_d50([0, 0, 4, 4], [1, 0, 1, 0]).perfect


def test_a_bracket_uses_decided_rates_not_only_none_of_n():
    # 5 of 5 at 32 and 2 of 11 at 64 (Wilson [5%, 48%]: decided below half): between 32 and 64, not
    # "beyond 32" because 64 was not 0 of n.
    assert wilson_interval(2, 11)[1] < 0.5
    d = [16] * 5 + [32] * 5 + [64] * 11
    r = [1] * 5 + [1] * 5 + [1, 1] + [0] * 9
    f = F.fit_d50(d, r)
    assert f.status == "separated" and (f.low, f.high) == (32.0, 64.0)
    assert f.d50 == pytest.approx(math.expm1((math.log(33) + math.log(65)) / 2), rel=1e-12)
    # Symmetric: 9 of 11 at 32 (decided above half) then 0 of 5 at 64.
    g = F.fit_d50([16] * 5 + [32] * 11 + [64] * 5, [1] * 5 + [1] * 9 + [0, 0] + [0] * 5)
    assert (g.low, g.high) == (32.0, 64.0)
    # An undecided mixed distance (2 of 5) stays the split point, the bracket around it.
    h = F.fit_d50([16] * 5 + [32] * 5 + [64] * 5, [1] * 5 + [1, 1, 0, 0, 0] + [0] * 5)
    assert (h.d50, h.low, h.high) == (32.0, 16.0, 64.0)
    # The bootstrap draws use the same point.
    point, draws = F.d50_draws(d, r, n_boot=50)
    assert point == pytest.approx(f.d50, rel=1e-12) and draws.shape == (50,)
    assert F.d50_draws([0, 8, 8], [1, 1, 1], n_boot=5)[0] == math.inf
    assert F.d50_draws([0, 8], [0, 0], n_boot=5)[0] == -math.inf
    assert math.isnan(F.d50_draws([0, 0, 8, 8], [0, 0, 1, 1], n_boot=5)[0])


def test_d50_outside_the_range_is_none_with_a_reason():
    assert F.fit_d50([0, 8, 32], [1, 1, 1]).status == "all_reached"
    assert F.fit_d50([0, 8, 32], [0, 0, 0]).status == "none_reached"
    up = F.fit_d50([0, 0, 8, 8, 32, 32], [0, 0, 1, 0, 1, 1])
    assert up.status == "no_decline" and up.d50 is None
    assert F.fit_d50([4, 4], [1, 0]).status == "one_distance"
    with pytest.raises(ValueError, match="no runs"):
        F.fit_d50([], [])


def test_d50_bootstrap_coverage():
    # 500 data sets (not 2,000: each is a bootstrap of 400 fits), so the band widens to 91-97%
    # (binomial s.e. 1%). 8 distances x 20 runs, true D50 = 15. At 5 runs per distance the
    # stratified bootstrap covers only ~90% (measured), which the report must keep in mind.
    rng = np.random.default_rng(17)
    dist = np.array([0, 1, 3, 7, 15, 31, 63, 127.0])
    p = expit(2.0 * (math.log(16) - np.log1p(dist)))
    d = np.repeat(dist, 20)
    fits = [F.fit_d50(d, rng.random(d.size) < np.repeat(p, 20), n_boot=400, rng=rng) for _ in range(500)]
    lo = np.array([-np.inf if f.low is None else f.low for f in fits])
    hi = np.array([np.inf if f.high is None else f.high for f in fits])
    assert 0.91 <= np.mean((lo <= 15.0) & (15.0 <= hi)) <= 0.97
