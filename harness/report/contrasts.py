"""Arm against arm at each distance: the contrast the bench's question asks ("where does a vanilla RNN
stop learning and an LSTM still converge?"), estimated directly rather than read off an average over
distances that can hide a crossing.

Pure functions over a DataFrame of per-run outcomes (`outcomes.run_outcomes`: one row per run with
`reached` 1/0, nan for a failed run, which is left out), in the rliable style: counts in, numbers
out; one function renders the markdown section the report leads with.

- `arm_contrasts`: per distance (and per level of the other varied factors), for each pair of groups
  (arms, or cells where the runs have no arm): k of n runs that reached the target in each, the
  difference of the two success rates with its exact 95% interval
  (`harness.stats.two_rates.rate_difference`: Chan and Zhang's exact unconditional interval, coverage
  at least 95% for every pair of true rates) and Boschloo's exact p-value; Holm's correction across
  every row returned. A row is *decided* only when its Holm-adjusted p-value is below 0.05 AND its
  interval excludes 0.
- `group_d50s`: per group, D50 (the distance at which the success rate crosses one half:
  `harness.stats.frontier.fit_d50`, a logistic fit on log(1 + D) with a stratified bootstrap
  interval), and the ratio of two groups' D50s with a stratified bootstrap interval
  (`harness.stats.d50_ratio`: runs resampled within each (group, distance) cell). Where a group's D50
  lies beyond the largest distance tested (it never declines there) or below the smallest, the ratio
  is infinite or zero and the text says so.
- `read_headline`: the pre-registered `headline:` section of a results folder's config.yaml (raw
  YAML; see `Headline`).
- `contrasts_markdown` / `report_section`: the sentences and table.

Seeds: under adaptive seeding (`adaptive:`) the number of seeds beyond the first min_seeds was chosen
by the outcomes, which invalidates every interval on those seeds. `report_section` therefore restricts
the contrasts to the seeds every configuration ran whatever its outcomes (seeds below min_seeds, or
below `headline.seeds` when that is smaller), and says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.config.headline import Headline, HeadlineError, read_headline, seed_text
from harness.names import cell_entry
from harness.report.fmt import fmt_value, md_table
from harness.report.outcomes import budget_steps, d50_range_text, distance_column, steps_text, unsplit_reason
from harness.report.stats import ordered_levels
from harness.stats.d50_ratio import N_BOOT, D50Ratio, range_bounds, ratio_from_draws
from harness.stats.frontier import D50Fit, d50_draws, fit_d50
from harness.stats.multiplicity import holm_adjust
from harness.stats.two_rates import rate_difference

__all__ = ["arm_contrasts", "group_d50s", "GroupD50", "Headline", "HeadlineError", "read_headline",
           "contrasts_markdown", "report_section", "group_column", "by_keys", "fixed_seeds"]

ALPHA = 0.05
CONFIDENCE = 0.95


# ============================================================================ which columns

def group_column(outcomes: pd.DataFrame) -> str | None:
    """The column whose values name the groups compared: 'arm' when the runs carry a non-null `arm`
    with at least two values, else 'cell' when it has at least two; None when neither does."""
    for col in ("arm", "cell"):
        if col in outcomes.columns and outcomes[col].nunique(dropna=True) > 1:
            return col
    return None


def by_keys(outcomes: pd.DataFrame, varying: Sequence[str], group: str, distance: str) -> list[str]:
    """The other varied factors the contrasts are made within: every key of `varying` but the group
    and the distance that varies *within* some group (a key constant within each group, e.g. the cell
    of an arm, is part of what the group is, not a factor to hold fixed)."""
    out = []
    for k in varying:
        if k in (group, distance, "seed") or k not in outcomes.columns:
            continue
        if (outcomes.groupby(group, dropna=False)[k].nunique(dropna=False) > 1).any():
            out.append(k)
    return out


def fixed_seeds(outcomes: pd.DataFrame, seeds: int | Sequence[int] | None) -> pd.DataFrame:
    """The runs whose seed is one of `seeds` (an integer n: seeds 0 .. n-1; all runs when `seeds` is
    None or there is no seed column)."""
    if seeds is None or "seed" not in outcomes.columns:
        return outcomes
    keep = range(seeds) if isinstance(seeds, int) else seeds
    return outcomes[pd.to_numeric(outcomes["seed"], errors="coerce").isin(list(keep))]


def _known(outcomes: pd.DataFrame, distance: str) -> pd.DataFrame:
    return outcomes[outcomes["reached"].notna() & outcomes[distance].notna()]


def _levels(outcomes: pd.DataFrame, by: Sequence[str]) -> list[tuple[dict, pd.DataFrame]]:
    if not by:
        return [({}, outcomes)]
    out = []
    for key, g in outcomes.groupby(list(by), dropna=False, sort=True):
        out.append((dict(zip(by, key if isinstance(key, tuple) else (key,))), g))
    return out


def default_pairs(levels: Sequence[object]) -> list[tuple[object, object]]:
    """Every pair (a, b) of groups with b before a in `levels` (so lstm − rnn, gru − rnn, gru − lstm)."""
    return [(levels[j], levels[i]) for i, j in itertools.combinations(range(len(levels)), 2)]


# ============================================================================ rates at each distance

CONTRAST_COLUMNS = ["a", "b", "k_a", "n_a", "k_b", "n_b", "diff", "low", "high", "p", "p_holm", "decided", "fragile"]


def arm_contrasts(outcomes: pd.DataFrame, group: str = "arm", distance: str | None = None,
                  by: Sequence[str] = (), pairs: Sequence[tuple[object, object]] | None = None,
                  confidence: float = CONFIDENCE, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per level of `by` × distance × pair (a, b) of groups where both have runs with an
    outcome: columns *by, the distance, a, b, k_a, n_a, k_b, n_b, diff (rate a − rate b, a fraction),
    low, high (`two_rates.rate_difference`'s exact interval at `confidence`: coverage at least `confidence`
    for every pair of true rates), p (Boschloo's two-sided exact p-value), p_holm (Holm's step-down
    adjustment across every row returned), decided (p_holm < alpha and the interval excludes 0) and
    fragile (`one_flip_undoes`: a decided row that one run's outcome, flipped, would leave undecided).

    `distance`: the distance column (default `outcomes.distance_column`). `pairs`: default every pair
    of the groups' levels (`default_pairs`, levels in registry order)."""
    distance = distance or distance_column(outcomes)
    by = list(by)
    cols = [*by, distance, *CONTRAST_COLUMNS]
    known = _known(outcomes, distance)
    if known.empty or group not in known.columns:
        return pd.DataFrame(columns=cols)
    pairs = list(pairs) if pairs is not None else default_pairs(ordered_levels(known[group]))
    rows = []
    for where, g in _levels(known, by):
        counts = g.groupby([distance, group], dropna=False)["reached"].agg(["sum", "count"])
        for d in sorted(g[distance].unique(), key=float):
            for a, b in pairs:
                if (d, a) not in counts.index or (d, b) not in counts.index:
                    continue
                ka, na = (int(x) for x in counts.loc[(d, a)])
                kb, nb = (int(x) for x in counts.loc[(d, b)])
                r = rate_difference(ka, na, kb, nb, confidence)
                # Clamped to the possible range: a difference of two rates lies in [-1, 1].
                rows.append({**where, distance: d, "a": a, "b": b, "k_a": ka, "n_a": na, "k_b": kb, "n_b": nb,
                             "diff": r.diff, "low": max(r.low, -1.0), "high": min(r.high, 1.0), "p": r.p_value})
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    out["p_holm"] = holm_adjust(out["p"].to_numpy(float))
    out["decided"] = (out["p_holm"] < alpha) & ((out["low"] > 0) | (out["high"] < 0))
    p = out["p"].to_numpy(float)
    out["fragile"] = [bool(r["decided"]) and one_flip_undoes(i, r, p, confidence, alpha)
                      for i, (_, r) in enumerate(out.iterrows())]
    return out


