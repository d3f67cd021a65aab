"""Paired effects with the seed as the unit: per-seed averaging over the other factors, restricted
times to target, Holm correction over the whole family, and the claim rule (>= 5 seeds)."""

import math

import numpy as np
import pandas as pd
import pytest
from report_tables import grid, results_tables

from harness.report import effects as F
from harness.report import outcomes as O
from harness.report import stats
from harness.stats import paired as P
from harness.stats.multiplicity import holm_levels

KEYS = ["cell", "layernorm", "pad_size", "lr"]


def _outcomes(points, acc_noise: float = 0.0, seed: int = 0, statuses: dict | None = None):
    t = results_tables(points, statuses)
    runs = stats.prepare_runs(t["runs"])
    if acc_noise:
        runs["test_acc"] += np.random.default_rng(seed).normal(0.0, acc_noise, len(runs))
    return O.run_outcomes(runs, t["curves"])


def _row(rows, factor, within="all", measure="acc"):
    return next(r for r in rows if r.factor == factor and r.within == within and r.measure == measure)


def test_one_value_per_seed_averaged_over_the_other_factors():
    out = _outcomes(grid(lns=("none", "output"), pads=(8, 16), lrs=(1e-3, 1e-2), seeds=(0, 1, 2)))
    rows = F.effect_rows(out, KEYS)
    # The distance (pad_size) varies: layernorm's effect is given per distance, averaged over cell × lr.
    ln = _row(rows, "layernorm", "pad_size=8")
    assert ln.seeds == 3 and ln.pairs == 12 and ln.strata == 4 and ln.primary
    assert ln.diffs == pytest.approx([0.02, 0.02, 0.02])        # report_tables: LN output adds 2 points
    # lstm 0.8 vs rnn max(0.25, 0.6 - 0.02 pad): +0.36 at pad 8, +0.52 at pad 16, each averaged over ln × lr
    assert _row(rows, "cell", "pad_size=8").diffs == pytest.approx([0.36] * 3)
    assert _row(rows, "cell", "pad_size=16").diffs == pytest.approx([0.52] * 3)
    lr = _row(rows, "lr", "pad_size=16")
    assert lr.strata == 4 and lr.diffs == pytest.approx([0.0] * 3)


def test_no_row_averages_over_distances_or_mixes_groups_along_one():
    """Where a distance varies, no effect row averages over it (a steps-to-target difference would mix
    'sooner' at one distance with 'never' at another), and the distance's own effect is given within each
    group, not averaged over groups."""
    out = _outcomes(grid(lns=("none", "output"), pads=(8, 16), seeds=(0, 1, 2)))
    rows = F.effect_rows(out, KEYS)
    assert not any(r.within == "all" for r in rows)
    assert {r.within for r in rows if r.factor == "pad_size"} == {"cell=rnn", "cell=lstm"}
    assert {r.within for r in rows if r.factor == "cell"} == {"pad_size=8", "pad_size=16"}
    assert {r.within for r in rows if r.primary} == {"cell=rnn", "cell=lstm", "pad_size=8", "pad_size=16"}
    # Without a varying distance the rows average over the other factors as before.
    flat = F.effect_rows(_outcomes(grid(lns=("none", "output"), pads=(8,), seeds=(0, 1))), KEYS)
    assert {r.within for r in flat if r.factor == "cell"} == {"all"}


def test_restricted_time_rows_count_who_reached_the_target():
    out = _outcomes(grid(lns=("none",), pads=(8, 16), seeds=(0, 1)))
    rows = F.effect_rows(out, KEYS)
    # pad 8: rnn 30, lstm 20 steps, every run reached it: tau = 30.
    cell = _row(rows, "cell", "pad_size=8", measure="time")
    assert cell.tau == 30 and cell.diffs == pytest.approx([-10, -10])
    assert cell.reached == (2, 0, 0, 0) and cell.never is None   # both / only lstm / only rnn / neither
    # pad 16: the rnn never reached the target (censored at its 40 steps), the lstm at 20: a censored row,
    # "rnn did not reach the target within 40 steps", never "+20 steps".
    far = _row(rows, "cell", "pad_size=16", measure="time")
    assert far.tau == 40 and far.reached == (0, 2, 0, 0)
    assert far.never == "baseline" and far.never_within == 40
    from harness.report.findings import measure_clause
    text = measure_clause(F.correct([far])[0])
    assert text.startswith("steps to target: rnn did not reach the target within 40 steps in any of its 2 runs, "
                           "lstm reached it in 2 of 2 within the first 40 steps")
    assert "-20" not in text


