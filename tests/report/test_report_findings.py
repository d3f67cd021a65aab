"""The findings' wording: D50 statements by kind, the frontier lead, and the decision rule's verdicts."""

from dataclasses import replace

import numpy as np
import pandas as pd

from harness.report import findings as W
from harness.report import outcomes as O
from harness.report.effects import EffectRow, correct, decision_counts
from harness.report.outcomes import FrontierFit
from harness.stats.frontier import D50Fit
from harness.stats.multiplicity import holm_levels
from harness.stats.paired import corrected_effects, pairs_needed


def _fit(status, d50=None, low=None, high=None, separated=False, extrapolated=False, perfect=False, counts=()):
    return D50Fit(d50, low, high, separated, 12, (1.0, -1.0) if status == "fit" else None, status,
                  extrapolated=extrapolated, perfect=perfect, counts=counts)


def test_d50_text_says_what_kind_of_statement_it_is():
    tested = [0, 4, 16, 64]
    assert W.d50_text(_fit("fit", 23.4, 12.2, 41.0), tested) == "at about D = 23 [12, 41]"
    assert W.d50_text(_fit("fit", 70.0, 30.0, None, extrapolated=True), tested) == \
        "at about D = 70 [30, > 64], extrapolated beyond the distances tested"
    assert W.d50_text(_fit("fit", 2.5, None, 8.0), tested) == "at about D = 2.5 [< 0, 8]"
    sep = W.d50_text(_fit("separated", 8.0, 4.0, 16.0, separated=True, perfect=True), tested)
    assert sep.startswith("between D = 4 and D = 16 (a bracket: every run reached the target up to D = 4 and none "
                          "from D = 16 on") and "not a confidence interval" in sep
    # 4 of 12 at 16 between all at 4 and none at 64: not a perfect split, so no bracket: not estimable, and why.
    counts = ((0.0, 3, 3), (4.0, 3, 3), (16.0, 4, 12), (64.0, 0, 3))
    quasi = W.d50_text(_fit("separated", 16.0, 4.0, 64.0, separated=True, counts=counts), tested)
    assert quasi == ("not estimable (the runs are mixed only at D = 16 (4 of 12 reached the target), every run "
                     "reached it up to D = 4 and none from D = 64 on: a logistic fit has no finite slope; the data "
                     "put it between D = 4 and 64)")
    assert "bracket" not in quasi and "bracket" not in W.d50_short(_fit("separated", 16.0, 4.0, 64.0, True,
                                                                        counts=counts), tested, 1000)
    assert W.d50_text(_fit("none_reached"), tested).startswith("below D = 0, the shortest distance tested")
    assert W.d50_text(_fit("all_reached"), tested).startswith("beyond D = 64, the longest distance tested")


def _frontier(cell, ln, status, distance="lag", **kw):
    pts = pd.DataFrame({distance: [0, 16], "k": [2, 0], "n": [2, 2], "rate": [1.0, 0.0], "low": [0.3, 0.0],
                        "high": [1.0, 0.7]})
    return FrontierFit({"cell": cell, "layernorm": ln}, distance, pts, _fit(status, **kw))


