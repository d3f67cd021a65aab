"""The findings' wording: D50 statements by kind, the frontier lead, and the decision rule's verdicts."""

import numpy as np
import pandas as pd

from harness.report import findings as W
from harness.report.effects import EffectRow
from harness.report.outcomes import FrontierFit
from harness.stats.frontier import D50Fit
from harness.stats.multiplicity import holm_levels
from harness.stats.paired import corrected_effects, pairs_needed


def _fit(status, d50=None, low=None, high=None, separated=False, extrapolated=False):
    return D50Fit(d50, low, high, separated, 12, (1.0, -1.0) if status == "fit" else None, status,
                  extrapolated=extrapolated)


def test_d50_text_says_what_kind_of_statement_it_is():
    tested = [0, 4, 16, 64]
    assert W.d50_text(_fit("fit", 23.4, 12.2, 41.0), tested) == "at about D = 23 [12, 41]"
    assert W.d50_text(_fit("fit", 70.0, 30.0, None, extrapolated=True), tested) == \
        "at about D = 70 [30, > 64], extrapolated beyond the distances tested"
    assert W.d50_text(_fit("fit", 2.5, None, 8.0), tested) == "at about D = 2.5 [< 0, 8]"
    sep = W.d50_text(_fit("separated", 8.0, 4.0, 16.0, separated=True), tested)
    assert sep.startswith("between D = 4 and D = 16 (") and "not a confidence interval" in sep
    quasi = W.d50_text(_fit("separated", 16.0, 4.0, 64.0, separated=True), tested)
    assert "the runs split at D = 16" in quasi
    assert W.d50_text(_fit("none_reached"), tested).startswith("below D = 0, the shortest distance tested")
    assert W.d50_text(_fit("all_reached"), tested).startswith("beyond D = 64, the longest distance tested")


def _frontier(cell, ln, status, distance="lag", **kw):
    pts = pd.DataFrame({distance: [0, 16], "k": [2, 0], "n": [2, 2], "rate": [1.0, 0.0], "low": [0.3, 0.0],
                        "high": [1.0, 0.7]})
    return FrontierFit({"cell": cell, "layernorm": ln}, distance, pts, _fit(status, **kw))


def test_frontier_lead_names_each_cell_and_the_distance():
    fits = [_frontier("rnn", "none", "fit", d50=5.0, low=2.0, high=9.0),
            _frontier("lstm", "none", "all_reached")]
    lead, note = W.frontier_lead(fits, 0.6)
    assert lead == ("**Frontier** (criterion: reaching dev accuracy 0.6; D = lag): The RNN stops learning at about "
                    "D = 5 [2, 9]; the LSTM stops learning beyond D = 16 (every run reached the target).")
    assert note.startswith("Distance is `data.lag`") and "somewhat optimistic" in note
    pad = [_frontier("rnn", ln, "none_reached", distance="pad_size") for ln in ("none", "output")]
    lead, note = W.frontier_lead(pad, 0.6)
    assert "The RNN stops learning below D = 0 (no run reached the target) with layernorm none and layernorm " \
           "output." in lead
    assert "pad_size, which mixes the padding distance" in note


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
    assert "rnn/none 10^-9.0 at init" in text and "last_valid 10^0.0" not in text
    assert text.count("0 by construction") == 1
    only = runs[runs["readout"] == "last_valid"]
    assert W.reach_sentences(only, "lag") == [W.LAST_VALID_NOTE]
    two = pd.concat([runs, runs.assign(readout="mean", vanishing_ratio_init=-2.0)], ignore_index=True)
    assert "rnn/none/last 10^-9.0" in W.reach_sentences(two, "lag")[0]
