"""Group against group at each distance (harness.report.contrasts) and the exact two-proportion
machinery under it (harness.report.exact): small hand-checkable inputs, scipy as the reference, and
the interval's coverage enumerated exactly over every outcome."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.report import contrasts as C
from harness.report import exact as X

# ----------------------------------------------------------------------------- exact tests


def test_rate_difference_of_five_of_five_against_none():
    r = C.rate_difference(5, 5, 0, 5)
    assert (r.diff, r.high) == (1.0, 1.0)
    # Boschloo, two-sided: twice the one-sided sup over the common rate of pi^5 (1 - pi)^5 = 2 / 4^5.
    assert r.p_value == pytest.approx(2 / 4 ** 5) == stats.boschloo_exact([[5, 0], [0, 5]]).pvalue
    # The lower end is where the one-sided exact test of "difference <= low" stops rejecting at 2.5%.
    assert 0.3 < r.low < 0.5
    assert X._one_sided_p(5, 5, 0, 5, r.low, upper=True) <= 0.025 < X._one_sided_p(5, 5, 0, 5, r.low + 1e-6, True)
    # Swapping the groups mirrors the interval.
    m = C.rate_difference(0, 5, 5, 5)
    assert (m.diff, m.low, m.high) == pytest.approx((-1.0, -r.high, -r.low))
    assert r.excludes_zero and not C.rate_difference(3, 5, 2, 5).excludes_zero
    with pytest.raises(ValueError, match="0 <= k <= n"):
        C.rate_difference(6, 5, 0, 5)


@pytest.mark.parametrize("n1,n2", [(5, 5), (3, 6)])
def test_the_interval_covers_at_least_95_percent_for_every_true_pair(n1, n2):
    # Exact coverage: for each true (p1, p2), the probability of the tables whose interval holds p1 - p2.
    low = np.zeros((n1 + 1, n2 + 1))
    high = np.zeros_like(low)
    for a in range(n1 + 1):
        for b in range(n2 + 1):
            r = X.rate_difference(a, n1, b, n2)
            low[a, b], high[a, b] = r.low, r.high
    ps = np.linspace(0.0, 1.0, 41)
    b1, b2 = X._binom_pmf(n1, ps), X._binom_pmf(n2, ps)
    worst, miss_low, miss_high = 1.0, 0.0, 0.0
    for i, p1 in enumerate(ps):
        for j, p2 in enumerate(ps):
            w = np.outer(b1[i], b2[j])
            d = p1 - p2
            worst = min(worst, w[(low <= d + 1e-12) & (high >= d - 1e-12)].sum())
            miss_low, miss_high = max(miss_low, w[low > d + 1e-12].sum()), max(miss_high, w[high < d - 1e-12].sum())
    assert worst >= 0.95 and miss_low <= 0.025 + 1e-9 and miss_high <= 0.025 + 1e-9
    # The Wald interval at the same sizes falls far short: at p1 = 0.1, p2 = 0, the table 0 of n against
    # 0 of n (probability 0.9**n1) gives [0, 0], which misses the true difference 0.1.
    wald = []
    for a in range(n1 + 1):
        for b in range(n2 + 1):
            p, q = a / n1, b / n2
            half = 1.96 * math.sqrt(p * (1 - p) / n1 + q * (1 - q) / n2)
            wald.append((a, b, p - q - half, p - q + half))
    w = np.outer(b1[4], b2[0])                                 # p1 = 0.1, p2 = 0
    assert sum(w[a, b] for a, b, lo, hi in wald if lo <= 0.1 <= hi) < 0.5


def test_two_sample_pvalues_are_scipy_s():
    assert X.two_sample_pvalue(10, 16, 0, 5) == pytest.approx(stats.boschloo_exact([[10, 0], [6, 5]]).pvalue)
    assert X.two_sample_pvalue(10, 16, 0, 5, "fisher") == pytest.approx(stats.fisher_exact([[10, 0], [6, 5]]).pvalue)
    assert X.two_sample_pvalue(0, 5, 0, 7) == X.two_sample_pvalue(4, 4, 9, 9) == 1.0
    with pytest.raises(ValueError, match="test must be one of"):
        X.two_sample_pvalue(1, 2, 1, 2, "barnard")


def test_every_table_at_once_agrees_with_scipy():
    for test in ("boschloo", "fisher"):
        table = X.pvalue_table(4, 6, test)
        ref = np.array([[X.two_sample_pvalue(a, 4, b, 6, test) for b in range(7)] for a in range(5)])
        assert table == pytest.approx(ref, abs=1e-5)


def test_seeds_for_power_hand_checked():
    # True rates 1 and 0: every table is n of n against 0 of n, so the power is 1 as soon as that table
    # is rejected. Boschloo: 2 (1/4)^n < 0.05 from n = 3 (0.031; n = 2 gives 0.125). Fisher: 2 / C(2n, n)
    # < 0.05 from n = 4 (2/70 = 0.029; n = 3 gives 2/20 = 0.1).
    assert C.seeds_for_power(1.0, 0.0) == 3
    assert C.seeds_for_power(1.0, 0.0, test="fisher") == 4
    assert C.seeds_for_power(0.5, 0.5) is None                 # the power is the size, at most alpha
    # A case with uncertain outcomes: the exact power at n = 4 is the binomial sum over the tables scipy
    # rejects, computed here table by table.
    n, p1, p2 = 4, 0.9, 0.1
    brute = sum(stats.binom.pmf(a, n, p1) * stats.binom.pmf(b, n, p2)
                for a in range(n + 1) for b in range(n + 1)
                if stats.boschloo_exact([[a, b], [n - a, n - b]]).pvalue < 0.05)
    assert X.exact_power(n, n, p1, p2) == pytest.approx(brute, abs=1e-9)
    need = C.seeds_for_power(p1, p2)
    assert X.exact_power(need, need, p1, p2) >= 0.8 > X.exact_power(need - 1, need - 1, p1, p2)
    assert C.seeds_for_power(0.9, 0.1, test="fisher") >= need   # Boschloo is uniformly more powerful
    assert C.seeds_for_power(0.6, 0.5, cap=10) is None


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


def test_d50_ratio_from_brackets_and_beyond_the_range():
    # a: 5/5 up to 16, 0/5 from 32 (bracket 16-32); b: 5/5 at 0 and 4, 0/5 from 8 (bracket 4-8).
    a = _runs({("a", d): float(d <= 16) for d in (0, 4, 8, 16, 32, 64)})
    b = _runs({("b", d): float(d <= 4) for d in (0, 4, 8, 16, 32, 64)})
    mid = {g: math.expm1((math.log1p(lo) + math.log1p(hi)) / 2) for g, lo, hi in (("a", 16, 32), ("b", 4, 8))}
    # Both split perfectly: each D50 is only known to lie in its bracket, so the ratio gets the bounds
    # the brackets allow, [16 / 8, 32 / 4], and no point (the midpoints are not estimates).
    r = C.d50_ratio(a["lag"], a["reached"], b["lag"], b["reached"], n_boot=200)
    assert math.isnan(r.ratio) and (r.low, r.high) == (2.0, 8.0) and r.bracketed == ("a", "b")
    assert C.ratio_text(r, "a", "b").startswith("ratio a/b between 2 and 8 (bounds, not an interval: a's and b's")
    # A group that never declines in the range: its D50 lies beyond the largest distance tested.
    never = _runs({("c", d): 1.0 for d in (0, 4, 8, 16, 32, 64)})
    r = C.d50_ratio(never["lag"], never["reached"], b["lag"], b["reached"], n_boot=200)
    assert r.ratio == math.inf and r.high == math.inf
    assert C.ratio_text(r, "c", "b").startswith("ratio c/b: unbounded (c's D50 lies beyond the largest distance")
    assert C.d50_ratio(b["lag"], b["reached"], never["lag"], never["reached"], n_boot=50).ratio == 0.0
    # Censored at the range tested (the reproduction check's estimand): 64 / D50(b).
    cens = C.d50_ratio(never["lag"], never["reached"], b["lag"], b["reached"], n_boot=200, censor=True)
    assert cens.ratio == pytest.approx(64 / mid["b"]) and cens.censored
    both_beyond = C.d50_ratio(never["lag"], never["reached"], never["lag"], never["reached"], n_boot=50)
    assert math.isnan(both_beyond.ratio) and C.ratio_text(both_beyond, "c", "c").startswith("ratio c/c: not defined")


def test_markdown_states_decided_rows_and_never_an_undecided_one():
    rates = {("rnn", 0): 1, ("lstm", 0): 1, ("rnn", 8): 1, ("lstm", 8): 1, ("rnn", 32): 0, ("lstm", 32): 1,
             ("rnn", 64): 0, ("lstm", 64): 0.6}
    md = C.contrasts_markdown(_runs(rates), "cell", "lag", n_boot=100)
    lines = md.split("\n\n")
    p, holm = 2 / 4 ** 5, 4 * 2 / 4 ** 5
    r = C.rate_difference(5, 5, 0, 5)
    assert lines[0] == (f"At lag 32 the LSTM reached the target in 5/5 runs, the RNN in 0/5; difference +100 points "
                        f"[+{100 * r.low:.0f}, +100] (Boschloo p = {p:.2g}, Holm {holm:.2g}): decided.")
    assert lines[1].startswith("The other 3 comparisons of cell against cell at one lag remain undecided")
    assert not any(s.startswith("At lag 64") for s in lines)       # 3/5 vs 0/5 is not decided: no sentence
    assert lines[2].startswith("D50: rnn between 8 and 32 (a bracket read off the data), lstm ")
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
    assert h == C.Headline(seeds=12, group=None, where={"model.readout": "last"},
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


def test_a_ratio_with_a_bracketed_d50_gives_bounds_not_a_point():
    """The RNN's runs split perfectly between lag 0 and 8: its D50 is anywhere in (0, 8), and resampling
    its runs never moves it, so the ratio gets bounds over the bracket (here no upper one), no point."""
    d = [0] * 10 + [8] * 10 + [16] * 10 + [32] * 10 + [64] * 10
    rnn = [1] * 10 + [0] * 40
    lstm = [1] * 30 + [1] * 3 + [0] * 7 + [0] * 10
    assert C.split_bracket(d, rnn) == (0.0, 8.0) and C.split_bracket(d, lstm) is None
    assert C.split_bracket(d, [1] * 10 + [0] * 10 + [1] * 10 + [0] * 20) is None   # not monotone
    r = C.d50_ratio(d, lstm, d, rnn, n_boot=200)
    assert math.isnan(r.ratio) and r.bracketed == ("b",) and math.isinf(r.high)
    fit = C.d50_ratio(d, lstm, d, lstm, n_boot=200)   # the lstm's own bootstrap interval, lower end
    assert 16 / 8 <= r.low <= 64 / 8 and fit.bracketed == ()
    assert "at least" in C.ratio_text(r, "lstm", "rnn") and "no upper bound" in C.ratio_text(r, "lstm", "rnn")
    r2 = C.d50_ratio(d, rnn, d, lstm, n_boot=200)   # the other way round: from 0 up to 8 / lstm's lower end
    assert r2.low == 0.0 and 0 < r2.high <= 8 / 16 + 1e-9


def test_conditional_minp_is_fishers_test_for_one_table_and_ignores_tables_without_information():
    from scipy.stats import fisher_exact

    from harness.report.exact import conditional_minp_adjust

    for k1, n1, k2, n2 in [(0, 10, 6, 10), (2, 10, 7, 10), (1, 5, 4, 5)]:
        fisher = fisher_exact([[k1, k2], [n1 - k1, n2 - k2]]).pvalue
        assert conditional_minp_adjust([(k1, n1, k2, n2)], "fisher")[0] == pytest.approx(fisher, rel=1e-9)
    alone = conditional_minp_adjust([(0, 10, 6, 10)])[0]
    # All-or-nothing configurations (and one with a single success) cannot give a small p-value: no cost.
    with_more = conditional_minp_adjust([(0, 10, 6, 10), (0, 10, 0, 10), (10, 10, 10, 10), (0, 10, 1, 10)])
    assert with_more[0] == pytest.approx(alone) and list(with_more[1:3]) == [1.0, 1.0]
    # A configuration that could give a small p-value does cost: the adjusted value grows, below Bonferroni.
    two = conditional_minp_adjust([(0, 10, 6, 10), (5, 10, 5, 10)])
    assert alone < two[0] < 2 * alone


def test_conditional_minp_holds_the_family_wise_error_rate():
    """Simulated: 15 configurations with the bench's kind of rates, both folders drawn at the same rates;
    the share of draws in which any adjusted p-value is below 0.05 stays below 0.05 (3 standard errors)."""
    from harness.report.exact import conditional_minp_adjust

    rng = np.random.default_rng(0)
    rates = [1.0] * 6 + [0.0] * 6 + [0.3, 0.5, 0.8]
    n, draws, hits = 10, 300, 0
    for _ in range(draws):
        tables = [(int(rng.binomial(n, r)), n, int(rng.binomial(n, r)), n) for r in rates]
        hits += bool((conditional_minp_adjust(tables) < 0.05).any())
    assert hits / draws < 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_a_pre_registered_direction_holds_only_where_a_contrast_is_decided():
    rows = pd.DataFrame([
        {"lag": 8, "a": "lstm", "b": "rnn", "k_a": 12, "n_a": 12, "k_b": 0, "n_b": 12, "diff": 1.0, "decided": True},
        {"lag": 16, "a": "lstm", "b": "rnn", "k_a": 7, "n_a": 12, "k_b": 3, "n_b": 12, "diff": 1 / 3, "decided": False},
        {"lag": 8, "a": "gru", "b": "rnn", "k_a": 0, "n_a": 12, "k_b": 12, "n_b": 12, "diff": -1.0, "decided": True},
    ])
    assert C.direction_verdict(rows, "lstm", "rnn", "lag") == ("holds", "decided at lag 8: 12/12 against 0/12")
    assert C.direction_verdict(rows, "rnn", "lstm", "lag")[0] == "contradicted"   # the pair read the other way
    assert C.direction_verdict(rows, "rnn", "gru", "lag") == ("holds", "decided at lag 8: 12/12 against 0/12")
    assert C.direction_verdict(rows.iloc[1:2], "lstm", "rnn", "lag")[0] == "not shown"
    assert C.direction_verdict(rows, "lstm", "gru", "lag")[0] == "not tested"
    text = C.direction_lines(rows, [("lstm", "rnn", "real: 70 vs 40")], "arm", "lag")[0]
    assert "- real: 70 vs 40: lstm more often than rnn: **holds** (decided at lag 8" in text