def test_frontier_lead_names_each_cell_and_the_distance():
    fits = [_frontier("rnn", "none", "fit", d50=5.0, low=2.0, high=9.0),
            _frontier("lstm", "none", "all_reached")]
    lead, note = W.frontier_lead(fits, 0.6, 1000.0)
    assert lead == ("**Frontier** (criterion: reaching dev accuracy 0.6 within 1,000 steps; D = lag; D50: the "
                    "distance at which half the runs still do): The RNN: D50 at about D = 5 [2, 9]; the LSTM: every "
                    "run reached the target within 1,000 steps at every distance tested (D50 beyond D = 16).")
    assert note.startswith("Distance is `data.lag`") and "somewhat optimistic" in note
    pad = [_frontier("rnn", ln, "none_reached", distance="pad_size") for ln in ("none", "output")]
    lead, note = W.frontier_lead(pad, 0.6, 1000.0)
    assert "The RNN: no run reached the target within 1,000 steps, even at D = 0 (D50 below it) with layernorm " \
           "none and layernorm output." in lead
    assert "pad_size, which mixes the padding distance" in note
    # A perfect split is said within the budget: the runs do not reach the target within N steps from D on.
    split = [_frontier("rnn", "none", "separated", d50=4.0, low=0.0, high=16.0, separated=True, perfect=True)]
    lead, _ = W.frontier_lead(split, 0.3, 1000.0)
    assert ("The RNN: reached the target within 1,000 steps in every run up to D = 0 and in none from D = 16 on "
            "(D50 between them: a bracket).") in lead
    for text in (lead, *W.frontier_lead(fits, 0.6, 1000.0)):
        assert "stops" not in text and "stop learning" not in text


def test_budget_is_the_fewest_steps_of_a_run_that_missed_the_target():
    runs = pd.DataFrame({"status": ["complete", "complete", "complete", "diverged"], "steps": [300, 1000, 950, 5],
                         "steps_to_target": [300, None, None, None]})
    assert O.budget_steps(runs) == 950.0                # the diverged run's 5 steps bound nothing
    assert O.budget_steps(runs.iloc[:1]) == 300.0       # every run reached it: the most steps run


def _row(diffs, measure="acc"):
    d = corrected_effects([np.asarray(diffs, float)])[0]
    return EffectRow("cell", "rnn", "lstm", "all", measure, np.asarray(diffs, float), len(diffs), 0, 1,
                     tau=100.0 if measure == "time" else None, decision=d)


def test_verdicts_follow_the_decision_rule():
    assert W.verdict(_row([0.30, 0.32, 0.31, 0.29, 0.33])) == "decided: lstm is higher"
    assert W.verdict(_row([-30, -32, -31, -29, -33], "time")) == "decided: lstm reaches the target sooner"
    two = W.verdict(_row([0.30, 0.32]))
    assert two.startswith("the data cannot decide (the interval") and "seeds would decide" in two
    # Every difference the same: no (zero-width) t interval; the exact sign test needs 6 same-signed seeds.
    same = W.verdict(_row([0.3, 0.3]))
    assert same == ("the data cannot decide (no t interval: every difference is +0.3, but the exact sign test "
                    "needs 6 pairs at this level; p = 0.5)")
    assert W.verdict(_row([0.3] * 6)) == "decided: lstm is higher"
    assert "no interval" in W.measure_clause(_row([0.3] * 6))
    need = pairs_needed(0.2, float(np.std([0.1, 0.3], ddof=1)), holm_levels([0.2])[0])
    assert need > 5 and f"about {need} seeds would decide at 80% power" in W.verdict(_row([0.1, 0.3]))
    noise = W.verdict(_row([0.01, -0.02, 0.015, -0.01, 0.002, -0.004]))
    assert noise.startswith("the data cannot decide (the interval contains zero)")
    assert W.verdict(_row([0.1])) == "the data cannot decide (only 1 seed: no interval)"


def test_reach_sentence_keeps_read_outs_apart_when_they_vary():
    runs = pd.DataFrame({"cell": "rnn", "layernorm": "none", "lag": [0, 32, 32],
                         "readout": ["last", "last", "last_valid"],
                         "vanishing_ratio_init": [-1.0, -9.0, 0.0], "vanishing_ratio_final": [-1.0, -8.0, 0.0]})
    text = W.reach_sentences(runs, "lag")[0]
    assert text.startswith("At lag 32")
    # last_valid reads each text's last token: its distance is 0 by construction, so "10^0.0 at init" is
    # no evidence; it is left out and said once.
    assert "rnn 10^-9.0 at init" in text and "last_valid 10^0.0" not in text
    assert text.count("0 by construction") == 1
    only = runs[runs["readout"] == "last_valid"]
    assert W.reach_sentences(only, "lag") == [W.LAST_VALID_NOTE]
    two = pd.concat([runs, runs.assign(readout="mean", vanishing_ratio_init=-2.0)], ignore_index=True)
    assert "rnn/last 10^-9.0" in W.reach_sentences(two, "lag")[0]