def one_flip_undoes(i: int, row: Mapping, p: np.ndarray, confidence: float = CONFIDENCE, alpha: float = ALPHA
                    ) -> bool:
    """Whether row `i` (decided) becomes undecided when one run's outcome flips toward no difference: a
    success of the group ahead becomes a failure, or a failure of the group behind a success (a fragility
    index of 1, Walsh et al. 2014). The row's exact interval and Boschloo p are computed anew and Holm's
    correction redone over every row's p-values `p`, the others unchanged. A run at the edge of learning
    flips with another seed, CPU kernel set or numerical path, so such a decision may not reproduce."""
    ka, na, kb, nb = (int(row[c]) for c in ("k_a", "n_a", "k_b", "n_b"))
    step = 1 if row["diff"] > 0 else -1
    for ka2, kb2 in ((ka - step, kb), (ka, kb + step)):
        if not (0 <= ka2 <= na and 0 <= kb2 <= nb):
            continue
        r = rate_difference(ka2, na, kb2, nb, confidence)
        q = p.copy()
        q[i] = r.p_value
        if not (holm_adjust(q)[i] < alpha and (r.low > 0 or r.high < 0)):
            return True
    return False


# ============================================================================ D50 and its ratio

@dataclass(frozen=True)
class GroupD50:
    """One group's D50 within one level of the other factors (`where`): the report's fit (estimate,
    interval or bracket, status), the distances tested, and the bootstrap draws for ratios."""

    group: object
    where: dict
    fit: D50Fit
    tested: list[float]
    point: float                      # `frontier.d50_draws`'s point: ±inf beyond / below the range
    draws: np.ndarray = field(repr=False)


