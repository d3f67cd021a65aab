"""The budget check's section (`headline.budget_check`, `harness.budget_check`): is each frontier a
limit, or a speed within the budget?

The configuration at each frontier's first failing distance was trained again at factor × the budget
on the same seeds. A check run's first N steps are its original's (same seeds, constant learning
rate), so the two are compared run by run: an outcome *changed* where the original did not reach the
target within N steps and its check did within factor × N (or, which would mean the check is not a
continuation, the other way round).

Also where the report's tables are split: `split_tables` takes the check runs out of every table, so
that no other section counts them (they are not part of the grid); `compute` keeps them apart.

`budget_bound(data)` says per group whether its frontier is budget-bound (for the findings' wording),
`budget_steps(data)` the original budget N in steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.budget_check import COLUMN, check_seeds, first_failing
from harness.config.headline import Headline, HeadlineError, read_headline, seed_text
from harness.report.contrasts import apply_where, fixed_seeds
from harness.report.fmt import fmt_value, md_table
from harness.report.outcomes import distance_column

if TYPE_CHECKING:
    from harness.report.data import ReportData

# Settings a check run changes: never used to pair it with its original.
CHANGED = ("epochs", "train.epochs", "max_steps", "train.max_steps", "stop_at_target", "train.stop_at_target")


def split_tables(tables: Mapping[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(every table without the budget-check runs' rows, the budget-check runs' rows of every table):
    a run is a check run when its runs row has a non-null `budget_check` column."""
    runs = tables["runs"]
    ids = set(runs.loc[runs[COLUMN].notna(), "trial_id"]) if COLUMN in runs.columns else set()
    keep, checks = {}, {}
    for name, df in tables.items():
        mine = df["trial_id"].isin(ids) if "trial_id" in df.columns else pd.Series(False, index=df.index)
        keep[name] = df[~mine].reset_index(drop=True)
        checks[name] = df[mine].reset_index(drop=True)
    return keep, checks


# ----------------------------------------------------------------------------- the numbers

def _headline(data: ReportData) -> Headline | None:
    try:
        return read_headline(getattr(data, "config_text", None))
    except (HeadlineError, ValueError, AttributeError):
        return None


def _group(data: ReportData, h: Headline | None) -> str:
    return (h.group if h is not None and h.group else None) or data.group


def _distance(data: ReportData) -> str:
    return distance_column(data.outcomes)


def _pair_keys(data: ReportData, group: str, distance: str) -> list[str]:
    """The columns a check run shares with its original: the configuration's keys (group and distance
    first) and the seed, without the settings the check changes."""
    keys = [group, distance, *[k for k in data.keys if k not in (group, distance)]]
    return [k for k in keys if k not in CHANGED and k in data.outcomes.columns] + ["seed"]


def pairs(data: ReportData) -> pd.DataFrame:
    """One row per check run with a known outcome whose original (same configuration and seed) has one:
    the pairing columns, `factor`, `before` / `after` (reached the target: 1.0 / 0.0) and `steps`
    (the original's steps taken, its budget where it did not stop early)."""
    checks = getattr(data, "budget_checks", None)
    h = _headline(data)
    if checks is None or checks.empty or data.outcomes.empty:
        return pd.DataFrame(columns=["factor", "before", "after", "steps"])
    if h is not None and h.budget_check is not None:  # a check run at another factor (the config changed since)
        checks = checks[checks[COLUMN] == h.budget_check.factor]
    group, distance = _group(data, h), _distance(data)
    keys = [k for k in _pair_keys(data, group, distance) if k in checks.columns]
    orig = data.outcomes[[*keys, "reached", "steps"]].rename(columns={"reached": "before"})
    new = checks[[*keys, "reached", COLUMN, "stop_reason"] if "stop_reason" in checks.columns
                 else [*keys, "reached", COLUMN]].rename(columns={"reached": "after", COLUMN: "factor"})
    out = new.merge(orig, on=keys, how="inner")
    return out[out["before"].notna() & out["after"].notna()].reset_index(drop=True)


