"""The answer paragraph a report leads with, on a hand-made table of outcomes."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from harness.report.answer import answer_markdown

CONFIG = """name: t
headline:
  seeds: [100, 101, 102, 103, 104, 105]
  exploration_seeds: [0, 1]
  target_rule: "halfway from chance to the ceiling"
  contrasts: [[lstm, rnn]]
  d50: [rnn, lstm]
"""


def _data(rnn_at_8: int, budget_check: str = "") -> SimpleNamespace:
    """rnn reaches the target in 6/6 runs at lag 0 and `rnn_at_8`/6 at lag 8; lstm everywhere; seeds 0-1
    (exploration) are in the table too and must not count."""
    rows = []
    for arm in ("rnn", "lstm"):
        for lag in (0, 8):
            for i, seed in enumerate([0, 1, 100, 101, 102, 103, 104, 105]):
                hit = arm == "lstm" or lag == 0 or i - 2 < rnn_at_8
                rows.append({"trial_id": f"{arm}{lag}{seed}", "arm": arm, "lag": lag, "seed": seed,
                             "status": "complete", "steps": 1000, "reached": float(hit),
                             "steps_to_target": 300.0 if hit else None, "learned": arm == "lstm" or lag == 0,
                             "test_acc": 0.5})
    return SimpleNamespace(outcomes=pd.DataFrame(rows), config_text=CONFIG + budget_check, target=0.4,
                           tables={"grad_time": pd.DataFrame(), "confusion": pd.DataFrame()}, varying=["lag", "arm"],
                           budget_checks=pd.DataFrame(), cfg=None)


def test_the_answer_counts_the_confirmatory_runs_and_names_the_rule():
    text = answer_markdown(_data(rnn_at_8=0))
    assert "Confirmatory seeds 100–105" in text and "6 runs per configuration" in text
    assert "reaches 0.4 within 1,000 steps" in text and "target rule: halfway from chance to the ceiling" in text
    assert "rnn 6/6 at lag 0, 0/6 at lag 8" in text and "lstm 6/6 at lag 0, 6/6 at lag 8" in text
    assert "between lag 0 and 8 (a bracket" in text
    assert "lstm more often than rnn at lag 8" in text and "Holm over the 2 arm-vs-arm rows" in text
    assert "rnn 6/6 at lag 0, 0/6 at lag 8" in text.split("Learned at all")[1]
    assert "No budget check ran, so every 'did not reach' above means 'not within 1,000 steps'" in text
    assert "figures/frontier_fit.png" in text


def test_an_undecided_contrast_is_not_claimed():
    text = answer_markdown(_data(rnn_at_8=4))
    assert "rnn 6/6 at lag 0, 4/6 at lag 8" in text
    assert "None of the 2 arm-vs-arm rows is decided" in text and "more often" not in text
