"""The frontier as a function of the target, and whether runs learned at all.

The headline counts a run as reaching one target dev accuracy within one budget; a frontier read at
one target is a property of that target. Here the same runs are counted at every target from just
above chance (chance + 0.02) up to the best configuration's ceiling (the median over its runs of
their best dev accuracy), and D50 is fitted at each (`harness.stats.frontier.fit_d50`, as the headline
fits it), per group (arm, or cell) and level of the other varied factors:

- a run reaches target t when its best dev accuracy *within the budget* (the highest `dev_acc` of its
  curves rows: every evaluation of every step it trained) is at least t; at the headline's own target
  this is the headline's `reached` (steps_to_target not null);
- under `train.stop_at_target` the runs stopped at the headline's target, so a higher target cannot
  be read from them: the grid ends there and the report says so.

"Learned at all" is the runs column `learned` (test accuracy above chance by an exact one-sided
binomial test, p < 0.001: `harness.stats.chance`), counted per configuration. Results written before
the column existed get it from their confusion rows (the test split's labels and the correct count).

Pure functions over DataFrames (no I/O, no plotting); `frontier_targets_markdown` writes the section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.config.headline import HeadlineError, read_headline
from harness.report.contrasts import (
    _adaptive_min_seeds,
    apply_where,
    by_keys,
    fixed_seeds,
    group_column,
    seeds_note,
)
from harness.report.fmt import fmt_value, md_table
from harness.report.outcomes import budget_steps, distance_column, largest_per_run
from harness.report.stats import group_key, sort_configs
from harness.stats.chance import LEARNED_ALPHA, learned_at_all
from harness.stats.d50_ratio import N_BOOT, split_bracket
from harness.stats.frontier import fit_d50

if TYPE_CHECKING:
    from harness.config.headline import Headline
    from harness.report.data import ReportData

__all__ = ["Selection", "TargetFrontier", "best_within_budget", "d50_at_targets", "learned_values",
           "learned_counts", "target_frontier", "frontier_targets_markdown", "headline_rule_sentence", "of"]

ABOVE_CHANCE = 0.02   # the grid's first target: this much above chance (fraction)
GRID_POINTS = 25      # targets in the grid (the headline's target is added when inside it)
TABLE_POINTS = 5      # targets the section's table shows (and the headline's)


# ============================================================================ which runs

@dataclass(frozen=True)
class Selection:
    """The runs the headline reads (its `where` levels and confirmatory seeds), the column naming the
    groups, the distance column, the other varied factors held fixed (`by`), the headline and the
    line that says which seeds were used."""

    outcomes: pd.DataFrame
    group: str
    distance: str
    by: list[str]
    headline: Headline | None
    seeds_note: str = ""


def select(data: ReportData) -> Selection | None:
    """The headline's runs (as the contrasts section selects them: `headline.where`, `headline.seeds`),
    or None when no distance varies over two values or the headline cannot be read."""
    outcomes = data.outcomes
    if outcomes is None or outcomes.empty or "reached" not in outcomes.columns:
        return None
    distance = distance_column(outcomes)
    try:
        headline = read_headline(getattr(data, "config_text", None))
        if headline is not None and headline.where:
            outcomes = apply_where(outcomes, headline.where)
    except (HeadlineError, ValueError):
        return None
    if distance not in outcomes.columns or outcomes[distance].nunique(dropna=True) < 2:
        return None
    group = (headline.group if headline is not None and headline.group else None) or group_column(outcomes) \
        or group_key(outcomes)
    if group not in outcomes.columns:
        return None
    keep, note = seeds_note(headline, _adaptive_min_seeds(data))
    used = fixed_seeds(outcomes, keep)
    by = by_keys(used, list(getattr(data, "varying", [])), group, distance)
    return Selection(used, group, distance, by, headline, note)


# ============================================================================ per run

def best_within_budget(runs: pd.DataFrame, curves: pd.DataFrame | None) -> pd.Series:
    """Each run's best dev accuracy within its budget (fraction; index aligned with `runs`): the highest
    `dev_acc` of its curves rows, else its `best_dev_acc` column, else nan."""
    return largest_per_run(runs, curves, "dev_acc", "best_dev_acc")


def learned_values(runs: pd.DataFrame, confusion: pd.DataFrame | None = None) -> pd.Series:
    """Per run 1.0 (learned at all), 0.0 (not) or nan (no test accuracy): the `learned` column; where it
    is null but the run has a test accuracy and confusion rows (results written before the column
    existed), computed from them as the trainer does (n_test and chance from the rows' true labels)."""
    out = pd.Series(np.nan, index=runs.index, dtype="float64")
    if "learned" in runs.columns:
        v = runs["learned"].astype("object")
        out = pd.Series([np.nan if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))
                         else float(bool(x)) for x in v], index=runs.index, dtype="float64")
    if "test_acc" not in runs.columns or confusion is None or not len(confusion):
        return out
    todo = out.isna() & pd.to_numeric(runs["test_acc"], errors="coerce").notna()
    if todo.any():
        per_class = confusion.groupby(["trial_id", "true_label"])["count"].sum()
        for i in runs.index[todo]:
            tid = runs.at[i, "trial_id"]
            if tid not in per_class.index.get_level_values(0):
                continue
            counts = per_class.loc[tid].to_numpy(dtype=float)
            n = int(counts.sum())
            if n > 0:
                out.at[i] = float(learned_at_all(float(runs.at[i, "test_acc"]), n, counts.max() / n)[2])
    return out