def budget_steps(data: ReportData) -> int | None:
    """The original budget N in steps: the most steps an original run of a checked configuration took
    (its budget's end, where it did not stop early); None without a check run."""
    p = pairs(data)
    if p.empty or p["steps"].isna().all():
        return None
    return int(p["steps"].max())


def checked_table(data: ReportData) -> pd.DataFrame:
    """Per checked configuration: its keys, n (pairs), reached before (within N) and after (within
    factor × N), changed (pairs whose outcome differs), lost (reached before, not after: the check was
    not a continuation), early (check runs ended by early stopping, not the budget)."""
    p = pairs(data)
    h = _headline(data)
    if p.empty:
        return pd.DataFrame(columns=["n", "before", "after", "changed", "lost", "early", "factor"])
    keys = [k for k in _pair_keys(data, _group(data, h), _distance(data)) if k in p.columns and k != "seed"]
    rows = []
    for key, g in p.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        before, after = g["before"] == 1.0, g["after"] == 1.0
        early = int((g["stop_reason"] == "early_stop").sum()) if "stop_reason" in g.columns else 0
        rows.append({**dict(zip(keys, key)), "n": len(g), "before": int(before.sum()), "after": int(after.sum()),
                     "changed": int((before != after).sum()), "lost": int((before & ~after).sum()),
                     "early": early, "factor": int(g["factor"].max())})
    return pd.DataFrame(rows)


def budget_bound(data: ReportData) -> dict[str, bool | None]:
    """Per headline group (headline.d50, else every group): True when some check run of its frontier
    changed outcome with the longer budget (its frontier is a speed within N steps), False when its
    check has run on every check seed and none changed, None when there is nothing to say (no budget
    check, no distance where it fails, or its check runs not finished)."""
    h = _headline(data)
    if h is None or h.budget_check is None or data.outcomes.empty:
        return {}
    group = _group(data, h)
    if group not in data.outcomes.columns:
        return {}
    names = list(h.d50) or [str(x) for x in pd.unique(data.outcomes[group].dropna())]
    table = checked_table(data)
    want = _check_seed_count(data, h)
    out: dict[str, bool | None] = {}
    for name in names:
        rows = table[table[group].astype(str) == name] if group in table.columns else table.iloc[0:0]
        if rows.empty:
            out[name] = None
        elif rows["changed"].sum() > 0:
            out[name] = True
        else:
            out[name] = False if want is None or (rows["n"] >= want).all() else None
    return out


def check_seed_words(data: ReportData, h: Headline) -> str:
    """'4 seeds' / 'every headline seed': how many seeds the budget check runs."""
    n = _check_seed_count(data, h)
    return f"{n} seeds" if n else "every headline seed"


def _check_seed_count(data: ReportData, h: Headline) -> int | None:
    """How many seeds each checked configuration runs (None when the config does not say)."""
    cfg = getattr(data, "cfg", None)
    if cfg is not None and cfg.headline is not None and cfg.headline.budget_check is not None:
        return len(check_seeds(cfg))
    return h.budget_check.seeds if h.budget_check else None


def frontiers(data: ReportData, h: Headline) -> list[tuple[str, Any]]:
    """Per headline group: (its name, its first failing distance on the headline's seeds and where
    levels, or None where no distance fails)."""
    group, distance = _group(data, h), _distance(data)
    try:
        o = fixed_seeds(apply_where(data.outcomes, h.where), h.seeds)
    except HeadlineError:  # a where key that names no column: the contrasts section says so
        return []
    o = o[o["reached"].notna()]
    if group not in o.columns or distance not in o.columns:
        return []
    names = list(h.d50) or [str(x) for x in pd.unique(o[group].dropna())]
    out = []
    for name in names:
        g = o[o[group].astype(str) == name]
        counts = {d: (int(x.sum()), len(x)) for d, x in g.groupby(distance)["reached"]}
        out.append((name, first_failing(counts)))
    return out