def test_labels_name_only_what_varies():
    # A layernorm that is 'none' everywhere does not apply: 'rnn', never 'rnn/none'.
    assert W.describe({"arm": "rnn", "layernorm": "none", "lag": 16}, ["arm", "lag"]) == "rnn lag=16"
    assert W.describe({"arm": "rnn", "layernorm": None}, ["arm", "layernorm"]) == "rnn"
    assert W.describe({"cell": "rnn", "layernorm": "output"}, ["cell", "layernorm"]) == "rnn/output"
    fits = [_frontier(c, "none", "all_reached") for c in ("rnn", "lstm")]
    assert all(s.startswith(("**rnn**", "**lstm**")) for s in W.success_sentences(fits, 0.3))
    both = [_frontier("rnn", ln, "all_reached") for ln in ("none", "output")]
    assert [s.split("**")[1] for s in W.success_sentences(both, 0.3)] == ["rnn/none", "rnn/output"]
    runs = pd.DataFrame({"arm": ["rnn", "lstm"], "layernorm": "none", "lag": 32, "pad_size": 32, "readout": "last",
                         "vanishing_ratio_init": [-4.0, -1.0], "vanishing_ratio_final": [-3.0, -1.0]})
    text = W.reach_sentences(runs, "lag")[0]
    assert "rnn 10^-4.0 at init" in text and "/none" not in text


def test_the_gradient_position_is_named_for_what_it_is():
    # With a lag the probe compares the texts' last position (pad_size - 1), lag steps before the read-out.
    runs = pd.DataFrame({"cell": "rnn", "layernorm": "none", "lag": [16], "pad_size": [32], "readout": "last",
                         "vanishing_ratio_init": [-4.0], "vanishing_ratio_final": [-3.0]})
    text = W.reach_sentences(runs, "lag")[0]
    assert "first input position" not in text and "before reaching the text" not in text
    assert text.startswith("At lag 16, the gradient at the texts' last position (pad_size − 1, 16 steps before the "
                           "read-out: the text position nearest the read-out) is")
    # Without a lag it is position 0: 31 steps before the read-out at pad 32, padding for a shorter text.
    plain = W.reach_sentences(runs.drop(columns="lag").assign(pad_size=[32]), "pad_size")[0]
    assert "the sequence's first position (position 0, 31 steps before the read-out)" in plain
    assert "Position 0 is padding wherever a text is shorter than pad_size" in plain


def test_decided_comparisons_are_counted_once_with_the_test_each_rests_on():
    """Two measures of one comparison are one comparison; a row with every seed's difference the same rests
    on the sign test, the others on a paired t interval; the Boschloo rows are named as the same runs."""
    rows = [_row([0.30, 0.32, 0.31, 0.29, 0.33]), _row([-30.0] * 7, "time"),
            replace(_row([0.2, 0.21, 0.19, 0.22, 0.2]), level="gru", baseline="rnn"),
            replace(_row([0.01, -0.02, 0.015, -0.01, 0.002]), level="lstm", within="pad_size=8")]
    rows = correct(rows)
    assert decision_counts(rows) == (3, 2, {"paired t": 1, "paired t and sign test": 1})
    text = W.decision_summary(rows, 6, contrasts=True)[0]
    assert text.startswith("2 of the 3 paired comparisons in the Effects table are decided (1 by the paired t "
                           "interval; 1 by the paired t interval on one measure and the exact sign test on the "
                           "other; Holm-corrected over its 4 rows")
    assert "Boschloo" in text and "effect rows are decided" not in text
    assert "Boschloo" not in W.decision_summary(rows, 6)[0]
