"""Paired effects at a few seeds: one difference per seed (level minus baseline), a t interval,
the exact sign test where every difference is the same, Holm's correction across a family of
effects, and the rule that decides whether a difference may be claimed (and if not, how many pairs
would decide it at 80% power).

Differences are in the unit of the measure compared (a fraction of accuracy, steps); `diffs` is
always a one-dimensional array of shape (pairs,), nan entries left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from harness.stats._util import CONFIDENCE, ArrayLike, vector
from harness.stats.multiplicity import holm_adjust, holm_levels

MIN_PAIRS = 5            # no difference is claimed on fewer matched pairs than this
PAIRS_CAP = 1000         # pairs_needed never suggests more than this
POWER = 0.8              # pairs_needed sizes a study to detect the effect seen with this probability


def paired_t_interval(diffs: ArrayLike, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, df) of paired differences (pairs,) with Student's t interval
    (`scipy.stats.ttest_1samp(diffs, 0).confidence_interval`), df = n - 1. Exact for normal
    differences at any n >= 2; low and high are nan for fewer than 2 pairs, equal to the mean when
    every difference is the same."""
    x = vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return (mean, math.nan, math.nan, 0)
    if float(x.std(ddof=1)) == 0.0:
        return (mean, mean, mean, n - 1)
    ci = sps.ttest_1samp(x, 0.0).confidence_interval(confidence_level=confidence)
    return (mean, float(ci.low), float(ci.high), n - 1)


def paired_t_pvalue(diffs: ArrayLike) -> float:
    """Two-sided p-value of the one-sample t test of mean difference 0 (`scipy.stats.ttest_1samp`);
    nan below 2 pairs; 1.0 when every difference is 0; 0.0 when all are equal and non-zero, where the
    t statistic is infinite (decisions use `paired_pvalue`, which takes the exact sign test there)."""
    x = vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    if x.size < 2:
        return math.nan
    if float(x.std(ddof=1)) == 0.0:
        return 1.0 if float(x.mean()) == 0.0 else 0.0
    return float(sps.ttest_1samp(x, 0.0).pvalue)


def all_equal(diffs: ArrayLike, rtol: float = 1e-9) -> bool:
    """True when there are at least 2 differences (nan left out) and every one is the same, up to
    floating-point rounding (a spread below `rtol` of their size: 0.387 - 0.387 from sums in another
    order): no spread, so no t interval exists (a zero-width "interval" would claim certainty that 2 to
    16 seeds cannot give)."""
    x = vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    return bool(x.size >= 2 and float(np.ptp(x)) <= rtol * max(1.0, float(np.abs(x).max())))


