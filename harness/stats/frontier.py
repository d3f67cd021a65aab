"""The frontier as a number: D50, the distance at which half the runs still reach the target, from
a logistic fit of P(reach) on log(1 + distance) with a stratified bootstrap interval (runs resampled
within each distance). Distances are in the unit of the distance column (steps of lag or of
pad_size). scipy has no grouped logistic fit vectorised over bootstrap resamples, so it is
written here (Newton steps; checked against `scipy.optimize.minimize` in the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from harness.stats._util import CONFIDENCE, ArrayLike, RngLike, as_rng, vector
from harness.stats.rates import decided_rates


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
    interval, so they widen it); extrapolated: d50 lies outside the tested distances.
    perfect: the outcomes split perfectly (status 'separated' and every distance has all or none of its
    runs reaching the target: the only case in which [low, high] is a bracket in the strict sense; a
    'separated' fit that is not perfect is a quasi-complete split, one distance with mixed outcomes,
    where the logistic fit has no finite slope either). counts: (distance, reached, runs) per distance
    tested, for saying why."""

    d50: float | None
    low: float | None
    high: float | None
    separated: bool
    n: int
    coefficients: tuple[float, float] | None
    status: str
    n_boot_undefined: int = 0
    extrapolated: bool = False
    perfect: bool = False
    counts: tuple[tuple[float, int, int], ...] = ()

    def mixed(self) -> list[tuple[float, int, int]]:
        """The (distance, reached, runs) of the distances where some runs reached the target and some
        did not."""
        return [c for c in self.counts if 0 < c[1] < c[2]]


def _grouped(distances: ArrayLike, reached: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct distances, successes, runs) per distance."""
    d = vector(distances, "distances")
    r = np.asarray(reached, dtype=bool)
    if r.shape != d.shape:
        raise ValueError(f"distances and reached differ in shape: {d.shape} vs {r.shape}")
    if (d < 0).any() or not np.isfinite(d).all():
        raise ValueError("distances must be finite and >= 0")
    u, inv = np.unique(d, return_inverse=True)
    return u, np.bincount(inv, weights=r, minlength=u.size), np.bincount(inv, minlength=u.size).astype(float)


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
    per-distance rate cannot interpolate.

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
    counts = tuple((float(a), int(b), int(c)) for a, b, c in zip(u, k, n))
    if u.size < 2:
        return D50Fit(None, None, None, False, total, None, "one_distance", counts=counts)
    x = np.log1p(u)
    code, x50, b0, b1 = _x50(x, k[None, :], n)
    status = _STATUS[int(code[0])]

    def to_d(v: float) -> float | None:
        return None if not math.isfinite(v) or v > 700.0 else float(math.expm1(v))

    if status in ("all_reached", "none_reached", "no_decline"):
        return D50Fit(None, None, None, False, total, None, status, counts=counts)
    if status == "separated":
        learned, stopped = decided_rates(k, n)
        below, above = u[learned], u[stopped]
        perfect = bool(np.all((k == 0) | (k == n)))
        return D50Fit(to_d(float(x50[0])), float(below.max()) if below.size else None,
                      float(above.min()) if above.size else None, True, total, None, "separated",
                      perfect=perfect, counts=counts)
    # Stratified bootstrap: resampling a distance's runs with replacement draws its success count
    # from Binomial(n_j, k_j / n_j).
    gen = as_rng(rng)
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
                  "fit", int(undefined.sum()), bool(d50 is not None and not u.min() <= d50 <= u.max()),
                  counts=counts)


def d50_draws(distances: ArrayLike, reached: ArrayLike, n_boot: int = 1000, rng: RngLike = 0
              ) -> tuple[float, np.ndarray]:
    """(point, draws): the D50 of the data and of `n_boot` stratified bootstrap resamples (runs resampled
    within each distance, as `fit_d50` does), in units of distance, from the same logistic fit, bracket
    midpoint or split distance as `fit_d50`'s point. +inf where it lies beyond the longest distance
    tested (every run reached the target, or the fitted crossing is beyond), -inf where it lies below
    the shortest (no run reached it, or the crossing is before), nan where it does not exist (success
    does not fall with distance, or one distance only). For intervals of functions of D50s (the ratio
    of two groups' D50s: `harness.stats.d50_ratio`)."""
    u, k, n = _grouped(distances, reached)
    if int(n.sum()) == 0:
        raise ValueError("d50_draws of no runs")
    if u.size < 2:
        return math.nan, np.full(int(n_boot), np.nan)
    x = np.log1p(u)
    gen = as_rng(rng)
    kb = gen.binomial(n.astype(np.int64)[None, :], (k / n)[None, :], size=(int(n_boot), u.size)).astype(float)
    _, x50, _, _ = _x50(x, np.vstack([k[None, :], kb]), n)
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.where(x50 > x[-1], np.inf, np.where(x50 < x[0], -np.inf, np.expm1(x50)))
    return float(d[0]), d[1:]
