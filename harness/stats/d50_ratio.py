"""The ratio of two groups' D50s, D50(a) / D50(b), with a percentile interval from a stratified
bootstrap (each group's runs resampled within each distance, independently between groups). D50s are
in units of distance; the ratio has none.

Where both D50s are logistic fits the ratio has a point and a bootstrap interval. Where either is not
(its runs split perfectly between two distances, split with one mixed distance, or the D50 lies beyond
or below the distances tested) that D50 is only known to lie in a range (`d50_range`), and the ratio
gets the bounds those ranges allow instead of a point (`range_bounds`): D50(a) in [a_lo, a_hi] and
D50(b) in [b_lo, b_hi] give a_lo / b_hi <= ratio <= a_hi / b_lo, with no upper bound where b's range
starts at 0 (a bracket "between 0 and 8": D50(b) may be as small as one likes) or a's is open above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats._util import CONFIDENCE
from harness.stats.frontier import D50Fit, d50_draws, fit_d50

N_BOOT = 1000


@dataclass(frozen=True)
class D50Ratio:
    """D50(a) / D50(b) with a stratified bootstrap percentile interval at `confidence`. inf where a's
    D50 lies beyond the largest distance tested (or b's below the smallest), 0 the other way round,
    nan where undefined (both beyond, or a group whose success does not fall with distance).
    `undefined`: resamples with no ratio, counted at both ends of the interval (they widen it)."""

    ratio: float
    low: float
    high: float
    undefined: int
    n_boot: int
    confidence: float
    censored: bool = False
    bracketed: tuple[str, ...] = ()   # which of 'a', 'b' is only known to lie in a range (`d50_range`)
    range_a: tuple[float, float] | None = None   # that range, in units of distance (bounds only)
    range_b: tuple[float, float] | None = None


def _ratio_values(a: np.ndarray, b: np.ndarray, censor: tuple[float, float] | None) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if censor is not None:
        a, b = np.clip(a, *censor), np.clip(b, *censor)
    else:                                    # below the shortest distance: at most that distance, so >= 0
        a, b = np.where(a == -np.inf, 0.0, a), np.where(b == -np.inf, 0.0, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def ratio_from_draws(point_a: float, draws_a: np.ndarray, point_b: float, draws_b: np.ndarray,
                     confidence: float = CONFIDENCE, censor: tuple[float, float] | None = None) -> D50Ratio:
    """`D50Ratio` from two groups' D50 points and bootstrap draws (`frontier.d50_draws`). With
    `censor` = (shortest, longest distance tested), each D50 is first clipped to that range: the
    estimand is then the ratio of D50s censored at the range tested, defined (and comparable between
    two folders) even where a D50 lies beyond it."""
    point = float(_ratio_values(np.array([point_a]), np.array([point_b]), censor)[0])
    r = _ratio_values(draws_a, draws_b, censor)
    undefined = np.isnan(r)
    tail = (1.0 - confidence) / 2.0
    low = float(np.quantile(np.where(undefined, 0.0, r), tail, method="inverted_cdf"))
    high = float(np.quantile(np.where(undefined, np.inf, r), 1.0 - tail, method="inverted_cdf"))
    return D50Ratio(point, low, high, int(undefined.sum()), int(r.size), confidence, censor is not None)


def d50_ratio(distances_a: Sequence[float], reached_a: Sequence[float], distances_b: Sequence[float],
              reached_b: Sequence[float], n_boot: int = N_BOOT, rng: int = 0, confidence: float = CONFIDENCE,
              censor: bool = False) -> D50Ratio:
    """The ratio of two groups' D50s, D50(a) / D50(b), each from `frontier.d50_draws` (the report's
    logistic fit on log(1 + D), bracket or split distance), with a percentile interval from a
    stratified bootstrap: each group's runs resampled within each distance, independently between
    groups. The interval is as good as the D50 bootstrap (somewhat optimistic at few seeds per
    distance). `censor`: clip each D50 to the distances the two groups tested (see `ratio_from_draws`)."""
    pa, da = d50_draws(distances_a, reached_a, n_boot, np.random.default_rng([rng, 0]))
    pb, db = d50_draws(distances_b, reached_b, n_boot, np.random.default_rng([rng, 1]))
    span = None
    if censor:
        d = np.concatenate([np.asarray(distances_a, float), np.asarray(distances_b, float)])
        span = (float(d.min()), float(d.max()))
    r = ratio_from_draws(pa, da, pb, db, confidence, span)
    if censor:
        return r
    fa = fit_d50(distances_a, np.asarray(reached_a, float) == 1.0, n_boot, rng, confidence)
    fb = fit_d50(distances_b, np.asarray(reached_b, float) == 1.0, n_boot, rng, confidence)
    return range_bounds(r, fa, fb)


BOUNDED = ("separated", "all_reached", "none_reached")   # statuses whose D50 is a range, not a point


def d50_range(fit: D50Fit) -> tuple[float, float] | None:
    """(low, high), in units of distance: where the data put a D50 (high may be inf). A perfect split
    or a split with one mixed distance: from the last distance whose runs reached the target (all, or a
    share decidedly above half) to the first where they did not (0 / inf where there is none); every
    run reached: from the longest distance tested on; none reached: up to the shortest; a logistic fit:
    its bootstrap interval (0 / inf where it is open). None where there is no D50 (success does not
    fall with distance, or one distance only)."""
    tested = [c[0] for c in fit.counts]
    if fit.status in ("separated", "fit"):
        return (0.0 if fit.low is None else float(fit.low), math.inf if fit.high is None else float(fit.high))
    if fit.status == "all_reached" and tested:
        return (float(max(tested)), math.inf)
    if fit.status == "none_reached" and tested:
        return (0.0, float(min(tested)))
    return None


def _div(x: float, y: float) -> float:
    """x / y for x, y >= 0 (either may be inf); nan where the quotient is not determined (0/0, inf/inf)."""
    if y == 0.0:
        return math.inf if x > 0.0 else math.nan
    if math.isinf(y):
        return 0.0 if math.isfinite(x) else math.nan
    return x / y


def range_bounds(r: D50Ratio, fit_a: D50Fit, fit_b: D50Fit) -> D50Ratio:
    """`r` unchanged where both D50s are logistic fits (status 'fit': the bootstrap ratio stands) or
    either has no D50. Otherwise the bounds that the two D50s' ranges (`d50_range`) allow:
    low = a_lo / b_hi, high = a_hi / b_lo (0 where nothing bounds it below, inf above); no point: a D50
    only known to lie in a range has no estimate to divide (its bracket's midpoint is not one, and
    resampling runs that split perfectly never moves it). A fitted D50 among the two enters with its
    bootstrap interval."""
    if fit_a.status not in (*BOUNDED, "fit") or fit_b.status not in (*BOUNDED, "fit"):
        return r
    if fit_a.status == "fit" and fit_b.status == "fit":
        return r
    ra, rb = d50_range(fit_a), d50_range(fit_b)
    if ra is None or rb is None:
        return r
    low, high = _div(ra[0], rb[1]), _div(ra[1], rb[0])
    low = 0.0 if math.isnan(low) else low
    high = math.inf if math.isnan(high) else high
    which = tuple(x for x, f in (("a", fit_a), ("b", fit_b)) if f.status in BOUNDED)
    return D50Ratio(math.nan, float(low), float(high), r.undefined, r.n_boot, r.confidence, False, which, ra, rb)


def split_bracket(distances: Sequence[float], reached: Sequence[float]) -> tuple[float, float] | None:
    """(last distance where every run reached the target, first where none did) when the runs split
    perfectly between two adjacent distances tested, with at least one distance on each side; else None."""
    d = np.asarray(distances, dtype=float)
    y = np.asarray(reached, dtype=float)
    ok = ~np.isnan(y)
    d, y = d[ok], y[ok]
    levels = np.unique(d)
    rates = np.array([y[d == u].mean() for u in levels])
    if levels.size < 2 or not np.all(np.isin(rates, (0.0, 1.0))):
        return None
    cut = int(np.argmin(rates))   # first distance with rate 0
    if cut == 0 or rates[cut - 1] != 1.0 or np.any(rates[:cut] != 1.0) or np.any(rates[cut:] != 0.0):
        return None
    return float(levels[cut - 1]), float(levels[cut])