def sign_test_pvalue(diffs: ArrayLike) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) of "positive and negative differences are equally
    likely", zeros left out (`scipy.stats.binomtest`). 1.0 when every difference is zero; nan for none.
    With n identical non-zero differences it is 2 * 0.5**n: 0.0625 at 5 pairs, 0.031 at 6."""
    x = vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    x = np.where(np.abs(x) <= 1e-12, 0.0, x)             # rounding noise around 0 is no sign
    pos, neg = int((x > 0).sum()), int((x < 0).sum())
    return 1.0 if pos + neg == 0 else float(sps.binomtest(pos, pos + neg, 0.5).pvalue)


def paired_pvalue(diffs: ArrayLike) -> float:
    """The p-value a paired effect is decided on: the t test's (`paired_t_pvalue`), except where every
    difference is the same (no spread: the t statistic is undefined), where it is the exact sign test's
    (`sign_test_pvalue`)."""
    return sign_test_pvalue(diffs) if all_equal(diffs) else paired_t_pvalue(diffs)


def sign_pairs_needed(confidence: float = CONFIDENCE, cap: int = PAIRS_CAP, min_pairs: int = MIN_PAIRS) -> int:
    """The smallest n (at least `min_pairs`) at which n differences of one sign make the exact sign
    test reject at level 1 - confidence (2 * 0.5**n < 1 - confidence): 6 at 95%. `cap` at most."""
    n = max(min_pairs, 1)
    while n < cap and 2.0 * 0.5 ** n >= 1.0 - confidence:
        n += 1
    return int(n)


def pairs_needed(mean: float, sd: float, confidence: float = CONFIDENCE, cap: int = PAIRS_CAP,
                 min_pairs: int = MIN_PAIRS, power: float = POWER) -> int | None:
    """The smallest number of pairs n (at least `min_pairs`) at which the two-sided paired t test at
    level 1 - confidence rejects with probability at least `power` (80% by default) if the true mean
    difference and spread are `mean` and `sd`: the noncentral t distribution with noncentrality
    |mean| / sd * sqrt(n) on n - 1 degrees of freedom (exact for normal differences). `cap` when even
    that many would not do; None when mean is 0 or not finite. With sd == 0 (every difference the
    same), the n at which that many same-signed differences decide by the exact sign test
    (`sign_pairs_needed`)."""
    if not math.isfinite(mean) or mean == 0.0 or not math.isfinite(sd):
        return None
    if sd == 0.0:
        return sign_pairs_needed(confidence, cap, min_pairs)
    n = np.arange(max(min_pairs, 2), cap + 1)
    crit = sps.t.ppf(0.5 + confidence / 2.0, n - 1)
    nc = abs(mean) / sd * np.sqrt(n)
    reach = sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc)
    ok = reach >= power
    return int(n[np.argmax(ok)]) if ok.any() else int(cap)


@dataclass(frozen=True)
class EffectDecision:
    """A paired effect after correction: its interval at `confidence` (the corrected level), whether
    a difference may be claimed, its sign (+1, -1; 0 when not claimed), and when not, how many
    pairs in all the data suggest (`pairs_suggested`, None if the mean is 0 or there is no spread
    yet; equal to the cap when `capped`) and why."""

    n_pairs: int
    mean: float
    low: float
    high: float
    confidence: float
    p_value: float
    p_adjusted: float
    claimed: bool
    direction: int
    pairs_suggested: int | None
    capped: bool
    reason: str

    @property
    def more_pairs(self) -> int | None:
        """Pairs still to add (pairs_suggested - n_pairs, at least 0), None where unknown."""
        return None if self.pairs_suggested is None else max(0, self.pairs_suggested - self.n_pairs)


def decide(diffs: ArrayLike, confidence: float, p_value: float = math.nan, p_adjusted: float = math.nan,
           min_pairs: int = MIN_PAIRS, cap: int = PAIRS_CAP) -> EffectDecision:
    """The decision rule: a difference is claimed only when the t interval at `confidence` (already
    corrected for multiplicity) excludes zero AND there are at least `min_pairs` pairs.

    Where every difference is the same (no spread), there is no t interval (low, high are nan): the
    difference is claimed only when the exact sign test's p-value is below 1 - confidence (what
    Holm's levels make "rejected") on at least `min_pairs` pairs, and `pairs_suggested` is the n at
    which that many same-signed differences would decide (`sign_pairs_needed`)."""
    x = vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    n = int(x.size)
    if all_equal(x):
        return _decide_without_spread(x, confidence, p_value, p_adjusted, min_pairs, cap)
    mean, low, high, _ = paired_t_interval(x, confidence)
    excludes = bool(n >= 2 and (low > 0 or high < 0))
    claimed = excludes and n >= min_pairs
    if claimed:
        return EffectDecision(n, mean, low, high, confidence, p_value, p_adjusted, True,
                              1 if mean > 0 else -1, None, False, "interval excludes zero")
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    need = pairs_needed(mean, sd, confidence, cap, min_pairs) if n >= 2 else None
    if n < 2:
        reason = f"{n} pair(s): no spread to build an interval from"
    elif excludes:
        reason = f"interval excludes zero but only {n} of the {min_pairs} pairs required"
        need = max(need or min_pairs, min_pairs)
    else:
        reason = "interval contains zero"
    return EffectDecision(n, mean, low, high, confidence, p_value, p_adjusted, False, 0, need,
                          need is not None and need >= cap, reason)


def _decide_without_spread(x: np.ndarray, confidence: float, p_value: float, p_adjusted: float,
                           min_pairs: int, cap: int) -> EffectDecision:
    """`decide` for n >= 2 identical differences: the exact sign test, no interval."""
    n, mean = int(x.size), float(x.mean())
    mean = 0.0 if abs(mean) <= 1e-12 else mean
    p_sign = sign_test_pvalue(x)
    p_value = p_sign if math.isnan(p_value) else p_value
    rejects = mean != 0.0 and p_sign < 1.0 - confidence
    if rejects and n >= min_pairs:
        return EffectDecision(n, mean, math.nan, math.nan, confidence, p_value, p_adjusted, True,
                              1 if mean > 0 else -1, None, False,
                              f"every difference is {mean:+g}: exact sign test p = {p_sign:.2g}")
    need = None if mean == 0.0 else sign_pairs_needed(confidence, cap, min_pairs)
    why = ("every difference is 0" if mean == 0.0 else
           f"every difference is {mean:+g}, but the exact sign test needs {need} pairs at this level; "
           f"p = {p_sign:.2g}")
    return EffectDecision(n, mean, math.nan, math.nan, confidence, p_value, p_adjusted, False, 0, need,
                          need is not None and need >= cap, why)


def replication_probability(d: EffectDecision) -> float:
    """For a claimed effect: the chance that an independent replication with as many seeds claims it
    again, taking this estimate as the best guess of the truth and allowing for its own error. With
    se = the interval's half-width / c (c: its t critical value), the replication's mean differs
    from this one by about N(0, 2 se^2) and is claimed when it clears c·se:
    Phi((|mean| - c·se) / (sqrt(2)·se)). About 0.5 for an interval that just excludes zero; 1.0 for
    a claim without an interval (every difference the same, decided by the sign test). nan when not
    claimed."""
    if not d.claimed:
        return math.nan
    if math.isnan(d.low) or math.isnan(d.high):
        return 1.0   # claimed by the sign test: every difference the same, so a replication's would be too
    half = (d.high - d.low) / 2.0
    if half <= 0:
        return 1.0
    c = float(sps.t.ppf(1.0 - (1.0 - d.confidence) / 2.0, max(d.n_pairs - 1, 1)))
    return float(sps.norm.cdf((abs(d.mean) - half) / (math.sqrt(2.0) * half / c)))


def corrected_effects(rows: Sequence[ArrayLike], alpha: float = 1 - CONFIDENCE, min_pairs: int = MIN_PAIRS,
                      cap: int = PAIRS_CAP) -> list[EffectDecision]:
    """Decisions for a family of paired effects (one array of differences per effect row of a
    report), corrected together by Holm: per-row levels from `holm_levels`, t intervals at those
    levels, then `decide`. The p-values are the t test's, or the exact sign test's for a row whose
    differences are all the same (`paired_pvalue`)."""
    xs = [vector(r, "diffs") for r in rows]
    p = np.array([paired_pvalue(x) for x in xs])
    levels, adj = holm_levels(p, alpha), holm_adjust(p)
    return [decide(x, float(c), float(pi), float(pa), min_pairs, cap) for x, c, pi, pa in zip(xs, levels, p, adj)]


def effect_undecided(low: float, high: float) -> bool:
    """True while a paired effect's corrected interval contains zero, or does not exist (nan)."""
    if math.isnan(low) or math.isnan(high):
        return True
    return low <= 0.0 <= high
