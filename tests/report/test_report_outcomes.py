"""Per-run outcomes (censoring at each run's own last evaluated step), the success and survival
tables, the D50 frontier fits, underflowed vanishing ratios and the machines' provenance."""

import math

import numpy as np
import pandas as pd
import pytest
from report_tables import grid, results_tables

from harness.report import outcomes as O
from harness.report import stats
from harness.stats.rates import wilson_interval

KEYS = ["cell", "layernorm", "pad_size", "batch_size", "lr"]


def _tables(points, **statuses):
    t = results_tables(points, statuses)
    t["runs"] = stats.prepare_runs(t["runs"])
    return t


def test_censoring_at_the_last_curves_step_not_the_steps_column():
    t = _tables(grid(cells=("rnn",), lns=("none",), pads=(16,), seeds=(0, 1)))
    # seed 1 stopped early: its curves end at step 20 although its `steps` column says 40
    early = t["curves"]["trial_id"].str.endswith("-1") & (t["curves"]["step"] > 20)
    curves = t["curves"][~early]
    out = O.run_outcomes(t["runs"], curves).set_index("seed")
    assert out.loc[0, "last_step"] == 40 and out.loc[1, "last_step"] == 20
    assert out.loc[1, "reached"] == 0.0 and out.loc[1, "time"] == 20       # censored there, not at 40
    no_curves = O.run_outcomes(t["runs"], curves.iloc[0:0]).set_index("seed")
    assert no_curves.loc[1, "time"] == 40                                   # fallback: the steps column


def test_outcomes_of_diverged_and_failed_runs():
    points = grid(cells=("lstm",), lns=("none",), pads=(8,), seeds=(0, 1, 2))
    t = results_tables(points, {points[1]: "diverged", points[2]: "failed"})
    runs = stats.prepare_runs(t["runs"])
    out = O.run_outcomes(runs, t["curves"]).set_index("seed")
    assert (out.loc[0, "reached"], out.loc[0, "time"]) == (1.0, 20)
    assert out.loc[1, "reached"] == 0.0 and out.loc[1, "time"] == 40        # never reaches: in to the end
    assert math.isnan(out.loc[2, "reached"]) and math.isnan(out.loc[2, "time"])  # an error is no outcome
    s = O.success_table(out.reset_index(), ["cell"]).iloc[0]
    assert (s["k"], s["n"], s["missing"]) == (1, 2, 1)
    assert (s["low"], s["high"]) == pytest.approx(wilson_interval(1, 2))


def test_success_table_counts_and_km_median():
    t = _tables(grid(pads=(8, 16), seeds=(0, 1)))
    out = O.run_outcomes(t["runs"], t["curves"])
    s = O.success_table(out, KEYS).set_index(["cell", "layernorm", "pad_size"])
    # report_tables: the RNN reaches the target (after 30 steps) only at pad_size <= 8; the LSTM after 20
    assert (s.loc[("rnn", "none", 8), "k"], s.loc[("rnn", "none", 16), "k"]) == (2, 0)
    assert s.loc[("lstm", "none", 16), "median"] == 20
    assert math.isnan(s.loc[("rnn", "none", 16), "median"])
    assert (s["last_max"] == 40).all()


def test_success_summary_counts_unknown_outcomes_and_flags_undecided():
    runs = pd.DataFrame({"cell": ["rnn"] * 4 + ["lstm"] * 10,
                         "reached": [True, False, None, False] + [True] * 10})
    s = O.success_summary(runs, ["cell"]).set_index("cell")
    assert (s.loc["rnn", "k"], s.loc["rnn", "n"], s.loc["rnn", "missing"]) == (1, 3, 1)
    assert s.loc["rnn", "rate"] == pytest.approx(1 / 3)
    assert (s.loc["rnn", "low"], s.loc["rnn", "high"]) == wilson_interval(1, 3)
    assert bool(s.loc["rnn", "undecided"]) and not bool(s.loc["lstm", "undecided"])
    none = O.success_summary(pd.DataFrame({"cell": ["gru"], "reached": [None]}), ["cell"]).iloc[0]
    assert (none["k"], none["n"], none["missing"], none["low"], none["high"]) == (0, 0, 1, 0.0, 1.0)
    assert math.isnan(none["rate"]) and none["undecided"]


def test_km_curves_run_to_the_end_of_observation_and_mark_censored_runs():
    t = _tables(grid(cells=("rnn",), lns=("none",), pads=(8, 16), seeds=(0, 1)))
    curves, marks = O.km_curves(O.run_outcomes(t["runs"], t["curves"]), ["pad_size"])
    c8 = curves[curves["pad_size"] == 8]
    assert c8["time"].tolist() == [0, 30, 40] and c8["share"].tolist() == [0.0, 1.0, 1.0]
    assert marks["pad_size"].tolist() == [16, 16] and (marks["time"] == 40).all() and (marks["share"] == 0).all()


def test_distance_is_lag_when_it_varies_or_is_the_only_distance_else_pad_size():
    runs = pd.DataFrame({"pad_size": [16, 16], "lag": [0, 8]})
    assert O.distance_column(runs) == "lag"
    assert O.distance_column(runs.assign(lag=4)) == "lag"                        # one lag, one pad_size
    assert O.distance_column(runs.assign(lag=4, pad_size=[8, 16])) == "pad_size"  # one lag, pad_size varies
    assert O.distance_column(runs.assign(lag=None)) == "pad_size"                 # the seed's layout
    assert O.distance_column(runs.drop(columns="lag")) == "pad_size"


