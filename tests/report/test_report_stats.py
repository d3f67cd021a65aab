"""The report's statistics on tiny hand-made inputs with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from report_tables import grid, results_tables

from harness.report import stats


def test_bootstrap_of_a_constant_sample_is_a_point():
    assert stats.bootstrap_ci([0.3, 0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_of_one_value_has_no_interval_and_of_none_is_nan():
    point, low, high = stats.bootstrap_ci([0.7])
    assert point == 0.7 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([]))
    assert stats.bootstrap_ci([np.nan, 0.5])[0] == 0.5  # nan dropped


def test_stratified_bootstrap_resamples_within_strata():
    # Each stratum is constant, so resampling within strata never changes the mean: a point.
    # An unstratified bootstrap of the same values does vary.
    values, strata = [0.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"]
    assert stats.bootstrap_ci(values, strata) == pytest.approx((0.5, 0.5, 0.5))
    _, low, high = stats.bootstrap_ci(values)
    assert low < 0.5 < high


def test_bootstrap_two_values_bounds_and_determinism():
    est = stats.bootstrap_ci([1.0, 3.0], n_boot=4000, seed=7)
    assert est[0] == 2.0 and est[1] == 1.0 and est[2] == 3.0  # the extremes are resampled often enough
    assert stats.bootstrap_ci([1.0, 2.0, 5.0], seed=1) == stats.bootstrap_ci([1.0, 2.0, 5.0], seed=1)


def test_bootstrap_median_with_censored_values():
    point, low, high = stats.bootstrap_ci([10.0, math.inf, math.inf], statistic=np.median)
    assert point == math.inf and low == 10.0 and high == math.inf


def test_censored_median_counts_reached():
    assert stats.censored_median([10, None, 30]) == (30.0, 2, 3)
    assert stats.censored_median([10, None, None]) == (math.inf, 1, 3)
    assert stats.censored_median([None]) == (math.inf, 0, 1)
    assert stats.censored_median([40, 20]) == (30.0, 2, 2)
    med, reached, n = stats.censored_median([])
    assert math.isnan(med) and (reached, n) == (0, 0)


def test_log2_ratio_censoring():
    assert stats.log2_ratio(100, 50) == -1.0
    assert stats.log2_ratio(50, math.inf) == math.inf
    assert stats.log2_ratio(math.inf, 50) == -math.inf
    assert math.isnan(stats.log2_ratio(math.inf, math.inf))


def _runs(points, **statuses):
    return stats.prepare_runs(results_tables(points, statuses)["runs"])


def test_known_paired_difference_in_accuracy_and_steps():
    # report_tables: lstm is 0.8 (+0.02 with LN, +0.01 per seed); rnn at pad 8 is 0.6 - 0.16 = 0.44.
    # Steps: lstm 20, rnn 30 at pad 8 -> log2(20/30).
    runs = _runs(grid(lns=("none",), pads=(8,), seeds=(0, 1, 2)))
    e = stats.paired_effect(runs, "cell", "rnn", "lstm", ["layernorm", "pad_size", "lr", "seed"])
    assert e.pairs == 3 and e.acc_pairs == 3
    assert e.acc == pytest.approx((0.36, 0.36, 0.36))
    assert e.steps == pytest.approx((math.log2(20 / 30),) * 3)
    assert (e.only_level, e.only_baseline, e.neither) == (0, 0, 0)


def test_paired_effect_censoring_and_diverged_pairs():
    points = grid(lns=("none",), pads=(32,), seeds=(0, 1))
    runs = _runs(points)
    runs.loc[(runs["cell"] == "lstm") & (runs["seed"] == 1), ["status", "test_acc", "steps_to_target"]] = \
        ["diverged", np.nan, np.nan]
    e = stats.paired_effect(runs, "cell", "rnn", "lstm", ["layernorm", "pad_size", "lr", "seed"])
    # rnn never reaches at pad 32; lstm reaches in seed 0; the diverged lstm run reaches nothing.
    assert e.pairs == 2 and e.acc_pairs == 1
    assert (e.only_level, e.only_baseline, e.neither) == (1, 0, 1)
    assert e.steps[0] == -math.inf  # the only informative pair: only lstm reached


def test_one_seed_per_configuration_gives_no_interval():
    runs = _runs(grid(pads=(8,), seeds=(0,)))
    e = stats.paired_effect(runs, "layernorm", "none", "output", ["cell", "pad_size", "lr", "seed"])
    assert e.acc[0] == pytest.approx(0.02)
    assert math.isnan(e.acc[1]) and e.max_seeds == 1


def test_effects_cover_every_varying_factor_and_layernorm_within_cells():
    runs = _runs(grid(pads=(8, 16), lrs=(1e-3, 1e-2), seeds=(0, 1)))
    keys = stats.config_keys(runs, ["cell", "layernorm", "pad_size", "lr", "seed"])
    effects = stats.effects(runs, keys)
    seen = {(e.factor, e.within) for e in effects}
    assert {("cell", "all"), ("layernorm", "all"), ("pad_size", "all"), ("lr", "all"),
            ("layernorm", "cell=rnn"), ("layernorm", "cell=lstm")} <= seen
    ln = next(e for e in effects if e.factor == "layernorm" and e.within == "all")
    assert ln.acc == pytest.approx((0.02, 0.02, 0.02)) and ln.pairs == 16


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
    # steps: 30, 30 and the diverged run (not reached); the failed run is left out of speed.
    assert (r["steps_median"], r["reached"], r["speed_n"]) == (30.0, 2, 3)


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


def test_best_settings_picks_the_best_lr_per_line():
    runs = _runs(grid(pads=(8,), lrs=(1e-3, 1e-2), seeds=(0,)))
    runs.loc[runs["lr"] == 1e-2, "test_acc"] += 0.05
    chosen = stats.best_settings(runs, ["cell", "layernorm", "pad_size", "lr"])
    assert len(chosen) == 4 and set(chosen["lr"]) == {1e-2}


def test_reach_table_distance_and_phases():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1)))
    reach = stats.reach_table(t["grad_time"], stats.prepare_runs(t["runs"]))
    assert set(reach["phase"]) == {"start", "end"}
    start = reach[reach["phase"] == "start"].set_index("distance")["grad_norm"]
    assert start[0] == pytest.approx(1.0) and start[7] == pytest.approx(math.exp(-3.5))


def test_confusion_matrix_uses_class_names_in_label_order():
    t = results_tables(grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0,)))
    m = stats.confusion_matrix(t["confusion"], t["runs"]["trial_id"].iloc[0])
    assert list(m.index) == ["finance", "realty", "stocks", "sports"] and m.loc["stocks", "stocks"] == 20