def group_d50s(outcomes: pd.DataFrame, group: str, distance: str, by: Sequence[str] = (),
               groups: Sequence[object] | None = None, n_boot: int = N_BOOT, rng: int = 0) -> list[GroupD50]:
    """Per level of `by` and group (every group, or those in `groups`): `frontier.fit_d50` of
    reaching the target against distance, and `frontier.d50_draws` for ratios (stratified: runs
    resampled within each distance)."""
    known = _known(outcomes, distance)
    out = []
    for where, g in _levels(known, list(by)):
        levels = ordered_levels(g[group]) if groups is None else [x for x in groups if (g[group] == x).any()]
        for i, name in enumerate(levels):
            sub = g[g[group] == name]
            d, r = sub[distance].to_numpy(float), sub["reached"].to_numpy(float) == 1.0
            fit = fit_d50(d, r, n_boot=n_boot, rng=rng)
            point, draws = d50_draws(d, r, n_boot=n_boot, rng=np.random.default_rng([rng, i]))
            out.append(GroupD50(name, where, fit, sorted(set(float(x) for x in d)), point, draws))
    return out


# ============================================================================ the headline section

def where_column(outcomes: pd.DataFrame, key: str) -> str | None:
    """The column a `headline.where` key names: itself, its last dotted part ('model.readout' ->
    'readout'), or a dotted column ending in it ('readout' -> 'model.readout')."""
    if key in outcomes.columns:
        return key
    short = key.rsplit(".", 1)[-1]
    if short in outcomes.columns:
        return short
    return next((c for c in outcomes.columns if str(c).endswith("." + short)), None)


def apply_where(outcomes: pd.DataFrame, where: Mapping) -> pd.DataFrame:
    """The runs at the `where` levels (compared as text, so 0.5 and '0.5' match). HeadlineError when
    a key names no column."""
    out = outcomes
    for key, value in where.items():
        col = where_column(out, str(key))
        if col is None:
            raise HeadlineError(f"headline.where: no column {key!r} in the runs")
        out = out[out[col].astype(str) == str(value)]
    return out


# ============================================================================ words

def _pts(x: float) -> str:
    return f"{100 * x:+.0f}"


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.2g}" if p >= 0.001 else f"{p:.1e}")


def _d(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.2g}"


def _name(group: str, value: object) -> str:
    """A cell by its registry label ('the LSTM'), an arm as 'arm lstm-fb0', anything else as given."""
    if group == "cell" and (entry := cell_entry(str(value))) is not None:
        return entry.label
    return f"arm {value}" if group == "arm" else str(value)


def _where_text(where: Mapping) -> str:
    return ", ".join(f"{k} {fmt_value(v)}" for k, v in where.items())


