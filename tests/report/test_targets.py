"""The frontier at every target and 'learned at all' (harness.report.targets), on hand-built tables whose
answers are counted by hand."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.report import figures
from harness.report import targets as T
from harness.stats.chance import above_chance_p

# One arm, two runs per lag; best dev accuracies (fractions) counted by hand below.
BEST = {0: (0.8, 0.7), 8: (0.5, 0.4), 16: (0.2, 0.15)}


def _runs(best: dict = BEST, arm: str = "lstm", target: float = 0.3) -> pd.DataFrame:
    rows = []
    for lag, values in best.items():
        for seed, b in enumerate(values):
            rows.append({"trial_id": f"{arm}-{lag}-{seed}", "arm": arm, "lag": lag, "seed": seed, "status": "complete",
                         "reached": float(b >= target), "best_dev_acc": b, "steps": 100, "stop_reason": "budget",
                         "last_step": 100, "steps_to_target": 50 if b >= target else None, "chance_acc": 0.1})
    return pd.DataFrame(rows)


def _curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Three evaluations per run whose highest dev accuracy is the run's best (not at the last step)."""
    rows = []
    for _, r in runs.iterrows():
        for step, acc in ((50, r["best_dev_acc"] - 0.05), (100, r["best_dev_acc"]), (150, r["best_dev_acc"] - 0.1)):
            rows.append({"trial_id": r["trial_id"], "step": step, "dev_acc": acc})
    return pd.DataFrame(rows)


def _at(d50s: pd.DataFrame, t: float) -> pd.Series:
    return d50s[np.isclose(d50s["target"], t)].iloc[0]


def test_best_within_budget_is_the_highest_evaluation_else_the_runs_column():
    runs = _runs()
    curves = _curves(runs)
    curves = curves[curves["trial_id"] != "lstm-0-0"]   # no curves rows: best_dev_acc stands in
    curves.loc[curves["trial_id"] == "lstm-8-0", "dev_acc"] += 0.01
    best = T.best_within_budget(runs, curves)
    assert best.tolist() == pytest.approx([0.8, 0.7, 0.51, 0.4, 0.2, 0.15])


def test_d50_at_each_target_counted_by_hand():
    runs = _runs()
    best = runs["best_dev_acc"]
    points, d50s = T.d50_at_targets(runs, best, "arm", "lag", [], [0.1, 0.3, 0.45, 0.6, 0.9], n_boot=50)
    # 0.1: every run at every lag; 0.3: all at 0 and 8, none at 16 (a perfect split 8-16); 0.45: one of two
    # at lag 8 (a split with one mixed distance: no estimate); 0.6: 0-8 perfect; 0.9: none at all.
    assert [_at(d50s, t)["status"] for t in (0.1, 0.3, 0.45, 0.6, 0.9)] == \
        ["all_reached", "separated", "separated", "separated", "none_reached"]
    r = _at(d50s, 0.3)
    assert (r["low"], r["high"], r["perfect"]) == (8.0, 16.0, True)
    assert T.d50_cell(r) == "8–16 (bracket)"
    r = _at(d50s, 0.45)
    assert not r["perfect"] and T.d50_cell(r) == "between 0 and 16 (no estimate)"
    assert T.d50_cell(_at(d50s, 0.6)) == "0–8 (bracket)"
    assert T.d50_cell(_at(d50s, 0.1)) == "> 16 (all reached)" and T.d50_cell(_at(d50s, 0.9)) == "none reached"
    p = points[np.isclose(points["target"], 0.45)].set_index("lag")
    assert p["k"].tolist() == [2, 1, 0] and p["n"].tolist() == [2, 2, 2] and p.loc[8, "share"] == 0.5


def test_a_fitted_d50_at_a_target_and_the_headlines_target_gives_the_headlines_outcome():
    # Three runs per lag with mixed outcomes: a finite logistic fit.
    best = {0: (0.9, 0.9, 0.9), 4: (0.9, 0.9, 0.2), 16: (0.9, 0.2, 0.2), 64: (0.2, 0.2, 0.2)}
    runs = _runs(best)
    _, d50s = T.d50_at_targets(runs, runs["best_dev_acc"], "arm", "lag", [], [0.3], n_boot=200)
    r = d50s.iloc[0]
    assert r["status"] == "fit" and 4 < r["d50"] < 16
    from harness.stats.frontier import fit_d50

    headline = fit_d50(runs["lag"].to_numpy(float), runs["reached"].to_numpy(float) == 1.0, n_boot=200)
    assert r["d50"] == pytest.approx(headline.d50)
    assert T.d50_cell(r).startswith(f"{r['d50']:.2g} [")


