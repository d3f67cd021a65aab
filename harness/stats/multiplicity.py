"""Many tests at once: adjusted p-values and per-row confidence levels that hold a family-wise
error rate. scipy has no Holm correction (`scipy.stats.false_discovery_control` controls the false
discovery rate instead) and no exact minP adjustment, so both are written here. `holm_decided` is
the report's decision rule for rows of two rates (Holm-adjusted exact p-value and exact interval), on
counts alone.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from harness.stats._util import CONFIDENCE, ArrayLike, vector
from harness.stats.two_rates import rate_difference, two_sample_pvalue


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1),
    made non-decreasing along the order and capped at 1. nan p-values (untestable rows) stay nan but
    count in m."""
    p = vector(p_values, "p_values")
    m = p.size
    out = np.full(m, np.nan)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    running = 0.0
    for rank, i in enumerate(order):
        if np.isnan(p[i]):
            continue
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def holm_levels(p_values: ArrayLike, alpha: float = 1 - CONFIDENCE) -> np.ndarray:
    """Per-row confidence levels whose intervals agree with Holm's step-down test at family-wise
    error `alpha`: in increasing p order, the row of rank r gets 1 - alpha/(m - r + 1) while every
    earlier row was rejected; from the first row not rejected on, all rows get that row's level.
    For a t interval and its t test, "interval excludes 0" is then exactly "Holm rejects"."""
    p = vector(p_values, "p_values")
    m = p.size
    levels = np.empty(m)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    stopped: float | None = None
    for rank, i in enumerate(order):
        a = alpha / (m - rank)
        if stopped is None and not (p[i] < a):      # nan never rejects
            stopped = a
        levels[i] = 1.0 - (a if stopped is None else stopped)
    return levels


def conditional_minp_adjust(tables: list[tuple[int, int, int, int]], test: str = "boschloo") -> np.ndarray:
    """Adjusted p-values for several configurations' two-sample tests at once, `tables` = (k1, n1, k2, n2)
    each, by the exact conditional single-step minP method (Westfall and Young's, with the permutation
    distribution computed exactly instead of sampled).

    Under the null hypothesis that a configuration's two groups share one success rate, given its pooled
    number of successes M = k1 + k2, k1 is hypergeometric (M of n1 + n2, n1 drawn), whatever that rate.
    So F_i(c) = P(p_i(X) <= c | M_i), the chance that configuration i alone gives a p-value at most c,
    is known exactly, and the adjusted p-value of configuration j is 1 - prod_i (1 - F_i(p_j)): the chance
    that the smallest of independent null configurations' p-values is at most p_j. The family-wise error
    rate is at most alpha given the margins (so also unconditionally), for any true rates. Unlike Holm's
    correction, a configuration that cannot give a small p-value (every run reached the target in both
    groups, or none did, or only a few succeeded at all) costs nothing, which is what makes the check
    powerful on a bench where most configurations are all-or-nothing. The p-value scale is `test`'s
    (`two_sample_pvalue`)."""
    obs = np.array([two_sample_pvalue(k1, n1, k2, n2, test) for k1, n1, k2, n2 in tables], dtype=float)
    nulls = []   # per configuration: (p-values of every table with its margins, their null probabilities)
    for k1, n1, k2, n2 in tables:
        m = k1 + k2
        xs = np.arange(max(0, m - n2), min(n1, m) + 1)
        prob = sps.hypergeom.pmf(xs, n1 + n2, m, n1)
        ps = np.array([two_sample_pvalue(int(x), n1, int(m - x), n2, test) for x in xs])
        nulls.append((ps, prob))
    tol = 1e-9   # the same table computed twice: equal p-values must count as "at most"
    adjusted = np.empty_like(obs)
    for j, pj in enumerate(obs):
        survive = np.prod([1.0 - float(prob[ps <= pj * (1 + tol)].sum()) for ps, prob in nulls])
        adjusted[j] = min(1.0, max(0.0, 1.0 - survive))
    return adjusted


def holm_decided(tables: list[tuple[int, int, int, int]], alpha: float = 1 - CONFIDENCE,
                 confidence: float = CONFIDENCE) -> np.ndarray:
    """Per table (k1, n1, k2, n2): +1 when "rate 1 above rate 2" is decided, -1 for below, 0 when not
    decided, by the report's rule for its arm-vs-arm rows (`harness.report.contrasts.arm_contrasts`):
    Boschloo's exact p-value, Holm-adjusted across the tables, below `alpha`, AND the exact interval of
    the difference at `confidence` (`two_rates.rate_difference`) excluding 0. Counts in, signs out (no
    tables of runs), for simulations."""
    diffs = [rate_difference(k1, n1, k2, n2, confidence) for k1, n1, k2, n2 in tables]
    if not diffs:
        return np.zeros(0, dtype=int)
    p_holm = holm_adjust([d.p_value for d in diffs])
    return np.array([int(np.sign(d.diff)) if (ph < alpha and d.excludes_zero) else 0
                     for d, ph in zip(diffs, p_holm)], dtype=int)