def decision_text(row: Mapping, alpha: float = ALPHA) -> str:
    """'decided', 'decided† (one run flipping undoes it)' or why not: the interval includes 0, and/or the
    Holm-adjusted p-value is not below alpha."""
    if row["decided"]:
        return "decided† (one run flipping undoes it)" if row.get("fragile") else "decided"
    why = []
    if row["low"] <= 0.0 <= row["high"]:
        why.append("the interval includes 0")
    if not row["p_holm"] < alpha:
        why.append(f"Holm p ≥ {alpha:g}")
    return "not decided (" + "; ".join(why) + ")"


def contrast_sentence(row: Mapping, group: str, distance: str) -> str:
    """'At lag 32 the LSTM reached the target in 5/5 runs, the RNN in 0/5; difference +100 points
    [+38, +100] (Boschloo p = 0.002, Holm 0.02): decided.'"""
    where = {k: v for k, v in row.items() if k not in (distance, *CONTRAST_COLUMNS)}
    scope = f" ({_where_text(where)})" if where else ""
    return (f"At {distance} {fmt_value(row[distance])}{scope} {_name(group, row['a'])} reached the target in "
            f"{row['k_a']}/{row['n_a']} runs, {_name(group, row['b'])} in {row['k_b']}/{row['n_b']}; difference "
            f"{_pts(row['diff'])} points [{_pts(row['low'])}, {_pts(row['high'])}] (Boschloo p = {_p(row['p'])}, "
            f"Holm {_p(row['p_holm'])}): {decision_text(row)}.")


def d50_value_text(fit: D50Fit, tested: Sequence[float], distance: str, budget: float | None = None) -> str:
    """'41 [33, 52]', 'between 32 and 64 (a bracket: …)', 'beyond the largest distance tested (lag 64: …)', …;
    a run that did not reach the target is said not to within `budget` steps."""
    lo_t, hi_t = min(tested), max(tested)
    if fit.status == "fit":
        low = f"< {_d(lo_t)}" if fit.low is None else _d(fit.low)
        high = f"> {_d(hi_t)}" if fit.high is None else _d(fit.high)
        extra = " (extrapolated beyond the distances tested)" if fit.extrapolated else ""
        return f"{_d(fit.d50)} [{low}, {high}]{extra}"
    if fit.status == "separated" and not fit.perfect:
        return f"not estimable ({unsplit_reason(fit, distance)}; the data put it {d50_range_text(fit, distance)})"
    if fit.status == "separated":
        return f"between {_d(fit.low)} and {_d(fit.high)} (a bracket: the outcomes split perfectly)"
    within = steps_text(budget)
    return {"all_reached": (f"beyond the largest distance tested ({distance} {_d(hi_t)}: every run reached the target "
                            f"within {within})"),
            "none_reached": (f"below the smallest distance tested ({distance} {_d(lo_t)}: no run reached the target "
                             f"within {within})"),
            "no_decline": "none (success does not fall with distance)",
            "one_distance": f"unknown (only {distance} {_d(lo_t)} was tested)"}[fit.status]


def _range_words(span: tuple[float, float] | None, bounded: bool, confidence: float) -> str:
    """'between 0 and 8', 'above 16', 'at most 8', or a fitted D50's '[12, 25] (its 95% interval)'."""
    if span is None:
        return "unknown"
    lo, hi = span
    if not bounded:
        high = "open" if math.isinf(hi) else _d(hi)
        return f"in [{_d(lo)}, {high}] (its {100 * confidence:g}% bootstrap interval)"
    if math.isinf(hi):
        return f"above {_d(lo)}"
    return f"at most {_d(hi)}" if lo == 0.0 else f"between {_d(lo)} and {_d(hi)}"