def test_intervals_are_clamped_to_the_possible_range():
    # Restricted times lie in [0, tau]: a difference of their means cannot pass tau (here 100 steps), nor an
    # accuracy difference 1; the t interval of these spread-out differences does, and is cut there.
    time = F.EffectRow("lag", 0, 16, "arm=rnn", "time", np.array([100.0, 20.0, 100.0, 90.0, 100.0]), 5, 0, 1,
                       tau=100.0)
    acc = F.EffectRow("lag", 0, 16, "arm=rnn", "acc", np.array([0.9, 0.1, 0.95, 0.99, 0.97]), 5, 0, 1)
    t, a = F.correct([time, acc])
    raw = P.paired_t_interval(time.diffs, t.decision.confidence)
    assert raw[2] > 100 and t.decision.high == 100.0 and t.decision.low == pytest.approx(raw[1]) and t.clamped
    assert a.decision.high == 1.0 and a.clamped
    inside = F.correct([F.EffectRow("cell", "rnn", "lstm", "all", "acc", np.array([0.1, 0.2, 0.15]), 3, 0, 1)])[0]
    assert not inside.clamped


def test_no_time_row_when_no_run_reached_the_target():
    out = _outcomes(grid(cells=("rnn",), lns=("none", "output"), pads=(32,), seeds=(0, 1)))
    rows = F.effect_rows(out, KEYS)
    assert [r.measure for r in rows] == ["acc"]


def test_diverged_pair_is_left_out_of_accuracy_but_counted():
    points = grid(lns=("none",), pads=(8,), seeds=(0, 1, 2))
    out = _outcomes(points, statuses={points[4]: "diverged"})           # lstm seed 1
    cell = _row(F.effect_rows(out, KEYS), "cell")
    assert cell.seeds == 2 and cell.left_out == 1 and cell.pairs == 3


def test_holm_family_covers_every_row_of_both_measures():
    out = _outcomes(grid(pads=(8, 16), seeds=(0, 1, 2, 3, 4, 5)), acc_noise=0.01)
    rows = F.compute_effects(out, KEYS)
    assert {r.measure for r in rows} == {"acc", "time"}
    # The time rows are the same in every seed (report_tables' steps have no noise): the sign test's
    # p-value enters Holm for them, the t test's for the others.
    assert any(P.all_equal(r.diffs) for r in rows) and not all(P.all_equal(r.diffs) for r in rows)
    p = np.array([P.paired_pvalue(r.diffs) for r in rows])
    assert [r.decision.confidence for r in rows] == pytest.approx(list(holm_levels(p)))
    for r in rows:                                               # the printed interval is the corrected t interval
        if P.all_equal(r.diffs):                                 # none where there is no spread
            assert math.isnan(r.decision.low) and math.isnan(r.decision.high)
            continue
        _, lo, hi, _ = P.paired_t_interval(r.diffs, r.decision.confidence)
        assert (r.decision.low, r.decision.high) == pytest.approx((lo, hi))


def test_two_seeds_never_claim_and_say_how_many_would_decide():
    out = _outcomes(grid(pads=(8, 16), seeds=(0, 1)), acc_noise=0.02)
    rows = F.compute_effects(out, KEYS)
    assert rows and not any(r.decision.claimed for r in rows)
    cell = _row(rows, "cell", "pad_size=8")
    assert cell.decision.pairs_suggested is not None and cell.decision.pairs_suggested >= P.MIN_PAIRS


def test_six_seeds_with_a_clear_effect_are_claimed():
    out = _outcomes(grid(lns=("none", "output"), pads=(8,), seeds=tuple(range(6))), acc_noise=0.01, seed=3)
    rows = F.compute_effects(out, KEYS)
    cell = _row(rows, "cell")
    assert cell.seeds == 6 and cell.decision.claimed and cell.decision.direction == 1
    assert cell.decision.low > 0.3 and cell.decision.high < 0.42


def test_matched_keeps_the_latest_duplicate():
    out = _outcomes(grid(cells=("rnn", "lstm"), lns=("none",), pads=(8,), seeds=(0,)))
    dup = out[out["cell"] == "lstm"].assign(test_acc=0.1, started_at=pd.Timestamp("2027-01-01", tz="UTC"))
    both = pd.concat([out, dup], ignore_index=True)
    p = F.matched(both, "cell", "rnn", "lstm", ["layernorm", "pad_size", "lr", "seed"])
    assert len(p) == 1 and p["acc_b"].iloc[0] == 0.1


def test_holm_note_names_the_levels():
    out = _outcomes(grid(pads=(8,), seeds=(0, 1, 2)), acc_noise=0.01)
    rows = F.compute_effects(out, KEYS)
    assert F.holm_note(rows).startswith(f"{len(rows)} rows corrected together (Holm)")
    assert math.isclose(max(r.decision.confidence for r in rows), 1 - 0.05 / len(rows))  # the strictest


