"""Findings written from the data: each sentence is generated from the computed tables and carries
its numbers. A difference is stated only where the decision rule allows it (a Holm-corrected
interval that excludes zero, and at least `MIN_PAIRS` seeds); otherwise the sentence says that the
data cannot decide and how many seeds would. Success is counted ("reached the target in k of n
runs"), never read off means of bimodal accuracies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.names import STATUSES
from harness.report.effects import STOP_AT_TARGET_NOTE, EffectRow, decision_counts, stopped_at_target
from harness.report.fmt import fmt_value, interval, pct, points
from harness.report.outcomes import (
    FrontierFit,
    budget_steps,
    d50_range_text,
    fits_group_key,
    group_name,
    ordered_groups,
    ratio_summaries,
    ratio_text,
    steps_text,
    unsplit_reason,
)
from harness.report.stats import group_key
from harness.stats.frontier import D50Fit
from harness.stats.paired import MIN_PAIRS, PAIRS_CAP

D50_COVERAGE_NOTE = ("D50 intervals come from a stratified bootstrap of the logistic fit and are somewhat "
                     "optimistic at few seeds per distance (in simulation they cover about 91% at 5 runs per "
                     "distance, 94% at 20)")


_HEAD = ("arm", "cell", "layernorm")  # named first, without 'key=': 'lstm-fb0/none', 'rnn/output'


def describe(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """'rnn pad_size=8 lr=0.01' for a configuration: only the keys given (pass the ones that vary), an
    arm or cell by its plain name ('lstm-fb0 lag=16'), joined with a layernorm only where it is among
    the keys and applies ('rnn/output'); a null setting (one that does not apply) is left out."""
    parts = []
    head = [str(row[k]) for k in _HEAD if k in keys and not pd.isna(row[k])]
    if head:
        parts.append("/".join(head))
    parts += [f"{k}={fmt_value(row[k])}" for k in keys if k not in _HEAD]
    return " ".join(parts)


def seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


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
    return out + _trouble(runs, keys)


def _trouble(runs: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    bad = runs[runs["status"].isin(["diverged", "failed"])]
    if bad.empty:
        return []
    items = []
    for _, r in bad.head(4).iterrows():
        err = str(r.get("error") or "").strip().splitlines()
        err = f" ({err[0][:90]})" if err else ""
        items.append(f"{describe(r, keys)} seed {int(r['seed']) if pd.notna(r.get('seed')) else '?'}: "
                     f"{r['status']}{err}")
    more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
    return [f"{len(bad)} trial{'s' if len(bad) != 1 else ''} did not finish training — " + "; ".join(items) + more
            + ". A diverged run counts as not reaching the target; a failed run (an error) has no outcome and "
              "is counted apart. Both are marked ✕ in the figures."]


def seeds_caveat(max_seeds: int) -> list[str]:
    if max_seeds == 0:
        return []
    if max_seeds < MIN_PAIRS:
        return [f"With at most {seeds(max_seeds)} per configuration no paired difference can be claimed: a claim "
                f"needs a Holm-corrected interval that excludes zero and at least {MIN_PAIRS} seeds. The effects "
                f"below say how many seeds would decide them."]
    return []


# ----------------------------------------------------------------------------- frontier

def _d(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}".rstrip("0").rstrip(".")


def d50_text(fit: D50Fit | None, tested: Sequence[float]) -> str:
    """Where D50 lies: 'at about D = 23 [12, 41]', 'between D = 32 and D = 64 (a bracket: …)' (only
    where the outcomes split perfectly), 'not estimable (…)', 'below D = 16, …', each saying which kind
    of statement it is. `tested`: the distances tested."""
    if fit is None or not len(tested):
        return "— no run has an outcome yet"
    dmin, dmax = min(tested), max(tested)
    if fit.status == "fit":
        lo = f"< {_d(dmin)}" if fit.low is None else _d(fit.low)
        hi = f"> {_d(dmax)}" if fit.high is None else _d(fit.high)
        extra = ", extrapolated beyond the distances tested" if fit.extrapolated else ""
        return f"at about D = {_d(fit.d50)} [{lo}, {hi}]{extra}"
    if fit.status == "separated" and not fit.perfect:
        return f"not estimable ({unsplit_reason(fit, 'D =')}; the data put it {d50_range_text(fit, 'D =')})"
    if fit.status == "separated":
        return (f"between D = {_d(fit.low)} and D = {_d(fit.high)} (a bracket: every run reached the target up "
                f"to D = {_d(fit.low)} and none from D = {_d(fit.high)} on, the outcomes split perfectly; read "
                "off the data, not a confidence interval)")
    return {
        "all_reached": f"beyond D = {_d(dmax)}, the longest distance tested (every run reached the target)",
        "none_reached": f"below D = {_d(dmin)}, the shortest distance tested (no run reached the target)",
        "no_decline": "nowhere in the tested range (success does not fall with distance)",
        "one_distance": f"— unknown: only D = {_d(dmin)} was tested",
    }[fit.status]


def d50_short(fit: D50Fit | None, tested: Sequence[float], budget: float | None = None) -> str:
    """The lead's short form, every negative bounded by the budget: 'D50 at about D = 23 [12, 41]',
    'reached the target within 1,000 steps in every run up to D = 0 and in none from D = 16 on (D50
    between them: a bracket)', 'no run reached the target within 1,000 steps, even at D = 0'. `budget`:
    the steps behind "within" (`outcomes.budget_steps`)."""
    within = steps_text(budget)
    if fit is not None and fit.status == "separated" and fit.perfect:
        return (f"reached the target within {within} in every run up to D = {_d(fit.low)} and in none from "
                f"D = {_d(fit.high)} on (D50 between them: a bracket)")
    if fit is not None and fit.status == "separated":
        return f"D50 not estimable ({unsplit_reason(fit, 'D =')}); the data put it {d50_range_text(fit, 'D =')}"
    if fit is not None and fit.status == "all_reached":
        return (f"every run reached the target within {within} at every distance tested (D50 beyond "
                f"D = {_d(max(tested))})")
    if fit is not None and fit.status == "none_reached":
        return f"no run reached the target within {within}, even at D = {_d(min(tested))} (D50 below it)"
    if fit is not None and fit.status == "no_decline":
        return f"reaching the target within {within} does not fall with distance in the range tested"
    return "D50 " + d50_text(fit, tested)


def _cell_clause(cell: object, group: Sequence[FrontierFit], key: str = "cell", budget: float | None = None) -> str:
    """'the RNN: reached the target within 1,000 steps in every run up to D = 0 and in none from D = 16
    on (…) with layernorm none and output' — groups with the same statement merged. `key`: what names
    the group, 'cell' or 'arm' ('arm lstm-fb0: …')."""
    texts: dict[str, list[str]] = {}
    for f in group:
        label = ", ".join(f"{k} {fmt_value(v)}" for k, v in f.group.items() if k != key)
        texts.setdefault(d50_short(f.fit, [float(x) for x in f.points[f.distance]], budget), []).append(label)
    parts = []
    for text, labels in texts.items():
        labels = [x for x in labels if x]
        parts.append(text + (f" with {' and '.join(labels)}" if labels and len(group) > 1 else ""))
    return f"{group_name(key, cell)}: " + "; ".join(parts)


def frontier_lead(fits: Sequence[FrontierFit], target: float | None, budget: float | None = None) -> list[str]:
    """The sentence the report leads with — 'the RNN: D50 at about D = … [CI]; the LSTM: …', every
    negative said within the budget (`budget` steps) — then what the distance is and how to read the
    interval or bracket."""
    if not fits:
        return []
    dist = fits[0].distance
    if all(f.fit is not None and f.fit.status == "one_distance" for f in fits):
        tested = fmt_value(fits[0].points[dist].iloc[0])
        return [f"**Frontier**: only one distance was tested ({dist} {tested}), so the distance at which runs stop "
                f"reaching the target within {steps_text(budget)} cannot be estimated; vary `{dist}` (grid axis) to "
                "place it."]
    clauses = [_cell_clause(cell, group, fits_group_key(fits), budget) for cell, group in ordered_groups(fits)]
    crit = f"reaching dev accuracy {target:g}" if target is not None else "reaching the target"
    lead = (f"**Frontier** (criterion: {crit} within {steps_text(budget)}; D = {dist}; D50: the distance at which "
            "half the runs still do): " + "; ".join(clauses) + ".")
    lead = lead.replace("): the ", "): The ", 1).replace("): arm ", "): Arm ", 1)
    if dist == "pad_size":
        note = ("Distance here is pad_size, which mixes the padding distance between a text's end and the "
                "read-out position with truncation (at small pad_size more texts are cut) and with sequence "
                "length; `data.lag` (grid axis `lag`) varies the distance alone.")
    else:
        note = "Distance is `data.lag`: exactly D padding steps between every text's end and the read-out position."
    notes = [note, D50_COVERAGE_NOTE + "."]
    if any(f.fit is not None and f.fit.status == "separated" and f.fit.perfect for f in fits):
        notes.append("A bracket is given only where the outcomes split perfectly (every run reached the target up "
                     "to one distance and none from the next on): it is read off the data, not a confidence "
                     "interval (the true D50 may lie outside it).")
    if any(f.fit is not None and f.fit.status == "separated" and not f.fit.perfect for f in fits):
        notes.append("Where one distance has mixed outcomes between distances where all and where none of the "
                     "runs reached the target, a logistic fit has no finite slope: that D50 is not estimated, and "
                     "the sentence says between which distances the data put it.")
    return [lead, " ".join(notes)]


def success_sentences(fits: Sequence[FrontierFit], target: float | None) -> list[str]:
    """Per cell × layernorm (× other factors): reached the target in k of n runs at each distance,
    with the Wilson 95% interval."""
    out = []
    what = f"the target dev accuracy {target:g}" if target is not None else "the target"
    for f in fits:
        dist, pts = f.distance, f.points
        if pts.empty or pts["n"].sum() == 0:
            continue
        first = True
        items = []
        for _, p in pts.iterrows():
            runs = f" run{'s' if p['n'] != 1 else ''}" if first else ""
            where = f"{dist} {fmt_value(p[dist])}" if first else fmt_value(p[dist])
            items.append(f"{int(p['k'])} of {int(p['n'])}{runs} at {where} "
                         f"{interval(p['low'], p['high'], lambda v: pct(v, 0))}")
            first = False
        out.append(f"**{describe(f.group, label_keys(fits))}** reached {what} in " + ", ".join(items) + ".")
    return out


def label_keys(fits: Sequence[FrontierFit]) -> list[str]:
    """The keys that name the fits' groups in a sentence: the group key (arm or cell), and any other
    key of theirs whose value differs between fits (a layernorm that is 'none' in every fit is not
    named: 'rnn', not 'rnn/none')."""
    if not fits:
        return []
    key = fits_group_key(fits)
    keys = list(fits[0].group)
    return [k for k in keys if k == key or len({str(f.group.get(k)) for f in fits}) > 1]


# ----------------------------------------------------------------------------- effects

def _value(r: EffectRow, x: float) -> str:
    return points(x) if r.measure == "acc" else f"{x:+.0f}"


def _level(c: float) -> str:
    return f"{100 * c:.2f}".rstrip("0").rstrip(".") + "%"


def verdict(r: EffectRow) -> str:
    """'decided: lstm is higher' or 'the data cannot decide (why) — about N seeds would decide'."""
    d, lv = r.decision, fmt_value(r.level)
    if d is None:
        return "not corrected"
    if d.claimed:
        near = "† (another machine may leave it undecided)" if r.near_frontier else ""
        if r.measure == "acc":
            return f"decided: {lv} is {'higher' if d.direction > 0 else 'lower'}{near}"
        if r.never is not None:
            other = fmt_value(r.baseline if r.never == "level" else r.level)
            never = fmt_value(r.level if r.never == "level" else r.baseline)
            return (f"decided: {other} reaches the target sooner ({never} did not within "
                    f"{steps_text(r.never_within)}){near}")
        return f"decided: {lv} reaches the target {'later' if d.direction > 0 else 'sooner'}{near}"
    n = d.n_pairs
    if n < 2:
        why = f"only {seeds(n)}: no interval"
    elif math.isnan(d.low):
        reason = d.reason
        if r.never is not None:   # a censored comparison: its difference is no number of steps
            reason = reason.replace(f"every difference is {d.mean:+g}", "every seed's difference is the same")
        why = f"no t interval: {reason}"
    elif d.low > 0 or d.high < 0:
        why = f"the interval excludes zero but rests on {seeds(n)}, fewer than the {MIN_PAIRS} a claim needs"
    else:
        why = "the interval contains zero"
    return f"the data cannot decide ({why}){need_text(r)}"


def need_text(r: EffectRow) -> str:
    d = r.decision
    if d is None or d.n_pairs < 2:
        return ""
    if d.pairs_suggested is None:
        return "; no difference was seen, so more seeds cannot be sized from these data"
    if d.capped:
        return f"; even {PAIRS_CAP} seeds would not decide at this spread"
    if math.isnan(d.low):
        return ""   # the reason already says how many same-signed seeds the sign test needs
    return f"; at this spread about {seeds(d.pairs_suggested)} would decide at 80% power"


def measure_clause(r: EffectRow) -> str:
    d = r.decision
    mean, low, high = (d.mean, d.low, d.high) if d else (math.nan, math.nan, math.nan)
    ci = interval(low, high, lambda x: _value(r, x))
    level = f" ({_level(d.confidence)}, Holm)" if d and not math.isnan(low) else ""
    if r.measure == "acc":
        what = f"test accuracy {_value(r, mean)} points {ci}{level}"
        if r.left_out:
            what += f" ({r.left_out} pair(s) left out: a run diverged or failed)"
    elif r.never is not None:
        what = censored_text(r)
    else:
        both, only_l, only_b, neither = r.reached
        clamp = " (clamped to the possible range)" if r.clamped else ""
        what = (f"restricted mean steps to target within the first {r.tau:g} steps {_value(r, mean)} {ci}{clamp}"
                f"{level} (reached it in time: both in {both} pairs, only {fmt_value(r.level)} in {only_l}, only "
                f"{fmt_value(r.baseline)} in {only_b}, neither in {neither})")
    return f"{what}: {verdict(r)}"


def censored_text(r: EffectRow) -> str:
    """A time row where one side never reached the target, worded as censored, not as a number of
    steps: 'steps to target: 16 did not reach the target within 1,000 steps in any of its 5 runs, 0
    reached it in 5 of 5'."""
    both, only_l, only_b, neither = r.reached
    n = both + only_l + only_b + neither
    never, other = (r.level, r.baseline) if r.never == "level" else (r.baseline, r.level)
    k = both + (only_b if r.never == "level" else only_l)
    return (f"steps to target: {fmt_value(never)} did not reach the target within {steps_text(r.never_within)} in "
            f"any of its {n} runs, {fmt_value(other)} reached it in {k} of {n} within the first {r.tau:,.0f} steps")


