"""benchmarks/compare_conclusions.py: the decided conclusions of two results folders, compared."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from report_tables import grid, write_results

from harness.report import estimators as E

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compare_conclusions", ROOT / "benchmarks" / "compare_conclusions.py")
cc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cc)

POINTS = grid(cells=("rnn", "lstm"), lns=("none",), pads=(4, 8, 16), seeds=tuple(range(5)))


def test_kinds_of_difference():
    assert cc.kind_of_difference("reached", "reached") == "same"
    assert cc.kind_of_difference("reached", "undecided") == "one-sided"
    assert cc.kind_of_difference("+", "not decided") == "one-sided"
    assert cc.kind_of_difference("reached", "failed") == "contradiction"
    assert cc.kind_of_difference("first < second", "first > second") == "contradiction"
    # A claim one folder makes and marked † (near the frontier) is allowed to be missing from the other…
    assert cc.kind_of_difference("reached", "undecided", True, False) == "marked"
    assert cc.kind_of_difference("not decided", "-", False, True) == "marked"
    # …but not when only the folder that claims nothing marked its label, and never a contradiction.
    assert cc.kind_of_difference("reached", "undecided", False, True) == "one-sided"
    assert cc.kind_of_difference("reached", "failed", True, True) == "contradiction"


def test_marks_are_read_off_the_labels():
    assert cc._label("configurations", "reached (5/5) †") == ("reached", True)
    assert cc._label("configurations", "undecided (4/8)") == ("undecided", False)
    assert cc._label("effects", "- †") == ("-", True)
    assert cc._label("d50", "first < second †") == ("first < second", True)
    assert cc._label("d50", None) == (None, False)
    ok, lines, counts = cc.compare(
        {"configurations": {"x": "reached (5/5) †"}, "effects": {"e": "+"}, "d50": {}},
        {"configurations": {"x": "undecided (4/8) †"}, "effects": {"e": "+ †"}, "d50": {}})
    assert ok and counts == {"same": 1, "marked": 1, "one-sided": 0, "contradiction": 0}
    assert "≈ x: reached (5/5) † | undecided (4/8) †" in lines
    ok, _, counts = cc.compare({"configurations": {}, "effects": {"e": "+"}, "d50": {}},
                               {"configurations": {}, "effects": {"e": "not decided"}, "d50": {}})
    assert not ok and counts["one-sided"] == 1


def test_d50_interval_by_status():
    fit = E.D50Fit(20.0, 12.0, None, False, 10, (1.0, -1.0), "fit")
    assert cc.d50_interval(fit, [0, 8, 32]) == (12.0, float("inf"))
    assert cc.d50_interval(E.D50Fit(None, None, None, False, 10, None, "all_reached"), [0, 8, 32]) == \
        (32, float("inf"))
    assert cc.d50_interval(E.D50Fit(None, None, None, False, 10, None, "no_decline"), [0, 8]) is None


def test_same_folder_agrees_and_a_flipped_outcome_is_found(tmp_path, capsys):
    a = write_results(tmp_path / "a", POINTS)
    assert cc.main([str(a), str(a)]) == 0
    assert "AGREE:" in capsys.readouterr().out
    # In the hand-made tables the RNN reaches the target only at pad_size <= 8: make it fail at 8 too.
    b = write_results(tmp_path / "b", POINTS)
    for shard in (b / "trials").glob("rnn-none-8-*/runs.parquet"):
        runs = pd.read_parquet(shard)
        runs["steps_to_target"] = pd.array([None] * len(runs), dtype="Int64")
        runs.to_parquet(shard)
    a_claims, b_claims = cc.conclusions(a), cc.conclusions(b)
    # pad 8 is near the frontier in A (pad 16 fails); in B pad 8 fails like 16 and is next to pad 4.
    assert a_claims["configurations"]["cell=rnn, pad_size=8"] == "reached (5/5) †"
    assert b_claims["configurations"]["cell=rnn, pad_size=8"] == "failed (0/5) †"
    assert a_claims["configurations"]["cell=rnn, pad_size=4"] == "reached (5/5)"
    assert b_claims["configurations"]["cell=rnn, pad_size=4"] == "reached (5/5) †"
    ok, lines, counts = cc.compare(a_claims, b_claims)
    assert not ok and counts["contradiction"] >= 1
    assert "✗ cell=rnn, pad_size=8: reached (5/5) † | failed (0/5) †" in lines
    assert cc.main([str(a), str(b), "--json", str(tmp_path / "c.json")]) == 1
    assert (tmp_path / "c.json").is_file()


@pytest.mark.parametrize("kind", ["configurations", "effects", "d50"])
def test_every_kind_is_compared(kind, tmp_path):
    a = write_results(tmp_path / "a", POINTS)
    claims = cc.conclusions(a)
    assert claims[kind], kind


def test_a_d50_ordering_is_marked_when_no_tested_distance_lies_between_the_intervals():
    from types import SimpleNamespace

    from harness.report.outcomes import FrontierFit

    tested = pd.DataFrame({"lag": [0, 4, 8, 16, 32]})

    def group(cell, fit):
        return FrontierFit({"cell": cell}, "lag", tested, fit)

    data = SimpleNamespace(varying=["cell", "lag"], fits=[
        group("a", E.D50Fit(4.0, 2.0, 6.0, False, 25, (1.0, -1.0), "fit")),
        group("b", E.D50Fit(10.0, 7.0, 14.0, False, 25, (1.0, -1.0), "fit")),
        group("c", E.D50Fit(11.0, 9.0, 12.0, False, 25, (1.0, -1.0), "fit")),
        group("d", E.D50Fit(None, None, None, False, 25, None, "all_reached"))])
    out = cc.d50_conclusions(data)
    assert out["D50 cell=a vs cell=b"] == "first < second †"     # 6 .. 7: no tested distance between
    assert out["D50 cell=a vs cell=c"] == "first < second"       # 6 .. 9: lag 8 lies between
    assert out["D50 cell=b vs cell=c"] == "overlap"
    assert out["D50 cell=c vs cell=d"] == "first < second"       # [9, 12] against (32, inf): 16 between
