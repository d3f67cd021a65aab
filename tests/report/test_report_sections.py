"""The report's markdown sections on hand-made inputs: the accuracy section's wording follows
`train.stop_at_target` as run, the frontier table calls a D50 a bracket only for a perfect split, and the
effects table words a comparison with a side that never reached the target as censored."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from harness.report import effects as F
from harness.report import sections as S
from harness.report.outcomes import FrontierFit
from harness.stats.frontier import fit_d50


def _data(stop: bool | None, runs: pd.DataFrame, **extra) -> SimpleNamespace:
    cfg = None if stop is None else SimpleNamespace(train=SimpleNamespace(stop_at_target=stop), adaptive=None)
    return SimpleNamespace(cfg=cfg, runs=runs, outcomes=runs, adaptive=None, **extra)


RUNS = pd.DataFrame({"status": "complete", "steps": [1000, 1000, 400], "steps_to_target": [None, None, 400],
                     "stop_reason": ["budget", "budget", "budget"]})


def test_accuracy_wording_follows_stop_at_target_as_run():
    off = S.accuracy_intro(_data(False, RUNS))
    assert off.startswith("Test accuracy after each run's budget of 1,000 steps (`train.stop_at_target` is off")
    assert "fixed budget" not in off
    on = S.accuracy_intro(_data(True, RUNS.assign(steps=[1000, 1000, 400], stop_reason=["budget", "budget", "target"])))
    assert on.startswith("Test accuracy when each run ended: at the first evaluation that reached the target for a "
                         "run that reached it (`train.stop_at_target` is on: an early model")
    assert "after the budget of 1,000 steps" in on and "after each run's budget" not in on
    # Without a config, what the runs recorded decides.
    assert S.accuracy_intro(_data(None, RUNS)).startswith("Test accuracy after each run's budget")
    plateau = S.accuracy_intro(_data(False, RUNS.assign(stop_reason=["early_stop", "budget", "budget"])))
    assert "or earlier where dev loss stopped improving" in plateau


def _fit_of(counts: dict[float, tuple[int, int]]) -> FrontierFit:
    d = [x for x, (k, n) in counts.items() for _ in range(n)]
    r = [i < k for x, (k, n) in counts.items() for i in range(n)]
    points = pd.DataFrame([{"lag": x, "k": k, "n": n} for x, (k, n) in counts.items()])
    return FrontierFit({"arm": "a"}, "lag", points, fit_d50(d, np.array(r), n_boot=50))


def test_a_bracket_only_where_the_outcomes_split_perfectly():
    perfect = _fit_of({0: (12, 12), 8: (0, 12), 16: (0, 12)})
    mixed = _fit_of({0: (12, 12), 8: (12, 12), 16: (5, 12), 32: (0, 12)})
    assert perfect.fit.status == mixed.fit.status == "separated"
    table = S.frontier_markdown(_data(False, RUNS, fits=[perfect, mixed]))
    rows = table.splitlines()
    assert rows[0].startswith("| arm | reached per lag |")     # no column for a setting that does not vary
    assert "D50 (half the runs reach the target within 1,000 steps)" in rows[0]
    assert rows[2].endswith("| between D = 0 and D = 8 | bracket (outcomes split perfectly) |")
    assert rows[3].endswith("| not estimable | not estimable: the runs are mixed only at lag 16 (5 of 12 reached the "
                            "target), every run reached it up to lag 8 and none from lag 32 on: a logistic fit has no "
                            "finite slope |")
    assert "bracket" not in rows[3]


def test_effects_table_words_never_as_censored():
    out = pd.DataFrame({"arm": ["rnn"] * 5 + ["lstm"] * 5, "seed": list(range(5)) * 2, "test_acc": 0.5,
                        "reached": [0.0] * 5 + [1.0] * 5, "time": [1000.0] * 5 + [100.0, 150, 200, 100, 150]})
    rows = F.correct(F.effect_pair_rows(out, "arm", "rnn", "lstm", ["seed"], "lag=16", (("lag", 16),), True))
    time = next(r for r in rows if r.measure == "time")
    assert time.never == "baseline" and time.never_within == 1000.0
    md = S.effects_markdown(SimpleNamespace(runs=out, effects=rows))
    line = next(x for x in md.splitlines() if "steps to target" in x)
    assert "censored: rnn did not reach the target within 1,000 steps" in line and "-860" not in line
    assert "| paired t |" in line