def effect_sentences(rows: Sequence[EffectRow], keys: Sequence[str]) -> list[str]:
    """The headline effects (each factor over all runs, and layernorm within each cell): one
    sentence per comparison, its accuracy and time rows."""
    out = []
    comparisons: dict[tuple, list[EffectRow]] = {}
    for r in rows:
        if r.within == "all" or r.primary or r.factor == "layernorm":
            comparisons.setdefault(r.comparison, []).append(r)
    for group in comparisons.values():
        r = group[0]
        scope = "" if r.within == "all" else f" within {r.within.replace('=', ' ')}"
        fixed = {k for k, _ in r.scope} or {r.within.split("=", 1)[0]}
        others = [k for k in keys if k != r.factor and k not in fixed]
        over = f", each averaged over {r.strata} settings of {', '.join(others)}" if r.strata > 1 else ""
        head = (f"**{r.factor} {fmt_value(r.level)} vs {fmt_value(r.baseline)}**{scope} "
                f"({seeds(r.seeds)}{over})")
        out.append(f"{head}: " + "; ".join(measure_clause(x) for x in group) + ".")
    return out


def decision_summary(rows: Sequence[EffectRow], max_seeds: int, contrasts: bool = False) -> list[str]:
    """How many distinct comparisons the effect rows make (a comparison's accuracy and time rows count
    once) and how many are decided, naming the test each rests on; with fewer than MIN_PAIRS seeds,
    that they cannot be, and how many seeds the clearest one would need. `contrasts`: the findings lead
    with group-against-group rows at each distance (Boschloo), which test the same runs."""
    if not rows:
        return []
    open_ = [r for r in rows if r.decision and not r.decision.claimed and r.decision.pairs_suggested]
    clearest = min(open_, key=lambda r: r.decision.pairs_suggested, default=None)
    hint = ""
    if clearest is not None:
        what = "test accuracy" if clearest.measure == "acc" else "time to target"
        scope = "" if clearest.within == "all" else f" within {clearest.within}"
        hint = (f" At the spreads seen, the clearest undecided effect ({clearest.factor} "
                f"{fmt_value(clearest.level)} vs {fmt_value(clearest.baseline)}{scope}, {what}) would need about "
                f"{seeds(clearest.decision.pairs_suggested)} "
                f"{'of one sign (exact sign test)' if math.isnan(clearest.decision.low) else 'at 80% power'}; the "
                f"Effects table gives each row's number.")
    n, decided, tests = decision_counts(rows)
    what = f"{n} paired comparison{'s' if n != 1 else ''}"
    if max_seeds < MIN_PAIRS:
        return [f"{seeds(max_seeds).capitalize()} per configuration cannot decide: none of the {what} in the "
                f"Effects table ({len(rows)} rows: a comparison's accuracy and steps-to-target rows are one "
                f"comparison) may be claimed (a claim needs at least {MIN_PAIRS} seeds and a Holm-corrected "
                f"interval that excludes zero).{hint}"]
    how = "; ".join(f"{k} by the {TEST_NAMES.get(t, t)}" for t, k in sorted(tests.items()))
    rest = "" if decided == n else "; the others cannot be decided from these data"
    return [f"{decided} of the {what} in the Effects table {'is' if n == 1 else 'are'} decided ({how or 'none'}; "
            f"Holm-corrected over its "
            f"{len(rows)} rows, a comparison's accuracy and steps-to-target rows counted once, at least "
            f"{MIN_PAIRS} seeds){rest}.{BOSCHLOO_NOTE if contrasts else ''}{hint}"]


