"""Group against group at each distance (harness.report.contrasts): the rows, Holm across them, the
sentences and the headline section, on small hand-checkable inputs. The statistics under them are
tested in tests/stats/ (test_two_rates, test_multiplicity, test_d50_ratio)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.report import contrasts as C
from harness.stats import d50_ratio as D
from harness.stats.two_rates import rate_difference

# ----------------------------------------------------------------------------- contrasts


def _runs(rates: dict, seeds: int = 5, distance: str = "lag", group: str = "cell", **extra) -> pd.DataFrame:
    """Runs with exactly round(rate * seeds) successes per (group, distance)."""
    rows = []
    for (g, d), rate in rates.items():
        k = round(rate * seeds)
        rows += [{group: g, distance: d, "seed": s, "reached": float(s < k), **extra} for s in range(seeds)]
    return pd.DataFrame(rows)


def test_arm_contrasts_per_distance_with_holm_across_rows():
    runs = _runs({("rnn", 0): 1, ("lstm", 0): 1, ("rnn", 32): 0, ("lstm", 32): 1})
    t = C.arm_contrasts(runs, "cell", "lag")
    assert list(t["lag"]) == [0, 32] and list(t["a"]) == ["lstm", "lstm"] and list(t["b"]) == ["rnn", "rnn"]
    far = t.iloc[1]
    assert (far["k_a"], far["n_a"], far["k_b"], far["n_b"], far["diff"]) == (5, 5, 0, 5, 1.0)
    assert far["p"] == pytest.approx(2 / 4 ** 5) and far["p_holm"] == pytest.approx(2 * 2 / 4 ** 5)
    assert far["decided"] and not t.iloc[0]["decided"]
    assert t.iloc[0]["p_holm"] == 1.0
    # A failed run (reached nan) is no outcome; a pair with a group missing at a distance gives no row.
    runs.loc[0, "reached"] = np.nan
    runs = pd.concat([runs, _runs({("gru", 32): 1})], ignore_index=True)
    t = C.arm_contrasts(runs, "cell", "lag")
    assert t.iloc[0]["n_b"] == 4
    assert {tuple(x) for x in t[["lag", "a", "b"]].to_numpy()} == \
        {(0, "lstm", "rnn"), (32, "lstm", "rnn"), (32, "gru", "rnn"), (32, "gru", "lstm")}
    assert C.arm_contrasts(runs, "cell", "lag", pairs=[("rnn", "lstm")])["diff"].tolist() == [0.0, -1.0]


def test_decided_needs_both_holm_and_an_interval_that_excludes_zero():
    row = {"decided": False, "low": 0.02, "high": 0.9, "p_holm": 0.07}
    assert C.decision_text(row) == "not decided (Holm p ≥ 0.05)"
    assert C.decision_text({**row, "low": -0.1, "p_holm": 0.01}) == "not decided (the interval includes 0)"
    # Across 12 rows, 5 of 5 against 0 of 5 alone survives Holm (0.00195 x 12 = 0.023); 4 of 5 against
    # 0 of 5 (p = 0.016: its interval excludes 0) does not.
    rates = {("lstm", 32): 1, ("rnn", 32): 0, ("lstm", 64): 0.8, ("rnn", 64): 0}
    rates.update({(c, d): 1 for c in ("lstm", "rnn") for d in range(10)})
    t = C.arm_contrasts(_runs(rates), "cell", "lag")
    assert len(t) == 12
    r64 = t[t["lag"] == 64].iloc[0]
    assert r64["low"] > 0 and r64["p_holm"] >= 0.05 and not r64["decided"]
    assert t[t["lag"] == 32].iloc[0]["decided"]


def test_group_and_by_keys():
    runs = _runs({("rnn", 0): 1, ("lstm", 0): 1}, extra_col=1)
    assert C.group_column(runs) == "cell"
    arms = runs.assign(arm=runs["cell"].map({"rnn": "rnn", "lstm": "lstm-fb0"}))
    assert C.group_column(arms) == "arm"
    assert C.group_column(arms.assign(arm=None)) == "cell"
    both = pd.concat([arms.assign(readout="last"), arms.assign(readout="mean")], ignore_index=True)
    # cell is what an arm is (constant within each arm); readout varies within arms: held fixed.
    assert C.by_keys(both, ["arm", "cell", "lag", "readout"], "arm", "lag") == ["readout"]
    assert C.fixed_seeds(both, 3)["seed"].max() == 2 and len(C.fixed_seeds(both, None)) == len(both)


def test_ratio_text_for_brackets_and_beyond_the_range():
    # a: bracket 16-32, b: bracket 4-8 (both split perfectly); c never declines in the range.
    a = _runs({("a", d): float(d <= 16) for d in (0, 4, 8, 16, 32, 64)})
    b = _runs({("b", d): float(d <= 4) for d in (0, 4, 8, 16, 32, 64)})
    never = _runs({("c", d): 1.0 for d in (0, 4, 8, 16, 32, 64)})
    r = D.d50_ratio(a["lag"], a["reached"], b["lag"], b["reached"], n_boot=200)
    assert C.ratio_text(r, "a", "b") == ("ratio a/b between 2 and 8 (bounds, not an interval: a's D50 lies between "
                                         "16 and 32, b's between 4 and 8)")
    # c's D50 lies beyond 64, the longest distance tested, b's at most 8: the ratio is at least 64 / 8.
    r = D.d50_ratio(never["lag"], never["reached"], b["lag"], b["reached"], n_boot=200)
    assert C.ratio_text(r, "c", "b") == ("ratio c/b at least 8, no upper bound (bounds, not an interval: c's D50 "
                                         "lies above 64, b's between 4 and 8)")
    both_beyond = D.d50_ratio(never["lag"], never["reached"], never["lag"], never["reached"], n_boot=50)
    assert C.ratio_text(both_beyond, "c", "c").startswith("ratio c/c: not defined")


def test_markdown_states_decided_rows_and_never_an_undecided_one():
    rates = {("rnn", 0): 1, ("lstm", 0): 1, ("rnn", 8): 1, ("lstm", 8): 1, ("rnn", 32): 0, ("lstm", 32): 1,
             ("rnn", 64): 0, ("lstm", 64): 0.6}
    md = C.contrasts_markdown(_runs(rates), "cell", "lag", n_boot=100)
    lines = md.split("\n\n")
    p, holm = 2 / 4 ** 5, 4 * 2 / 4 ** 5
    r = rate_difference(5, 5, 0, 5)
    # 4/5 against 0/5 (one LSTM run flipped) is no longer decided after Holm over the 4 rows: fragile.
    flipped = rate_difference(4, 5, 0, 5)
    assert not (min(4 * flipped.p_value, 1) < 0.05 and flipped.low > 0)
    assert lines[0] == (f"At lag 32 the LSTM reached the target in 5/5 runs, the RNN in 0/5; difference +100 points "
                        f"[+{100 * r.low:.0f}, +100] (Boschloo p = {p:.2g}, Holm {holm:.2g}): decided† (one run "
                        "flipping undoes it).")
    assert lines[1].startswith("The other 3 comparisons of cell against cell at one lag remain undecided")
    assert not any(s.startswith("At lag 64") for s in lines)       # 3/5 vs 0/5 is not decided: no sentence
    # rnn: all at 0 and 8, none at 32 and 64 (a perfect split); lstm: all up to 32, 3 of 5 at 64 (not one).
    assert lines[2].startswith("D50: rnn between 8 and 32 (a bracket: the outcomes split perfectly), lstm not "
                               "estimable (the runs are mixed only at lag 64 (3 of 5 reached the target), every run "
                               "reached it up to lag 32: a logistic fit has no finite slope; the data put it above "
                               "lag 32); ratio lstm/rnn at least 1, no upper bound (bounds, not an interval: lstm's "
                               "D50 lies above 32, rnn's between 8 and 32).")
    assert "| lag | comparison | reached (a) | reached (b) |" in md and "| 64 | lstm − rnn | 3/5 | 0/5 |" in md
    assert C.contrasts_markdown(_runs({("rnn", 0): 1}), "cell", "lag") == ""


def test_headline_section_is_read_from_raw_yaml():
    text = """
