"""Do two results folders reach the same decided conclusions? (`benchmarks/reproduce.sh` runs the bench
twice, on two CPU kernel sets, and asks this.)

Each folder's conclusions are computed with the report's own functions (`harness.report.compute`:
`outcomes.success_table` and `mark_near_frontier`, `outcomes.frontier_fits`, `effects.compute_effects`
and `effects.mark_near_frontier`), never re-derived:

- per configuration (every varied factor, the distance included): `reached` / `failed` when the
  Wilson 95% interval of "reached the target in k of n runs" lies above / below 0.5, else
  `undecided`; marked † where the report marks it near the frontier (its runs are mixed, or the
  next distance tested has another outcome);
- per paired effect row of the report (factor, baseline → level, scope, measure): `+` / `-` when the
  report claims it (Holm-corrected interval excludes zero, at least 5 seeds), else `not decided`;
  marked † where the report marks the claim as one a replication may not repeat;
- per pair of frontier groups (cell × the other varied factors): whether their D50 intervals
  overlap, and when they do not, which group's D50 is larger. A group's interval is the report's
  bootstrap interval, or its bracket where the outcomes separate, or (D_max, inf) when every run
  reached the target and [0, D_min] when none did; a group with no D50 (`no_decline`, one
  distance) has none. An ordering is marked † when no tested distance lies between the two
  intervals: one run more or less at the distance between them can join them.

Each conclusion is compared: `=` both folders state the same label; `≈` only one folder claims it and
that folder marked the claim †, so the report said in advance that another machine may not repeat it;
`≠` only one folder claims it, unmarked; `✗` contradicting claims (e.g. "reached" against "failed",
marked or not). The folders agree (exit 0) when there is no `≠` and no `✗`; otherwise exit 1.

    python benchmarks/compare_conclusions.py results/bench_a results/bench_b [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

from harness.report import compute
from harness.report.fmt import fmt_value
from harness.report.outcomes import outcome_label

MARK = " †"   # appended to a label the report marks as one another machine may not repeat


def config_conclusions(data) -> dict[str, str]:
    """'cell=rnn, lag=8, model.readout=last' → 'reached (5/5)' | 'failed (0/5) †' | 'undecided (4/8) †' …"""
    s = data.success
    keys = [k for k in data.varying if k in s.columns]
    out = {}
    for _, r in s.iterrows():
        name = ", ".join(f"{k}={fmt_value(r[k])}" for k in keys) or "all"
        out[name] = f"{outcome_label(float(r['low']), float(r['high']))} ({int(r['k'])}/{int(r['n'])})"
        out[name] += MARK if r.get("near_frontier", False) else ""
    return out


def effect_conclusions(data) -> dict[str, str]:
    """'acc: cell rnn → lstm (all)' → '+' | '-' | '+ †' | 'not decided' (the report's Holm-corrected rule)."""
    out = {}
    for r in data.effects:
        name = f"{r.measure}: {r.factor} {fmt_value(r.baseline)} → {fmt_value(r.level)} ({r.within})"
        d = r.decision
        out[name] = (("+" if d.direction > 0 else "-") + (MARK if r.near_frontier else "")
                     if d is not None and d.claimed else "not decided")
    return out


def d50_interval(fit, tested: list[float]) -> tuple[float, float] | None:
    """The D50 interval the report states for a group (see the module docstring); None without one."""
    if fit is None:
        return None
    lo_t, hi_t = min(tested), max(tested)
    if fit.status in ("fit", "separated"):     # None: beyond the tested distances on that side
        return (-math.inf if fit.low is None else fit.low, math.inf if fit.high is None else fit.high)
    if fit.status == "all_reached":
        return (hi_t, math.inf)
    if fit.status == "none_reached":
        return (-math.inf, lo_t)
    return None


def d50_conclusions(data) -> dict[str, str]:
    """'cell=rnn, model.readout=last vs cell=lstm, model.readout=last' → 'overlap' |
    'first < second' | 'first > second' (marked † when no tested distance lies between the two
    intervals) | 'no D50'."""
    groups = []
    for f in data.fits:
        tested = [float(x) for x in f.points[f.distance]]
        name = ", ".join(f"{k}={fmt_value(v)}" for k, v in f.group.items()
                         if k in data.varying or k == "cell")
        groups.append((name, d50_interval(f.fit, tested) if tested else None, tested))
    out = {}
    for (a, ia, ta), (b, ib, tb) in itertools.combinations(groups, 2):
        name = f"D50 {a} vs {b}"
        if ia is None or ib is None:
            out[name] = "no D50"
            continue
        if ia[1] < ib[0]:
            label, gap = "first < second", (ia[1], ib[0])
        elif ib[1] < ia[0]:
            label, gap = "first > second", (ib[1], ia[0])
        else:
            out[name] = "overlap"
            continue
        between = any(gap[0] < d < gap[1] for d in {*ta, *tb})
        out[name] = label + ("" if between else MARK)
    return out


def conclusions(results_dir: str | Path) -> dict[str, dict[str, str]]:
    """Every decided conclusion of one results folder, by kind."""
    data = compute(results_dir)
    return {"configurations": config_conclusions(data), "effects": effect_conclusions(data),
            "d50": d50_conclusions(data)}


def _label(kind: str, value: str | None) -> tuple[str | None, bool]:
    """(the part of a conclusion that must agree, whether its folder marked it †). Configurations drop
    their 'k/n' counts (adaptive seeds may stop one folder's configuration at another number of runs)."""
    if value is None:
        return None, False
    marked = value.endswith(MARK)
    value = value.removesuffix(MARK)
    return (value.split(" (")[0] if kind == "configurations" else value), marked


# Labels that state no ordinal claim: a difference against one of them is a claim one folder makes and
# the other does not; two different claims are a contradiction.
NO_CLAIM = {"undecided", "not decided", "overlap", "no D50", None}


def kind_of_difference(la: str | None, lb: str | None, marked_a: bool = False, marked_b: bool = False) -> str:
    """'same'; 'contradiction' (both claim, differently); 'marked' (only one folder claims it, and
    marked it †) or 'one-sided' (only one claims it, unmarked)."""
    if la == lb:
        return "same"
    if la not in NO_CLAIM and lb not in NO_CLAIM:
        return "contradiction"
    claimed_marked = marked_a if la not in NO_CLAIM else marked_b
    return "marked" if claimed_marked else "one-sided"


MARKS = {"same": "=", "marked": "≈", "one-sided": "≠", "contradiction": "✗"}


def compare(a: dict, b: dict) -> tuple[bool, list[str], dict[str, int]]:
    """(the folders agree, lines, counts of 'same' / 'marked' / 'one-sided' / 'contradiction'): one
    line per conclusion of either side, marked as in the module docstring. They agree when there is
    no one-sided unmarked claim and no contradiction."""
    lines, counts = [], dict.fromkeys(MARKS, 0)
    for kind in ("configurations", "effects", "d50"):
        lines.append(f"## {kind}")
        for name in sorted(set(a[kind]) | set(b[kind])):
            va, vb = a[kind].get(name), b[kind].get(name)
            (la, ma), (lb, mb) = _label(kind, va), _label(kind, vb)
            k = kind_of_difference(la, lb, ma, mb)
            counts[k] += 1
            lines.append(f"{MARKS[k]} {name}: {va} | {vb}")
    return counts["one-sided"] + counts["contradiction"] == 0, lines, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="results folder A")
    ap.add_argument("second", help="results folder B")
    ap.add_argument("--json", help="also write both folders' conclusions and the verdict to this file")
    args = ap.parse_args(argv)
    a, b = conclusions(args.first), conclusions(args.second)
    ok, lines, counts = compare(a, b)
    print(f"A = {args.first}\nB = {args.second}")
    print("\n".join(lines))
    n = sum(counts.values())
    print(f"\n{'AGREE' if ok else 'DISAGREE'}: {counts['same']} of {n} conclusions the same; "
          f"{counts['marked']} claimed in one folder only, which marked them † (≈); "
          f"{counts['one-sided']} claimed in one folder only, unmarked (≠); "
          f"{counts['contradiction']} contradicting (✗)")
    if args.json:
        Path(args.json).write_text(json.dumps({"agree": ok, "counts": counts, "a": a, "b": b}, indent=1,
                                              ensure_ascii=False), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
