"""The report's budget-check section (harness.report.budget) on hand-made tables: the check runs are
split out of every table, paired run by run with their originals, counted, worded, and `budget_bound`
says per group whether its frontier is a speed within the budget."""

from types import SimpleNamespace

import pandas as pd

from harness.report import budget as B

HEADLINE = "headline:\n  seeds: 4\n  d50: [rnn, lstm]\n  budget_check: {factor: 3, seeds: 4}\n"


def _runs(counts: dict[tuple, list], factor: float | None = None, steps: int = 1000) -> pd.DataFrame:
    """Outcome rows: for (arm, lag) a list of reached (1/0) per seed 0, 1, ..."""
    rows = []
    for (arm, lag), seq in counts.items():
        for seed, r in enumerate(seq):
            rows.append({"trial_id": f"{arm}-{lag}-{seed}-{factor}", "arm": arm, "lag": float(lag), "seed": seed,
                         "reached": float(r), "steps": float(steps if not r or factor else 300),
                         "status": "complete", "budget_check": factor, "stop_reason": "budget"})
    return pd.DataFrame(rows)


def _data(original: dict, checks: dict, config_text: str = HEADLINE) -> SimpleNamespace:
    return SimpleNamespace(outcomes=_runs(original), budget_checks=_runs(checks, factor=3, steps=3000),
                           config_text=config_text, cfg=None, group="arm", keys=["arm", "lag"],
                           varying=["arm", "lag"])


ORIGINAL = {("rnn", 0): [1, 1, 1, 1], ("rnn", 8): [0, 0, 0, 0], ("lstm", 0): [1, 1, 1, 1],
            ("lstm", 8): [1, 1, 1, 1], ("lstm", 16): [0, 1, 0, 0]}


def test_split_tables_takes_the_check_runs_out_of_every_table():
    runs = pd.DataFrame({"trial_id": ["a", "b", "c"], "budget_check": [None, 3, None]})
    curves = pd.DataFrame({"trial_id": ["a", "b", "b", "c"], "step": [1, 1, 2, 1]})
    keep, checks = B.split_tables({"runs": runs, "curves": curves})
    assert keep["runs"]["trial_id"].tolist() == ["a", "c"] and keep["curves"]["trial_id"].tolist() == ["a", "c"]
    assert checks["runs"]["trial_id"].tolist() == ["b"] and checks["curves"]["step"].tolist() == [1, 2]
    old = pd.DataFrame({"trial_id": ["a"]})   # results from before the column existed: nothing is a check
    assert B.split_tables({"runs": old})[0]["runs"]["trial_id"].tolist() == ["a"]


def test_changed_outcomes_are_counted_run_by_run_and_the_frontier_called_a_speed():
    # The reference LSTM at lag 16: 1/4 within 1,000 steps -> 4/4 within 3,000 (3 changed); the RNN at lag 8
    # stays 0/4.
    data = _data(ORIGINAL, {("rnn", 8): [0, 0, 0, 0], ("lstm", 16): [1, 1, 1, 1]})
    t = B.checked_table(data).set_index("arm")
    assert t.loc["lstm", ["n", "before", "after", "changed", "lost"]].tolist() == [4, 1, 4, 3, 0]
    assert t.loc["rnn", ["n", "before", "after", "changed"]].tolist() == [4, 0, 0, 0]
    assert B.budget_steps(data) == 1000
    md = B.budget_markdown(data)
    assert ("**3 of 8 outcomes changed with 3× the budget: these frontiers are speeds within 1,000 steps, "
            "not limits** (lstm at lag 16: 1/4 → 4/4). No outcome of rnn changed.") in md
    assert "| arm | lag | reached within 1,000 steps | reached within 3,000 steps | outcomes changed |" in md
    assert "| lstm | 16 | 1/4 | 4/4 | 3 runs |" in md and "| rnn | 8 | 0/4 | 0/4 | 0 runs |" in md
    assert "on seeds 0–3" in md
    assert B.budget_bound(data) == {"rnn": False, "lstm": True}


def test_no_change_is_said_as_such_and_an_unchecked_group_is_named():
    original = {**ORIGINAL, ("lstm", 16): [1, 1, 1, 1]}   # the LSTM fails nowhere: nothing to check
    data = _data(original, {("rnn", 8): [0, 0, 0, 0]})
    md = B.budget_markdown(data)
    assert "No outcome changed with 3× the budget (4 runs compared)" in md and "speeds" not in md
    assert "- lstm: no lag at which fewer than half of the runs reached the target (nothing to check)." in md
    assert B.budget_bound(data) == {"rnn": False, "lstm": None}


def test_unfinished_checks_and_lost_outcomes():
    data = _data(ORIGINAL, {("rnn", 8): [0, 0]})      # two of the RNN's four check runs finished
    assert B.budget_bound(data) == {"rnn": None, "lstm": None}
    assert "- lstm: first failing lag 16, its check runs not finished yet." in B.budget_markdown(data)
    data = _data(ORIGINAL, {("rnn", 8): [0, 0, 0, 0], ("lstm", 16): [0, 0, 0, 0]})   # lstm seed 1: 1 -> 0
    md = B.budget_markdown(data)
    assert "1 run reached the target within the original budget but not in the check" in md
    assert "1 of 8 outcomes changed" in md


def test_nothing_without_the_key_and_a_waiting_note_before_any_check_run():
    assert B.budget_markdown(_data(ORIGINAL, {}, config_text="headline: {seeds: 4}\n")) == ""
    assert B.budget_bound(_data(ORIGINAL, {}, config_text="name: x\n")) == {}
    md = B.budget_markdown(_data(ORIGINAL, {}))
    assert "No budget-check run has finished yet" in md and "- rnn: first failing lag 8" in md


def test_check_runs_at_another_factor_are_left_out():
    data = _data(ORIGINAL, {("rnn", 8): [0, 0, 0, 0], ("lstm", 16): [1, 1, 1, 1]})
    data.budget_checks.loc[data.budget_checks["arm"] == "lstm", "budget_check"] = 2   # from an earlier config
    assert B.checked_table(data)["arm"].tolist() == ["rnn"] and B.budget_bound(data)["lstm"] is None
