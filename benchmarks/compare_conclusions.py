"""Do two results folders reach the same decided conclusions? (`benchmarks/reproduce.sh` runs the bench
twice, on two CPU kernel sets, and asks this.)

Each folder's conclusions are computed with the report's own functions (`harness.report.compute`:
`outcomes.success_table`, `outcomes.frontier_fits`, `effects.compute_effects`), never re-derived:

- per configuration (every varied factor, the distance included): `reached` / `failed` when the
  Wilson 95% interval of "reached the target in k of n runs" lies above / below 0.5, else
  `undecided`;
- per paired effect row of the report (factor, baseline → level, scope, measure): `+` / `-` when the
  report claims it (Holm-corrected interval excludes zero, at least 5 seeds), else `not decided`;
- per pair of frontier groups (cell × the other varied factors): whether their D50 intervals
  overlap, and when they do not, which group's D50 is larger. A group's interval is the report's
  bootstrap interval, or its bracket where the outcomes separate, or (D_max, inf) when every run
  reached the target and [0, D_min] when none did; a group with no D50 (`no_decline`, one
  distance) has none.

An ordinal claim agrees when both folders state the same label. Prints one line per conclusion (=
the same; ≠ a claim one folder makes and the other does not, e.g. "reached" against "undecided"; ✗
contradicting claims, e.g. "reached" against "failed") and exits 1 when any differs, 0 when all agree.

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


def config_conclusions(data) -> dict[str, str]:
    """'cell=rnn, lag=8, model.readout=last' → 'reached' | 'failed' | 'undecided' (Wilson 95%)."""
    s = data.success
    keys = [k for k in data.varying if k in s.columns]
    out = {}
    for _, r in s.iterrows():
        name = ", ".join(f"{k}={fmt_value(r[k])}" for k in keys) or "all"
        low, high = float(r["low"]), float(r["high"])
        out[name] = "reached" if low > 0.5 else "failed" if high < 0.5 else "undecided"
        out[name] += f" ({int(r['k'])}/{int(r['n'])})"
    return out


def effect_conclusions(data) -> dict[str, str]:
    """'acc: cell rnn → lstm (all)' → '+' | '-' | 'not decided' (the report's Holm-corrected rule)."""
    out = {}
    for r in data.effects:
        name = f"{r.measure}: {r.factor} {fmt_value(r.baseline)} → {fmt_value(r.level)} ({r.within})"
        d = r.decision
        out[name] = ("+" if d.direction > 0 else "-") if d is not None and d.claimed else "not decided"
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
    'A < B' | 'A > B' | 'no D50' (by the groups' D50 intervals)."""
    groups = []
    for f in data.fits:
        tested = [float(x) for x in f.points[f.distance]]
        name = ", ".join(f"{k}={fmt_value(v)}" for k, v in f.group.items()
                         if k in data.varying or k == "cell")
        groups.append((name, d50_interval(f.fit, tested) if tested else None))
    out = {}
    for (a, ia), (b, ib) in itertools.combinations(groups, 2):
        name = f"D50 {a} vs {b}"
        if ia is None or ib is None:
            out[name] = "no D50"
        elif ia[1] < ib[0]:
            out[name] = "first < second"
        elif ib[1] < ia[0]:
            out[name] = "first > second"
        else:
            out[name] = "overlap"
    return out


def conclusions(results_dir: str | Path) -> dict[str, dict[str, str]]:
    """Every decided conclusion of one results folder, by kind."""
    data = compute(results_dir)
    return {"configurations": config_conclusions(data), "effects": effect_conclusions(data),
            "d50": d50_conclusions(data)}


def _label(kind: str, value: str | None) -> str | None:
    """The part of a conclusion that must agree: configurations drop their 'k/n' counts (adaptive
    seeds may stop one folder's configuration at another number of runs)."""
    return None if value is None else value.split(" (")[0] if kind == "configurations" else value


# Labels that state no ordinal claim: a difference against one of them is a claim one folder makes and
# the other does not; two different claims are a contradiction.
NO_CLAIM = {"undecided", "not decided", "overlap", "no D50", None}


def kind_of_difference(la: str | None, lb: str | None) -> str:
    """'same', 'one-sided' (only one folder claims something) or 'contradiction' (both claim, differently)."""
    if la == lb:
        return "same"
    return "one-sided" if la in NO_CLAIM or lb in NO_CLAIM else "contradiction"


def compare(a: dict, b: dict) -> tuple[bool, list[str], dict[str, int]]:
    """(all agree, lines, counts of 'same' / 'one-sided' / 'contradiction'): one line per claim of
    either side; '=' the same, '≠' claimed in one folder only, '✗' contradicting claims."""
    lines, counts = [], {"same": 0, "one-sided": 0, "contradiction": 0}
    mark = {"same": "=", "one-sided": "≠", "contradiction": "✗"}
    for kind in ("configurations", "effects", "d50"):
        lines.append(f"## {kind}")
        for name in sorted(set(a[kind]) | set(b[kind])):
            va, vb = a[kind].get(name), b[kind].get(name)
            k = kind_of_difference(_label(kind, va), _label(kind, vb))
            counts[k] += 1
            lines.append(f"{mark[k]} {name}: {va} | {vb}")
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
          f"{counts['one-sided']} claimed in one folder only (≠), {counts['contradiction']} contradicting (✗)")
    if args.json:
        Path(args.json).write_text(json.dumps({"agree": ok, "counts": counts, "a": a, "b": b}, indent=1,
                                              ensure_ascii=False), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
