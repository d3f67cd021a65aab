"""Paired effects with the seed as the unit, corrected together across a report (Holm).

An effect switches one factor from its baseline level to another, holding every other factor and
the seed fixed (matched pairs). The seeds are the independent replicates; the settings of the other
factors are a fixed design. So each seed contributes one number: its paired differences averaged
over the settings of the other factors, and the interval is Student's t over those per-seed
numbers (exact for normal per-seed averages at any number of seeds; the estimand is the effect
averaged over the design's other settings). Two measures per effect:

- `acc`: test accuracy, level - baseline (a fraction; the report prints points);
- `time`: the restricted time to target, min(T, tau) steps, level - baseline (negative: the level
  reaches the target sooner). tau is the earliest step at which a run of the comparison that did
  not reach the target was censored, so min(T, tau) is known exactly for every run and its mean is
  the restricted mean (RMST) of the Kaplan-Meier curve; no run is dropped for not reaching it.

No accuracy row is formed where a run of the comparison stopped at the target (`train.stop_at_target`,
`stop_reason` 'target'): such a run's test accuracy is that of a model stopped at the first evaluation
that reached the target, so comparing it across distances or configurations measures when the runs
stopped, not how well they learned (`STOP_AT_TARGET_NOTE`).

Where a distance varies (`outcomes.distance_column`: lag, or pad_size), no row averages over it: the
distance's own effect is given within each group (arm, or cell) and never averaged over groups, and
every other factor's effect within each distance. Averaging a steps-to-target difference over
distances mixes "sooner" at one with "never" at another (the RNN that never reaches the target at lag
8 with the LSTM that gets there 25 steps later). A time row where one side's runs never reached the
target says so (`EffectRow.never`): the report words it as "did not reach the target within N steps",
not as a number of steps.

Intervals are clamped to the possible range (`correct`): a difference of accuracies to [-1, 1], a
difference of restricted times to [-tau, tau]; `EffectRow.clamped` says where that cut one.

Every row of a report (both measures, every factor and scope) forms one family for Holm's
correction (`harness.stats.paired.corrected_effects`), and a difference is claimed only when the
corrected interval excludes zero and there are at least `paired.MIN_PAIRS` seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.report.fmt import fmt_value
from harness.report.outcomes import distance_column
from harness.report.stats import group_key, ordered_levels, varying
from harness.stats.paired import MIN_PAIRS, EffectDecision, all_equal, corrected_effects, replication_probability

STOP_AT_TARGET_NOTE = ("Test-accuracy comparisons are left out wherever runs stopped at the target "
                       "(`train.stop_at_target`): such a run ends at the first evaluation that reaches the target, "
                       "so its test accuracy is that of a model stopped there, and comparing it measures when runs "
                       "stopped, not how well they learned.")


def stopped_at_target(runs: pd.DataFrame) -> bool:
    """Whether any run ended because it reached the target (`stop_reason` 'target')."""
    return "stop_reason" in runs.columns and bool((runs["stop_reason"] == "target").any())


@dataclass(frozen=True)
class EffectRow:
    """One effect row. `diffs`: one value per seed (the seed's mean paired difference over the
    settings of the other factors). `pairs`: matched run pairs behind them; `left_out`: matched pairs
    without the measure on both sides (a run diverged or failed). For time rows, `tau` (steps) and
    `reached` (pairs where both / only the level / only the baseline / neither reached the target).
    `decision`: set by `correct`. `scope`: the (key, value) settings the row is restricted to (`within`
    in words: 'all', 'arm=rnn', 'lag=16'); `primary`: a row that stands where an average over every
    group or distance would have been (the findings state it). `never`: for a time row, 'level' or
    'baseline' when every run of that side failed to reach the target, with `never_within` the
    fewest steps any of them ran (so "did not reach the target within never_within steps" holds for
    each); `clamped`: the interval was cut to the possible range."""

    factor: str
    baseline: object
    level: object
    within: str
    measure: str
    diffs: np.ndarray
    pairs: int
    left_out: int
    strata: int
    tau: float | None = None
    reached: tuple[int, int, int, int] = (0, 0, 0, 0)
    decision: EffectDecision | None = None
    near_frontier: bool = False   # pools a configuration near the frontier (see mark_near_frontier)
    scope: tuple[tuple[str, object], ...] = ()
    primary: bool = False
    never: str | None = None
    never_within: float | None = None
    clamped: bool = False

    @property
    def test(self) -> str:
        """The test the decision rests on: 'paired t' or, where every seed's difference is the same (no t
        interval), 'sign test'."""
        return "sign test" if all_equal(self.diffs) else "paired t"

    @property
    def comparison(self) -> tuple:
        """What the row compares, whatever the measure: (factor, baseline, level, within)."""
        return (self.factor, str(self.baseline), str(self.level), self.within)

    @property
    def seeds(self) -> int:
        return int(self.diffs.size)


def matched(outcomes: pd.DataFrame, factor: str, baseline: object, level: object,
            match_on: Sequence[str]) -> pd.DataFrame:
    """Runs at `baseline` joined with runs at `level` on `match_on` (the other factors and the
    seed); columns acc_a/acc_b, reached_a/reached_b, time_a/time_b and stop_a/stop_b (the runs'
    stop_reason; None where not recorded) (a: baseline). A duplicate run of one setting keeps its
    latest row."""
    match_on = list(match_on)

    def side(value: object, tag: str) -> pd.DataFrame:
        d = outcomes[outcomes[factor] == value]
        if "started_at" in d.columns:
            d = d.sort_values("started_at", na_position="first", kind="stable")
        d = d.drop_duplicates(match_on, keep="last")
        d = d.assign(stop_reason=d["stop_reason"] if "stop_reason" in d.columns else None)
        return d[[*match_on, "test_acc", "reached", "time", "stop_reason"]].rename(
            columns={"test_acc": f"acc_{tag}", "reached": f"reached_{tag}", "time": f"time_{tag}",
                     "stop_reason": f"stop_{tag}"})

    return side(baseline, "a").merge(side(level, "b"), on=match_on, how="inner")


def per_seed(p: pd.DataFrame, diff: pd.Series) -> np.ndarray:
    """The mean of `diff` over each seed's pairs (nan differences left out), one value per seed."""
    d = pd.DataFrame({"seed": p["seed"].to_numpy(), "d": diff.to_numpy(dtype=float)}).dropna()
    return d.groupby("seed", sort=True)["d"].mean().to_numpy(dtype=float)


