"""harness.stats.summaries: the interquartile mean by hand, and underflow counted, never dropped."""

import math

import numpy as np
import pytest

from harness.stats import summaries as U


def test_iqm_by_hand():
    assert U.iqm(range(1, 9)) == 4.5                 # drop 2 from each end of 8: mean of 3..6
    assert U.iqm([0, 0, 0, 100]) == 0.0              # drop 1 from each end of 4
    assert U.iqm([1, 2, 3]) == 2.0                   # floor(3/4) = 0: the plain mean
    assert U.iqm([5.0, np.nan, 1.0, 3.0, 100.0]) == 4.0   # nan left out; 4 values: mean of 3 and 5
    assert math.isnan(U.iqm([]))


def test_underflow_is_counted_never_dropped():
    s = U.log_ratio_summary([-4.6, -np.inf, np.nan, -3.0, np.inf])
    assert s == {"mean": pytest.approx(-3.8, rel=1e-15), "n_finite": 2, "underflow": 1, "overflow": 1,
                 "missing": 1, "n": 5}
    s = U.log_ratio_summary([-np.inf, -np.inf])
    assert math.isnan(s["mean"]) and s["underflow"] == 2 and s["n"] == 2
