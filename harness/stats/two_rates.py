"""Two success rates compared: k1 of n1 runs against k2 of n2.

- `rate_difference`: p1 - p2 with an exact unconditional interval (Chan & Zhang 1999: two one-sided
  exact tests of the score statistic inverted; coverage at least the nominal level for every p1, p2)
  and the two-sided p-value of Boschloo's exact test (`scipy.stats.boschloo_exact`);
- `two_sample_pvalue`: Boschloo's or Fisher's two-sided p-value (scipy's), cached;
- `rate_equivalence`: whether two rates are shown equivalent within a margin (two one-sided exact tests:
  the exact 1 - 2 alpha interval of p1 - p2 inside [-margin, +margin]);
- `pvalue_table`: those p-values for every table of given group sizes at once, `exact_power` and
  `seeds_for_power`: the exact power of the test (summed over every binomial outcome) and the
  smallest number of runs per group that reaches a given power.

Exact because at 5 to 16 runs per group the normal approximations cover less than their nominal
level near rates of 0 and 1, where frontier data live. scipy has the two-sample tests but no exact
interval for a difference of rates; the binomial probabilities are computed here over a whole grid
of rates at once (`_binom_pmf`: about 4 times faster than `scipy.stats.binom.pmf`, which sits in the
interval's inner loop; equal to 1e-13 relative, tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln, xlog1py, xlogy

from harness.stats._util import CONFIDENCE, check_confidence

NUISANCE_POINTS = 401      # grid of the common rate over which exact unconditional p-values take their supremum
POWER_CAP = 40             # seeds_for_power looks no further than this many runs per group
TESTS = ("boschloo", "fisher")


# ============================================================================ binomial building blocks

def _binom_pmf(n: int, p: np.ndarray) -> np.ndarray:
    """(G, n + 1): the Binomial(n, p_g) probabilities of 0 .. n successes for each rate in `p` (G,)."""
    x = np.arange(n + 1, dtype=np.float64)
    logc = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(logc + xlogy(x, p) + xlog1py(n - x, -p))


def _check_counts(k1: int, n1: int, k2: int, n2: int) -> tuple[int, int, int, int]:
    k1, n1, k2, n2 = int(k1), int(n1), int(k2), int(n2)
    if n1 < 1 or n2 < 1 or not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"need 0 <= k <= n and n >= 1 in each group, got {k1}/{n1} and {k2}/{n2}")
    return k1, n1, k2, n2


# ============================================================================ score statistic

def restricted_mle(x1: np.ndarray, n1: int, x2: np.ndarray, n2: int, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The maximum likelihood (p1, p2) of x1 ~ Bin(n1, p1), x2 ~ Bin(n2, p2) under p1 - p2 = delta
    (Farrington & Manning 1990, the closed-form root of a cubic), elementwise over x1, x2."""
    a1 = np.asarray(x1, dtype=np.float64) / n1
    a2 = np.asarray(x2, dtype=np.float64) / n2
    t = n2 / n1
    a = 1.0 + t
    b = -(1.0 + t + a1 + t * a2 + delta * (t + 2.0))
    c = delta * delta + delta * (2.0 * a1 + t + 1.0) + a1 + t * a2
    d = -a1 * delta * (1.0 + delta)
    v = b ** 3 / (27.0 * a ** 3) - b * c / (6.0 * a * a) + d / (2.0 * a)
    u = np.sqrt(np.maximum(b * b / (9.0 * a * a) - c / (3.0 * a), 0.0))
    u = np.where(v < 0, -u, u)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u != 0, v / u ** 3, 0.0)
    w = (math.pi + np.arccos(np.clip(ratio, -1.0, 1.0))) / 3.0
    p1 = 2.0 * u * np.cos(w) - b / (3.0 * a)
    lo, hi = max(0.0, delta), min(1.0, 1.0 + delta)
    p1 = np.clip(p1, lo, hi)
    return p1, np.clip(p1 - delta, 0.0, 1.0)


