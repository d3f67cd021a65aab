"""One success rate: k of n runs reached the target, with its Wilson interval.

The Wilson score interval keeps its coverage near the nominal level on average down to n of about
10 and never leaves [0, 1]; at k = 0 its lower end is exactly 0, at k = n its upper end exactly 1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats as sps

from harness.stats._util import CONFIDENCE, check_confidence


@lru_cache(maxsize=4096)
def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high), fractions in [0, 1]: the Wilson score interval for the rate k/n
    (`scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`). (0, 1) when n == 0: no runs,
    no information."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    check_confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def undecided(k: int, n: int, confidence: float = CONFIDENCE) -> bool:
    """True while the Wilson interval of k/n contains 0.5 (more seeds may still change whether the
    configuration mostly learns); always True at n == 0."""
    low, high = wilson_interval(k, n, confidence)
    return low <= 0.5 <= high


def decided_rates(k: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(learned, stopped), boolean arrays of the broadcast shape of the counts `k` and `n` (n > 0):
    every run reached the target or the rate's Wilson interval lies above 0.5; no run reached it or
    the interval lies below 0.5 (2 of 11: [5%, 48%])."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64))
    pairs, inverse = np.unique(np.stack([k.ravel(), n.ravel()], axis=1), axis=0, return_inverse=True)
    ends = np.array([wilson_interval(int(a), int(b), confidence) for a, b in pairs]).reshape(-1, 2)
    low = ends[inverse.ravel(), 0].reshape(k.shape)
    high = ends[inverse.ravel(), 1].reshape(k.shape)
    return (k == n) | (low > 0.5), (k == 0) | (high < 0.5)
