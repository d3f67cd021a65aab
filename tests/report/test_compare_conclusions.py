"""benchmarks/compare_conclusions.py (a reproduction check that refuses folders that asked different
questions, says DISAGREE on counts that differ, and AGREE only on positive evidence: every headline
configuration's rates equivalent within a margin and the headline contrasts decided alike) and
benchmarks/check_power.py (its error rates on independent folders simulated at the count level)."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from report_tables import grid, write_results

from harness.report import contrasts as C
from harness.stats.two_rates import rate_equivalence, two_sample_pvalue

ROOT = Path(__file__).resolve().parents[2]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


cc = _module("compare_conclusions")
cp = _module("check_power")

HEADLINE = C.Headline(contrasts=[("lstm", "rnn")], d50=["rnn", "lstm"], d50_ratio_margin=1.5)
KEYS = ["cell", "lag"]


def outcomes(counts: dict, distances=(0, 8, 16, 32, 64), n: int = 12) -> pd.DataFrame:
    """Runs per (cell, lag): `counts[(cell, lag)] = (k, n)`; default n of n up to lag 16 for the RNN and
    everywhere for the LSTM, 0 of n beyond. Successes are the first k seeds."""
    rows = []
    for cell in ("rnn", "lstm"):
        for lag in distances:
            k, m = counts.get((cell, lag), (n, n) if cell == "lstm" or lag <= 16 else (0, n))
            rows += [{"cell": cell, "lag": lag, "seed": s, "reached": float(s < k)} for s in range(m)]
    return pd.DataFrame(rows)


BENCH = {"rnn": [12, 0, 0, 0], "lstm-fb0": [12, 12, 5, 0], "lstm": [12, 12, 12, 4]}   # the bench's counts
BENCH_HEADLINE = C.Headline(seeds=tuple(range(12)), contrasts=[("lstm", "rnn"), ("lstm-fb0", "rnn"),
                                                               ("lstm", "lstm-fb0")],
                            d50=["rnn", "lstm-fb0", "lstm"], d50_ratio_margin=1.5)


def arms(counts: dict, n: int = 12) -> pd.DataFrame:
    """Runs per (arm, lag 0/8/16/32): `counts[arm] = [k at each lag]` of n."""
    rows = []
    for arm, ks in counts.items():
        for lag, k in zip((0, 8, 16, 32), ks):
            rows += [{"arm": arm, "lag": lag, "seed": s, "reached": float(s < k)} for s in range(n)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the verdict on outcomes


def test_identical_all_or_nothing_folders_agree_only_with_a_headline():
    a = outcomes({})
    c = cc.compare(a, a.copy(), None, keys=KEYS)
    assert c.verdict == "INCONCLUSIVE" and "no pre-registered headline" in c.reason
    assert len(c.configurations) == 10 and not any(t.differs for t in c.configurations)
    c = cc.compare(a, a.copy(), HEADLINE, keys=KEYS, n_boot=200)
    assert c.verdict == "AGREE" and len(c.rates) == 10 and all(r.equivalent for r in c.rates)
    # 0/12 against 0/12: the exact 90% interval is ±0.221, inside the margin of 1/3.
    r = next(r for r in c.rates if r.name == "cell=rnn, lag=64")
    assert (r.k_a, r.k_b, r.diff) == (0, 0, 0.0) and r.high == pytest.approx(0.221, abs=0.003) and r.low == -r.high
    # The contrasts (lstm − rnn at each lag): decided + at lags 32 and 64 in both, undecided elsewhere.
    assert [(k.name, k.sign_a, k.sign_b) for k in c.contrasts if k.sign_a] == [
        ("lstm − rnn, lag=32", 1, 1), ("lstm − rnn, lag=64", 1, 1)]
    # D50 lines stay, for information: the LSTM's D50 beyond the range in both, censored ratio exactly 1.
    lstm = next(e for e in c.estimands if "lstm" in e.name)
    assert (lstm.ratio, lstm.low, lstm.high) == (1.0, 1.0, 1.0) and "beyond the largest distance" in lstm.d50_a
    # Too few seeds to show equivalence: 0/5 against 0/5 has a 90% interval of about ±0.45.
    five = outcomes({}, n=5)
    c = cc.compare(five, five.copy(), HEADLINE, keys=KEYS, n_boot=0)
    assert c.verdict == "INCONCLUSIVE" and "10 of 10 headline configurations not shown equivalent" in c.reason


@pytest.mark.parametrize("edit", [("lstm", [12, 12, 12, 0]), ("lstm-fb0", [12, 12, 0, 0]),
                                  ("rnn", [12, 4, 0, 0]), ("lstm", [12, 12, 8, 4])])
def test_a_four_or_five_of_twelve_edit_is_never_agree(edit):
    """The reviewer's edits: lstm at lag 32 4/12 -> 0/12 (count test: adjusted p 0.126, D50 ratio 1.41 within
    1.5), lstm-fb0 at lag 16 5/12 -> 0/12, and 0/12 -> 4/12, 12/12 -> 8/12 elsewhere."""
    a, b = arms(BENCH), arms({**BENCH, edit[0]: edit[1]})
    c = cc.compare(a, b, BENCH_HEADLINE, keys=["arm", "lag"], n_boot=200)
    assert c.verdict == "INCONCLUSIVE" and "not shown equivalent within ±0.33" in c.reason
    short = [r for r in c.rates if not r.equivalent]
    assert any(r.name.startswith(f"arm={edit[0]}") and abs(r.k_a - r.k_b) >= 4 for r in short)
    if edit == ("lstm", [12, 12, 12, 0]):
        t = next(t for t in c.configurations if t.name == "arm=lstm, lag=32")
        assert t.p_adjusted == pytest.approx(0.126, abs=0.002) and not t.differs
        r = next(r for r in c.rates if r.name == "arm=lstm, lag=32")
        assert (r.low, r.high) == (pytest.approx(0.075, abs=0.005), pytest.approx(0.609, abs=0.005))
    # Whatever the margin up to 0.6, the exact interval of a 4-run edit reaches past it.
    assert cc.compare(a, b, BENCH_HEADLINE, keys=["arm", "lag"], margin=0.6, n_boot=0).verdict != "AGREE"


def test_no_edit_of_four_runs_in_twelve_is_equivalent_at_the_default_margin():
    # A difference of 4 runs lies at the margin by its estimate alone, and the interval holds the estimate
    # (so 5 or more runs lie beyond it): never equivalent.
    for k1 in range(9):
        for k2 in (k1, k1 + 4):
            e = rate_equivalence(k2, 12, k1, 12, cc.MARGIN)
            assert e.low <= e.diff <= e.high and e.diff == pytest.approx((k2 - k1) / 12)
            assert not (k2 > k1 and e.equivalent), (k1, k2)
    # Equivalent at 12 seeds: identical counts near 0 or 1 only (k of 12 with k <= 3 or k >= 9).
    assert [k for k in range(13) if rate_equivalence(k, 12, k, 12, cc.MARGIN).equivalent] == [0, 1, 2, 3, 9, 10, 11, 12]
    assert not rate_equivalence(1, 12, 0, 12, cc.MARGIN).equivalent     # 90% interval [-0.13, +0.34]


def test_zero_of_five_against_ten_of_sixteen_is_never_agree():
    a = outcomes({("rnn", 64): (0, 5)})
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
    assert "cell=rnn, lag=32 (0/10 | 10/10)" in c.reason
    assert cc.compare(a, b, None, keys=KEYS, test="fisher").verdict == "DISAGREE"
    # headline.seeds keeps the pre-registered seeds only: seeds 0-4 of 0/10 and 10/10 still differ.
    assert cc.compare(a, b, C.Headline(seeds=tuple(range(5)), d50=["rnn"]), keys=KEYS).verdict == "DISAGREE"
    assert cc.compare(a, b.assign(lag=b["lag"] + 1), None, keys=KEYS).verdict == "INCONCLUSIVE"  # nothing in common


def test_part_of_the_grid_missing_is_inconclusive_naming_it():
    a = outcomes({})
    b = a[~((a["cell"] == "lstm") & (a["lag"] == 64))]
    a2 = a[~((a["cell"] == "rnn") & (a["lag"] == 0))]
    c = cc.compare(a2, b, HEADLINE, keys=KEYS, n_boot=0)
    assert c.verdict == "INCONCLUSIVE"
    assert c.missing == ["cell=lstm, lag=64 (no runs in B)", "cell=rnn, lag=0 (no runs in A)"]
    assert "2 configurations missing on one side: cell=lstm, lag=64 (no runs in B); cell=rnn, lag=0 (no runs in A)" \
        in c.reason
    # The 8 configurations both have agree, but that is not the comparison that was asked for.
    assert len(c.configurations) == 8 and all(r.equivalent for r in c.rates)
    # A headline group with no runs at all is missing in both.
    c = cc.compare(a, a.copy(), C.Headline(d50=["rnn", "gru"]), keys=KEYS, n_boot=0)
    assert c.verdict == "INCONCLUSIVE" and "cell=gru, lag=0 (no runs in A and B)" in c.missing


def test_a_contrast_decided_in_one_folder_only_blocks_agree():
    t = cc.tests_from_tables(["x"], [(12, 12, 12, 12)])
    rates = cc.rate_checks(["x"], [(12, 12, 12, 12)])
    same = cc.contrasts_from_tables(["lstm − rnn, lag=8"], [(12, 12, 0, 12)], [(12, 12, 0, 12)])
    assert [(k.sign_a, k.sign_b, k.same) for k in same] == [(1, 1, True)]
    assert cc.decide(t, [], rates, same)[0] == "AGREE"
    split = cc.contrasts_from_tables(["lstm − rnn, lag=8"], [(12, 12, 5, 12)], [(12, 12, 9, 12)])
    assert [(k.sign_a, k.sign_b) for k in split] == [(1, 0)]
    verdict, reason = cc.decide(t, [], rates, split)
    assert verdict == "INCONCLUSIVE" and "lstm − rnn, lag=8 (A decided +, B not decided)" in reason
    assert cc.decide(t, [], None, same)[0] == "INCONCLUSIVE"       # no headline: never AGREE


def test_counts_decisions_match_the_reports_contrasts():
    """contrasts_from_tables (for simulations) decides as harness.report.contrasts.arm_contrasts does."""
    d = arms({"rnn": [12, 5, 0, 0], "lstm-fb0": [12, 12, 5, 0], "lstm": [12, 12, 11, 4]})
    pairs = BENCH_HEADLINE.contrasts
    rows = C.arm_contrasts(d, "arm", "lag", (), pairs)
    tables = [(r.k_a, r.n_a, r.k_b, r.n_b) for r in rows.itertuples()]
    signs = [k.sign_a for k in cc.contrasts_from_tables([""] * len(tables), tables, tables)]
    assert signs == [int(np.sign(r.diff)) if r.decided else 0 for r in rows.itertuples()]
    assert sum(map(abs, signs)) >= 3 and 0 in signs


# ----------------------------------------------------------------------------- the same question


def test_config_difference_names_the_first_differing_key():
    base = {"name": "bench", "train": {"epochs": 8, "target_dev_acc": 0.3, "checkpoint_every": 0},
            "run": {"workers": 2}, "grid": {"lag": [32, 16, 8, 0]}}
    text = yaml.safe_dump(base)
    other = yaml.safe_dump({**base, "name": "x", "run": {"workers": 8, "fuse": 4},
                            "train": {**base["train"], "checkpoint_every": 50}, "grid": {"lag": [0, 8, 16, 32]}})
    assert cc.config_difference(text, other) is None        # execution keys, the name and the grid's order only
    longer = {**base, "train": {**base["train"], "epochs": 24, "target_dev_acc": 0.5}}
    assert cc.config_difference(text, yaml.safe_dump(longer)) == ("train.epochs", 8, 24)
    assert cc.config_difference(text, yaml.safe_dump({**base, "grid": {"lag": [0, 8]}})) == \
        ("grid.lag", [32, 16, 8, 0], [0, 8])
    assert cc.config_difference(text, yaml.safe_dump({**base, "headline": {"seeds": 12}})) == \
        ("headline.seeds", "(absent)", 12)
    # A key added after results existed, absent on one side, counts as its ADDED_LATER value.
    later = yaml.safe_dump({**base, "train": {**base["train"], "stop_at_target": False}})
    assert cc.config_difference(text, later) is None
    assert cc.config_difference(text, later.replace("false", "true"))[0] == "train.stop_at_target"


# ----------------------------------------------------------------------------- on folders


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A results folder: RNN and LSTM at pad sizes 4, 8, 16, 12 seeds each (the RNN reaches the target
    up to pad 8, the LSTM everywhere), with a headline."""
    d = write_results(tmp_path_factory.mktemp("cc") / "a", grid(cells=("rnn", "lstm"), lns=("none",),
                                                                 pads=(4, 8, 16), seeds=tuple(range(12))))
    with (d / "config.yaml").open("a", encoding="utf-8") as f:
        f.write("headline:\n  contrasts: [[lstm, rnn]]\n  d50: [rnn, lstm]\n  d50_ratio_margin: 1.5\n")
    return d