def score_statistic(x1: np.ndarray, n1: int, x2: np.ndarray, n2: int, delta: float) -> np.ndarray:
    """The score statistic (p̂1 - p̂2 - delta) / sqrt(p̃1(1-p̃1)/n1 + p̃2(1-p̃2)/n2), with p̃ the
    restricted maximum likelihood under p1 - p2 = delta (Farrington-Manning; Miettinen-Nurminen without
    their n/(n-1) factor, which does not change the ordering). 0/0 is 0, x/0 is ±inf."""
    p1, p2 = restricted_mle(x1, n1, x2, n2, delta)
    num = np.asarray(x1, dtype=np.float64) / n1 - np.asarray(x2, dtype=np.float64) / n2 - delta
    var = p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, num / np.sqrt(np.where(var > 0, var, 1.0)), np.sign(num) * np.inf)
    return np.where(np.abs(num) < 1e-12, 0.0, z)


def _one_sided_p(k1: int, n1: int, k2: int, n2: int, delta: float, upper: bool,
                 points: int = NUISANCE_POINTS) -> float:
    """The exact unconditional p-value of H0: p1 - p2 <= delta against p1 - p2 > delta (`upper`), or of
    H0: p1 - p2 >= delta against < (not `upper`): the supremum over the common nuisance rate (p2, with
    p1 = p2 + delta on the boundary of H0) of the probability of a score statistic at least as extreme
    as the observed one."""
    x1 = np.arange(n1 + 1)[:, None]
    x2 = np.arange(n2 + 1)[None, :]
    z = score_statistic(x1, n1, x2, n2, delta)
    z_obs = z[k1, k2]
    tol = 1e-9 * max(1.0, abs(z_obs)) if np.isfinite(z_obs) else 0.0
    region = (z >= z_obs - tol) if upper else (z <= z_obs + tol)
    lo, hi = max(0.0, -delta), min(1.0, 1.0 - delta)
    p2 = np.linspace(lo, hi, points)
    b1 = _binom_pmf(n1, p2 + delta)           # (G, n1 + 1)
    b2 = _binom_pmf(n2, p2)                   # (G, n2 + 1)
    prob = ((b1 @ region.astype(np.float64)) * b2).sum(axis=1)
    return float(min(1.0, prob.max()))


def _limit(k1: int, n1: int, k2: int, n2: int, tail: float, lower: bool, grid: int = 80, iters: int = 30) -> float:
    """One end of the interval: the smallest (`lower`) or largest delta that the one-sided test at
    level `tail` does not reject. A grid scan from the far end of [-1, 1] towards the estimate, then
    bisection inside the first grid step that is not rejected; the end returned is the rejected side
    of the last bisection step (a hair wider, never narrower, than the limit)."""
    est = k1 / n1 - k2 / n2
    far = -1.0 if lower else 1.0

    def accepted(delta: float) -> bool:
        return _one_sided_p(k1, n1, k2, n2, delta, upper=lower) > tail

    steps = np.linspace(far, est, grid + 1)
    prev = None
    for delta in steps:
        if accepted(float(delta)):
            break
        prev = float(delta)
    else:
        return est
    if prev is None:
        return far
    rej, acc = prev, float(delta)
    for _ in range(iters):
        mid = (rej + acc) / 2.0
        if accepted(mid):
            acc = mid
        else:
            rej = mid
    return rej


# ============================================================================ p-values

@lru_cache(maxsize=65536)
def two_sample_pvalue(k1: int, n1: int, k2: int, n2: int, test: str = "boschloo") -> float:
    """The two-sided p-value of "both groups share one success rate" for k1 of n1 against k2 of n2:
    Boschloo's exact unconditional test (`scipy.stats.boschloo_exact`; twice the smaller one-sided
    p-value, at most 1) or Fisher's exact conditional test (`scipy.stats.fisher_exact`). 1.0 when the
    table has no information (every run succeeded, or every run failed, in both groups)."""
    k1, n1, k2, n2 = _check_counts(k1, n1, k2, n2)
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if (k1 == 0 and k2 == 0) or (k1 == n1 and k2 == n2):
        return 1.0
    table = [[k1, k2], [n1 - k1, n2 - k2]]
    p = sps.boschloo_exact(table).pvalue if test == "boschloo" else sps.fisher_exact(table).pvalue
    return float(min(1.0, p))


