"""The report's statistics on tiny hand-made inputs with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from report_tables import grid, results_tables

from harness.report import stats


def _runs(points, **statuses):
    return stats.prepare_runs(results_tables(points, statuses)["runs"])


def test_summary_counts_every_status_and_averages_only_finished_runs():
    points = grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1, 2, 3))
    runs = _runs(points, **{})
    runs.loc[runs["seed"] == 2, ["status", "test_acc", "steps_to_target"]] = ["diverged", np.nan, np.nan]
    runs.loc[runs["seed"] == 3, ["status", "test_acc", "steps_to_target"]] = ["failed", np.nan, np.nan]
    s = stats.summarize(runs, ["cell", "layernorm", "pad_size", "lr"])
    assert len(s) == 1
    r = s.iloc[0]
    assert (r["runs"], r["complete"], r["diverged"], r["failed"], r["pruned"]) == (4, 2, 1, 1, 0)
    assert r["acc_n"] == 2 and r["acc_mean"] == pytest.approx(0.445)
    assert (r["acc_min"], r["acc_max"]) == pytest.approx((0.44, 0.45))
    assert math.isnan(r["acc_iqm"])  # fewer than 4 runs: no interquartile mean


def test_summary_interquartile_mean_from_four_runs():
    runs = _runs(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1, 2, 3)))
    runs["test_acc"] = [0.1, 0.5, 0.6, 0.9]
    r = stats.summarize(runs, ["cell", "layernorm", "pad_size", "lr"]).iloc[0]
    assert r["acc_iqm"] == pytest.approx(0.55)  # the middle two of four


def test_prepare_runs_coerces_nulls_and_unknown_statuses():
    runs = pd.DataFrame({"trial_id": ["a", "b"], "status": ["complete", "weird"], "test_acc": [0.5, None],
                         "steps_to_target": [None, None], "pad_size": [8, 8], "seed": [0, 1]})
    out = stats.prepare_runs(runs)
    assert out["status"].tolist() == ["complete", "failed"]
    assert out["steps_to_target"].dtype == np.float64 and out["pad_size"].dtype == np.int64


def test_chance_level_from_confusion_or_config():
    conf = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0,)))["confusion"]
    assert stats.chance_level(conf) == pytest.approx(0.25)
    assert stats.chance_level(conf.iloc[0:0], 10) == pytest.approx(0.1)
    assert stats.chance_level(conf.iloc[0:0]) is None


def test_best_settings_picks_the_best_lr_per_line_on_dev_not_test():
    runs = _runs(grid(pads=(8,), lrs=(1e-3, 1e-2), seeds=(0,)))
    runs.loc[runs["lr"] == 1e-2, "best_dev_acc"] += 0.05
    runs.loc[runs["lr"] == 1e-3, "test_acc"] += 0.10   # best on test, worse on dev: must not be chosen
    chosen = stats.best_settings(runs, ["cell", "layernorm", "pad_size", "lr"])
    assert len(chosen) == 4 and set(chosen["lr"]) == {1e-2}


def test_best_trials_choose_on_dev_not_test():
    runs = _runs(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1)))
    runs["best_dev_acc"] = [0.7, 0.6]
    runs["test_acc"] = [0.5, 0.9]
    best = stats.best_trials(runs)
    assert best["seed"].tolist() == [0]


def test_reach_table_distance_and_phases():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1)))
    reach = stats.reach_table(t["grad_time"], stats.prepare_runs(t["runs"]))
    assert set(reach["phase"]) == {"start", "end"}
    start = reach[reach["phase"] == "start"].set_index("distance")["grad_norm"]
    assert start[0] == pytest.approx(1.0) and start[7] == pytest.approx(math.exp(-3.5))
    assert (reach["n_zero"] == 0).all() and (reach["n"] == 2).all()


def test_reach_table_with_a_lag_measures_distance_from_the_last_position_and_groups_by_lag():
    # pad_size 4, lag 0 and 3: the read-out ('last') is position T - 1 = pad_size + lag - 1.
    runs = pd.DataFrame({"trial_id": ["a", "b", "c"], "cell": "rnn", "layernorm": "none", "pad_size": 4,
                         "lag": [0, 3, 3], "readout": "last", "seed": [0, 0, 1]})
    rows = []
    for tid, lag in (("a", 0), ("b", 3), ("c", 3)):
        for step in (0, 10):
            for pos in range(4 + lag):
                rows.append({"trial_id": tid, "step": step, "layer": "input", "position": pos,
                             "grad_norm": 10.0 ** -(4 + lag - 1 - pos)})   # 10^-distance
    reach = stats.reach_table(pd.DataFrame(rows), runs)
    assert sorted(reach["lag"].unique()) == [0, 3]
    by_lag = {lag: g.set_index("distance") for lag, g in reach[reach["phase"] == "start"].groupby("lag")}
    assert sorted(by_lag[0].index) == [0, 1, 2, 3] and sorted(by_lag[3].index) == list(range(7))
    for g in by_lag.values():            # 10^-distance at every distance: the distance is T - 1 - position
        assert np.allclose(np.log10(g["grad_norm"]), -g.index.to_numpy())
    assert (by_lag[3]["n"] == 2).all() and (by_lag[0]["n"] == 1).all()    # the two seeds of lag 3 together


def test_reach_table_without_a_lag_column_keeps_pad_size_distances():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0,)))
    runs = stats.prepare_runs(t["runs"]).drop(columns=["lag"], errors="ignore")
    reach = stats.reach_table(t["grad_time"], runs)
    assert reach["lag"].isna().all() and reach["distance"].max() == 7


def test_reach_table_counts_underflow_instead_of_clipping():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1)))
    g = t["grad_time"]
    far = (g["position"] == 0) & (g["layer"] == "input")
    seed0 = g["trial_id"].str.endswith("-0")
    g.loc[far & seed0, "grad_norm"] = 0.0                      # one seed underflowed at distance 7
    g.loc[(g["position"] == 1) & (g["layer"] == "input"), "grad_norm"] = 0.0   # both seeds at distance 6
    reach = stats.reach_table(g, stats.prepare_runs(t["runs"])).set_index(["phase", "distance"])
    assert reach.loc[("start", 7), "n_zero"] == 1
    assert reach.loc[("start", 7), "grad_norm"] == pytest.approx(math.exp(-3.5))   # the other seed's value
    assert reach.loc[("start", 6), "n_zero"] == 2 and math.isnan(reach.loc[("start", 6), "grad_norm"])
    assert (reach["grad_norm"].dropna() > 1e-10).all()         # nothing clipped to a made-up floor


def test_confusion_matrix_uses_class_names_in_label_order():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0,)))
    m = stats.confusion_matrix(t["confusion"], t["runs"]["trial_id"].iloc[0])
    assert list(m.index) == ["finance", "realty", "stocks", "sports"] and m.loc["stocks", "stocks"] == 20