def restricted_times(p: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """(pairs with an outcome on both sides, tau): tau is the earliest censoring step among the runs
    that did not reach the target (the latest event when every run reached it); None when no run
    reached the target (the restricted times would all equal tau: nothing to compare)."""
    q = p[p["reached_a"].notna() & p["reached_b"].notna()]
    times = np.concatenate([q["time_a"], q["time_b"]])
    hit = np.concatenate([q["reached_a"], q["reached_b"]]) == 1.0
    if not hit.any():
        return q, None
    return q, float(times[~hit].min() if (~hit).any() else times.max())


def effect_pair_rows(outcomes: pd.DataFrame, factor: str, baseline: object, level: object,
                     match_on: Sequence[str], within: str, scope: Sequence[tuple[str, object]] = (),
                     primary: bool = False) -> list[EffectRow]:
    """The accuracy row (unless a run of the comparison stopped at the target) and, when any run
    reached the target, the time row of one comparison."""
    p = matched(outcomes, factor, baseline, level, match_on)
    if p.empty:
        return []
    others = [k for k in match_on if k != "seed"]
    strata = int(p[others].drop_duplicates().shape[0]) if others else 1
    acc = p["acc_b"] - p["acc_a"]
    head = dict(factor=factor, baseline=baseline, level=level, within=within, pairs=len(p), strata=strata,
                scope=tuple(scope), primary=primary)
    stopped = bool(((p["stop_a"] == "target") | (p["stop_b"] == "target")).any())
    rows = [] if stopped else [EffectRow(**head, measure="acc", diffs=per_seed(p, acc),
                                         left_out=int(acc.isna().sum()))]
    q, tau = restricted_times(p)
    if tau is not None:
        ra, rb = np.minimum(q["time_a"], tau), np.minimum(q["time_b"], tau)
        fa, fb = (q["reached_a"] == 1.0) & (q["time_a"] <= tau), (q["reached_b"] == 1.0) & (q["time_b"] <= tau)
        counts = (int((fa & fb).sum()), int((fb & ~fa).sum()), int((fa & ~fb).sum()), int((~fa & ~fb).sum()))
        never, within_steps = None, None
        for side, tag in (("b", "level"), ("a", "baseline")):
            if not (q[f"reached_{side}"] == 1.0).any():
                never, within_steps = tag, float(q[f"time_{side}"].min())
        rows.append(EffectRow(**head, measure="time", diffs=per_seed(q, rb - ra), left_out=len(p) - len(q),
                              tau=tau, reached=counts, never=never, never_within=within_steps))
    return rows


def varying_distance(outcomes: pd.DataFrame, keys: Sequence[str]) -> str | None:
    """The distance column (`outcomes.distance_column`) when it is one of `keys` and varies, else None."""
    d = distance_column(outcomes)
    return d if d in keys and d in outcomes.columns and outcomes[d].nunique(dropna=True) > 1 else None


def _scope_text(scope: Sequence[tuple[str, object]]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in scope) or "all"


def scopes(outcomes: pd.DataFrame, factor: str, group: str | None, distance: str | None
           ) -> list[tuple[tuple[tuple[str, object], ...], bool]]:
    """The scopes a factor's effect is given in, each (settings, primary). Without a varying distance:
    over all runs (primary) and, for a factor other than the group, within each group. With one: the
    distance's effect within each group (primary; no average over groups), every other factor's within
    each distance (primary) and, for a factor other than the group, within each group and distance."""
    groups = ordered_levels(outcomes[group]) if group else []
    if distance is None:
        out = [((), True)]
        if factor != group:
            out += [(((group, c),), False) for c in groups]
        return out
    if factor == distance:
        return [(((group, c),), True) for c in groups] if groups else [((), True)]
    dists = sorted(outcomes[distance].dropna().unique(), key=float)
    out = [(((distance, d),), True) for d in dists]
    if factor != group:
        out += [(((group, c), (distance, d)), False) for c in groups for d in dists]
    return out


def in_scope(outcomes: pd.DataFrame, scope: Sequence[tuple[str, object]]) -> pd.DataFrame:
    """The runs at every (key, value) of `scope`."""
    mask = np.ones(len(outcomes), dtype=bool)
    for k, v in scope:
        mask &= (outcomes[k] == v).to_numpy()
    return outcomes[mask]


def effect_rows(outcomes: pd.DataFrame, keys: Sequence[str]) -> list[EffectRow]:
    """For every key that varies: each level against the first (the baseline: 'none' first for
    layernorm, 'rnn' first for cell, numbers ascending), over all runs and, for the factors other
    than the cell, within each cell (with arms: the arm in place of the cell). Uncorrected
    (`decision` None): pass the list to `correct`."""
    out: list[EffectRow] = []
    keys = list(keys)
    g = group_key(outcomes)
    multi = g in outcomes.columns and outcomes[g].nunique() > 1
    distance = varying_distance(outcomes, keys)
    for factor in varying(outcomes, keys):
        levels = ordered_levels(outcomes[factor])
        match_on = [k for k in keys if k != factor] + ["seed"]
        for scope, primary in scopes(outcomes, factor, g if multi else None, distance):
            sub = in_scope(outcomes, scope)
            for level in levels[1:]:
                out += effect_pair_rows(sub, factor, levels[0], level, match_on, _scope_text(scope), scope, primary)
    return out


def correct(rows: Sequence[EffectRow]) -> list[EffectRow]:
    """The rows with their decisions: Holm-corrected t intervals over the whole family, each clamped to
    the range its measure can take (`possible_range`)."""
    if not rows:
        return []
    decisions = corrected_effects([r.diffs for r in rows])
    out = []
    for r, d in zip(rows, decisions):
        low, high = possible_range(r)
        c_low, c_high = (d.low, d.high) if math.isnan(d.low) else (max(d.low, low), min(d.high, high))
        clamped = not math.isnan(d.low) and (c_low != d.low or c_high != d.high)
        out.append(replace(r, decision=replace(d, low=c_low, high=c_high), clamped=clamped))
    return out


def possible_range(r: EffectRow) -> tuple[float, float]:
    """The values a row's mean difference can take: [-1, 1] for accuracy (a fraction), [-tau, tau] steps
    for the restricted time to target (each side's restricted time lies in [0, tau])."""
    if r.measure == "time" and r.tau is not None:
        return (-float(r.tau), float(r.tau))
    return (-1.0, 1.0)


def decision_counts(rows: Sequence[EffectRow]) -> tuple[int, int, dict[str, int]]:
    """(comparisons, decided, decided per test): rows of the same comparison (factor, baseline, level,
    scope) on two measures count once, decided when either measure is; the test is that of its decided
    rows ('paired t', 'sign test'; both named where its two measures rest on different ones)."""
    by: dict[tuple, list[EffectRow]] = {}
    for r in rows:
        by.setdefault(r.comparison, []).append(r)
    tests: dict[str, int] = {}
    decided = 0
    for group in by.values():
        claimed = [r for r in group if r.decision is not None and r.decision.claimed]
        if claimed:
            decided += 1
            name = " and ".join(sorted({r.test for r in claimed}))
            tests[name] = tests.get(name, 0) + 1
    return len(by), decided, tests


def compute_effects(outcomes: pd.DataFrame, keys: Sequence[str]) -> list[EffectRow]:
    """`effect_rows` then `correct`: every effect row of a report, decided."""
    return correct(effect_rows(outcomes, keys))


REPLICATION_FLOOR = 0.8   # a claimed row less likely than this to be claimed again is marked
FLIP_DRAWS = 200          # simulated replications of the runs near the frontier, per claimed row


def mark_near_frontier(rows: Sequence[EffectRow], outcomes: pd.DataFrame, success: pd.DataFrame,
                       keys: Sequence[str]) -> list[EffectRow]:
    """The claimed rows with `near_frontier` set where another machine may well not claim them
    (probability below REPLICATION_FLOOR): by seed noise (`paired.replication_probability`: the
    interval only just clears zero), or by runs flipping near the frontier (`flip_probability`)."""
    out = []
    for r in rows:
        if r.decision is None or not r.decision.claimed:
            out.append(r)
            continue
        near = replication_probability(r.decision) < REPLICATION_FLOOR
        if not near and "near_frontier" in success.columns:
            near = flip_probability(r, outcomes, success, keys) < REPLICATION_FLOOR
        out.append(replace(r, near_frontier=near))
    return out


def flip_probability(r: EffectRow, outcomes: pd.DataFrame, success: pd.DataFrame, keys: Sequence[str],
                     draws: int = FLIP_DRAWS, rng: int = 0) -> float:
    """The share of simulated replications in which the claimed row `r` is claimed again (same sign,
    at its own corrected level), when each run of a configuration near the frontier (success's
    `near_frontier`) reaches the target or not anew with that configuration's smoothed rate
    (k + 0.5) / (n + 1), the other runs kept. A run that flips moves its test accuracy by the gap
    between the medians of the runs that reached the target and those that did not (all runs), and
    its time to target to tau (now failing) or to the median time of the runs that reached it.

    Why: near the edge of learning a run's outcome is chaotic (a seed, a CPU kernel set flips it),
    and at 5 seeds one such outlier undoes a t interval, unless the row averages it over many
    settings. 1.0 when the row pools no configuration near the frontier."""
    keys = list(keys)
    sub = in_scope(outcomes, r.scope)
    match_on = [k for k in keys if k != r.factor] + ["seed"]
    p = matched(sub, r.factor, r.baseline, r.level, match_on)
    rates = {}
    for side, value in (("a", r.baseline), ("b", r.level)):
        rates[side] = _flip_rates(p, success, keys, r.factor, value)
    if not any(np.any(v > 0) for v in rates.values()):
        return 1.0
    known = outcomes[outcomes["reached"].notna()]
    hit, miss = known[known["reached"] == 1.0], known[known["reached"] == 0.0]
    gap = float(hit["test_acc"].median() - miss["test_acc"].median()) if len(hit) and len(miss) else 0.0
    t_hit = float(hit["time"].median()) if len(hit) else math.nan
    gen = np.random.default_rng(rng)
    value = {}
    for side in ("a", "b"):
        was = p[f"reached_{side}"].to_numpy(float)[None, :]                      # (1, pairs)
        prob = rates[side][None, :]
        drawn = (gen.random((draws, len(p))) < prob).astype(float)               # (draws, pairs)
        now = np.where((prob > 0) & ~np.isnan(was), drawn, was)
        flipped = (now != was) & ~np.isnan(was)                                  # a run with no outcome stays so
        if r.measure == "acc":
            moved = np.where(flipped, np.where(now == 1.0, gap, -gap), 0.0)
            value[side] = p[f"acc_{side}"].to_numpy(float)[None, :] + moved
        else:
            t = p[f"time_{side}"].to_numpy(float)[None, :]
            value[side] = np.minimum(np.where(flipped, np.where(now == 1.0, t_hit, r.tau), t), r.tau)
    diff = value["b"] - value["a"]                                                  # (draws, pairs)
    seeds = pd.factorize(p["seed"])[0]
    onehot = np.zeros((len(p), seeds.max() + 1))
    onehot[np.arange(len(p)), seeds] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (np.nan_to_num(diff) @ onehot) / (~np.isnan(diff) @ onehot)             # (draws, seeds): per-seed means
    n = (~np.isnan(d)).sum(axis=1)
    mean = np.nanmean(d, axis=1)
    sd = np.sqrt(np.nansum((d - mean[:, None]) ** 2, axis=1) / np.maximum(n - 1, 1))
    c = sps.t.ppf(1.0 - (1.0 - r.decision.confidence) / 2.0, np.maximum(n - 1, 1))
    half = c * sd / np.sqrt(np.maximum(n, 1))
    again = (n >= MIN_PAIRS) & ((mean - half > 0) if r.decision.direction > 0 else (mean + half < 0))
    return float(again.mean())


def _flip_rates(p: pd.DataFrame, success: pd.DataFrame, keys: Sequence[str], factor: str,
                value: object) -> np.ndarray:
    """Per matched pair: the smoothed success rate of its run's configuration on this side when that
    configuration is near the frontier, else 0 (its run is kept as it is)."""
    cols = [k for k in keys if k != factor]
    near = success[success["near_frontier"] & (success[factor].astype(str) == str(value))]
    rate = {tuple(str(v) for v in row[cols]): (row["k"] + 0.5) / (row["n"] + 1) for _, row in near.iterrows()}
    return np.array([rate.get(tuple(str(v) for v in row), 0.0) for row in p[cols].itertuples(index=False)],
                    dtype=float)


def holm_note(rows: Sequence[EffectRow]) -> str:
    """'m rows, corrected together (Holm): intervals at 99.5%-99.9% confidence'."""
    levels = [r.decision.confidence for r in rows if r.decision is not None]
    if not levels:
        return ""
    lo, hi = min(levels), max(levels)
    span = _level(lo) if math.isclose(lo, hi) else f"{_level(lo)}–{_level(hi)}"
    return f"{len(levels)} rows corrected together (Holm): intervals at {span} confidence"


def _level(c: float) -> str:
    s = f"{100 * c:.2f}".rstrip("0").rstrip(".")
    return f"{s}%"