BOSCHLOO_NOTE = (" The group-against-group rows at each distance that lead the findings test the same runs "
                 "(Boschloo's exact test of the counts): a difference found there and here is one finding, not two.")


TEST_NAMES = {"paired t": "paired t interval", "sign test": "exact sign test (every seed's difference the same)",
              "paired t and sign test": "paired t interval on one measure and the exact sign test on the other"}


# ----------------------------------------------------------------------------- gradient reach

RATIOS = ("vanishing_ratio_init", "vanishing_ratio_final")


def _readout(runs: pd.DataFrame) -> pd.Series:
    """Each run's read-out ('readout', else the grid axis 'model.readout'; '' when neither is there)."""
    for col in ("readout", "model.readout"):
        if col in runs.columns:
            return runs[col].astype(object).where(runs[col].notna(), "").astype(str)
    return pd.Series("", index=runs.index, dtype=object)


LAST_VALID_NOTE = ("With read-out last_valid the classifier reads each text's last token, so the distance the "
                   "gradient must cross is 0 by construction; its vanishing ratio is not shown.")


def reach_sentences(runs: pd.DataFrame, distance: str = "pad_size") -> list[str]:
    """The vanishing ratio log10(‖∂L/∂x_s‖ / ‖∂L/∂x_read‖) per cell (or arm; × layernorm or read-out
    where they vary) at the longest distance, s the position `source_position` names, at initialisation
    and after training: the mean over the finite values, and the runs whose gradient underflowed to 0
    counted as 'below 1e-38 (underflow) in k of n runs'. Runs with read-out last_valid are left out
    (their distance is 0 by construction, so a ratio near 10^0 is no evidence), said once."""
    cols = [c for c in RATIOS if c in runs.columns]
    if not cols:
        return []
    d = runs[runs[cols].notna().any(axis=1)]
    if d.empty or distance not in d.columns:
        return []
    readout = _readout(d)
    note = [LAST_VALID_NOTE] if (readout == "last_valid").any() else []
    d = d[readout != "last_valid"].assign(readout=readout[readout != "last_valid"])
    if d.empty:
        return note
    far = d[distance].max()
    at = d[d[distance] == far]
    by = [group_key(d)] + [k for k in ("layernorm", "readout") if k in at.columns and at[k].nunique(dropna=True) > 1]
    s = ratio_summaries(at, by, RATIOS)
    parts = [f"{'/'.join(str(r[k]) for k in by)} {ratio_text(r, RATIOS[0])} at init → {ratio_text(r, RATIOS[1])} "
             f"after training" for _, r in s.iterrows()]
    where, caveat = source_position(at)
    return [f"At {distance} {fmt_value(far)}, the gradient at {where} is, relative to the gradient at the read-out "
            f"position (mean log10 over the runs where it did not underflow): " + "; ".join(parts) + ". Around 10^0 "
            "the gradient reaches that position undiminished; far below, it vanishes on the way." + caveat
            + (f" {note[0]}" if note else "")]


