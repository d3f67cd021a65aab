"""Metric functions on tiny inputs with hand-computed answers."""

import math

import numpy as np
import pytest

from harness import metrics


def test_confusion_and_macro_f1():
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0])
    cm = metrics.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: class 0: 2·1/(2+1+1)=0.5; class 1: 2·2/(4+1+0)=0.8; class 2: 0
    assert metrics.macro_f1(cm) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics.accuracy(y, p) == pytest.approx(3 / 5)


def test_vanishing_ratio_known_factor():
    # Gradient decays by 10x per position over 4 positions: first/read = 1e-3 → -3.
    g = np.array([[1e-3, 1e-2, 1e-1, 1.0]] * 3)
    assert metrics.vanishing_ratio(g, np.array([3, 3, 3])) == pytest.approx(-3.0)
    # No decay → 0; per-example read positions are honoured.
    flat = np.array([[2.0, 5.0, 2.0], [2.0, 2.0, 1.0]])
    assert metrics.vanishing_ratio(flat, np.array([0, 1])) == pytest.approx(0.0)
    assert metrics.vanishing_ratio(np.array([[0.0, 1.0]]), np.array([1])) == -math.inf
    assert math.isnan(metrics.vanishing_ratio(np.array([[1.0, 0.0]]), np.array([1])))


def test_log_spaced_steps():
    assert metrics.log_spaced_steps(1000, 2) == [10, 100]
    assert metrics.log_spaced_steps(2, 3) == []


def test_pad_fraction_and_update_ratio():
    assert metrics.pad_fraction(np.array([1, 3]), 4).tolist() == [0.0, 0.5, 0.5, 1.0]
    assert metrics.update_ratio(9.0, 100.0) == pytest.approx(0.3)
    assert math.isnan(metrics.update_ratio(1.0, 0.0))


def test_majority_share_is_the_accuracy_of_always_predicting_the_commonest_class():
    assert metrics.majority_share(np.array([0, 1, 1, 2, 1])) == pytest.approx(3 / 5)
    assert metrics.majority_share(np.array([3, 3, 0, 0])) == pytest.approx(0.5)
    assert math.isnan(metrics.majority_share(np.array([], dtype=np.int64)))
