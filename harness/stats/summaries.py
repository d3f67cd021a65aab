"""Summaries of per-run values across a configuration's runs: the interquartile mean, and log10
ratios in which an underflow to exactly 0 (-inf) is counted, never dropped."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from harness.stats._util import ArrayLike, vector


def iqm(values: ArrayLike) -> float:
    """Interquartile mean of `values` (n,), nan left out: the mean after cutting floor(n/4) values
    from each end (`scipy.stats.trim_mean(x, 0.25)`, as rliable does). nan for no values."""
    x = vector(values, "values")
    x = x[~np.isnan(x)]
    return float(sps.trim_mean(x, 0.25)) if x.size else math.nan


def log_ratio_summary(log10_values: ArrayLike) -> dict[str, float | int]:
    """Summary of log10 ratios (n,) (e.g. vanishing ratios) where -inf means the numerator underflowed
    to exactly 0: {'mean': mean over the finite values (nan if none), 'n_finite', 'underflow': how
    many were -inf, 'overflow': how many +inf (the denominator was 0), 'missing': nan entries,
    'n': all entries}."""
    x = vector(log10_values, "log10_values")
    finite = x[np.isfinite(x)]
    return {"mean": float(finite.mean()) if finite.size else math.nan, "n_finite": int(finite.size),
            "underflow": int(np.isneginf(x).sum()), "overflow": int(np.isposinf(x).sum()),
            "missing": int(np.isnan(x).sum()), "n": int(x.size)}