def _copy(src: Path, dst: Path, config_edit=None) -> Path:
    shutil.copytree(src, dst)
    if config_edit is not None:
        cfg = yaml.safe_load((dst / "config.yaml").read_text())
        config_edit(cfg)
        (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def test_main_on_folders(folder, tmp_path, capsys):
    assert cc.main([str(folder), str(folder), "--json", str(tmp_path / "c.json"), "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "AGREE: no count differs (6 configurations), all 6 headline configurations are equivalent" in out
    assert "≈ cell=rnn, pad_size=16: 0/12 | 0/12; +0.00 [-0.22, +0.22]: equivalent" in out
    assert "= lstm − rnn, pad_size=16: A decided + (12/12 against 0/12) | B decided +" in out
    js = json.loads((tmp_path / "c.json").read_text())
    assert js["verdict"] == "AGREE" and len(js["rates"]) == 6 and js["margin"] == pytest.approx(1 / 3)
    outcomes_, keys, headline = cc.load(folder)      # the tuple adaptive_saving.py unpacks
    assert keys[0] == "cell" and headline.contrasts == [("lstm", "rnn")] and len(outcomes_) == 72
    # Execution keys may differ (another machine's workers, checkpoints): still the same question.
    b = _copy(folder, tmp_path / "b", lambda c: (c["run"].update(workers=7), c["train"].update(checkpoint_every=5),
                                                 c.update(name="elsewhere")))
    # The RNN no longer reaching the target at pad_size 8 (12 of 12 -> 0 of 12): DISAGREE.
    for shard in (b / "trials").glob("rnn-none-8-*/runs.parquet"):
        runs = pd.read_parquet(shard)
        runs["steps_to_target"] = pd.array([None] * len(runs), dtype="Int64")
        runs.to_parquet(shard)
    assert cc.main([str(folder), str(b), "--n-boot", "0"]) == 1
    differ = [line for line in capsys.readouterr().out.splitlines() if line.startswith("≠ ")]
    assert len(differ) == 1 and "cell=rnn" in differ[0] and "pad_size=8" in differ[0] and ": 12/12 | 0/12" in differ[0]


@pytest.mark.parametrize("key, value", [("epochs", 24), ("target_dev_acc", 0.6)])
def test_a_differing_config_is_refused_naming_the_key(folder, tmp_path, capsys, key, value):
    b = _copy(folder, tmp_path / "b", lambda c: c["train"].update({key: value}))
    assert cc.main([str(folder), str(b)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"config key train.{key} is " in captured.err and f"{value!r} in B" in captured.err


def test_part_of_the_grid_unfinished_in_a_folder(folder, tmp_path, capsys):
    b = _copy(folder, tmp_path / "b")
    for trial in (b / "trials").glob("lstm-none-16-*"):
        shutil.rmtree(trial)
    assert cc.main([str(folder), str(b), "--n-boot", "0"]) == 3
    out = capsys.readouterr().out
    assert "INCONCLUSIVE: no count differs (5 configurations), but 1 configuration missing on one side: " in out
    assert "cell=lstm, layernorm=none, pad_size=16, batch_size=32, lr=0.001 (no runs in B)" in out


def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys):
    assert cc.main([str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert cc.main([str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a results directory" in err
    for argv in ([str(tmp_path)], [str(tmp_path), str(tmp_path), "--margin", "1.5"]):
        with pytest.raises(SystemExit) as e:
            cc.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("compare_conclusions: ")


# ----------------------------------------------------------------------------- check_power


def test_designs_and_draws():
    d = cp.design_from_rates(cp.PROFILES["bench"])
    assert len(d.names) == 12 and d.names[0] == "arm=rnn, lag=0" and d.seeds == 12
    assert len(d.pairs) == 12 and d.pair_names[0] == "lstm − rnn, lag=0"
    assert d.names[d.pairs[0][0]] == "arm=lstm, lag=0" and d.names[d.pairs[0][1]] == "arm=rnn, lag=0"
    assert d.movable(0.6) == list(range(12))          # 0 and 1 move by 0.6; so does 0.4 (to 1.0)
    assert cp.design_from_rates(cp.PROFILES["intermediate"]).movable(0.6) == [0, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    rng = np.random.default_rng(0)
    k_a, k_b = cp.draw(d, rng)
    zero_one = d.rates != 0.4
    assert (k_a[zero_one] == 12 * d.rates[zero_one]).all() and (k_b[zero_one] == k_a[zero_one]).all()
    moved = [cp.draw(d, rng, 1, 0.6)[1][1] for _ in range(300)]        # rnn at lag 8: 0 -> 0.6
    assert np.mean(moved) / 12 == pytest.approx(0.6, abs=3 * (0.24 / (12 * 300)) ** 0.5)
    assert cp.draw(d, rng, 0, 0.6)[1][0] <= 12                          # rnn at lag 0: 1 -> 0.4
    assert cp.Rate(3, 40).se == pytest.approx((0.075 * 0.925 / 40) ** 0.5)
    assert cp.Rate(0, 100).text() == "0% (≤ 3.0%)" and cp.Rate(25, 100).text() == "25.0% ± 4.3"


def test_verdicts_of_hand_made_counts():
    d = cp.design_from_rates(cp.PROFILES["bench"])
    same = np.array([12, 0, 0, 0, 12, 12, 0, 0, 12, 12, 12, 0])
    assert cp.verdict(d, same, same) == "AGREE"
    four = same.copy()
    four[11] = 4                                                        # lstm at lag 32: 0/12 -> 4/12
    assert cp.verdict(d, four, same) == "INCONCLUSIVE"
    seven = same.copy()
    seven[11] = 7
    assert cp.verdict(d, seven, same) == "DISAGREE"


def test_all_or_nothing_rates_always_agree_and_never_disagree():
    """Hand-computable: at rates 0 and 1 every draw is the same table, all equivalent (±0.221 < 1/3)."""
    d = cp.design_from_rates({"rnn": [1, 0, 0, 0], "lstm-fb0": [1, 1, 0, 0], "lstm": [1, 1, 1, 0]})
    m = cp.measure(d, draws=20, shift=0.6, seed=0)
    assert (m.equal["AGREE"].hits, m.equal["DISAGREE"].hits, m.movable) == (20, 0, 12)
    assert m.moved["AGREE"].hits == 0 and m.moved["DISAGREE"].rate >= 0.8


def test_false_disagree_stays_rare_on_intermediate_rates():
    d = cp.design_from_rates(cp.PROFILES["intermediate"], seeds=6)      # 6 seeds: fewer tables, a faster test
    m = cp.measure(d, draws=40, shift=0.6, seed=1)
    assert m.equal["DISAGREE"].rate <= 0.05
    assert m.equal["AGREE"].hits == 0          # 6 seeds cannot show intermediate rates within a third
    # A 0.6 move is seen more often than a false alarm, though rarely at 6 seeds; never AGREE.
    assert m.moved["DISAGREE"].rate > m.equal["DISAGREE"].rate and m.moved["AGREE"].hits == 0


def test_check_power_runs_on_a_results_folder(folder, tmp_path, capsys):
    assert cp.main([str(folder), "--draws", "5", "--profiles", "", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert f"| folder {folder} | 6 (6) | " in out
    assert "cell=rnn, pad_size=16 0.00" in out
    js = json.loads((tmp_path / "p.json").read_text())
    assert js["profiles"][0]["equal"]["AGREE"] == [5, 5] and js["profiles"][0]["seeds"] == 12
    assert cp.main([str(tmp_path / "nowhere")]) == 2
    assert cp.main(["--profiles", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 2
