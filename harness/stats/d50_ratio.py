"""The ratio of two groups' D50s, D50(a) / D50(b), with a percentile interval from a stratified
bootstrap (each group's runs resampled within each distance, independently between groups). D50s are
in units of distance; the ratio has none.

Where a group's D50 lies beyond the largest distance tested the ratio is infinite (zero the other
way round); where a group's runs split perfectly between two distances its D50 is only bracketed, and
the ratio gets bounds over the bracket instead of a point (`bracket_bounds`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.stats._util import CONFIDENCE
from harness.stats.frontier import d50_draws

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
    bracketed: tuple[str, ...] = ()   # which of 'a', 'b' had outcomes that split perfectly (see d50_ratio)


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
    return bracket_bounds(r, split_bracket(distances_a, reached_a), da, split_bracket(distances_b, reached_b), db)


def bracket_bounds(r: D50Ratio, bracket_a: tuple[float, float] | None, draws_a: np.ndarray,
                   bracket_b: tuple[float, float] | None, draws_b: np.ndarray) -> D50Ratio:
    """`r` unchanged unless a group's runs split perfectly (all reached up to one distance, none from the
    next on): its D50 is then anywhere inside that bracket, and resampling its runs never moves it, so a
    bootstrap would treat the bracket's midpoint as known. Bounds instead: each D50 over its bracket, or
    over its bootstrap interval where it was fitted; no point."""
    if (bracket_a is None and bracket_b is None) or not math.isfinite(r.ratio) or r.ratio == 0.0:
        return r
    tail = (1.0 - r.confidence) / 2.0

    def span_of(bracket: tuple[float, float] | None, draws: np.ndarray) -> tuple[float, float]:
        if bracket is not None:
            return bracket
        return (float(np.quantile(np.where(np.isnan(draws), 0.0, draws), tail, method="inverted_cdf")),
                float(np.quantile(np.where(np.isnan(draws), np.inf, draws), 1.0 - tail, method="inverted_cdf")))

    (a_lo, a_hi), (b_lo, b_hi) = span_of(bracket_a, draws_a), span_of(bracket_b, draws_b)
    low = a_lo / b_hi if b_hi > 0 else math.inf
    high = a_hi / b_lo if b_lo > 0 else math.inf
    which = tuple(x for x, br in (("a", bracket_a), ("b", bracket_b)) if br is not None)
    return D50Ratio(math.nan, float(low), float(high), r.undefined, r.n_boot, r.confidence, False, which)


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