def test_target_grid_runs_from_above_chance_to_the_ceiling_with_the_headlines_target():
    grid = T.target_grid(0.12, 0.75, 0.3, n=6)
    assert grid == [0.12, 0.246, 0.3, 0.372, 0.498, 0.624, 0.75]
    assert T.target_grid(0.12, 0.1) == []


def _data(runs: pd.DataFrame, *, headline: str = "", target: float = 0.3, curves: pd.DataFrame | None = None):
    return SimpleNamespace(outcomes=runs, tables={"curves": _curves(runs) if curves is None else curves},
                           config_text=headline or None, varying=["arm", "lag", "seed"], cfg=None, target=target,
                           chance=0.1, adaptive=None, target_frontier=None)


def test_target_frontier_of_a_report_and_its_section():
    runs = pd.concat([_runs(), _runs({0: (0.3, 0.25), 8: (0.15, 0.1), 16: (0.1, 0.1)}, arm="rnn")],
                     ignore_index=True)
    text = "headline:\n  seeds: 2\n  target_rule: 'set on exploration seeds 100-102'\n"
    data = _data(runs, headline=text)
    tf = T.of(data)
    assert data.target_frontier is tf and T.of(data) is tf          # computed once
    # chance 0.1 (chance_acc), ceiling 0.75 = median of lstm at lag 0 (0.8, 0.7)
    assert tf.chance == 0.1 and tf.ceiling == pytest.approx(0.75) and tf.ceiling_at == {"arm": "lstm", "lag": 0}
    assert tf.targets[0] == pytest.approx(0.12) and tf.targets[-1] == pytest.approx(0.75) and 0.3 in tf.targets
    assert tf.capped is None and tf.budget == 100
    assert list(dict.fromkeys(tf.d50s["arm"])) == ["rnn", "lstm"]   # registry order
    md = T.frontier_targets_markdown(tf)
    assert ("The headline counts a run as reaching the target when its dev accuracy reaches 0.3 within 100 steps."
            in md)
    assert "set on exploration seeds 100-102" in md
    assert "| arm | 0.12 | 0.278 | 0.3 (headline) |" in md
    assert "| lstm |" in md and "8–16 (bracket)" in md


def test_under_stop_at_target_the_grid_ends_at_the_target():
    runs = _runs()
    runs.loc[runs["reached"] == 1.0, "stop_reason"] = "target"
    tf = T.of(_data(runs))
    assert tf.capped == 0.3 and tf.targets[-1] == 0.3 and tf.ceiling == pytest.approx(0.75)
    assert "cannot be read from them" in T.frontier_targets_markdown(tf)


def test_no_distance_varies_no_section():
    runs = _runs({8: (0.5, 0.4)})
    assert T.of(_data(runs)) is None


def test_learned_counts_from_the_column_and_from_confusion_rows_for_older_results():
    runs = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "arm": ["x", "x", "x", "y"],
                         "learned": pd.array([True, False, None, None], dtype="boolean"),
                         "test_acc": [0.5, 0.1, None, 0.75]})
    # run d has no learned column value but confusion rows: 4 true labels 0..1, 40 of each: chance 0.5;
    # 60 of 80 right: p = P(X >= 60 | 80, 0.5), far below 0.001.
    conf = pd.DataFrame({"trial_id": ["d"] * 4, "true_label": [0, 0, 1, 1], "pred_label": [0, 1, 0, 1],
                         "count": [30, 10, 10, 30]})
    assert above_chance_p(60, 80, 0.5) < 0.001
    v = T.learned_values(runs, conf)
    assert v.tolist()[:2] == [1.0, 0.0] and np.isnan(v[2]) and v[3] == 1.0
    c = T.learned_counts(runs, ["arm"], conf).set_index("arm")
    assert (c.loc["x", "learned_k"], c.loc["x", "learned_n"]) == (1, 2)
    assert (c.loc["y", "learned_k"], c.loc["y", "learned_n"]) == (1, 1)


def test_the_figure_draws_d50_against_target_with_a_legend_for_what_is_drawn():
    runs = _runs()
    _, d50s = T.d50_at_targets(runs, runs["best_dev_acc"], "arm", "lag", [], [0.1, 0.3, 0.9], n_boot=50)
    fig, axes = figures.frontier_targets(d50s, "arm", distance="lag", distances=[0, 8, 16], headline_target=0.3)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "lstm" and "the headline's target 0.3" in labels
    assert any(s.startswith("D50 range") for s in labels)              # the bracket at 0.3
    assert any(s.startswith("every run reached it") for s in labels)   # 0.1
    assert any(s.startswith("no run reached it") for s in labels)      # 0.9
    assert not any("bootstrap interval" in s for s in labels)          # no fitted D50 here
    ax = axes.flat[0]
    assert [float(v) for v in ax.get_yticks()] == [0.0, 8.0, 16.0]
