"""Findings written from the data: each sentence is generated from the computed tables and carries
its numbers; where the data cannot carry a claim (one seed, an interval that includes zero,
nothing reached the target) the sentence says so instead of making it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.names import STATUSES
from harness.report.fmt import change, fmt_value, interval, pct, points
from harness.report.stats import Effect, ordered_levels

NEAR_CHANCE = 0.05  # "within 5 points of chance"


def describe(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """'rnn/none pad_size=8 lr=0.01' for a configuration (only the keys given)."""
    parts = []
    head = [str(row[k]) for k in ("cell", "layernorm") if k in keys]
    if head:
        parts.append("/".join(head))
    parts += [f"{k}={fmt_value(row[k])}" for k in keys if k not in ("cell", "layernorm")]
    return " ".join(parts)


# ----------------------------------------------------------------------------- coverage

def coverage(runs: pd.DataFrame, keys: Sequence[str], planned: int | None) -> list[str]:
    n = len(runs)
    if n == 0:
        msg = "No trial has finished yet, so there is nothing to report."
        if planned:
            msg += f" The config plans {planned} trials."
        return [msg]
    counts = runs["status"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in STATUSES if counts.get(s, 0)]
    have = f"{n} trial{'s' if n != 1 else ''} {'have' if n != 1 else 'has'} results ({', '.join(parts)})"
    if planned and n > planned:
        have += (f"; the grid in config.yaml plans {planned}, so {n - planned} or more come from settings "
                 f"that are no longer in it.")
    elif planned:
        have += f" of the {planned} the config plans."
    else:
        have += "."
    out = [have]
    if planned and n < planned:
        out.append(f"The run is not finished (or was stopped): {planned - n} of {planned} planned trials have "
                   f"no results yet, so every number below may still change.")
    bad = runs[runs["status"].isin(["diverged", "failed"])]
    if len(bad):
        items = []
        for _, r in bad.head(4).iterrows():
            err = str(r.get("error") or "").strip().splitlines()
            err = f" ({err[0][:90]})" if err else ""
            items.append(f"{describe(r, keys)} seed {int(r['seed']) if pd.notna(r.get('seed')) else '?'}: "
                         f"{r['status']}{err}")
        more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
        out.append(f"{len(bad)} trial{'s' if len(bad) != 1 else ''} did not finish training — "
                   + "; ".join(items) + more + ". They are counted in the summary and marked ✕ in the "
                   "figures, but have no test accuracy to average.")
    return out


def seeds_caveat(max_seeds: int) -> list[str]:
    if max_seeds <= 1:
        return ["Every configuration has a single seed, so no interval can be drawn: the differences below "
                "are single observations, not evidence of an effect. Run more seeds to test them."]
    if max_seeds == 2:
        return ["With at most 2 seeds per configuration the bootstrap intervals rest on two values each and "
                "understate the uncertainty; read them as rough."]
    return []


# ----------------------------------------------------------------------------- frontier

def frontier_sentences(summary: pd.DataFrame, runs: pd.DataFrame, keys: Sequence[str], chance: float | None,
                       target: float | None) -> list[str]:
    """Per cell × layernorm: the best mean test accuracy at each pad size (over the other factors),
    where it comes within NEAR_CHANCE of chance, and how often it reached the target."""
    if summary.empty or summary["acc_n"].sum() == 0:
        return ["No run has a test accuracy yet, so the frontier cannot be described."]
    others = [k for k in keys if k not in ("cell", "layernorm", "pad_size")]
    out = []
    for cell in ordered_levels(summary["cell"]):
        for ln in ordered_levels(summary["layernorm"]):
            s = summary[(summary["cell"] == cell) & (summary["layernorm"] == ln)]
            if s.empty:
                continue
            pads = sorted(s["pad_size"].unique())
            best = []
            for pad in pads:
                p = s[(s["pad_size"] == pad) & (s["acc_n"] > 0)]
                best.append(p.loc[p["acc_mean"].idxmax()] if len(p) else None)
            shown = [f"{pct(b['acc_mean'], 0)} {_ci_short(b)} at pad_size {pad}" for pad, b in zip(pads, best)
                     if b is not None]
            if not shown:
                out.append(f"**{cell}/{ln}** has no run with a test accuracy (all diverged or failed).")
                continue
            sent = f"**{cell}/{ln}**: best mean test accuracy " + ", ".join(shown)
            if others:
                sent += f" (best {' × '.join(others)} at each pad_size)"
            if chance is not None:
                sent += f"; chance is {pct(chance, 0)}" + _chance_clause(pads, best, chance)
            if target is not None:
                r = runs[(runs["cell"] == cell) & (runs["layernorm"] == ln) & (runs["status"] != "failed")]
                sent += _target_clause(r, pads, target)
            out.append(sent + ".")
    return out


def _chance_clause(pads: list, best: list, chance: float) -> str:
    """Where the best accuracy per pad size (`best`, None where no run has one) is near chance."""
    within = f"{NEAR_CHANCE * 100:.0f} points"
    tail = _tail_from(pads, best, chance)
    if len(pads) == 1:
        gap = best[0]["acc_mean"] - chance if best[0] is not None else math.nan
        return (f", so it is {'within' if gap < NEAR_CHANCE else 'more than'} "
                f"{within} {'of' if gap < NEAR_CHANCE else 'above'} chance at pad_size {pads[0]}")
    if tail is not None and tail == pads[0]:
        return f", and it is within {within} of chance at every pad_size"
    if tail is not None:
        return f", and it is within {within} of chance from pad_size {tail} on"
    near = [pad for pad, b in zip(pads, best) if b is not None and b["acc_mean"] - chance < NEAR_CHANCE]
    if near:
        return f"; within {within} of chance at pad_size {', '.join(map(str, near))} but not beyond"
    return f", and it stays more than {within} above chance at every pad_size"


def _target_clause(runs: pd.DataFrame, pads: list, target: float) -> str:
    """Up to which pad size the (trained) `runs` of one cell × layernorm reached the target."""
    reach = []
    for pad in pads:
        rp = runs[runs["pad_size"] == pad]
        reach.append((pad, int(rp["steps_to_target"].notna().sum()), len(rp)))
    reached = [pad for pad, k, _ in reach if k > 0]
    if not reached:
        total = sum(n for *_, n in reach)
        return f". It never reached the target dev accuracy {target:g} (0 of {total} run{'s' if total != 1 else ''})"
    return (f". It reached the target dev accuracy {target:g} up to pad_size {max(reached)} "
            f"(runs reaching it: " + ", ".join(f"{k}/{n} at {pad}" for pad, k, n in reach) + ")")


def _ci_short(row: pd.Series) -> str:
    if math.isnan(row["acc_low"]):
        return "(one seed)" if row["acc_n"] == 1 else ""
    return f"[{100 * row['acc_low']:.0f}, {100 * row['acc_high']:.0f}]"


def _tail_from(pads: list, best: list, chance: float) -> object | None:
    """The smallest pad size from which every larger pad size is within NEAR_CHANCE of chance."""
    tail = None
    for pad, b in reversed(list(zip(pads, best))):
        if b is None or b["acc_mean"] - chance >= NEAR_CHANCE:
            break
        tail = pad
    return tail


# ----------------------------------------------------------------------------- effects

def effect_sentence(e: Effect, keys: Sequence[str]) -> str:
    """One sentence for a paired effect: accuracy difference with its interval and what it means,
    then the speed comparison with its censoring counts."""
    scope = "" if e.within == "all" else f" within {e.within.replace('=', ' ')}"
    matched = [k for k in keys if k != e.factor and not (e.within.startswith("cell=") and k == "cell")]
    head = (f"**{e.factor} {fmt_value(e.level)} vs {fmt_value(e.baseline)}**{scope} "
            f"({e.pairs} pair{'s' if e.pairs != 1 else ''} matched on {', '.join([*matched, 'seed'])})")
    if e.acc_pairs == 0:
        acc = "no pair has a test accuracy on both sides"
    else:
        point, low, high = e.acc
        acc = f"test accuracy {points(point)} points"
        if math.isnan(low):
            acc += " — no interval (one seed per configuration), so this is not evidence of a difference"
        else:
            acc += f" {interval(low, high, points)}"
            if low > 0 or high < 0:
                acc += "; the interval excludes zero"
            else:
                acc += "; the interval includes zero, so the data do not show a difference in accuracy"
        if e.acc_pairs < e.pairs:
            acc += f" ({e.pairs - e.acc_pairs} pair(s) left out: a run diverged or failed)"
    return f"{head}: {acc}. {speed_sentence(e)}"


def speed_sentence(e: Effect) -> str:
    lv, bl = fmt_value(e.level), fmt_value(e.baseline)
    both = e.steps_pairs - e.only_level - e.only_baseline
    if e.steps_pairs == 0:
        if not e.neither:
            return "Speed cannot be compared: no pair where both runs trained."
        return (f"Speed cannot be compared: neither run reached the target in "
                f"{'the one trained pair' if e.neither == 1 else f'any of the {e.neither} trained pairs'}.")
    counts = (f"only {lv} reached the target in {e.only_level} pair(s), only {bl} in {e.only_baseline}, both in "
              f"{both}, neither in {e.neither}")
    point, low, high = e.steps
    weak = " — one seed per setting, so a single observation, not evidence" if e.max_seeds <= 1 else ""
    if math.isinf(point):
        faster = lv if point < 0 else bl
        return f"Steps to target: {faster} is faster ({counts}){weak}."
    ci = "(no interval)" if math.isnan(low) else f"[{change(low)}, {change(high)}]"
    verdict = ""
    if not math.isnan(low):
        if high < 0:
            verdict = f"; {lv} is faster"
        elif low > 0:
            verdict = f"; {lv} is slower"
        else:
            verdict = "; the interval includes 0%, so the data do not show a difference in speed"
    return f"Median paired change in steps to target {change(point)} {ci}{verdict} ({counts}){weak}."


def effect_sentences(effects: Sequence[Effect], keys: Sequence[str]) -> list[str]:
    """The headline effects: each factor overall, and layernorm within each cell."""
    out = []
    for e in effects:
        if e.within == "all" or e.factor == "layernorm":
            out.append(effect_sentence(e, keys))
    return out


# ----------------------------------------------------------------------------- gradient reach

def reach_sentences(runs: pd.DataFrame) -> list[str]:
    """The vanishing ratio log10(‖∂L/∂x_0‖ / ‖∂L/∂x_read‖) per cell × layernorm at the longest
    pad size, at initialisation and at the end of training."""
    d = runs[runs["vanishing_ratio_init"].notna() | runs["vanishing_ratio_final"].notna()]
    if d.empty:
        return []
    pad = d["pad_size"].max()
    d = d[d["pad_size"] == pad]
    parts = []
    for cell in ordered_levels(d["cell"]):
        for ln in ordered_levels(d["layernorm"]):
            g = d[(d["cell"] == cell) & (d["layernorm"] == ln)]
            if g.empty:
                continue
            a = _finite_mean(g["vanishing_ratio_init"])
            b = _finite_mean(g["vanishing_ratio_final"])
            parts.append(f"{cell}/{ln} 10^{_exp(a)} at init → 10^{_exp(b)} after training")
    if not parts:
        return []
    return [f"At pad_size {pad}, the gradient reaching the first input position is, relative to the "
            f"gradient at the read-out position (mean log10 over runs): " + "; ".join(parts) +
            ". Around 10^0 the whole sequence gets gradient; far below, it vanishes before reaching the text."]


def _finite_mean(s: pd.Series) -> float:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _exp(x: float) -> str:
    return "?" if math.isnan(x) else f"{x:.1f}"


# ----------------------------------------------------------------------------- all

def findings(runs: pd.DataFrame, summary: pd.DataFrame, effects: Sequence[Effect], *, varying: Sequence[str],
             chance: float | None, target: float | None, planned: int | None, max_seeds: int) -> list[str]:
    """Every finding, in reading order."""
    out = coverage(runs, varying, planned)
    if runs.empty:
        return out
    out += seeds_caveat(max_seeds)
    out += frontier_sentences(summary, runs, varying, chance, target)
    out += effect_sentences(effects, varying)
    if not varying:
        out.append("No factor varies in these results, so there is nothing to compare.")
    out += reach_sentences(runs)
    return out