def test_frontier_fits_per_cell_and_layernorm():
    t = _tables(grid(pads=(4, 8, 16, 32), seeds=(0, 1)))
    fits = O.frontier_fits(O.run_outcomes(t["runs"], t["curves"]), ["cell", "layernorm", "pad_size"], n_boot=100)
    by = {(f.group["cell"], f.group["layernorm"]): f for f in fits}
    assert set(by) == {("rnn", "none"), ("rnn", "output"), ("lstm", "none"), ("lstm", "output")}
    rnn = by[("rnn", "none")]
    assert rnn.distance == "pad_size" and rnn.points["n"].tolist() == [2, 2, 2, 2]
    assert rnn.fit.status == "separated" and (rnn.fit.low, rnn.fit.high) == (8, 16)
    assert by[("lstm", "none")].fit.status == "all_reached"


def test_frontier_groups_by_lag_and_keeps_pad_size_as_a_factor():
    rng = np.random.default_rng(0)
    lags = np.repeat([0, 4, 16, 64], 6)
    runs = pd.DataFrame({"cell": "rnn", "layernorm": "none", "pad_size": 16, "lag": lags,
                         "reached": (rng.random(lags.size) < 1 / (1 + (lags / 10) ** 2)).astype(float),
                         "time": 10.0})
    fits = O.frontier_fits(runs, ["lag"], n_boot=100)
    assert len(fits) == 1 and fits[0].distance == "lag" and fits[0].group == {"cell": "rnn", "layernorm": "none"}
    assert fits[0].points["lag"].tolist() == [0, 4, 16, 64]


def test_underflowed_ratios_are_counted_never_dropped():
    runs = pd.DataFrame({"cell": ["rnn", "rnn", "lstm"], "layernorm": "none",
                         "vanishing_ratio_init": [-4.0, -5.0, -11.0],
                         "vanishing_ratio_final": [-np.inf, -3.0, np.nan]})
    s = O.ratio_summaries(runs, ["cell", "layernorm"], ["vanishing_ratio_init", "vanishing_ratio_final"])
    rnn = s[s["cell"] == "rnn"].iloc[0]
    assert rnn["vanishing_ratio_final_underflow"] == 1 and rnn["vanishing_ratio_final_n_finite"] == 1
    assert O.ratio_text(rnn, "vanishing_ratio_init") == "10^-4.5"
    assert O.ratio_text(rnn, "vanishing_ratio_final") == \
        "10^-3.0 in 1 of 2 runs, below 1e-38 (underflow) in 1 of 2 runs"
    lstm = s[s["cell"] == "lstm"].iloc[0]
    assert O.ratio_text(lstm, "vanishing_ratio_final") == "not recorded"


def test_machine_kinds_and_mixed_configurations():
    runs = pd.DataFrame({"cell": ["rnn", "rnn", "lstm", "lstm"], "device": "cpu",
                         "cpu_capability": ["AVX512", "AVX2", "AVX512", None]})
    kinds = O.machine_kinds(runs)
    assert kinds.tolist()[:2] == ["device=cpu; cpu_capability=AVX512", "device=cpu; cpu_capability=AVX2"]
    mixed = O.mixed_machines(runs, ["cell"])
    assert mixed["cell"].tolist() == ["rnn"] and len(mixed.iloc[0]["kinds"]) == 2
    # older results without any provenance column: no kinds, no warning, no error
    old = runs[["cell"]]
    assert (O.machine_kinds(old) == "").all() and O.mixed_machines(old, ["cell"]).empty


def test_near_frontier_marks_mixed_runs_and_the_distances_on_either_side_of_a_change():
    points = grid(cells=("rnn", "lstm"), lns=("none",), pads=(4, 8, 16), seeds=tuple(range(5)))
    t = _tables(points)
    out = O.run_outcomes(t["runs"], t["curves"])
    near = O.mark_near_frontier(O.success_table(out, KEYS), KEYS, "pad_size").set_index(["cell", "pad_size"])
    # report_tables: the RNN reaches the target at pad_size 4 and 8, never at 16; the LSTM everywhere.
    assert near["near_frontier"].to_dict() == {("rnn", 4): False, ("rnn", 8): True, ("rnn", 16): True,
                                               ("lstm", 4): False, ("lstm", 8): False, ("lstm", 16): False}
    # One LSTM run at pad 4 misses the target: 4 of 5 is mixed (and undecided), so pad 4 is near the
    # frontier, and so is pad 8, whose neighbour now has another outcome; pad 16 is not.
    miss = (out["cell"] == "lstm") & (out["pad_size"] == 4) & (out["seed"] == 0)
    out.loc[miss, "reached"] = 0.0
    near = O.mark_near_frontier(O.success_table(out, KEYS), KEYS, "pad_size").set_index(["cell", "pad_size"])
    assert near.loc[("lstm", 4), "k"] == 4
    assert [near.loc[("lstm", p), "near_frontier"] for p in (4, 8, 16)] == [True, True, False]
    # Without a distance that varies, only mixed runs mark a configuration.
    one = O.mark_near_frontier(O.success_table(out[out["pad_size"] == 4], KEYS), KEYS, "pad_size")
    assert one.set_index("cell")["near_frontier"].to_dict() == {"rnn": False, "lstm": True}