def source_position(runs: pd.DataFrame) -> tuple[str, str]:
    """(what the vanishing ratio's position is, a caveat): with a lag the probe compares the texts' last
    position, pad_size - 1, lag steps before a `last` read-out (the text position nearest the read-out);
    without one the sequence's first position, 0, which is padding wherever a text is shorter than
    pad_size and lies pad_size - 1 steps before the read-out, so not the gradient at the text."""
    lag = pd.to_numeric(runs["lag"], errors="coerce") if "lag" in runs.columns else pd.Series(np.nan, runs.index)
    last = _readout(runs).isin(["last", ""]).all()
    pad = pd.to_numeric(runs["pad_size"], errors="coerce") if "pad_size" in runs.columns else None
    if lag.notna().all() and len(runs):
        d = lag.unique()
        steps = f", {fmt_value(d[0])} steps before the read-out" if last and len(d) == 1 else ""
        return f"the texts' last position (pad_size − 1{steps}: the text position nearest the read-out)", ""
    if lag.isna().all():
        steps = ""
        if last and pad is not None and pad.nunique(dropna=True) == 1:
            steps = f", {int(pad.dropna().iloc[0]) - 1} steps before the read-out"
        return (f"the sequence's first position (position 0{steps})",
                " Position 0 is padding wherever a text is shorter than pad_size, so this is not the gradient at "
                "the text.")
    return ("the position each run's probe compares (the texts' last position, pad_size − 1, with a lag; the "
            "sequence's first position, 0, without one)", "")