# ----------------------------------------------------------------------------- words

def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def budget_markdown(data: ReportData) -> str:
    """The "Budget check" section: '' unless the config has headline.budget_check."""
    h = _headline(data)
    if h is None or h.budget_check is None:
        return ""
    factor = h.budget_check.factor
    seeds = h.seeds[:h.budget_check.seeds] if h.seeds and h.budget_check.seeds else h.seeds
    on = f" on seeds {seed_text(seeds)}" if seeds else ""
    intro = (f"Is each frontier a limit, or a speed within the budget? The configuration at each group's first "
             f"failing distance (the smallest at which fewer than half of its headline runs reached the target) "
             f"was trained again at {factor}× the budget{on} (`headline.budget_check`). Its seeds and learning "
             f"rate are those of the original runs, so a check run's first N steps are its original's and the "
             f"two are compared run by run; a check run stops once it reaches the target.")
    table = checked_table(data)
    group, distance = _group(data, h), _distance(data)
    lines = [intro]
    if table.empty:
        lines.append("No budget-check run has finished yet: a group's check starts once all its headline runs "
                     "are finished.")
    else:
        n_steps = budget_steps(data)
        within = f"within {n_steps:,} steps" if n_steps else "within the budget"
        longer = f"within {factor * n_steps:,} steps" if n_steps else f"within {factor}× the budget"
        rows = []
        others = [k for k in data.varying if k in table.columns and k not in (group, distance)]
        for _, r in table.iterrows():
            rows.append({group: fmt_value(r[group]), distance: fmt_value(r[distance]),
                         **{k: fmt_value(r[k]) for k in others},
                         f"reached {within}": f"{r['before']}/{r['n']}",
                         f"reached {longer}": f"{r['after']}/{r['n']}",
                         "outcomes changed": _runs(int(r["changed"]))})
        changed, total = int(table["changed"].sum()), int(table["n"].sum())
        if changed:
            moved = table[table["changed"] > 0]
            which = "; ".join(f"{r[group]} at {distance} {fmt_value(r[distance])}: {r['before']}/{r['n']} → "
                              f"{r['after']}/{r['n']}" for _, r in moved.iterrows())
            still = sorted(set(table[group].astype(str)) - set(moved[group].astype(str)))
            rest = f" No outcome of {', '.join(still)} changed." if still else ""
            lines.append(f"**{changed} of {total} outcomes changed with {factor}× the budget: these frontiers are "
                         f"speeds {within}, not limits** ({which}).{rest}")
        else:
            lines.append(f"No outcome changed with {factor}× the budget ({_runs(total)} compared): within "
                         f"{factor}× the budget, the runs at the first failing distance still fail. (A run that needs "
                         f"more than {factor}× the budget would not show here.)")
        lost = int(table["lost"].sum())
        if lost:
            lines.append(f"{_runs(lost)} reached the target within the original budget but not in the check: those "
                         "check runs are not continuations of their originals (a nondeterministic kernel?), and "
                         "the comparison is in doubt.")
        early = int(table["early"].sum())
        if early:
            lines.append(f"{_runs(early)} of the check ended by early stopping (`train.require_improvement`), "
                         "not at the longer budget.")
        lines.append(md_table(pd.DataFrame(rows)).rstrip("\n"))
    checked = set(table[group].astype(str)) if group in table.columns else set()
    quiet = [f"{name}: no {distance} at which fewer than half of the runs reached the target (nothing to check)"
             if d is None else f"{name}: first failing {distance} {fmt_value(d)}, its check runs not finished yet"
             for name, d in frontiers(data, h) if name not in checked]
    if quiet:
        lines.append("\n".join(f"- {q}." for q in quiet))
    return "\n\n".join(lines) + "\n"