@dataclass(frozen=True)
class RateDifference:
    """k1/n1 - k2/n2 with its interval at `confidence` and the two-sided p-value of no difference.

    diff, low, high: fractions (-1 .. 1). p_value: Boschloo's exact test (see `rate_difference`)."""

    k1: int
    n1: int
    k2: int
    n2: int
    diff: float
    low: float
    high: float
    p_value: float
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


@lru_cache(maxsize=4096)
def rate_difference(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> RateDifference:
    """The difference of two success proportions, p1 - p2, from k1 of n1 and k2 of n2 runs.

    Interval: Chan & Zhang's (1999) exact unconditional interval. Each end inverts a one-sided exact
    test at level (1 - confidence) / 2 of H0: p1 - p2 = delta, ordered by the score statistic
    (`score_statistic`), whose p-value is the supremum over the nuisance rate of the probability of a
    statistic at least as extreme (Santner & Snell's construction, with the score in place of the raw
    difference, which makes it shorter). Because each one-sided test is exact, the interval covers the
    true difference with probability at least `confidence` for every (p1, p2): no normal approximation
    anywhere. (The supremum is taken over a grid of 401 nuisance rates; the tests enumerate the
    coverage exactly and find it at or above 95% at every true pair checked.)

    p-value: Boschloo's exact unconditional test of p1 = p2 (two-sided: twice the smaller one-sided
    p-value), `scipy.stats.boschloo_exact`; uniformly more powerful than Fisher's test. The interval and
    the p-value come from two different exact tests, so at the margin one may exclude zero while the
    other does not: the report decides only when both do."""
    k1, n1, k2, n2 = _check_counts(k1, n1, k2, n2)
    check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    low = _limit(k1, n1, k2, n2, tail, lower=True)
    high = _limit(k1, n1, k2, n2, tail, lower=False)
    return RateDifference(k1, n1, k2, n2, k1 / n1 - k2 / n2, low, high, two_sample_pvalue(k1, n1, k2, n2),
                          confidence)


@dataclass(frozen=True)
class RateEquivalence:
    """k1/n1 against k2/n2 tested for equivalence within `margin` (a difference of rates, fraction).

    diff, low, high: p1 - p2 and its exact interval at 1 - 2 alpha (fractions). equivalent: the interval
    lies inside [-margin, +margin]."""

    k1: int
    n1: int
    k2: int
    n2: int
    diff: float
    low: float
    high: float
    margin: float
    alpha: float
    equivalent: bool


def rate_equivalence(k1: int, n1: int, k2: int, n2: int, margin: float, alpha: float = 0.05) -> RateEquivalence:
    """Are the two success rates within `margin` of each other, shown by two one-sided exact tests (TOST)
    at level `alpha` each? H0: |p1 - p2| >= margin is rejected when Chan and Zhang's exact interval of
    p1 - p2 at confidence 1 - 2 alpha (`rate_difference`; each end is a one-sided exact test at level
    alpha, inverted) lies inside [-margin, +margin]. The chance of calling two rates equivalent when they
    differ by `margin` or more is then at most alpha, for every pair of true rates.

    At 12 runs per group the 90% interval of 0/12 against 0/12 is about ±0.22 and of 5/12 against 5/12
    about ±0.35: few runs can show equivalence only where the rates sit near 0 or 1."""
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must lie in (0, 1], got {margin}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie strictly between 0 and 0.5, got {alpha}")
    r = rate_difference(k1, n1, k2, n2, 1.0 - 2.0 * alpha)
    return RateEquivalence(r.k1, r.n1, r.k2, r.n2, r.diff, r.low, r.high, float(margin), float(alpha),
                           bool(-margin <= r.low and r.high <= margin))


# ============================================================================ every table at once

def _fisher_table(n1: int, n2: int) -> np.ndarray:
    """(n1 + 1, n2 + 1): Fisher's two-sided p-value of every table (the sum of the hypergeometric
    probabilities, given the total successes, that are at most the observed one: scipy's rule)."""
    out = np.ones((n1 + 1, n2 + 1))
    total = n1 + n2
    for s in range(total + 1):
        x1 = np.arange(max(0, s - n2), min(n1, s) + 1)
        pmf = sps.hypergeom.pmf(x1, total, s, n1)
        p = np.array([pmf[pmf <= q * (1 + 1e-7)].sum() for q in pmf])
        out[x1, s - x1] = np.minimum(p, 1.0)
    return out


def _boschloo_one_sided(n1: int, n2: int, stat: np.ndarray, points: int) -> np.ndarray:
    """(n1 + 1, n2 + 1): sup over the common rate of P(statistic <= observed), for every table."""
    pi = np.linspace(0.0, 1.0, points)
    prob = (_binom_pmf(n1, pi)[:, :, None] * _binom_pmf(n2, pi)[:, None, :]).reshape(points, -1)   # (G, T)
    s = stat.ravel()
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(prob[:, order], axis=1)
    last = np.searchsorted(s[order], s * (1 + 1e-13), side="right") - 1
    return np.minimum(cum[:, last].max(axis=0), 1.0).reshape(stat.shape)


@lru_cache(maxsize=256)
def pvalue_table(n1: int, n2: int, test: str = "boschloo", points: int = 1001) -> np.ndarray:
    """(n1 + 1, n2 + 1): the two-sided p-value of every table k1 of n1 against k2 of n2 (index
    [k1, k2]), as `two_sample_pvalue` would give, computed for all tables at once. Boschloo's test:
    Fisher's one-sided p-values as the statistic, the supremum over a grid of `points` common rates
    (scipy optimises instead; they agree to about 1e-6, tested); twice the smaller side, at most 1.
    Read-only (cached)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if test == "fisher":
        out = _fisher_table(n1, n2)
    else:
        x1 = np.arange(n1 + 1)[:, None]
        x2 = np.arange(n2 + 1)[None, :]
        total = n1 + n2
        less = sps.hypergeom.cdf(x1, total, x1 + x2, n1)
        greater = sps.hypergeom.cdf(x2, total, x1 + x2, n2)
        p = np.minimum(_boschloo_one_sided(n1, n2, less, points), _boschloo_one_sided(n1, n2, greater, points))
        out = np.minimum(2.0 * p, 1.0)
        out[0, 0] = out[n1, n2] = 1.0
    out.setflags(write=False)
    return out


def exact_power(n1: int, n2: int, p1: float, p2: float, alpha: float = 0.05, test: str = "boschloo") -> float:
    """The probability that the two-sided test rejects (p-value < alpha) when the true rates are p1
    and p2: the sum of Binomial(n1, p1) x Binomial(n2, p2) over the tables it rejects. Exact."""
    reject = pvalue_table(int(n1), int(n2), test) < alpha
    b1 = _binom_pmf(int(n1), np.array([p1]))[0]
    b2 = _binom_pmf(int(n2), np.array([p2]))[0]
    return float(b1 @ reject.astype(np.float64) @ b2)


def seeds_for_power(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8, test: str = "boschloo",
                    cap: int = POWER_CAP) -> int | None:
    """The smallest number of runs n per group (the same in both groups) at which the two-sided exact
    test (`test`: 'boschloo' or 'fisher') of k1 of n against k2 of n rejects at level `alpha` with
    probability at least `power`, when the true success rates are p1 and p2 (`exact_power`: summed
    over every binomial outcome, no normal approximation). None when no n up to `cap` reaches it (for
    p1 == p2 never: the power is then the test's size, at most alpha).

    Exact tests are discrete, so power is not monotone in n (a saw-tooth): the n returned is the first
    that reaches the power; a few larger n may fall just short again."""
    if not (0.0 <= p1 <= 1.0 and 0.0 <= p2 <= 1.0):
        raise ValueError(f"rates must lie in [0, 1], got {p1}, {p2}")
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must lie strictly between 0 and 1, got {alpha}, {power}")
    for n in range(1, int(cap) + 1):
        if exact_power(n, n, p1, p2, alpha, test) >= power:
            return n
    return None