def ratio_text(r: D50Ratio, a: str, b: str) -> str:
    """'ratio lstm/rnn 2.3 [1.6, 3.4]', or where a D50 is only known to lie in a range, the bounds
    those ranges give ('ratio lstm/rnn at least 2 (bounds …: lstm's D50 above 16, rnn's at most 8)')."""
    if r.bracketed:
        lo, hi = r.low, r.high
        if lo > 0 and math.isinf(hi):
            span = f"at least {lo:.2g}, no upper bound"
        elif lo > 0:
            span = f"between {lo:.2g} and {hi:.2g}"
        elif math.isfinite(hi):
            span = f"at most {hi:.2g}"
        else:
            return (f"ratio {a}/{b}: not defined (neither D50 is bounded on both sides: {a}'s "
                    f"{_range_words(r.range_a, 'a' in r.bracketed, r.confidence)}, {b}'s "
                    f"{_range_words(r.range_b, 'b' in r.bracketed, r.confidence)})")
        return (f"ratio {a}/{b} {span} (bounds, not an interval: {a}'s D50 lies "
                f"{_range_words(r.range_a, 'a' in r.bracketed, r.confidence)}, {b}'s "
                f"{_range_words(r.range_b, 'b' in r.bracketed, r.confidence)})")
    conf = f"{100 * r.confidence:g}%"
    if math.isnan(r.ratio):
        return (f"ratio {a}/{b}: not defined (neither D50 lies inside the distances tested, or one does not "
                f"exist)")
    if math.isinf(r.ratio):
        bound = f"; {conf} lower bound {r.low:.2g}" if math.isfinite(r.low) and r.low > 0 else ""
        return f"ratio {a}/{b}: unbounded ({a}'s D50 lies beyond the largest distance tested{bound})"
    if r.ratio == 0.0:
        bound = f"; {conf} upper bound {r.high:.2g}" if math.isfinite(r.high) else ""
        return f"ratio {a}/{b}: 0 ({b}'s D50 lies beyond the largest distance tested{bound})"
    high = "unbounded" if math.isinf(r.high) else f"{r.high:.2g}"
    return f"ratio {a}/{b} {r.ratio:.2g} [{r.low:.2g}, {high}]"


def _table(rows: pd.DataFrame, group: str, distance: str, by: Sequence[str]) -> str:
    out = []
    for _, r in rows.iterrows():
        out.append({**{k: fmt_value(r[k]) for k in by}, distance: fmt_value(r[distance]),
                    "comparison": f"{r['a']} − {r['b']}", "reached (a)": f"{r['k_a']}/{r['n_a']}",
                    "reached (b)": f"{r['k_b']}/{r['n_b']}",
                    "difference, points [95% exact CI]": f"{_pts(r['diff'])} [{_pts(r['low'])}, {_pts(r['high'])}]",
                    "Boschloo p": _p(r["p"]), "Holm p": _p(r["p_holm"]), "decision": decision_text(r)})
    return md_table(pd.DataFrame(out))


def d50_lines(d50s: Sequence[GroupD50], ratio_pairs: Sequence[tuple[object, object]], distance: str,
              confidence: float = CONFIDENCE, budget: float | None = None) -> list[str]:
    """One line per level of the other factors: 'D50: rnn 18 [12, 25], lstm 41 [33, 52]; ratio lstm/rnn
    2.3 [1.6, 3.4].'"""
    lines = []
    wheres: list[dict] = []
    for g in d50s:
        if g.where not in wheres:
            wheres.append(g.where)
    for where in wheres:
        here = {str(g.group): g for g in d50s if g.where == where}
        parts = [f"{name} {d50_value_text(g.fit, g.tested, distance, budget)}" for name, g in here.items()]
        ratios = []
        for a, b in ratio_pairs:
            ga, gb = here.get(str(a)), here.get(str(b))
            if ga is not None and gb is not None:
                r = ratio_from_draws(ga.point, ga.draws, gb.point, gb.draws, confidence)
                r = range_bounds(r, ga.fit, gb.fit)
                ratios.append(ratio_text(r, str(a), str(b)))
        scope = f" ({_where_text(where)})" if where else ""
        lines.append(f"D50{scope}: " + ", ".join(parts) + ("; " + "; ".join(ratios) if ratios else "") + ".")
    return lines