def learned_counts(outcomes: pd.DataFrame, keys: Sequence[str], confusion: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """Per configuration (combination of `keys`): learned_k of learned_n runs learned at all
    (`learned_values`; runs without a test accuracy are not counted)."""
    keys = list(keys)
    cols = [*keys, "learned_k", "learned_n"]
    if outcomes.empty:
        return pd.DataFrame(columns=cols)
    d = outcomes.assign(_learned=learned_values(outcomes, confusion))
    rows = []
    for key, g in d.groupby(keys, dropna=False, sort=False) if keys else [((), d)]:
        key = key if isinstance(key, tuple) else (key,)
        v = g["_learned"].dropna()
        rows.append({**dict(zip(keys, key)), "learned_k": int(v.sum()), "learned_n": int(v.size)})
    return pd.DataFrame(rows, columns=cols)


# ============================================================================ D50 at each target

def _levels(d: pd.DataFrame, keys: Sequence[str]) -> list[tuple[dict, pd.DataFrame]]:
    if not keys:
        return [({}, d)]
    return [(dict(zip(keys, k if isinstance(k, tuple) else (k,))), g)
            for k, g in d.groupby(list(keys), dropna=False, sort=False)]


def d50_at_targets(outcomes: pd.DataFrame, best: pd.Series, group: str, distance: str, by: Sequence[str],
                   targets: Sequence[float], n_boot: int = N_BOOT, rng: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, d50s): per group × level of `by` × target t, with a run reaching t when its `best`
    (aligned with `outcomes`) is at least t. points: per distance k of n runs and their share; d50s:
    `fit_d50`'s status, d50, low, high (None where beyond the distances tested on that side) and
    `perfect` (the runs split perfectly between two adjacent distances: `split_bracket`). Runs without an
    outcome (`reached` null: failed) are left out; a run with no evaluation never reaches a target."""
    by = list(by)
    known = outcomes[outcomes["reached"].notna() & outcomes[distance].notna()]
    known = known.assign(_best=best.reindex(known.index))
    pts, fits = [], []
    for where, g in _levels(known, [group, *by]):
        d = g[distance].to_numpy(float)
        b = g["_best"].to_numpy(float)
        for t in targets:
            r = np.nan_to_num(b, nan=-np.inf) >= t
            for dist in sorted(set(d)):
                at = d == dist
                pts.append({**where, "target": float(t), distance: dist, "k": int(r[at].sum()), "n": int(at.sum()),
                            "share": float(r[at].mean())})
            f = fit_d50(d, r, n_boot=n_boot, rng=rng)
            fits.append({**where, "target": float(t), "status": f.status, "d50": f.d50, "low": f.low,
                         "high": f.high, "perfect": split_bracket(d, r.astype(float)) is not None,
                         "shortest": float(d.min()), "longest": float(d.max())})
    keys = [group, *by, "target"]
    return (sort_configs(pd.DataFrame(pts, columns=[*keys, distance, "k", "n", "share"]), [group, *by]),
            sort_configs(pd.DataFrame(fits, columns=[*keys, "status", "d50", "low", "high", "perfect", "shortest",
                                                     "longest"]), [group, *by]))


def target_grid(low: float, high: float, headline: float | None = None, n: int = GRID_POINTS) -> list[float]:
    """`n` targets evenly spaced from `low` to `high` (fractions, rounded to 0.001), with the headline's
    target added when it lies between them; [] when high < low."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        return []
    grid = set(np.round(np.linspace(low, high, n), 3).tolist()) if high > low else {round(low, 3)}
    if headline is not None and low <= headline <= high:
        grid.add(float(headline))
    return sorted(grid)


# ============================================================================ the report's view

@dataclass(frozen=True)
class TargetFrontier:
    """The frontier at every target for one report: the selection it counts, the targets (ascending),
    the headline's target, chance, the ceiling (and the configuration it comes from), the target the
    runs stopped at (`train.stop_at_target`; None when they did not), the budget in steps and the
    evaluation interval, and the two tables of `d50_at_targets`."""

    selection: Selection
    targets: list[float]
    headline_target: float | None
    chance: float
    ceiling: float
    ceiling_at: dict
    capped: float | None
    budget: int | None
    eval_every: int | None
    points: pd.DataFrame = field(repr=False)
    d50s: pd.DataFrame = field(repr=False)

    @property
    def group(self) -> str:
        return self.selection.group

    @property
    def distance(self) -> str:
        return self.selection.distance


def _chance(outcomes: pd.DataFrame, data: Any) -> float | None:
    """Chance accuracy: the runs' median `chance_acc` (the test split's commonest class), else the
    report's 1 / classes."""
    if "chance_acc" in outcomes.columns:
        c = pd.to_numeric(outcomes["chance_acc"], errors="coerce").dropna()
        if len(c):
            return float(c.median())
    chance = getattr(data, "chance", None)
    return float(chance) if chance is not None else None


def _budget(outcomes: pd.DataFrame) -> int | None:
    """The budget a "within N steps" rests on (`outcomes.budget_steps`), as a whole number of steps."""
    n = budget_steps(outcomes)
    return None if n is None or not math.isfinite(n) else int(n)


def _stopped_at_target(data: Any, outcomes: pd.DataFrame) -> bool:
    cfg = getattr(data, "cfg", None)
    if cfg is not None:
        return bool(cfg.train.stop_at_target)
    return "stop_reason" in outcomes.columns and bool((outcomes["stop_reason"] == "target").any())


def target_frontier(data: ReportData, n_boot: int = N_BOOT) -> TargetFrontier | None:
    """The frontier at every target for `data` (None when no distance varies, no run has a best dev
    accuracy, or chance is unknown)."""
    sel = select(data)
    if sel is None:
        return None
    o = sel.outcomes[sel.outcomes["reached"].notna() & sel.outcomes[sel.distance].notna()]
    best = best_within_budget(o, data.tables.get("curves") if isinstance(data.tables, dict) else None)
    chance = _chance(o, data)
    if o.empty or best.notna().sum() == 0 or chance is None:
        return None
    medians = o.assign(_best=best).groupby([sel.group, *sel.by, sel.distance], dropna=False)["_best"].median()
    ceiling = float(medians.max())
    top = medians.idxmax()
    ceiling_at = dict(zip([sel.group, *sel.by, sel.distance], top if isinstance(top, tuple) else (top,)))
    target = getattr(data, "target", None)
    capped = float(target) if target is not None and _stopped_at_target(data, o) else None
    high = ceiling if capped is None else min(ceiling, capped)
    targets = target_grid(chance + ABOVE_CHANCE, high, target)
    points, d50s = d50_at_targets(o, best, sel.group, sel.distance, sel.by, targets, n_boot=n_boot)
    cfg = getattr(data, "cfg", None)
    return TargetFrontier(sel, targets, None if target is None else float(target), chance, ceiling, ceiling_at,
                          capped, _budget(o), int(cfg.train.eval_every) if cfg is not None else None,
                          points, d50s)


def of(data: ReportData) -> TargetFrontier | None:
    """`data`'s frontier at every target, computed once (kept on `data.target_frontier` when it has it)."""
    tf = getattr(data, "target_frontier", None)
    if tf is None:
        tf = target_frontier(data)
        data.target_frontier = tf
    return tf


# ============================================================================ words

def _d(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.2g}"


def d50_cell(row: pd.Series | dict) -> str:
    """A compact D50: '19 [12, 25]' (fit, bootstrap interval; '< 0' / '> 32' for an end beyond the
    distances tested), '8–16 (bracket)' (the runs split perfectly), 'between 8 and 32 (no estimate)' (one
    mixed distance between all and none: no finite fit), '> 32 (all reached)', 'none reached', 'no decline'."""
    status, lo_t, hi_t = row["status"], row["shortest"], row["longest"]
    low, high = _none(row["low"]), _none(row["high"])
    if status == "fit":
        lo = f"< {_d(lo_t)}" if low is None else _d(low)
        hi = f"> {_d(hi_t)}" if high is None else _d(high)
        d50 = _none(row["d50"])
        out = f"{_d(d50)} [{lo}, {hi}]"
        return out if d50 is None or lo_t <= d50 <= hi_t else out + " (extrapolated)"
    if status == "separated":
        if row["perfect"]:
            return f"{_d(low)}–{_d(high)} (bracket)"
        where = (f"between {_d(low)} and {_d(high)}" if low is not None and high is not None
                 else f"above {_d(low)}" if low is not None else f"below {_d(high)}")
        return f"{where} (no estimate)"
    return {"all_reached": f"> {_d(hi_t)} (all reached)", "none_reached": "none reached",
            "no_decline": "no decline", "one_distance": "one distance"}.get(status, str(status))


def _none(x: object) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _steps(n: int | None) -> str:
    return "its budget" if n is None else f"{n:,} steps"


def headline_rule_sentence(tf: TargetFrontier) -> str:
    """'The headline counts a run as reaching the target when its dev accuracy reaches 0.3 within 1,000
    steps (…).' and the config's `headline.target_rule` when it has one."""
    every = f", evaluated every {tf.eval_every} steps on the dev split" if tf.eval_every else ""
    stop = " (the run then stops: `train.stop_at_target`)" if tf.capped is not None else ""
    head = "" if tf.headline_target is None else (
        f"The headline counts a run as reaching the target when its dev accuracy reaches "
        f"{tf.headline_target:g} within {_steps(tf.budget)}{every}{stop}.")
    rule = tf.selection.headline.target_rule.strip() if tf.selection.headline is not None else ""
    if rule:
        head += f" How the target and budget were fixed (`headline.target_rule`): {rule.rstrip('.')}."
    return head.strip()


def table_targets(tf: TargetFrontier, n: int = TABLE_POINTS) -> list[float]:
    """The targets the table shows: `n` spread over the grid (its ends included) and the headline's."""
    if not tf.targets:
        return []
    idx = np.unique(np.round(np.linspace(0, len(tf.targets) - 1, n)).astype(int))
    out = {tf.targets[i] for i in idx}
    if tf.headline_target is not None and tf.headline_target in tf.targets:
        out.add(tf.headline_target)
    return sorted(out)


def _group_label(tf: TargetFrontier, row: pd.Series | dict) -> str:
    parts = [str(row[tf.group])] + [f"{k} {fmt_value(row[k])}" for k in tf.selection.by]
    return ", ".join(parts)


def frontier_targets_markdown(tf: TargetFrontier | None) -> str:
    """The section 'Frontier at every target': the headline's rule, what the grid spans, and a table of
    D50 (or its bracket) per group at a handful of targets."""
    if tf is None:
        return "_(no run has a best dev accuracy yet, or chance is unknown)_\n"
    sel = tf.selection
    at = ", ".join(f"{k if k != tf.group else ''} {fmt_value(v)}".strip() for k, v in tf.ceiling_at.items())
    out = [headline_rule_sentence(tf)]
    what = (f"Here the same runs are counted at other targets: a run reaches a target when its best dev accuracy "
            f"within the budget (the highest of its evaluations over every step it trained) is at least that "
            f"target, and D50 is fitted at each as for the headline (logistic fit on log(1 + D) with a bootstrap "
            f"interval; a bracket where the runs split perfectly between two {tf.distance}s).")
    if not tf.targets:
        out.append(what + f" No target from chance + {ABOVE_CHANCE:g} ({tf.chance + ABOVE_CHANCE:.3g}) up is "
                   f"reached by half the runs of any configuration (the best median is {tf.ceiling:.3g}).")
        return "\n\n".join(s for s in out if s) + "\n"
    span = (f" Targets run from chance + {ABOVE_CHANCE:g} ({tf.targets[0]:.3g}; chance {tf.chance:.3g}, the test "
            f"split's most common class) to {tf.targets[-1]:.3g}")
    if tf.capped is not None and tf.capped < tf.ceiling:
        span += (f": the runs stopped at the first evaluation that reached {tf.capped:g} "
                 f"(`train.stop_at_target`), so a higher target cannot be read from them and none is drawn (the "
                 f"best configuration's median best dev accuracy, {at}, is {tf.ceiling:.3g}).")
    else:
        span += f", the best configuration's ceiling (the median over its runs of their best dev accuracy: {at})."
    out.append(what + span)
    if sel.seeds_note:
        out.append(sel.seeds_note)
    shown = table_targets(tf)
    rows = []
    for where, g in _levels(tf.d50s, [tf.group, *sel.by]):
        row = {tf.group: _group_label(tf, where)}
        for t in shown:
            hit = g[np.isclose(g["target"].to_numpy(float), t)]
            name = f"{t:.3g}" + (" (headline)" if tf.headline_target is not None and t == tf.headline_target else "")
            row[name] = d50_cell(hit.iloc[0]) if len(hit) else "—"
        rows.append(row)
    out.append(f"D50 ({tf.distance}) at each target:\n\n" + md_table(pd.DataFrame(rows)).rstrip())
    return "\n\n".join(s for s in out if s) + "\n"


def learned_sentence(alpha: float = LEARNED_ALPHA) -> str:
    """How the success table counts learning at all."""
    return (f"'Learned' counts the runs that learned at all: test accuracy above chance (the accuracy of always "
            f"predicting the test split's most common class) by an exact one-sided binomial test, p < {alpha:g} "
            "(`runs.learned`), whatever the target; a run without a test accuracy (diverged, failed) is not counted.")