def _decision(mean: float, low: float, high: float, claimed: bool = True) -> P.EffectDecision:
    return P.EffectDecision(5, mean, low, high, 0.95, math.nan, math.nan, claimed, 1 if claimed else 0,
                            None, False, "")


def test_replication_probability_is_even_for_an_interval_that_just_clears_zero():
    assert P.replication_probability(_decision(1.0, 0.001, 1.999)) == pytest.approx(0.5, abs=0.01)
    assert P.replication_probability(_decision(1.0, 0.9, 1.1)) > 0.999
    assert P.replication_probability(_decision(1.0, 1.0, 1.0)) == 1.0           # no spread at all
    assert 0.5 < P.replication_probability(_decision(1.0, 0.3, 1.7)) < 0.99
    assert math.isnan(P.replication_probability(_decision(1.0, -0.5, 2.5, claimed=False)))


def test_a_claim_that_one_flipped_run_near_the_frontier_undoes_is_marked():
    points = grid(cells=("rnn", "lstm"), lns=("none", "output"), pads=(4, 8, 16), seeds=tuple(range(6)))
    # A little accuracy noise: identical differences in every seed have no t interval (and 6 seeds of
    # one sign do not survive Holm's correction over this family by the sign test).
    out = _outcomes(points, acc_noise=0.002)
    success = O.mark_near_frontier(O.success_table(out, KEYS), KEYS, "pad_size")
    rows = F.mark_near_frontier(F.compute_effects(out, KEYS), out, success, KEYS)
    # RNN pad 4 -> 16: -24 points in every seed (a very narrow interval, claimed), but the RNN at pad 16
    # (0 of 6 runs per layernorm setting, next to pad 8 where all reached) is near the frontier: drawn
    # anew at 0.5/7, none of its 12 runs flips in (1 - 0.5/7)^12 = 41% of the replications, and one
    # flipped run (an outlier of +50 points in one seed's difference) undoes the claim.
    rnn = next(r for r in rows if r.factor == "pad_size" and r.level == 16 and r.within == "cell=rnn"
               and r.measure == "acc")
    assert rnn.decision.claimed and P.replication_probability(rnn.decision) > 0.99
    p = F.flip_probability(rnn, out, success, KEYS)
    assert 0.3 < p < 0.5 and rnn.near_frontier
    # LayerNorm within the LSTM (+2 points in every seed) pools no configuration near the frontier.
    lstm = next(r for r in rows if r.factor == "layernorm" and r.within == "cell=lstm, pad_size=8"
                and r.measure == "acc")
    assert lstm.decision.claimed and F.flip_probability(lstm, out, success, KEYS) == 1.0
    assert not lstm.near_frontier
    # Rows that claim nothing are never marked.
    assert not any(r.near_frontier for r in rows if not r.decision.claimed)


def test_no_accuracy_comparison_where_runs_stopped_at_the_target():
    # train.stop_at_target: a run that reached the target ended there (stop_reason 'target'), so its test
    # accuracy is that of a model stopped at the target: no accuracy row compares it; the time rows stay.
    out = _outcomes(grid(pads=(8, 16), seeds=(0, 1, 2, 3, 4)), acc_noise=0.01)
    out["stop_reason"] = np.where(out["reached"] == 1.0, "target", "budget")
    rows = F.compute_effects(out, KEYS)
    # Only the RNN at pad 16 never reached the target (so never stopped there): the one accuracy row left
    # compares its layernorm settings.
    assert {(r.factor, r.within) for r in rows if r.measure == "acc"} == {("layernorm", "cell=rnn, pad_size=16")}
    assert {r.measure for r in rows if r.within != "cell=rnn, pad_size=16"} == {"time"}
    assert F.stopped_at_target(out) and not F.stopped_at_target(out.assign(stop_reason="budget"))
    # Where neither side of a comparison stopped at the target, its accuracy row is kept.
    lstm_free = out.assign(stop_reason=np.where(out["cell"] == "rnn", out["stop_reason"], "budget"))
    kept = [r for r in F.compute_effects(lstm_free, KEYS) if r.measure == "acc"]
    assert {(r.factor, r.within) for r in kept} == {
        ("layernorm", "cell=lstm, pad_size=8"), ("layernorm", "cell=lstm, pad_size=16"), ("pad_size", "cell=lstm"),
        ("layernorm", "cell=rnn, pad_size=16"), ("layernorm", "pad_size=16"), ("cell", "pad_size=16")}
    from harness.report.findings import findings
    text = findings(out, fits=[], effects=rows, varying=KEYS, target=0.5, planned=None, max_seeds=5)
    assert text.count(F.STOP_AT_TARGET_NOTE) == 1