def direction_verdict(rows: pd.DataFrame, better: str, worse: str, distance: str) -> tuple[str, str]:
    """('holds' | 'holds†' | 'contradicted' | 'not shown' | 'not tested', the evidence): whether some decided
    row of `rows` (arm_contrasts) has `better` reaching the target more often than `worse`, and none the
    reverse; 'holds†' when every such row is fragile (one run's outcome flipping would undo it)."""
    a, b = rows["a"].astype(str), rows["b"].astype(str)
    same = rows[(a == better) & (b == worse)].assign(sign=1.0)
    flipped = rows[(a == worse) & (b == better)].assign(sign=-1.0)
    both = pd.concat([same, flipped])
    if both.empty:
        return "not tested", f"{better} − {worse} is not among the contrasts (headline.contrasts)"
    decided = both[both["decided"]]
    up, down = decided[decided["diff"] * decided["sign"] > 0], decided[decided["diff"] * decided["sign"] < 0]

    def where(r: pd.Series) -> str:
        kb, nb, kw, nw = ((r["k_a"], r["n_a"], r["k_b"], r["n_b"]) if r["sign"] > 0
                          else (r["k_b"], r["n_b"], r["k_a"], r["n_a"]))
        return f"{distance} {fmt_value(r[distance])}: {kb}/{nb} against {kw}/{nw}"

    if len(down):
        return "contradicted", "decided the other way at " + "; ".join(where(r) for _, r in down.iterrows())
    if len(up):
        evidence = "decided at " + "; ".join(where(r) for _, r in up.iterrows())
        if up["fragile"].astype(bool).all():
            return "holds†", evidence + ", where one run's outcome flipping would undo it"
        return "holds", evidence
    return "not shown", "no decided difference at any " + distance


def direction_lines(rows: pd.DataFrame, directions: Sequence[tuple[str, str, str]], group: str,
                    distance: str) -> list[str]:
    """One bullet per pre-registered direction (headline.directions): '<fact>: <better> reaches the target
    more often than <worse> at some distance: holds (decided at lag 8: 12/12 against 0/12).'"""
    if not directions:
        return []
    out = ["Pre-registered directions (`headline.directions`: facts the task must show, each as 'this "
           f"{group} reaches the target more often than that one at some {distance}, decided'):"]
    for better, worse, fact in directions:
        verdict, evidence = direction_verdict(rows, better, worse, distance)
        lead = f"{fact}: " if fact else ""
        out.append(f"- {lead}{better} more often than {worse}: **{verdict}** ({evidence}).")
    return ["\n".join(out)]


def contrasts_markdown(outcomes: pd.DataFrame, group: str, distance: str, by: Sequence[str] = (), *,
                       pairs: Sequence[tuple[object, object]] | None = None,
                       d50_groups: Sequence[object] | None = None,
                       ratio_pairs: Sequence[tuple[object, object]] | None = None,
                       directions: Sequence[tuple[str, str, str]] = (),
                       note: str = "", n_boot: int = N_BOOT, rng: int = 0) -> str:
    """The section the report leads with: one sentence per decided contrast (and one line for how many
    are not decided: a sentence is never written for a difference the data do not decide), the D50 of
    each group with the D50 ratios, and the table of every contrast. `note`: a line said first (which
    seeds were used, and why). '' when there is no contrast to make."""
    rows = arm_contrasts(outcomes, group, distance, by, pairs)
    if rows.empty:
        return ""
    levels = ordered_levels(_known(outcomes, distance)[group])
    pairs_used = list(pairs) if pairs is not None else default_pairs(levels)
    out = [note] if note else []
    decided = rows[rows["decided"]]
    out += [contrast_sentence(r, group, distance) for _, r in decided.iterrows()]
    rest = len(rows) - len(decided)
    if rest:
        out.append(f"{'The other' if len(decided) else 'All'} {rest} comparison{'s' if rest != 1 else ''} of "
                   f"{group} against {group} at one {distance} {'remain' if rest != 1 else 'remains'} undecided "
                   "(the exact interval includes 0, or the Holm-adjusted p-value is 0.05 or more; table below).")
    d50s = group_d50s(outcomes, group, distance, by, d50_groups, n_boot=n_boot, rng=rng)
    out += d50_lines(d50s, ratio_pairs if ratio_pairs is not None else pairs_used, distance,
                     budget=budget_steps(outcomes))
    out += direction_lines(rows, directions, group, distance)
    method = (f"Each row compares the share of runs that reached the target between two {group}s at one "
              f"{distance}: the difference with its exact 95% interval (Chan–Zhang: inverts two one-sided exact "
              "unconditional score tests, coverage at least 95% for any true rates), Boschloo's exact p-value, "
              f"Holm's correction over the {len(rows)} rows; 'decided' needs both Holm p < 0.05 and an interval "
              "that excludes 0; 'decided†': one run's outcome flipping toward no difference (a success of the "
              f"{group} ahead lost, or one of the {group} behind gained) would leave it undecided, and a run at "
              "the edge of learning flips with another seed, machine or kernel set, so it may not reproduce. "
              "D50: the distance at which the success rate crosses one half (logistic fit on "
              "log(1 + D), 95% stratified bootstrap interval, somewhat optimistic at few seeds); the ratio's "
              "interval resamples runs within each group and distance.")
    return "\n\n".join(out) + "\n\n" + method + "\n\n" + _table(rows, group, distance, by)


