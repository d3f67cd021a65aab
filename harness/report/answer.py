"""The answer a report leads with: one paragraph, generated from the tables, and the frontier figure.

Where the runs vary a distance and compare groups (arms or cells), the paragraph says, on the runs
the headline reads (its seeds, labelled confirmatory where the config says so): how many runs of each
group reached the target at each distance within the budget (target, budget and the rule that fixed
the target named), each group's D50 in words, the decided arm-vs-arm contrasts (Boschloo, Holm), how
many runs learned at all (test accuracy above chance), what the budget check found (or that there
was none, so every "did not reach" is "within N steps"), and the mechanism sentence. Every number is
read from the same functions the sections below use, so the paragraph cannot disagree with them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.report import budget as B
from harness.report import mechanism as M
from harness.report import targets as T
from harness.report.contrasts import arm_contrasts, group_d50s
from harness.report.fmt import fmt_value
from harness.report.outcomes import budget_steps


def _counts(o: pd.DataFrame, column: str, distance: str) -> dict[Any, tuple[int, int]]:
    """distance -> (k, n) of a 0/1 column, runs with a value only."""
    out = {}
    for d, g in o.groupby(distance):
        v = pd.to_numeric(g[column], errors="coerce").dropna()
        out[d] = (int(v.sum()), len(v))
    return out


def _counts_text(counts: dict[Any, tuple[int, int]], distance: str) -> str:
    return ", ".join(f"{k}/{n} at {distance} {fmt_value(d)}" for d, (k, n) in sorted(counts.items()))


def _d50_words(fit: Any, distance: str) -> str:
    """A D50 in words, as the frontier section words it (bracket only for a perfect split)."""
    if fit.status == "all_reached":
        return f"beyond the longest {distance} tested"
    if fit.status == "none_reached":
        return f"below the shortest {distance} tested"
    if fit.status == "separated":
        lo = "…" if fit.low is None else fmt_value(fit.low)
        hi = "…" if fit.high is None else fmt_value(fit.high)
        kind = "a bracket: the outcomes split perfectly" if getattr(fit, "perfect", False) else \
            "no estimate: the runs are mixed at one distance"
        return f"between {distance} {lo} and {hi} ({kind})"
    if fit.d50 is None:
        return "not estimable"
    lo = "…" if fit.low is None else fmt_value(fit.low)
    hi = "…" if fit.high is None else fmt_value(fit.high)
    return f"about {fmt_value(fit.d50)} [{lo}, {hi}]"


def _budget_words(data: Any, h: Any, within: str, distance: str) -> str:
    """What the budget check found, per group: changed (a speed within the budget), unchanged, nothing to
    check (no distance where fewer than half reached), or not run / not finished."""
    factor = h.budget_check.factor if h is not None and h.budget_check is not None else None
    if factor is None:
        return f"No budget check ran, so every 'did not reach' above means 'not {within}'."
    bound = B.budget_bound(data)
    first = dict(B.frontiers(data, h))
    moved = [g for g, v in bound.items() if v is True]
    same = [f"{g} at {distance} {fmt_value(first[g])}" for g, v in bound.items()
            if v is False and first.get(g) is not None]
    nothing = [g for g in bound if first.get(g) is None and g in first]
    open_ = [g for g, v in bound.items() if v is None and first.get(g) is not None]
    words = []
    if moved:
        which = "that frontier is" if len(moved) == 1 else "those frontiers are"
        words.append(f"changed outcomes for {', '.join(moved)}: {which} a speed {within}, not a limit")
    if same:
        words.append(f"changed none at {', '.join(same)} (each group's first {distance} where fewer than half reached "
                     f"the target); runs that need more than {factor}× the budget would not show")
    if nothing:
        words.append(f"had nothing to check for {', '.join(nothing)} (no {distance} where fewer than half reached it)")
    if open_:
        words.append(f"has not finished for {', '.join(open_)}: read its 'did not reach' as 'not {within}'")
    return f"The budget check ({factor}× the budget on {B.check_seed_words(data, h)}) " + "; ".join(words) + "."


def answer_markdown(data: Any) -> str:
    """The answer paragraph and the frontier figure; '' where no distance varies or no groups compare."""
    sel = T.select(data)
    if sel is None:
        return ""
    o, group, distance, h = sel.outcomes, sel.group, sel.distance, sel.headline
    groups = [g for g in (list(h.d50) if h is not None and h.d50 else list(pd.unique(o[group].dropna())))
              if (o[group].astype(str) == str(g)).any()]
    if len(groups) < 2 or sel.by:
        return ""
    steps = budget_steps(o)
    steps = int(steps) if steps is not None else None
    within = f"within {steps:,} steps" if steps else "within the budget"
    target = getattr(data, "target", None)
    rule = h.target_rule.strip() if h is not None and h.target_rule else ""
    seeds = sel.seeds_note.split(" (")[0] if sel.seeds_note else "All seeds"
    n_per = o.groupby([group, distance]).size()
    parts = [f"**Answer.** {seeds}, {int(n_per.min())}"
             f"{'' if n_per.min() == n_per.max() else f'–{int(n_per.max())}'} runs per configuration. "
             f"A run counts when its dev accuracy reaches {fmt_value(target) if target is not None else 'the target'} "
             f"{within}" + (f" (target rule: {rule})" if rule else "") + "."]
    fits = {str(f.group): f.fit for f in group_d50s(o, group, distance, groups=groups)}
    per = []
    for g in groups:
        rows = o[o[group].astype(str) == str(g)]
        per.append(f"{g} {_counts_text(_counts(rows, 'reached', distance), distance)} "
                   f"(D50 {_d50_words(fits[str(g)], distance)})")
    parts.append("Reached the target " + within + ": " + "; ".join(per) + ".")
    pairs = list(h.contrasts) if h is not None and h.contrasts else None
    table = arm_contrasts(o, group, distance, pairs=pairs)
    decided = table[table["decided"]] if len(table) and "decided" in table else table.iloc[0:0]
    if len(decided):
        by_pair: dict[tuple[str, str], list[str]] = {}
        for _, r in decided.iterrows():
            a, b = (r["a"], r["b"]) if r["diff"] > 0 else (r["b"], r["a"])
            by_pair.setdefault((str(a), str(b)), []).append(fmt_value(r[distance]))
        said = "; ".join(f"{a} more often than {b} at {distance} {', '.join(ds)}" for (a, b), ds in by_pair.items())
        parts.append(f"Decided (exact Boschloo test, Holm over the {len(table)} arm-vs-arm rows): {said}; the "
                     f"other {len(table) - len(decided)} rows are not decided.")
    else:
        parts.append(f"None of the {len(table)} arm-vs-arm rows is decided.")
    learned = T.learned_values(o, data.tables.get("confusion"))
    if learned.notna().any():
        lw = []
        for g in groups:
            rows = o[o[group].astype(str) == str(g)].assign(_learned=learned)
            lw.append(f"{g} {_counts_text(_counts(rows, '_learned', distance), distance)}")
        parts.append("Learned at all (test accuracy above chance, exact binomial p < 0.001), whatever the target: "
                     + "; ".join(lw) + ".")
    parts.append(_budget_words(data, h, within, distance))
    sentence = M.sentence(data)
    if sentence:
        parts.append(sentence)
    return " ".join(parts) + ("\n\n![Share of runs that reached the target against "
                              f"{distance}](figures/frontier_fit.png)\n")
