"""harness.stats.d50_ratio: the ratio of two groups' D50s: bounds from brackets, infinite and zero
ratios beyond the range tested, the censored estimand, and the percentile interval from given draws."""

import math

import numpy as np
import pytest

from harness.stats import d50_ratio as D


def _runs(rates: dict[float, float], seeds: int = 5) -> tuple[list[float], list[float]]:
    """(distances, reached) with exactly round(rate * seeds) successes at each distance."""
    d, r = [], []
    for dist, rate in rates.items():
        k = round(rate * seeds)
        d += [dist] * seeds
        r += [float(s < k) for s in range(seeds)]
    return d, r


DISTANCES = (0, 4, 8, 16, 32, 64)


def test_ratio_from_brackets_and_beyond_the_range():
    # a: 5/5 up to 16, 0/5 from 32 (bracket 16-32); b: 5/5 at 0 and 4, 0/5 from 8 (bracket 4-8).
    a = _runs({d: float(d <= 16) for d in DISTANCES})
    b = _runs({d: float(d <= 4) for d in DISTANCES})
    mid_b = math.expm1((math.log1p(4) + math.log1p(8)) / 2)
    # Both split perfectly: each D50 is only known to lie in its bracket, so the ratio gets the bounds
    # the brackets allow, [16 / 8, 32 / 4], and no point (the midpoints are not estimates).
    r = D.d50_ratio(*a, *b, n_boot=200)
    assert math.isnan(r.ratio) and (r.low, r.high) == (2.0, 8.0) and r.bracketed == ("a", "b")
    # A group that never declines in the range: its D50 lies beyond the largest distance tested.
    never = _runs({d: 1.0 for d in DISTANCES})
    r = D.d50_ratio(*never, *b, n_boot=200)
    assert r.ratio == math.inf and r.high == math.inf
    assert D.d50_ratio(*b, *never, n_boot=50).ratio == 0.0
    # Censored at the range tested (the reproduction check's estimand): 64 / D50(b).
    cens = D.d50_ratio(*never, *b, n_boot=200, censor=True)
    assert cens.ratio == pytest.approx(64 / mid_b, rel=1e-12) and cens.censored
    assert math.isnan(D.d50_ratio(*never, *never, n_boot=50).ratio)


def test_a_ratio_with_a_bracketed_d50_gives_bounds_not_a_point():
    """The RNN's runs split perfectly between lag 0 and 8: its D50 is anywhere in (0, 8), and resampling
    its runs never moves it, so the ratio gets bounds over the bracket (here no upper one), no point."""
    d = [0] * 10 + [8] * 10 + [16] * 10 + [32] * 10 + [64] * 10
    rnn = [1] * 10 + [0] * 40
    lstm = [1] * 30 + [1] * 3 + [0] * 7 + [0] * 10
    assert D.split_bracket(d, rnn) == (0.0, 8.0) and D.split_bracket(d, lstm) is None
    assert D.split_bracket(d, [1] * 10 + [0] * 10 + [1] * 10 + [0] * 20) is None   # not monotone
    r = D.d50_ratio(d, lstm, d, rnn, n_boot=200)
    assert math.isnan(r.ratio) and r.bracketed == ("b",) and math.isinf(r.high)
    fit = D.d50_ratio(d, lstm, d, lstm, n_boot=200)   # the lstm's own bootstrap interval, lower end
    assert 16 / 8 <= r.low <= 64 / 8 and fit.bracketed == ()
    r2 = D.d50_ratio(d, rnn, d, lstm, n_boot=200)     # the other way round: from 0 up to 8 / lstm's lower end
    assert r2.low == 0.0 and 0 < r2.high <= 8 / 16 + 1e-9


def test_ratio_from_draws_is_the_percentile_interval_of_the_ratios():
    # Draws of 50 values: the 2.5% and 97.5% points by the inverted empirical CDF, checked by sorting.
    rng = np.random.default_rng(0)
    a, b = rng.uniform(10, 20, 50), rng.uniform(4, 8, 50)
    r = D.ratio_from_draws(15.0, a, 6.0, b)
    ratios = np.sort(a / b)
    # The inverted CDF's p-quantile of 50 values is the ceil(50 p)-th smallest: the 2nd and the 49th.
    assert r.ratio == 15.0 / 6.0 and (r.low, r.high) == (ratios[1], ratios[48])
    a[:3] = np.nan                                                                 # undefined draws widen both ends
    r = D.ratio_from_draws(15.0, a, 6.0, b)
    assert (r.low, r.high, r.undefined, r.n_boot) == (0.0, math.inf, 3, 50)
    # Censored at the range tested: ±inf D50s are clipped to it before dividing.
    c = D.ratio_from_draws(math.inf, np.full(10, math.inf), 8.0, np.full(10, 8.0), censor=(0.0, 64.0))
    assert (c.ratio, c.low, c.high) == (8.0, 8.0, 8.0)