# ============================================================================ the report's hook

def _adaptive_min_seeds(data: Any) -> int | None:
    cfg = getattr(data, "cfg", None)
    if cfg is not None and getattr(cfg, "adaptive", None) is not None:
        return int(cfg.adaptive.min_seeds)
    info = getattr(data, "adaptive", None)
    if isinstance(info, dict) and isinstance(info.get("min_seeds"), int):
        return int(info["min_seeds"])
    return None


def seeds_note(headline: Headline | None, adaptive_min: int | None) -> tuple[tuple[int, ...] | None, str]:
    """(seeds to keep, the line that says why): a fixed design's seeds. Under adaptive seeding only
    seeds below min_seeds ran whatever the outcomes; a headline's `seeds` limits them further."""
    planned = headline.seeds if headline is not None else None
    if adaptive_min is None:
        if planned is None:
            return None, ""
        explored = headline.exploration_seeds
        if explored:
            line = (f"Confirmatory seeds {headline.seed_range()} of every configuration (`headline.seeds`), "
                    f"disjoint from the exploration seeds {seed_text(explored)} that shaped the design "
                    "(`headline.exploration_seeds`).")
        else:
            line = (f"Seeds {headline.seed_range()} of every configuration (`headline.seeds`); the config names no "
                    "exploration seeds, so nothing says these seeds were unseen when the design was fixed.")
        return planned, line
    first = tuple(range(adaptive_min))
    keep = first if planned is None else tuple(s for s in planned if s < adaptive_min)
    line = (f"Adaptive seeding chose how many seeds each configuration got beyond the first {adaptive_min}, so "
            f"intervals on those extra seeds are not valid (exploratory); these contrasts use seeds "
            f"{seed_text(keep)} of every configuration, which ran whatever the outcomes.")
    if planned is not None and len(planned) > len(keep):
        line += (f" The headline asks for seeds {headline.seed_range()}, more than adaptive seeding "
                 "fixes: run the headline configurations at a fixed number of seeds to test it as registered.")
    return keep, line


def report_section(data: Any) -> str:
    """The contrasts section for `harness report` (a `ReportData`): '' unless the runs vary a distance
    and have at least two groups. Reads the headline from the config text as run."""
    outcomes = data.outcomes
    if outcomes is None or outcomes.empty or "reached" not in outcomes.columns:
        return ""
    distance = distance_column(outcomes)
    try:
        headline = read_headline(getattr(data, "config_text", None))
        if headline is not None and headline.where:
            outcomes = apply_where(outcomes, headline.where)
    except (HeadlineError, ValueError) as e:
        return f"_The config's `headline:` section could not be read: {e}._\n"
    group = headline.group if headline is not None and headline.group else group_column(outcomes)
    if (group is None or group not in outcomes.columns or distance not in outcomes.columns
            or outcomes[distance].nunique(dropna=True) < 2 or outcomes[group].nunique(dropna=True) < 2):
        return ""
    keep, note = seeds_note(headline, _adaptive_min_seeds(data))
    used = fixed_seeds(outcomes, keep)
    by = by_keys(used, list(getattr(data, "varying", [])), group, distance)
    h = headline or Headline()
    md = contrasts_markdown(used, group, distance, by, pairs=h.contrasts or None, d50_groups=h.d50 or None,
                            ratio_pairs=h.d50_ratios or None, directions=h.directions, note=note)
    return md and f"### {group.capitalize()} against {group} at each {distance}\n\n{md}\n"
