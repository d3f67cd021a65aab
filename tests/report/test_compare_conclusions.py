"""benchmarks/compare_conclusions.py (a reproduction check that can say DISAGREE: exact counts against
counts, minP-adjusted; then equivalence of the pre-registered headline) and benchmarks/check_power.py (its
false-alarm rate and power, measured by splitting one folder's runs)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_tables import grid, write_results

from harness.report import contrasts as C
from harness.stats.two_rates import two_sample_pvalue

ROOT = Path(__file__).resolve().parents[2]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


cc = _module("compare_conclusions")
cp = _module("check_power")

POINTS = grid(cells=("rnn", "lstm"), lns=("none",), pads=(4, 8, 16), seeds=tuple(range(5)))
HEADLINE = C.Headline(d50=["rnn", "lstm"], d50_ratio_margin=1.5)


def outcomes(counts: dict, distances=(0, 8, 16, 32, 64)) -> pd.DataFrame:
    """Runs per (cell, lag): `counts[(cell, lag)] = (k, n)`; default 5 of 5 up to lag 16 for the RNN and
    everywhere for the LSTM, 0 of 5 beyond. Successes are the first k seeds."""
    rows = []
    for cell in ("rnn", "lstm"):
        for lag in distances:
            k, n = counts.get((cell, lag), (5, 5) if cell == "lstm" or lag <= 16 else (0, 5))
            rows += [{"cell": cell, "lag": lag, "seed": s, "reached": float(s < k)} for s in range(n)]
    return pd.DataFrame(rows)


KEYS = ["cell", "lag"]


def test_identical_folders_do_not_disagree_and_agree_only_with_a_headline():
    a = outcomes({})
    c = cc.compare(a, a.copy(), None, keys=KEYS)
    assert c.verdict == "INCONCLUSIVE" and "no pre-registered headline" in c.reason
    assert len(c.configurations) == 10 and not any(t.differs for t in c.configurations)
    c = cc.compare(a, a.copy(), HEADLINE, keys=KEYS, n_boot=200)
    assert c.verdict == "AGREE" and len(c.estimands) == 2 and all(e.equivalent for e in c.estimands)
    rnn = next(e for e in c.estimands if "rnn" in e.name)
    assert rnn.ratio == pytest.approx(1.0) and rnn.d50_a.startswith("between 16 and 32")
    # The LSTM's D50 lies beyond the range in both: censored at lag 64, the ratio is exactly 1.
    lstm = next(e for e in c.estimands if "lstm" in e.name)
    assert (lstm.ratio, lstm.low, lstm.high) == (1.0, 1.0, 1.0) and "beyond the largest distance" in lstm.d50_a


def test_zero_of_five_against_ten_of_sixteen_is_never_agree():
    a = outcomes({})
    b = outcomes({("rnn", 64): (10, 16)})
    assert two_sample_pvalue(0, 5, 10, 16) == pytest.approx(0.0152, abs=1e-3)
    for headline in (None, HEADLINE):
        c = cc.compare(a, b, headline, keys=KEYS, n_boot=200)
        assert c.verdict in ("INCONCLUSIVE", "DISAGREE")
    # The other 9 configurations are all-or-nothing in both folders and cost nothing in the minP
    # adjustment, so this one configuration alone decides: its counts differ (DISAGREE), where Holm's
    # correction (0.015 x 10) would have said nothing.
    assert c.verdict == "DISAGREE"
    row = next(t for t in c.configurations if t.name == "cell=rnn, lag=64")
    assert (row.k_a, row.n_a, row.k_b, row.n_b) == (0, 5, 10, 16) and row.p <= row.p_adjusted < 0.05


def test_counts_that_differ_clearly_disagree():
    a = outcomes({("rnn", 32): (0, 10)})
    b = outcomes({("rnn", 32): (10, 10)})
    c = cc.compare(a, b, HEADLINE, keys=KEYS)
    assert c.verdict == "DISAGREE" and "1 of 10 configurations" in c.reason
    assert cc.compare(a, b, None, keys=KEYS, test="fisher").verdict == "DISAGREE"
    # headline.seeds keeps the pre-registered seeds only: seeds 0-4 of 0/10 and 10/10 still differ.
    assert cc.compare(a, b, C.Headline(seeds=tuple(range(5)), d50=["rnn"], d50_ratio_margin=1.5), keys=KEYS).verdict == "DISAGREE"
    assert cc.compare(a, b.assign(lag=b["lag"] + 1), None, keys=KEYS).verdict == "INCONCLUSIVE"  # nothing in common


def test_main_on_folders(tmp_path, capsys):
    a = write_results(tmp_path / "a", POINTS)
    assert cc.main([str(a), str(a)]) == 3
    out = capsys.readouterr().out
    assert "INCONCLUSIVE: no count differs after the minP adjustment (6 configurations)" in out
    # A pre-registered headline (raw YAML in config.yaml): the same folder twice agrees.
    with (a / "config.yaml").open("a", encoding="utf-8") as f:
        f.write("headline:\n  d50: [rnn, lstm]\n  d50_ratio_margin: 1.5\n")
    assert cc.main([str(a), str(a), "--json", str(tmp_path / "c.json"), "--n-boot", "200"]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["verdict"] == "AGREE"
    # The RNN no longer reaching the target at pad_size 8 (5 of 5 -> 0 of 5): DISAGREE.
    b = write_results(tmp_path / "b", POINTS)
    for shard in (b / "trials").glob("rnn-none-8-*/runs.parquet"):
        runs = pd.read_parquet(shard)
        runs["steps_to_target"] = pd.array([None] * len(runs), dtype="Int64")
        runs.to_parquet(shard)
    assert cc.main([str(a), str(b)]) == 1
    differ = [line for line in capsys.readouterr().out.splitlines() if line.startswith("≠ ")]
    assert len(differ) == 1 and "cell=rnn" in differ[0] and "pad_size=8" in differ[0] and ": 5/5 | 0/5" in differ[0]


def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys):
    assert cc.main([str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert cc.main([str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a results directory" in err
    with pytest.raises(SystemExit) as e:
        cc.main([str(tmp_path)])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------- check_power


def test_halves_are_disjoint_and_a_shift_moves_the_rate_by_its_size():
    rng = np.random.default_rng(0)
    d = outcomes({("rnn", 32): (2, 9)})
    a, b = cp.split_halves(d, KEYS, rng)
    assert set(a.index).isdisjoint(b.index) and len(a) + len(b) == len(d)
    sizes = pd.concat([a.assign(h="a"), b.assign(h="b")]).groupby(["cell", "lag", "h"]).size().unstack()
    assert ((sizes["a"] - sizes["b"]).abs() <= 1).all()
    rows = d.index[(d["cell"] == "rnn") & (d["lag"] == 32)].to_numpy()
    up = np.mean([cp.shift_rate(d, rows, 2 / 9, 0.6, rng).loc[rows, "reached"].mean() for _ in range(400)])
    assert up == pytest.approx(2 / 9 + 0.6, abs=0.03)
    full = d.index[(d["cell"] == "lstm") & (d["lag"] == 0)].to_numpy()
    down = np.mean([cp.shift_rate(d, full, 1.0, 0.6, rng).loc[full, "reached"].mean() for _ in range(400)])
    assert down == pytest.approx(0.4, abs=0.03)
    assert cp.Rate(3, 40).se == pytest.approx((0.075 * 0.925 / 40) ** 0.5)


def test_false_alarms_stay_rare_and_a_shift_of_0_6_is_often_found():
    rng = np.random.default_rng(1)
    rows = []
    for g, rate in enumerate([0.0, 0.2, 0.5, 0.8, 1.0]):
        rows += [{"cell": f"c{g}", "lag": 0, "seed": s, "reached": float(rng.random() < rate)} for s in range(20)]
    d = pd.DataFrame(rows)
    false_alarm, power, n = cp.measure(d, KEYS, draws=60, shift=0.6, seed=2)
    assert n == 5 and false_alarm.draws == power.draws == 60
    # Splitting one folder is the permutation null of an exact test: at most alpha, up to the simulation's error.
    assert false_alarm.rate <= 0.05 + 3 * (0.05 * 0.95 / 60) ** 0.5
    assert power.rate > 0.3 and power.rate > false_alarm.rate + 3 * power.se


def test_check_power_runs_on_a_results_folder(tmp_path, capsys):
    a = write_results(tmp_path / "a", POINTS)
    assert cp.main([str(a), "--draws", "10"]) == 0
    out = capsys.readouterr().out
    assert "false-alarm rate (DISAGREE between two halves of one folder): " in out and "power (" in out
    assert cp.main([str(tmp_path / "nowhere")]) == 2


def test_full_size_draws_keep_the_rates_and_resize_the_configurations():
    rows = [{"cell": f"c{g}", "lag": 0, "seed": s, "reached": float(s < k)}
            for g, k in enumerate([0, 3, 10]) for s in range(10)]
    d = pd.DataFrame(rows)
    big = cp.resized(d, KEYS, 14)
    agg = big.groupby("cell")["reached"].agg(["size", "mean"])
    assert agg["size"].tolist() == [14, 14, 14] and agg["mean"].tolist() == pytest.approx([0.0, 0.3, 1.0])
    assert cp.resized(d, KEYS, None) is d
    a, b = cp.parametric_pair(big, KEYS, np.random.default_rng(0))
    # Rates 0 and 1 are drawn exactly; the shifted configuration (rate 0 -> 0.6) moves only in the second folder.
    assert a.loc[a["cell"] == "c0", "reached"].sum() == 0 and b.loc[b["cell"] == "c2", "reached"].mean() == 1.0
    idx = cp._groups(big, KEYS)[0]
    shifted = [cp.parametric_pair(big, KEYS, np.random.default_rng(i), (idx, 0.0), 0.6)[1].loc[idx, "reached"].mean()
               for i in range(200)]
    assert np.mean(shifted) == pytest.approx(0.6, abs=3 * (0.24 / (14 * 200)) ** 0.5)
    false_alarm, power, n = cp.measure_full_size(big, KEYS, draws=40, shift=0.6, seed=1)
    assert n == 3 and power.rate > 0.5 and false_alarm.rate <= 0.05 + 3 * (0.05 * 0.95 / 40) ** 0.5
