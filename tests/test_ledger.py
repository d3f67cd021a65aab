"""The runs row's test columns (`TrialLedger.tested` and `finish`): whether a run learned at all."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from harness.ledger import TEST_COLUMNS, TrialLedger, learned_columns
from harness.records import TrialRecorder, frame


def _data(labels):
    return SimpleNamespace(test=SimpleNamespace(labels=np.asarray(labels)), class_names=["a", "b", "c"],
                           name="synthetic", data_id="x")


def _ledger():
    spec = SimpleNamespace(train=SimpleNamespace(target_dev_acc=0.5))
    return TrialLedger(spec, TrialRecorder("t"))


def test_learned_columns_by_hand():
    # 10 labels, class 0 is 6 of them: chance 0.6. 9 of 10 right: P(X >= 9) = 10·0.6^9·0.4 + 0.6^10.
    labels = np.array([0] * 6 + [1] * 3 + [2])
    cols = learned_columns(0.9, labels)
    assert cols["n_test"] == 10 and cols["chance_acc"] == pytest.approx(0.6)
    assert cols["learned_p"] == pytest.approx(10 * 0.6 ** 9 * 0.4 + 0.6 ** 10, rel=1e-12)
    assert cols["learned"] is False   # 0.046 is not below 0.001


def test_tested_row_carries_the_columns_and_a_failed_row_nulls_them():
    labels = np.array([0, 1, 2] * 100)                  # chance 1/3 over 300
    pred = labels.copy()
    pred[:60] = (pred[:60] + 1) % 3                     # 240 of 300 right
    led = _ledger()
    cols = led.tested(0.7, 0.8, pred, _data(labels))
    assert cols["n_test"] == 300 and cols["chance_acc"] == pytest.approx(1 / 3)
    assert cols["learned"] is True and cols["learned_p"] < 1e-30
    assert set(TEST_COLUMNS) == set(cols)
    row = led.finish(None, None, {}, {}, "2026-01-01T00:00:00+00:00", _data(labels), None, {})
    assert all(row[c] is None for c in TEST_COLUMNS)
    runs = frame("runs", [row])                         # typed nulls in the schema's types
    assert str(runs["learned"].dtype) == "boolean" and runs["learned"].isna().all()
    assert str(runs["n_test"].dtype) == "Int64"


def test_no_test_accuracy_gives_nulls():
    cols = learned_columns(math.nan, np.array([0, 1]))
    assert cols["learned"] is None and cols["learned_p"] is None
