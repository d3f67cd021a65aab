"""The report's statistical core for few seeds, censoring and success/failure outcomes.

Pure functions over numpy arrays (pandas only where a per-configuration table is the natural
result). Nothing here reads files, prints or plots. Every interval is `(low, high)` at the given
confidence; "does not exist" is `None` (a median not reached, a D50 beyond the tested distances),
"cannot be computed from these data" is nan.

Sections, each answering one question the report asks:

- success rate: reached the target in k of n runs, with a Wilson or Clopper-Pearson interval;
- survival: time to target with each run censored at its own last evaluated step (Kaplan-Meier,
  median with the Brookmeyer-Crowley interval, restricted mean, log-rank);
- paired effects at small n: t interval, BCa bootstrap, Holm step-down correction, and the rule
  that decides whether a difference may be claimed (and if not, how many more pairs to run);
- rliable-style aggregates: interquartile mean with a stratified bootstrap, performance profile;
- underflow: log10 ratios of -inf are counted, never dropped;
- frontier: D50 from a logistic fit of P(reach) on log(1 + distance), with a stratified bootstrap;
- racing: whether a success rate or a paired effect is still undecided.

Why the survival estimators are written here rather than taken from `lifelines`: the report needs
four small, textbook formulas (Kaplan-Meier with Greenwood's variance, a quantile read off a
log-log band, the restricted mean and the two-group log-rank), about 120 lines with exact tests
against published numbers. `lifelines` would add a dependency of its own (with autograd and
formulaic) to the core install for those lines, and its API changes would then break the report.
The tests cross-check against lifelines when it happens to be installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import expit

CONFIDENCE = 0.95
MIN_PAIRS = 5            # no difference is claimed on fewer matched pairs than this
PAIRS_CAP = 1000         # pairs_needed never suggests more than this
POWER = 0.8              # pairs_needed sizes a study to detect the effect seen with this probability

RngLike = np.random.Generator | int | None
ArrayLike = Sequence[float] | np.ndarray


def _z(confidence: float) -> float:
    """The two-sided standard-normal quantile for `confidence` (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    return x


# ============================================================================ success rate

def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a success rate k/n. With n == 0 it is (0, 1): no information.

    Chosen as the report's default because its coverage stays close to nominal down to n of about
    10 and it never leaves [0, 1]; at k = 0 its lower end is exactly 0, at k = n its upper end 1."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    z2 = z * z
    centre = (k + z2 / 2.0) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4.0)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def clopper_pearson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval for k/n from beta quantiles: coverage at least the
    nominal level for every true rate (hence wider than Wilson). (0, 1) when n == 0."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    _z(confidence)
    if n == 0:
        return (0.0, 1.0)
    a = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(sps.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(sps.beta.ppf(1.0 - a, k + 1, n - k))
    return (low, high)


def rate_interval(k: int, n: int, confidence: float = CONFIDENCE, method: str = "wilson") -> tuple[float, float]:
    """The interval for k/n by `method`: 'wilson' or 'exact' (Clopper-Pearson)."""
    if method == "wilson":
        return wilson_interval(k, n, confidence)
    if method == "exact":
        return clopper_pearson_interval(k, n, confidence)
    raise ValueError(f"method must be 'wilson' or 'exact', got {method!r}")


@dataclass(frozen=True)
class SuccessRate:
    """k successes of n runs, the rate k/n (nan if n == 0) and its interval."""

    k: int
    n: int
    rate: float
    low: float
    high: float


def success_rate(reached: ArrayLike, confidence: float = CONFIDENCE, method: str = "wilson") -> SuccessRate:
    """The success rate of boolean outcomes (1/0/True/False). nan entries are not runs and must
    be filtered by the caller (success_summary counts them as `missing`)."""
    r = _vector(reached, "reached")
    if np.isnan(r).any():
        raise ValueError("reached holds nan: count unknown outcomes separately (success_summary does)")
    k, n = int((r != 0).sum()), int(r.size)
    low, high = rate_interval(k, n, confidence, method)
    return SuccessRate(k, n, k / n if n else math.nan, low, high)


def success_summary(runs: pd.DataFrame, keys: Sequence[str], reached: str = "reached", *,
                    confidence: float = CONFIDENCE, method: str = "wilson") -> pd.DataFrame:
    """One row per configuration (combination of `keys`): k, n, rate, low, high, `missing` (runs
    whose outcome is null: counted here, not in n) and `undecided` (the interval contains 0.5)."""
    keys = list(keys)
    cols = [*keys, "k", "n", "rate", "low", "high", "missing", "undecided"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in runs.groupby(keys, dropna=False, sort=True) if keys else [((), runs)]:
        key = key if isinstance(key, tuple) else (key,)
        r = pd.to_numeric(g[reached].astype("object"), errors="coerce").to_numpy(dtype=np.float64)
        known = r[~np.isnan(r)]
        s = success_rate(known, confidence, method)
        rows.append({**dict(zip(keys, key)), "k": s.k, "n": s.n, "rate": s.rate, "low": s.low,
                     "high": s.high, "missing": int(np.isnan(r).sum()),
                     "undecided": s.low <= 0.5 <= s.high})
    return pd.DataFrame(rows, columns=cols)


# ============================================================================ survival

class KMCurve(NamedTuple):
    """Kaplan-Meier estimate at the distinct event times (ascending): S(t) just after each, and
    Greenwood's variance of S(t) (nan where S(t) == 0)."""

    times: np.ndarray
    survival: np.ndarray
    greenwood_var: np.ndarray


def _km_table(times: ArrayLike, reached: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event times, at risk n_j, events d_j, S) — a run censored at t is at risk at t."""
    t = _vector(times, "times")
    e = np.asarray(reached, dtype=bool)
    if e.shape != t.shape:
        raise ValueError(f"times and reached differ in shape: {t.shape} vs {e.shape}")
    if not np.isfinite(t).all():
        raise ValueError("times must be finite: a run that never reached the target is censored at its "
                         "last evaluated step, not at infinity")
    uniq = np.unique(t[e])
    n_risk = t.size - np.searchsorted(np.sort(t), uniq, side="left")
    te = np.sort(t[e])
    d = np.searchsorted(te, uniq, side="right") - np.searchsorted(te, uniq, side="left")
    s = np.cumprod(1.0 - d / n_risk)
    return uniq, n_risk.astype(np.float64), d.astype(np.float64), s


def _greenwood_sum(n_risk: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Cumulative sum of d / (n (n - d)): inf from the time every run at risk had the event."""
    with np.errstate(divide="ignore"):
        return np.cumsum(np.where(n_risk > d, d / (n_risk * (n_risk - d)), np.inf))


def kaplan_meier(times: ArrayLike, reached: ArrayLike) -> KMCurve:
    """Kaplan-Meier curve of time to target. `times`: the step at which each run reached the target,
    or, if it did not (`reached` False), the run's own last evaluated step (its censoring time)."""
    uniq, n_risk, d, s = _km_table(times, reached)
    gsum = _greenwood_sum(n_risk, d)
    with np.errstate(invalid="ignore"):
        var = np.where(s > 0, s * s * gsum, np.nan)
    return KMCurve(uniq, s, var)


def km_band(times: ArrayLike, reached: ArrayLike, confidence: float = CONFIDENCE
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(event times, S, lower, upper): the pointwise log-log band, S ** exp(±z se), where
    se = sqrt(sum d/(n(n-d))) / |log S| is the standard error of log(-log S). It stays in [0, 1]."""
    z = _z(confidence)
    uniq, n_risk, d, s = _km_table(times, reached)
    gsum = _greenwood_sum(n_risk, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(gsum) / np.abs(np.log(s))
        lower = np.where(s > 0, s ** np.exp(z * se), 0.0)
        upper = np.where(s > 0, s ** np.exp(-z * se), 0.0)
    return uniq, s, np.nan_to_num(lower, nan=0.0), np.nan_to_num(upper, nan=0.0)


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
    """Median time to target and its interval; each None where it does not exist (not reached)."""

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


class RMST(NamedTuple):
    """Restricted mean time to target up to `tau` (area under S on [0, tau], in the unit of the
    times), its variance, and a normal interval."""

    value: float
    variance: float
    low: float
    high: float
    tau: float


def rmst(times: ArrayLike, reached: ArrayLike, tau: float, confidence: float = CONFIDENCE) -> RMST:
    """Restricted mean survival time: the mean number of steps spent below the target within the
    first `tau` steps. Variance sum_j A_j^2 d_j / (n_j (n_j - d_j)) with A_j the area under S from
    t_j to tau (Klein & Moeschberger 4.5). `tau` may not exceed the last observed time unless S is
    already 0 there (beyond it the curve is unknown)."""
    t = _vector(times, "times")
    uniq, n_risk, d, s = _km_table(t, reached)
    if t.size == 0:
        raise ValueError("rmst of no runs")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if tau > t.max() and not (s.size and s[-1] == 0.0):
        raise ValueError(f"tau={tau} lies beyond the last observed time {t.max()} where S is unknown")
    inside = uniq <= tau
    u, nr, dd, ss = uniq[inside], n_risk[inside], d[inside], s[inside]
    edges = np.concatenate([[0.0], u, [tau]])
    heights = np.concatenate([[1.0], ss])           # S on [edges[i], edges[i+1])
    pieces = heights * np.diff(edges)
    value = float(pieces.sum())
    tail = np.cumsum(pieces[::-1])[::-1][1:]         # A_j = area from u_j to tau
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(nr > dd, tail ** 2 * dd / (nr * (nr - dd)), 0.0)  # A_j = 0 once S = 0
    var = float(terms.sum())
    z = _z(confidence) * math.sqrt(var)
    return RMST(value, var, value - z, value + z, float(tau))


def rmst_difference(times_a: ArrayLike, reached_a: ArrayLike, times_b: ArrayLike, reached_b: ArrayLike,
                    tau: float | None = None, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(b - a, low, high, tau): the difference of restricted means (independent groups, normal
    interval). `tau` defaults to the smaller of the two groups' last observed times."""
    if tau is None:
        tau = float(min(_vector(times_a, "times_a").max(), _vector(times_b, "times_b").max()))
    ra, rb = rmst(times_a, reached_a, tau, confidence), rmst(times_b, reached_b, tau, confidence)
    diff = rb.value - ra.value
    z = _z(confidence) * math.sqrt(ra.variance + rb.variance)
    return (diff, diff - z, diff + z, float(tau))


class LogRank(NamedTuple):
    """Two-group log-rank test: chi-square statistic (1 df), p-value, and group b's observed and
    expected numbers of events (observed < expected: b reaches the target later than a)."""

    statistic: float
    p_value: float
    observed_b: float
    expected_b: float


def logrank_test(times_a: ArrayLike, reached_a: ArrayLike, times_b: ArrayLike, reached_b: ArrayLike) -> LogRank:
    """Log-rank (Mantel-Cox) test that two groups share one time-to-target curve, with the
    hypergeometric variance n_a n_b d (n - d) / (n^2 (n - 1)) at each pooled event time. Statistic
    and p-value are nan when no run in either group had an event."""
    ta, tb = _vector(times_a, "times_a"), _vector(times_b, "times_b")
    ea, eb = np.asarray(reached_a, dtype=bool), np.asarray(reached_b, dtype=bool)
    t = np.concatenate([ta, tb])
    e = np.concatenate([ea, eb])
    uniq, n_risk, d, _ = _km_table(t, e)
    nb = tb.size - np.searchsorted(np.sort(tb), uniq, side="left")
    tbe = np.sort(tb[eb])
    db = np.searchsorted(tbe, uniq, side="right") - np.searchsorted(tbe, uniq, side="left")
    expected = d * nb / n_risk
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(n_risk > 1, (n_risk - nb) * nb * d * (n_risk - d) / (n_risk ** 2 * (n_risk - 1)), 0.0)
    o, ex, var = float(db.sum()), float(expected.sum()), float(v.sum())
    if var <= 0:
        return LogRank(math.nan, math.nan, o, ex)
    stat = (o - ex) ** 2 / var
    return LogRank(stat, float(sps.chi2.sf(stat, 1)), o, ex)


def time_to_target(steps_to_target: ArrayLike, last_step: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(times, reached) for the survival functions from a runs table's columns: a run that reached
    the target (finite steps_to_target) has its event there; one that did not (null / nan / inf)
    is censored at `last_step`, its own last evaluated step."""
    stt = _vector(steps_to_target, "steps_to_target")
    last = _vector(last_step, "last_step")
    reached = np.isfinite(stt)
    times = np.where(reached, stt, last)
    if not np.isfinite(times).all():
        raise ValueError("a run that did not reach the target has no last evaluated step to censor it at")
    return times, reached


def survival_summary(runs: pd.DataFrame, keys: Sequence[str], time: str = "time", reached: str = "reached", *,
                     tau: float | None = None, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per configuration: n, events, the median time with its interval (nan where it does
    not exist) and the restricted mean up to `tau` with its interval. `tau` defaults to the smallest
    last observed time over the configurations, so that every restricted mean covers the same span."""
    keys = list(keys)
    cols = [*keys, "n", "events", "median", "median_low", "median_high", "rmst", "rmst_low", "rmst_high", "tau"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    groups = list(runs.groupby(keys, dropna=False, sort=True)) if keys else [((), runs)]
    if tau is None:
        tau = float(min(pd.to_numeric(g[time]).max() for _, g in groups))
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        t = pd.to_numeric(g[time]).to_numpy(dtype=np.float64)
        if g[reached].isna().any():
            raise ValueError(f"column {reached!r} has null outcomes in configuration {key}")
        e = g[reached].astype(bool).to_numpy()
        m = km_median(t, e, confidence)
        r = rmst(t, e, tau, confidence)
        rows.append({**dict(zip(keys, key)), "n": int(t.size), "events": int(e.sum()),
                     **{c: (math.nan if v is None else v)
                        for c, v in zip(("median", "median_low", "median_high"), m)},
                     "rmst": r.value, "rmst_low": r.low, "rmst_high": r.high, "tau": tau})
    return pd.DataFrame(rows, columns=cols)


# ============================================================================ paired effects

def paired_t_interval(diffs: ArrayLike, confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, df) of paired differences with Student's t interval, df = n - 1. Exact for
    normal differences at any n >= 2; low and high are nan for fewer than 2 pairs."""
    x = _vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return (mean, math.nan, math.nan, 0)
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return (mean, mean - half, mean + half, n - 1)


def paired_t_pvalue(diffs: ArrayLike) -> float:
    """Two-sided p-value of the one-sample t test of mean difference 0 (nan below 2 pairs; 1.0 when
    every difference is 0; 0.0 when all are equal and non-zero, where the t statistic is infinite:
    decisions use `paired_pvalue`, which takes the exact sign test there)."""
    x = _vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    if x.size < 2:
        return math.nan
    sd = float(x.std(ddof=1))
    mean = float(x.mean())
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    tstat = mean / (sd / math.sqrt(x.size))
    return float(2.0 * sps.t.sf(abs(tstat), x.size - 1))


def all_equal(diffs: ArrayLike, rtol: float = 1e-9) -> bool:
    """True when there are at least 2 differences (nan left out) and every one is the same, up to
    floating-point rounding (a spread below `rtol` of their size: 0.387 - 0.387 from sums in another
    order): no spread, so no t interval exists (a zero-width "interval" would claim certainty that 2 to
    16 seeds cannot give)."""
    x = _vector(diffs, "diffs")
    x = x[~np.isnan(x)]
    return bool(x.size >= 2 and float(np.ptp(x)) <= rtol * max(1.0, float(np.abs(x).max())))


def sign_test_pvalue(diffs: ArrayLike) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) of "positive and negative differences are equally
    likely", zeros left out (`scipy.stats.binomtest`). 1.0 when every difference is zero; nan for none.
    With n identical non-zero differences it is 2 * 0.5**n: 0.0625 at 5 pairs, 0.031 at 6."""
    x = _vector(diffs, "diffs")
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


def bca_interval(values: ArrayLike, n_boot: int = 2000, rng: RngLike = 0,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | np.ndarray:
    """BCa (bias-corrected and accelerated) bootstrap interval for the mean (Efron 1987).

    `values` of shape (n,) gives (low, high); shape (m, n) gives an (m, 2) array, one interval per
    row (rows are resampled in blocks of 64 that share resampling weights). Bias correction z0 from
    the share of bootstrap means below the sample mean, acceleration from the jackknife. nan for
    fewer than 2 values; (mean, mean) when all values are equal.

    At small n (below about 15) BCa, like every bootstrap of the mean, is too narrow (it cannot know
    the tails it has not seen); the report therefore uses the t interval for paired effects and
    this one where n is moderate and the distribution skewed."""
    x = np.asarray(values, dtype=np.float64)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    if x.ndim != 2:
        raise ValueError(f"values must have shape (n,) or (m, n), got {np.shape(values)}")
    m, n = x.shape
    out = np.full((m, 2), np.nan)
    if n >= 2:
        gen = _rng(rng)
        za, zb = NormalDist().inv_cdf((1 - confidence) / 2), NormalDist().inv_cdf((1 + confidence) / 2)
        for start in range(0, m, 64):
            block = x[start:start + 64]
            counts = gen.multinomial(n, np.full(n, 1.0 / n), size=n_boot)      # (B, n)
            boot = block @ counts.T.astype(np.float64) / n                       # (b, B)
            theta = block.mean(axis=1)                                           # (b,)
            below = (boot < theta[:, None]).mean(axis=1) + 0.5 * (boot == theta[:, None]).mean(axis=1)
            below = np.clip(below, 0.5 / n_boot, 1 - 0.5 / n_boot)
            z0 = sps.norm.ppf(below)
            jack = (block.sum(axis=1, keepdims=True) - block) / (n - 1)        # (b, n)
            dev = jack.mean(axis=1, keepdims=True) - jack
            ss = (dev ** 2).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                acc = np.where(ss > 0, (dev ** 3).sum(axis=1) / (6.0 * ss ** 1.5), 0.0)
            q = []
            for zq in (za, zb):
                w = z0 + zq
                q.append(sps.norm.cdf(z0 + w / (1.0 - acc * w)))
            boot.sort(axis=1)
            for j, qq in enumerate(q):
                pos = np.clip(qq * (n_boot - 1), 0, n_boot - 1)
                lo_i = np.floor(pos).astype(int)
                hi_i = np.minimum(lo_i + 1, n_boot - 1)
                frac = pos - lo_i
                rows = np.arange(block.shape[0])
                out[start:start + block.shape[0], j] = (boot[rows, lo_i] * (1 - frac) + boot[rows, hi_i] * frac)
            const = ss == 0
            out[start:start + block.shape[0]][const] = theta[const, None]
    if single:
        return (float(out[0, 0]), float(out[0, 1]))
    return out


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1),
    made non-decreasing along the order and capped at 1. nan p-values (untestable rows) stay nan but
    count in m."""
    p = _vector(p_values, "p_values")
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
    p = _vector(p_values, "p_values")
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


def bonferroni_levels(m: int, alpha: float = 1 - CONFIDENCE) -> np.ndarray:
    """m copies of 1 - alpha/m: simultaneous intervals (all cover together with probability at
    least 1 - alpha), more conservative than Holm's decisions."""
    return np.full(int(m), 1.0 - alpha / max(int(m), 1))


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
    x = _vector(diffs, "diffs")
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


def corrected_effects(rows: Sequence[ArrayLike], alpha: float = 1 - CONFIDENCE, method: str = "holm",
                      min_pairs: int = MIN_PAIRS, cap: int = PAIRS_CAP) -> list[EffectDecision]:
    """Decisions for a family of paired effects (one array of differences per effect row of a
    report), corrected together: per-row levels from `holm_levels` ('holm', the default) or
    `bonferroni_levels` ('bonferroni'), t intervals at those levels, then `decide`. The p-values are
    the t test's, or the exact sign test's for a row whose differences are all the same
    (`paired_pvalue`)."""
    xs = [_vector(r, "diffs") for r in rows]
    p = np.array([paired_pvalue(x) for x in xs])
    if method == "holm":
        levels = holm_levels(p, alpha)
    elif method == "bonferroni":
        levels = bonferroni_levels(len(xs), alpha)
    else:
        raise ValueError(f"method must be 'holm' or 'bonferroni', got {method!r}")
    adj = holm_adjust(p) if method == "holm" else np.minimum(1.0, p * len(xs))
    return [decide(x, float(c), float(pi), float(pa), min_pairs, cap) for x, c, pi, pa in zip(xs, levels, p, adj)]


# ============================================================================ rliable-style aggregates

def iqm(values: ArrayLike) -> float:
    """Interquartile mean: the mean after cutting floor(n/4) values from each end (as rliable and
    scipy.stats.trim_mean(x, 0.25) do). nan for no values."""
    x = _vector(values, "values")
    x = x[~np.isnan(x)]
    return float(sps.trim_mean(x, 0.25)) if x.size else math.nan


def _stratified_indices(strata: np.ndarray, n_boot: int, gen: np.random.Generator) -> np.ndarray:
    """(n_boot, N) indices: each stratum's members resampled with replacement at its own size."""
    cols = []
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        cols.append(members[gen.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(cols, axis=1)


def iqm_interval(values: ArrayLike, strata: ArrayLike | None = None, n_boot: int = 2000, rng: RngLike = 0,
                 confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(IQM, low, high): the interquartile mean with a stratified percentile bootstrap interval
    (runs resampled within each stratum, e.g. each task or configuration, as rliable does). nan
    interval when no stratum has two values."""
    x = _vector(values, "values")
    s = np.zeros(x.size, dtype=np.int64) if strata is None else pd.factorize(np.asarray(strata))[0]
    keep = ~np.isnan(x)
    x, s = x[keep], s[keep]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = iqm(x)
    if np.bincount(s).max() < 2:
        return (point, math.nan, math.nan)
    boot = sps.trim_mean(x[_stratified_indices(s, n_boot, _rng(rng))], 0.25, axis=1)
    a = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [a, 1.0 - a])
    return (point, float(low), float(high))


def performance_profile(scores: ArrayLike, taus: ArrayLike, strata: ArrayLike | None = None) -> np.ndarray:
    """Fraction of runs with score > tau for each tau (shape of taus). With strata, the fraction
    within each stratum averaged over strata (every configuration weighs the same)."""
    x = _vector(scores, "scores")
    t = np.asarray(taus, dtype=np.float64)
    s = np.zeros(x.size, dtype=np.int64) if strata is None else pd.factorize(np.asarray(strata))[0]
    if x.size == 0:
        return np.full(t.shape, np.nan)
    fr = [(x[s == k][:, None] > t.reshape(1, -1)).mean(axis=0) for k in np.unique(s)]
    return np.mean(fr, axis=0).reshape(t.shape)


# ============================================================================ underflow

def log_ratio_summary(log10_values: ArrayLike) -> dict[str, float | int]:
    """Summary of log10 ratios (e.g. vanishing ratios) where -inf means the numerator underflowed
    to exactly 0: {'mean': mean over the finite values (nan if none), 'n_finite', 'underflow': how
    many were -inf, 'overflow': how many +inf (the denominator was 0), 'missing': nan entries,
    'n': all entries}. Nothing is dropped without being counted."""
    x = _vector(log10_values, "log10_values")
    finite = x[np.isfinite(x)]
    return {"mean": float(finite.mean()) if finite.size else math.nan, "n_finite": int(finite.size),
            "underflow": int(np.isneginf(x).sum()), "overflow": int(np.isposinf(x).sum()),
            "missing": int(np.isnan(x).sum()), "n": int(x.size)}


# ============================================================================ frontier (D50)

@dataclass(frozen=True)
class D50Fit:
    """The distance at which half the runs still reach the target.

    d50, low, high: in steps of distance; None where it lies beyond the tested distances on that
    side. status: 'fit' (finite maximum likelihood), 'separated' (outcomes split perfectly by
    distance: d50 is a point inside the bracket [low, high] of the last distance where all runs
    reach the target and the first where none does, and the slope is infinite), 'all_reached',
    'none_reached', 'no_decline' (success does not fall with distance) or 'one_distance'.
    coefficients: (b0, b1) of P(reach) = expit(b0 + b1 log(1 + D)), None unless status is 'fit'.
    n: runs; n_boot_undefined: bootstrap resamples with no D50 (counted at both ends of the
    interval, so they widen it); extrapolated: d50 lies outside the tested distances."""

    d50: float | None
    low: float | None
    high: float | None
    separated: bool
    n: int
    coefficients: tuple[float, float] | None
    status: str
    n_boot_undefined: int = 0
    extrapolated: bool = False


def _grouped(distances: ArrayLike, reached: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct distances, successes, runs) per distance."""
    d = _vector(distances, "distances")
    r = np.asarray(reached, dtype=bool)
    if r.shape != d.shape:
        raise ValueError(f"distances and reached differ in shape: {d.shape} vs {r.shape}")
    if (d < 0).any() or not np.isfinite(d).all():
        raise ValueError("distances must be finite and >= 0")
    u, inv = np.unique(d, return_inverse=True)
    return u, np.bincount(inv, weights=r, minlength=u.size), np.bincount(inv, minlength=u.size).astype(float)


def _wilson_arrays(k: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """`wilson_interval` elementwise over arrays of counts (n > 0)."""
    z = _z(confidence)
    z2 = z * z
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    centre = (k + z2 / 2.0) / (n + z2)
    half = z / (n + z2) * np.sqrt(k * (n - k) / n + z2 / 4.0)
    low = np.where(k == 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(k == n, 1.0, np.minimum(1.0, centre + half))
    return low, high


def decided_rates(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(learned, stopped) per distance: every run reached the target or the rate's Wilson 95% interval
    lies above 0.5; no run reached it or the interval lies below 0.5 (e.g. 2 of 11, [5%, 48%]). A
    frontier's bracket is drawn between decided distances, not only between 0 of n and n of n."""
    low, high = _wilson_arrays(k, n)
    return (k == n) | (low > 0.5), (k == 0) | (high < 0.5)


def _classify(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For grouped outcomes k (B, J) of n (J,) runs at x (J,): (status code, point x50 for
    separated rows, nan otherwise). Codes: 0 fit, 1 separated, 2 all reached, 3 none reached,
    4 no decline. Also returns whether a separated row is quasi-complete.

    A quasi-complete row has one mixed distance between the all-reached and the none-reached ones;
    x50 is that distance, unless its rate is decided (`decided_rates`): below half, x50 lies between
    it and the distance before; above half, between it and the distance after (midpoints on x)."""
    has_s = k > 0
    has_f = k < n
    big = np.inf
    max_s = np.where(has_s, x, -big).max(axis=1)
    min_s = np.where(has_s, x, big).min(axis=1)
    max_f = np.where(has_f, x, -big).max(axis=1)
    min_f = np.where(has_f, x, big).min(axis=1)
    code = np.zeros(k.shape[0], dtype=np.int64)
    code[min_s >= max_f] = 4
    code[max_s <= min_f] = 1
    code[~has_f.any(axis=1)] = 2
    code[~has_s.any(axis=1)] = 3
    quasi = (code == 1) & (max_s == min_f)
    x50 = np.where(code == 1, np.where(quasi, max_s, (max_s + min_f) / 2.0), np.nan)
    if quasi.any():
        rows = np.flatnonzero(quasi)
        j = np.searchsorted(x, max_s[rows])                       # the mixed distance's index
        learned, stopped = decided_rates(k[rows, j], n[j])
        before = np.where(j > 0, (x[np.maximum(j - 1, 0)] + x[j]) / 2.0, x[j])
        after = np.where(j + 1 < x.size, (x[j] + x[np.minimum(j + 1, x.size - 1)]) / 2.0, x[j])
        x50[rows] = np.where(stopped, before, np.where(learned, after, x[j]))
    return code, x50, quasi


def _logistic_grouped(x: np.ndarray, k: np.ndarray, n: np.ndarray, iters: int = 50
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood (b0, b1) of k ~ Binomial(n, expit(b0 + b1 x)) for each row of k (B, J),
    by Newton steps with step halving. Meant for rows that are not separated (finite optimum)."""
    rate = np.clip(k.sum(axis=1) / n.sum(), 1e-3, 1 - 1e-3)
    beta = np.stack([np.log(rate / (1 - rate)), np.zeros(k.shape[0])], axis=1)   # (B, 2)

    def loglik(b: np.ndarray) -> np.ndarray:
        eta = b[:, :1] + b[:, 1:] * x
        return (k * eta - n * np.logaddexp(0.0, eta)).sum(axis=1)

    ll = loglik(beta)
    for _ in range(iters):
        eta = beta[:, :1] + beta[:, 1:] * x
        p = expit(eta)
        r = k - n * p
        w = n * p * (1 - p)
        g = np.stack([r.sum(axis=1), (r * x).sum(axis=1)], axis=1)
        h00, h01, h11 = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
        det = h00 * h11 - h01 ** 2
        det = np.where(det > 1e-300, det, np.nan)
        step = np.stack([(h11 * g[:, 0] - h01 * g[:, 1]) / det, (h00 * g[:, 1] - h01 * g[:, 0]) / det], axis=1)
        step = np.nan_to_num(step)
        scale = np.ones(k.shape[0])
        for _ in range(30):
            trial = beta + scale[:, None] * step
            ll_new = loglik(trial)
            worse = ll_new < ll - 1e-12
            if not worse.any():
                break
            scale = np.where(worse, scale / 2.0, scale)
        keep = worse[:, None]
        beta, ll = np.where(keep, beta, trial), np.where(worse, ll, ll_new)
        if np.abs(scale[:, None] * step).max() < 1e-10:
            break
    return beta[:, 0], beta[:, 1]


def _x50(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of k: (status code, x50 = log(1 + D50) or ±inf / nan, b0, b1)."""
    code, x50, _ = _classify(x, k, n)
    b0 = np.full(k.shape[0], np.nan)
    b1 = np.full(k.shape[0], np.nan)
    fit = code == 0
    if fit.any():
        b0f, b1f = _logistic_grouped(x, k[fit], n)
        b0[fit], b1[fit] = b0f, b1f
        with np.errstate(divide="ignore", invalid="ignore"):
            x50[fit] = np.where(b1f < 0, -b0f / b1f, np.nan)
        code[fit & ~(b1 < 0)] = 4
    x50[code == 2] = np.inf
    x50[code == 3] = -np.inf
    return code, x50, b0, b1


_STATUS = {0: "fit", 1: "separated", 2: "all_reached", 3: "none_reached", 4: "no_decline"}


def fit_d50(distances: ArrayLike, reached: ArrayLike, n_boot: int = 1000, rng: RngLike = 0,
            confidence: float = CONFIDENCE) -> D50Fit:
    """D50, the distance at which half the runs still reach the target, from a logistic regression
    of P(reach) on x = log(1 + D) by maximum likelihood, D50 = exp(-b0/b1) - 1, with a stratified
    bootstrap percentile interval (runs resampled within each distance: the design fixes how many
    runs each distance gets).

    Why logistic in log(1 + D): gradients fade geometrically with distance, so the distances a
    frontier study tests are spaced geometrically (0, 4, 16, 64, ...) and the transition looks
    symmetric on a log scale; log(1 + D) keeps D = 0 finite. Two parameters are all that a handful
    of runs per distance can support, and the fit borrows strength across distances where a
    per-distance rate (or an isotonic curve, see `isotonic_d50`) cannot interpolate.

    Complete separation (every run succeeds up to some distance and fails beyond) has no finite
    maximum: the result is then status 'separated' with the bracket low = the last distance whose
    rate is decided above half, high = the first decided below half (`decided_rates`: n of n or a
    Wilson interval above 0.5; 0 of n or one below 0.5, so 5 of 5 at 32 and 2 of 11 at 64 bracket
    [32, 64]) and d50 their midpoint on the log(1 + D) scale (for a quasi-complete split whose one
    mixed distance is undecided, that distance). The bracket is not a confidence interval: at few
    runs per distance the true D50 may lie outside it."""
    u, k, n = _grouped(distances, reached)
    total = int(n.sum())
    if total == 0:
        raise ValueError("fit_d50 of no runs")
    if u.size < 2:
        return D50Fit(None, None, None, False, total, None, "one_distance")
    x = np.log1p(u)
    code, x50, b0, b1 = _x50(x, k[None, :], n)
    status = _STATUS[int(code[0])]

    def to_d(v: float) -> float | None:
        return None if not math.isfinite(v) or v > 700.0 else float(math.expm1(v))

    if status in ("all_reached", "none_reached", "no_decline"):
        return D50Fit(None, None, None, False, total, None, status)
    if status == "separated":
        learned, stopped = decided_rates(k, n)
        below, above = u[learned], u[stopped]
        return D50Fit(to_d(float(x50[0])), float(below.max()) if below.size else None,
                      float(above.min()) if above.size else None, True, total, None, "separated")
    # Stratified bootstrap: resampling a distance's runs with replacement draws its success count
    # from Binomial(n_j, k_j / n_j).
    gen = _rng(rng)
    kb = gen.binomial(n.astype(np.int64)[None, :], (k / n)[None, :], size=(n_boot, u.size)).astype(float)
    _, xb, _, _ = _x50(x, kb, n)
    undefined = np.isnan(xb)
    a = (1.0 - confidence) / 2.0
    low_x = np.quantile(np.where(undefined, -np.inf, xb), a, method="inverted_cdf")
    high_x = np.quantile(np.where(undefined, np.inf, xb), 1.0 - a, method="inverted_cdf")
    d50 = to_d(float(x50[0]))
    low = to_d(float(low_x)) if low_x >= x[0] else None          # below the shortest distance tested
    high = to_d(float(high_x)) if high_x <= x[-1] else None      # beyond the longest
    return D50Fit(d50, low, high, False, total, (float(b0[0]), float(b1[0])),
                  "fit", int(undefined.sum()), bool(d50 is not None and not u.min() <= d50 <= u.max()))


def d50_draws(distances: ArrayLike, reached: ArrayLike, n_boot: int = 1000, rng: RngLike = 0
              ) -> tuple[float, np.ndarray]:
    """(point, draws): the D50 of the data and of `n_boot` stratified bootstrap resamples (runs resampled
    within each distance, as `fit_d50` does), in units of distance, from the same logistic fit, bracket
    midpoint or split distance as `fit_d50`'s point. +inf where it lies beyond the longest distance
    tested (every run reached the target, or the fitted crossing is beyond), -inf where it lies below
    the shortest (no run reached it, or the crossing is before), nan where it does not exist (success
    does not fall with distance, or one distance only). For intervals of functions of D50s (the ratio
    of two groups' D50s: `harness.report.contrasts.d50_ratio`)."""
    u, k, n = _grouped(distances, reached)
    if int(n.sum()) == 0:
        raise ValueError("d50_draws of no runs")
    if u.size < 2:
        return math.nan, np.full(int(n_boot), np.nan)
    x = np.log1p(u)
    gen = _rng(rng)
    kb = gen.binomial(n.astype(np.int64)[None, :], (k / n)[None, :], size=(int(n_boot), u.size)).astype(float)
    _, x50, _, _ = _x50(x, np.vstack([k[None, :], kb]), n)
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.where(x50 > x[-1], np.inf, np.where(x50 < x[0], -np.inf, np.expm1(x50)))
    return float(d[0]), d[1:]


def isotonic_d50(distances: ArrayLike, reached: ArrayLike) -> float | None:
    """D50 from the non-increasing (isotonic, pool-adjacent-violators) fit of the success rate per
    distance, interpolated linearly on log(1 + D) where it crosses 0.5. Assumes nothing about the
    curve's shape, but cannot place D50 between two distances that share a pooled rate. None when
    the fitted rate never crosses 0.5 within the tested distances; the first distance when it is
    already below 0.5 there counts as beyond the range (None)."""
    u, k, n = _grouped(distances, reached)
    # PAVA for a non-increasing sequence, weights n.
    blocks: list[list[float]] = []                  # [rate, weight, count of distances]
    for kk, nn in zip(k, n):
        blocks.append([kk / nn, nn, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            r2, w2, c2 = blocks.pop()
            r1, w1, c1 = blocks.pop()
            blocks.append([(r1 * w1 + r2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    fitted = np.concatenate([[b[0]] * b[2] for b in blocks])
    x = np.log1p(u)
    if fitted[0] < 0.5 or fitted[-1] >= 0.5:
        return None
    j = int(np.flatnonzero(fitted < 0.5)[0])         # first below half; fitted[j-1] >= 0.5
    f0, f1 = fitted[j - 1], fitted[j]
    xc = x[j - 1] + (f0 - 0.5) / (f0 - f1) * (x[j] - x[j - 1])
    return float(math.expm1(xc))


# ============================================================================ racing

def undecided(k: int, n: int, confidence: float = CONFIDENCE) -> bool:
    """True while the Wilson interval of k/n contains 0.5 (more seeds may still change whether the
    configuration mostly learns); always True at n == 0."""
    low, high = wilson_interval(k, n, confidence)
    return low <= 0.5 <= high


def effect_undecided(low: float, high: float) -> bool:
    """True while a paired effect's corrected interval contains zero, or does not exist (nan)."""
    if math.isnan(low) or math.isnan(high):
        return True
    return low <= 0.0 <= high