# ----------------------------------------------------------------------------- machines

def machine_warning(mixed: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """A warning when one configuration's runs come from different kinds of machine or kernel set."""
    if mixed is None or mixed.empty:
        return []
    r = mixed.iloc[0]
    return [f"**Warning: mixed machines.** The runs of {len(mixed)} configuration(s) come from more than one kind "
            f"of machine or kernel set (e.g. {describe(r, keys)}: {' | '.join(r['kinds'])}). Floating-point order "
            f"differs between kernel sets, and a run near the edge of learning can flip between learning and "
            f"not; read those configurations' outcomes with care (Provenance lists them)."]


# ----------------------------------------------------------------------------- all

def findings(runs: pd.DataFrame, *, fits: Sequence[FrontierFit], effects: Sequence[EffectRow],
             varying: Sequence[str], target: float | None, planned: int | None, max_seeds: int,
             mixed: pd.DataFrame | None = None, frontier: bool = True) -> list[str]:
    """Every finding, in reading order: the frontier first (with `frontier` False, where no distance
    varies, there is none to lead with)."""
    if runs.empty:
        return coverage(runs, varying, planned)
    out = frontier_lead(fits, target, budget_steps(runs)) if frontier else []
    out += coverage(runs, varying, planned)
    out += machine_warning(mixed, varying)
    out += seeds_caveat(max_seeds)
    out += success_sentences(fits, target)
    key = fits_group_key(fits) if fits else "cell"
    out += decision_summary(effects, max_seeds, frontier and len({str(f.group.get(key)) for f in fits}) > 1)
    if stopped_at_target(runs):
        out.append(STOP_AT_TARGET_NOTE)
    out += effect_sentences(effects, varying)
    if not varying:
        out.append("No factor varies in these results, so there is nothing to compare.")
    distance = fits[0].distance if fits else "pad_size"
    out += reach_sentences(runs, distance)
    return out
