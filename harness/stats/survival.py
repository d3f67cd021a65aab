"""Time to target as survival data: each run that did not reach the target is censored at its own
last evaluated step (it is known only to need more than that).

The Kaplan-Meier curve and its pointwise log-log band are scipy's (`scipy.stats.ecdf` on
`scipy.stats.CensoredData`, `confidence_interval(method="log-log")`: Greenwood's variance on the
log(-log S) scale). The median and its Brookmeyer-Crowley interval, which scipy does not give, are
read off them here as R's survival package does.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from harness.stats._util import CONFIDENCE, ArrayLike, check_confidence, vector


class KMCurve(NamedTuple):
    """The Kaplan-Meier estimate at the distinct event times: `times` (ascending, the unit of the
    input times) and `survival`, S(t) just after each (the share of runs still below target), both
    of shape (events,)."""

    times: np.ndarray
    survival: np.ndarray


def _ecdf(times: ArrayLike, reached: ArrayLike):
    """(scipy's estimate for the runs, which of its distinct times had an event), or None when there
    are no runs. scipy's times include the censoring times."""
    t = vector(times, "times")
    e = np.asarray(reached, dtype=bool)
    if e.shape != t.shape:
        raise ValueError(f"times and reached differ in shape: {t.shape} vs {e.shape}")
    if not np.isfinite(t).all():
        raise ValueError("times must be finite: a run that never reached the target is censored at its "
                         "last evaluated step, not at infinity")
    if t.size == 0:
        return None
    res = sps.ecdf(sps.CensoredData(uncensored=t[e], right=t[~e]))
    return res, np.isin(res.sf.quantiles, t[e])


def kaplan_meier(times: ArrayLike, reached: ArrayLike) -> KMCurve:
    """Kaplan-Meier curve of time to target. `times` (n,): the step at which each run reached the
    target, or, if it did not (`reached` False), the run's own last evaluated step (its censoring
    time); a run censored at t is at risk at t."""
    fit = _ecdf(times, reached)
    if fit is None:
        return KMCurve(np.empty(0), np.empty(0))
    res, ev = fit
    return KMCurve(np.asarray(res.sf.quantiles[ev], dtype=np.float64),
                   np.asarray(res.sf.probabilities[ev], dtype=np.float64))


def km_band(times: ArrayLike, reached: ArrayLike, confidence: float = CONFIDENCE
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event times, S, lower, upper), each of shape (events,): the Kaplan-Meier curve and its pointwise
    log-log band S ** exp(±z se), se = sqrt(sum d/(n(n-d))) / |log S| the standard error of
    log(-log S). The band stays in [0, 1]; where S is 0 both its ends are 0."""
    check_confidence(confidence)
    fit = _ecdf(times, reached)
    if fit is None:
        return np.empty(0), np.empty(0), np.empty(0), np.empty(0)
    res, ev = fit
    with warnings.catch_warnings():      # nan where S is 0 or 1: "undefined at some observations"
        warnings.simplefilter("ignore", RuntimeWarning)
        band = res.sf.confidence_interval(confidence, method="log-log")
    lower = np.nan_to_num(np.asarray(band.low.probabilities, dtype=np.float64)[ev], nan=0.0)
    upper = np.nan_to_num(np.asarray(band.high.probabilities, dtype=np.float64)[ev], nan=0.0)
    return (np.asarray(res.sf.quantiles[ev], dtype=np.float64), np.asarray(res.sf.probabilities[ev], dtype=np.float64),
            lower, upper)


def _first_at_or_below(times: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """The first event time at which the step curve is <= level; if it equals `level` exactly, the
    middle of the stretch up to the next event time (as R's survival package does), None when the
    curve stays at `level` to the end. None if the curve never gets there."""
    tol = 1e-12
    hit = np.flatnonzero(curve <= level + tol)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if curve[i] < level - tol:
        return float(times[i])
    return float((times[i] + times[i + 1]) / 2.0) if i + 1 < times.size else None


class MedianTime(NamedTuple):
    """Median time to target and its interval, in the unit of the times; each None where it does not
    exist (not reached)."""

    median: float | None
    low: float | None
    high: float | None


def km_median(times: ArrayLike, reached: ArrayLike, confidence: float = CONFIDENCE) -> MedianTime:
    """Median time to target with the Brookmeyer-Crowley interval: the times at which the pointwise
    log-log band of S contains 0.5 (R survival's default construction). The median is None when S
    never falls to 0.5; the upper end is None when the band's upper curve never does."""
    uniq, s, lower, upper = km_band(times, reached, confidence)
    return MedianTime(_first_at_or_below(uniq, s, 0.5), _first_at_or_below(uniq, lower, 0.5),
                      _first_at_or_below(uniq, upper, 0.5))
