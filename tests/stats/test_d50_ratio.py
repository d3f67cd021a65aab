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
    # A group that never declines in the range: its D50 lies beyond 64, the largest distance tested, so with
    # b's at most 8 the ratio is at least 64 / 8 and has no upper bound; the other way round at most 8 / 64.
    never = _runs({d: 1.0 for d in DISTANCES})
    r = D.d50_ratio(*never, *b, n_boot=200)
    assert math.isnan(r.ratio) and (r.low, r.high) == (8.0, math.inf) and r.bracketed == ("a", "b")
    r = D.d50_ratio(*b, *never, n_boot=50)
    assert (r.low, r.high) == (0.0, 8 / 64)
    # Censored at the range tested (the reproduction check's estimand): 64 / D50(b).
    cens = D.d50_ratio(*never, *b, n_boot=200, censor=True)
    assert cens.ratio == pytest.approx(64 / mid_b, rel=1e-12) and cens.censored
    both = D.d50_ratio(*never, *never, n_boot=50)     # beyond / beyond: nothing bounds it
    assert math.isnan(both.ratio) and (both.low, both.high) == (0.0, math.inf)


def test_a_ratio_with_a_bracketed_d50_gives_bounds_not_a_point():
    """The RNN's runs split perfectly between lag 0 and 8: its D50 is anywhere in (0, 8), and resampling
    its runs never moves it, so the ratio gets bounds over the bracket (here no upper one), no point."""
    d = [0] * 10 + [8] * 10 + [16] * 10 + [32] * 10 + [64] * 10
    rnn = [1] * 10 + [0] * 40
    lstm = [1] * 30 + [1] * 3 + [0] * 7 + [0] * 10                  # one mixed distance: 3/10 at 32
    assert D.split_bracket(d, rnn) == (0.0, 8.0) and D.split_bracket(d, lstm) is None
    assert D.split_bracket(d, [1] * 10 + [0] * 10 + [1] * 10 + [0] * 20) is None   # not monotone
    # The lstm's split has one mixed distance (3/10 at 32, undecided): no logistic fit, its D50 lies
    # between 16 (all reached) and 64 (none did). lstm / rnn: at least 16 / 8, no upper bound (rnn's
    # bracket starts at 0).
    r = D.d50_ratio(d, lstm, d, rnn, n_boot=200)
    assert math.isnan(r.ratio) and r.bracketed == ("a", "b") and (r.low, r.high) == (2.0, math.inf)
    assert (r.range_a, r.range_b) == ((16.0, 64.0), (0.0, 8.0))
    r2 = D.d50_ratio(d, rnn, d, lstm, n_boot=200)     # the other way round: from 0 up to 8 / 16
    assert (r2.low, r2.high) == (0.0, 0.5)
    # A fitted D50 enters with its bootstrap interval (the one the report prints).
    fitted = [1] * 10 + [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5 + [1] * 2 + [0] * 8 + [0] * 10
    f = D.fit_d50(d, np.asarray(fitted) == 1, 200, 0)
    r3 = D.d50_ratio(d, fitted, d, rnn, n_boot=200)
    assert f.status == "fit" and r3.bracketed == ("b",) and r3.range_a == (f.low, f.high if f.high else math.inf)
    assert r3.low == pytest.approx(f.low / 8) and r3.high == math.inf


def test_ratio_bounds_follow_from_hand_made_brackets():
    """The bench's case: rnn 'between 0 and 8' (12/12 at 0, none from 8), lstm 'beyond 16' (12/12 up to 16,
    4/12 at 32, the longest: undecided). The bounds are lstm > 16 over rnn < 8, so at least 2, and rnn's
    bracket starting at 0 leaves no finite upper bound; never 2.8 from a resampled lower end."""
    d = [0] * 12 + [8] * 12 + [16] * 12 + [32] * 12
    rnn = [1] * 12 + [0] * 36
    lstm = [1] * 36 + [1] * 4 + [0] * 8
    r = D.d50_ratio(d, lstm, d, rnn, n_boot=200)
    assert (r.low, r.high) == (2.0, math.inf) and math.isnan(r.ratio)
    # Both perfect brackets, neither starting at 0: [16, 32] over [4, 8] gives [16 / 8, 32 / 4].
    a = D.fit_d50([4, 8, 16, 32], np.array([True, True, True, False]))
    b = D.fit_d50([4, 8, 16, 32], np.array([True, False, False, False]))
    assert a.perfect and b.perfect and (D.d50_range(a), D.d50_range(b)) == ((16.0, 32.0), (4.0, 8.0))
    r = D.range_bounds(D.ratio_from_draws(math.nan, np.full(3, np.nan), math.nan, np.full(3, np.nan)), a, b)
    assert (r.low, r.high) == (2.0, 8.0)
    # No run reached the target even at the shortest distance 4: D50(b) < 4; with a's bracket [16, 32]
    # the ratio is above 16 / 4 with no upper bound.
    none = D.fit_d50([4, 8, 16, 32], np.zeros(4, dtype=bool))
    assert D.d50_range(none) == (0.0, 4.0)
    r = D.range_bounds(D.ratio_from_draws(math.nan, np.full(3, np.nan), math.nan, np.full(3, np.nan)), a, none)
    assert (r.low, r.high) == (4.0, math.inf)
    # Both fitted: the bootstrap ratio stands unchanged.
    dist = [0] * 5 + [8] * 5 + [16] * 5 + [32] * 5
    fa = D.fit_d50(dist, np.array([1] * 5 + [1, 1, 1, 1, 0] + [1, 1, 1, 1, 0] + [0] * 5) == 1)
    fb = D.fit_d50(dist, np.array([1] * 5 + [1, 1, 1, 0, 0] + [1, 1, 0, 0, 0] + [0] * 5) == 1)
    assert fa.status == fb.status == "fit" and D.range_bounds(r, fa, fb) is r


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