name: bench
headline:
  seeds: 12
  where: {model.readout: last}
  contrasts: [[lstm, rnn], [lstm, lstm-fb0]]
  d50: [rnn, lstm-fb0, lstm]
  d50_ratio_margin: 1.5
"""
    h = C.read_headline(text)
    assert h == C.Headline(seeds=tuple(range(12)), group=None, where={"model.readout": "last"},
                           contrasts=[("lstm", "rnn"), ("lstm", "lstm-fb0")], d50=["rnn", "lstm-fb0", "lstm"],
                           d50_ratios=[("lstm", "rnn"), ("lstm", "lstm-fb0")], d50_ratio_margin=1.5)
    assert C.read_headline("name: x\n") is None and C.read_headline(None) is None
    for bad, msg in (("headline: {seed: 3}", "unknown key"), ("headline: {seeds: 0}", "headline.seeds"),
                     ("headline: {d50_ratio_margin: 0.5}", "above 1"), ("headline: {contrasts: [lstm]}", "pairs")):
        with pytest.raises(C.HeadlineError, match=msg):
            C.read_headline(bad)
    runs = _runs({("rnn", 0): 1}).assign(readout="last")
    assert len(C.apply_where(runs, {"model.readout": "last"})) == 5
    assert len(C.apply_where(runs, {"model.readout": "mean"})) == 0
    with pytest.raises(C.HeadlineError, match="no column 'layernorm'"):
        C.apply_where(runs, {"layernorm": "none"})


def test_report_section_uses_only_the_seeds_adaptive_seeding_did_not_choose():
    # 16 seeds where the outcome was undecided, as adaptive seeding would add; the contrasts use 0-4.
    rnn32 = pd.DataFrame({"cell": "rnn", "lag": 32, "seed": range(16), "reached": [float(s % 2 == 0) for s in
                                                                                     range(16)]})
    out = pd.concat([_runs({("rnn", 0): 1, ("lstm", 0): 1, ("lstm", 32): 1}), rnn32], ignore_index=True)
    data = SimpleNamespace(outcomes=out, varying=["cell", "lag"], config_text="name: x\n", cfg=None,
                           adaptive={"min_seeds": 5, "max_seeds": 16})
    md = C.report_section(data)
    assert md.startswith("### Cell against cell at each lag\n\nAdaptive seeding chose how many seeds")
    assert "seeds 0–4 of every configuration" in md and "| 32 | lstm − rnn | 5/5 | 3/5 |" in md
    data.adaptive = None
    assert "| 32 | lstm − rnn | 5/5 | 8/16 |" in C.report_section(data)
    data.config_text = "headline: {seeds: 4}\n"
    assert "| 32 | lstm − rnn | 4/4 | 2/4 |" in C.report_section(data)
    data.config_text = "headline: {seed: 4}\n"
    assert "could not be read" in C.report_section(data)
    data.outcomes = out[out["lag"] == 0]
    data.config_text = None
    assert C.report_section(data) == ""                          # one distance: nothing to contrast


def test_ratio_text_with_a_bracketed_d50_gives_bounds_not_a_point():
    # The RNN's runs split perfectly between lag 0 and 8: bounds over the bracket, here no upper one.
    d = [0] * 10 + [8] * 10 + [16] * 10 + [32] * 10 + [64] * 10
    rnn = [1] * 10 + [0] * 40
    lstm = [1] * 30 + [1] * 3 + [0] * 7 + [0] * 10
    text = C.ratio_text(D.d50_ratio(d, lstm, d, rnn, n_boot=200), "lstm", "rnn")
    assert "at least" in text and "no upper bound" in text


def test_a_pre_registered_direction_holds_only_where_a_contrast_is_decided():
    rows = pd.DataFrame([
        {"lag": 8, "a": "lstm", "b": "rnn", "k_a": 12, "n_a": 12, "k_b": 0, "n_b": 12, "diff": 1.0, "decided": True},
        {"lag": 16, "a": "lstm", "b": "rnn", "k_a": 7, "n_a": 12, "k_b": 3, "n_b": 12, "diff": 1 / 3, "decided": False},
        {"lag": 8, "a": "gru", "b": "rnn", "k_a": 0, "n_a": 12, "k_b": 12, "n_b": 12, "diff": -1.0, "decided": True},
    ]).assign(fragile=False)
    assert C.direction_verdict(rows, "lstm", "rnn", "lag") == ("holds", "decided at lag 8: 12/12 against 0/12")
    assert C.direction_verdict(rows, "rnn", "lstm", "lag")[0] == "contradicted"   # the pair read the other way
    assert C.direction_verdict(rows, "rnn", "gru", "lag") == ("holds", "decided at lag 8: 12/12 against 0/12")
    assert C.direction_verdict(rows.iloc[1:2], "lstm", "rnn", "lag")[0] == "not shown"
    assert C.direction_verdict(rows, "lstm", "gru", "lag")[0] == "not tested"
    text = C.direction_lines(rows, [("lstm", "rnn", "real: 70 vs 40")], "arm", "lag")[0]
    assert "- real: 70 vs 40: lstm more often than rnn: **holds** (decided at lag 8" in text


def test_a_decision_one_flipped_run_would_undo_is_marked_fragile():
    """The bench's lag-16 row (12/12 against 5/12) among 12 rows: Holm p 0.016, decided; with one
    lstm-fb0 run more reaching the target (6/12, what the fused bench found) Holm p is 0.061. The
    report marks it, and a direction resting on it only 'holds†'. 12/12 against 0/12 is robust."""
    runs = []
    for lag, (kl, kf, kr) in {0: (12, 12, 12), 8: (12, 12, 0), 16: (12, 5, 0), 32: (4, 0, 0)}.items():
        for arm, k in (("rnn", kr), ("lstm-fb0", kf), ("lstm", kl)):
            runs += [{"arm": arm, "lag": lag, "seed": s, "reached": float(s < k)} for s in range(12)]
    pairs = [("lstm", "rnn"), ("lstm-fb0", "rnn"), ("lstm", "lstm-fb0")]  # the bench's headline.contrasts
    rows = C.arm_contrasts(pd.DataFrame(runs), "arm", "lag", pairs=pairs)
    assert len(rows) == 12
    at16 = rows[(rows["lag"] == 16) & (rows["a"] == "lstm") & (rows["b"] == "lstm-fb0")].iloc[0]
    assert at16["decided"] and at16["p_holm"] == pytest.approx(0.016, abs=5e-4) and at16["fragile"]
    # the flip that undoes it, computed apart: lstm-fb0 at 6/12, Holm over the same 12 p-values
    p = rows["p"].to_numpy(float).copy()
    p[at16.name] = rate_difference(12, 12, 6, 12).p_value
    assert C.holm_adjust(p)[at16.name] >= 0.05
    at8 = rows[(rows["lag"] == 8) & (rows["a"] == "lstm") & (rows["b"] == "rnn")].iloc[0]
    assert at8["decided"] and not at8["fragile"]
    assert not rows.loc[~rows["decided"], "fragile"].any()    # only a decided row can be fragile
    assert C.decision_text(at16) == "decided† (one run flipping undoes it)" and C.decision_text(at8) == "decided"
    verdict, evidence = C.direction_verdict(rows, "lstm", "lstm-fb0", "lag")
    assert verdict == "holds†" and evidence.startswith("decided at lag 16: 12/12 against 5/12, where one run")
    assert C.direction_verdict(rows, "lstm-fb0", "rnn", "lag")[0] == "holds"   # lag 8: 12/12 against 0/12
