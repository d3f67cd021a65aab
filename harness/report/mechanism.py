"""The mechanism, tested: does failing to learn go with a vanishing gradient?

The reference claim is that a vanilla RNN stops learning at long distances because the gradient from
the read-out vanishes before it reaches the text. With `data.lag` D and read-out `last` every title
ends at position pad_size − 1 and the classifier reads position pad_size + D − 1, exactly D steps
later. A run's *reach* is log10(‖∂L/∂x_t‖ at t = pad_size − 1 / ‖∂L/∂x_t‖ at the read-out), from the
`grad_time` rows of layer `input` (mean over the probe batch), at the first probe step (initialisation)
and at the last (the end of training). Position 0 is not used: it is padding for most titles, and its
distance from the read-out is not D. At D = 0 the two positions coincide (reach 10^0 by definition),
so lag 0 is shown but not used to test the rule.

Per group and distance: the median reach at initialisation and at the end, and how many runs learned
(test accuracy above chance: `harness.report.targets.learned_values`) and reached the target. The rule
the sentence tests, from the data: at every (group, distance) where most runs did not learn, is the
median reach at initialisation below that of every (group, distance) where most did? Where it is
not, the sentence names the pairs that break it.

Pure functions over DataFrames (no I/O, no plotting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.names import level_rank
from harness.report import targets as T
from harness.report.fmt import fmt_value, md_table
from harness.report.outcomes import UNDERFLOW_TEXT, group_name

if TYPE_CHECKING:
    from harness.report.data import ReportData

__all__ = ["run_reach", "mechanism_table", "mechanism_sentence", "mechanism_markdown", "reach_text"]

LAYER = "input"


def run_reach(grad_time: pd.DataFrame, runs: pd.DataFrame, layer: str = LAYER) -> pd.DataFrame:
    """Per run with a lag and read-out `last` (a run without a `readout` column counts as `last`):
    trial_id, reach_init and reach_end = log10(‖∂L/∂x‖ at the text's last position pad_size − 1 /
    ‖∂L/∂x‖ at the read-out pad_size + lag − 1) for `layer`, at the run's first and last probe step
    (reach_end nan when it was probed once). -inf where the gradient at the text underflowed to 0, nan
    where the read-out's is 0 or a position is missing."""
    cols = ["trial_id", "reach_init", "reach_end"]
    if grad_time is None or grad_time.empty or runs.empty or "lag" not in runs.columns:
        return pd.DataFrame(columns=cols)
    meta = runs[["trial_id"]].copy()
    meta["pad"] = pd.to_numeric(runs["pad_size"], errors="coerce")
    meta["lag"] = pd.to_numeric(runs["lag"], errors="coerce")
    readout = runs["readout"].astype(str) if "readout" in runs.columns else pd.Series("last", index=runs.index)
    meta = meta[(readout == "last") & meta["pad"].notna() & meta["lag"].notna()]
    g = grad_time[grad_time["layer"] == layer].merge(meta, on="trial_id")
    if g.empty:
        return pd.DataFrame(columns=cols)
    pos = pd.to_numeric(g["position"])
    g = g.assign(src=pos == g["pad"] - 1, read=pos == g["pad"] + g["lag"] - 1,
                 norm=pd.to_numeric(g["grad_norm"], errors="coerce"))
    steps = g.groupby("trial_id")["step"].agg(first="min", last="max")
    g = g[g["src"] | g["read"]]                  # the two positions each run's reach compares
    out = []
    for tid, t in g.groupby("trial_id", sort=False):
        first, last = steps.loc[tid, "first"], steps.loc[tid, "last"]
        out.append({"trial_id": tid, "reach_init": _reach(t, first),
                    "reach_end": _reach(t, last) if last > first else math.nan})
    return pd.DataFrame(out, columns=cols)


def _reach(t: pd.DataFrame, step: int) -> float:
    at = t[t["step"] == step]
    src, read = at.loc[at["src"], "norm"], at.loc[at["read"], "norm"]
    if src.empty or read.empty or not read.iloc[0] > 0:
        return math.nan
    if not src.iloc[0] > 0:
        return -math.inf
    return float(math.log10(src.iloc[0] / read.iloc[0]))


def _median(v: pd.Series) -> float:
    x = pd.to_numeric(v, errors="coerce").to_numpy(float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def mechanism_table(outcomes: pd.DataFrame, reach: pd.DataFrame, learned: pd.Series, group: str, distance: str,
                    by: Sequence[str] = ()) -> pd.DataFrame:
    """Per group × level of `by` × distance: runs (with an outcome), learned_k of learned_n (`learned`:
    1/0/nan per run, aligned with `outcomes`), reached_k of reached_n (the headline's target), probed
    (runs with a reach at initialisation) and the medians init and end (log10 reach)."""
    keys = [group, *by, distance]
    cols = [*keys, "runs", "learned_k", "learned_n", "reached_k", "reached_n", "probed", "init", "end"]
    known = outcomes[outcomes["reached"].notna() & outcomes[distance].notna()]
    if known.empty:
        return pd.DataFrame(columns=cols)
    d = known.assign(_learned=learned.reindex(known.index)).merge(reach, on="trial_id", how="left")
    rows = []
    for key, g in d.groupby(keys, dropna=False, sort=False):
        lv = g["_learned"].dropna()
        rows.append({**dict(zip(keys, key)), "runs": len(g), "learned_k": int(lv.sum()), "learned_n": int(lv.size),
                     "reached_k": int(g["reached"].sum()), "reached_n": int(g["reached"].notna().sum()),
                     "probed": int(pd.to_numeric(g["reach_init"], errors="coerce").notna().sum()),
                     "init": _median(g["reach_init"]), "end": _median(g["reach_end"])})
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values([*keys[:-1], distance], key=_sort_key, kind="stable").reset_index(drop=True)


def _sort_key(col: pd.Series) -> pd.Series:
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        return col.map(lambda v: (level_rank(v), str(v)))
    return col


def reach_text(x: float) -> str:
    """'10^-6.5'; below 1e-38 for -inf (underflow); 'not probed' for nan."""
    if math.isnan(x):
        return "not probed"
    if math.isinf(x):
        return UNDERFLOW_TEXT
    return f"10^{x:.1f}"


def _pair(row: pd.Series, group: str, distance: str, by: Sequence[str]) -> str:
    scope = "".join(f", {k} {fmt_value(row[k])}" for k in by)
    return f"{group_name(group, row[group])} at {distance} {fmt_value(row[distance])}{scope}"


def _majority(row: pd.Series, outcome: str) -> str | None:
    """'learned' when more than half of the runs with that outcome had it, 'failed' when fewer than
    half, None when exactly half or none is known."""
    k, n = row[f"{outcome}_k"], row[f"{outcome}_n"]
    if n == 0 or 2 * k == n:
        return None
    return "learned" if 2 * k > n else "failed"


def mechanism_sentence(table: pd.DataFrame, group: str, distance: str, by: Sequence[str] = (),
                       outcome: str = "learned") -> str:
    """One sentence, from the numbers, on whether failing to learn goes with a vanishing gradient at
    initialisation. The rule: every (group, distance > 0) where most runs did not learn (`outcome`:
    'learned', test accuracy above chance, or 'reached', the target) has a median reach at
    initialisation below that of every (group, distance > 0) where most did. Where it fails, the
    sentence names the failing pair with the highest reach against the learning pair with the lowest,
    and lists every pair that breaks it."""
    did = {"learned": ("learned", "fails to learn", "runs above chance"),
           "reached": ("reached the target", "does not reach the target", "runs reached it")}[outcome]
    t = table[(pd.to_numeric(table[distance], errors="coerce") > 0) & table["init"].notna()].copy()
    t["_side"] = [_majority(r, outcome) for _, r in t.iterrows()]
    failed, learned = t[t["_side"] == "failed"], t[t["_side"] == "learned"]

    def counts(r: pd.Series) -> str:
        return f"{int(r[f'{outcome}_k'])} of {int(r[f'{outcome}_n'])} {did[2]}"

    if failed.empty and learned.empty:
        return f"No {group} and {distance} above 0 has a majority of runs on either side, so the rule cannot be tested."
    if failed.empty:
        return (f"Most runs {did[0]} at every {group} and {distance} above 0 tested, so there is no failure to set "
                "against the gradient: the table shows the reach only.")
    if learned.empty:
        return (f"Most runs did not learn at every {group} and {distance} above 0 tested, so there is no learning "
                "to set a vanishing gradient against: the table shows the reach only.")
    floor = learned.loc[learned["init"].idxmin()]
    breaks = failed[failed["init"] >= floor["init"]]
    if breaks.empty:
        worst = failed.loc[failed["init"].idxmax()]
        return (f"Failing to learn goes with a vanishing gradient here: wherever most runs did not learn "
                f"({'; '.join(_pair(r, group, distance, by) for _, r in failed.iterrows())}), the median gradient "
                f"at the text at initialisation is below every one where most did (at most {reach_text(worst['init'])}"
                f" of the read-out's, against at least {reach_text(floor['init'])} for "
                f"{_pair(floor, group, distance, by)}).")
    top = breaks.loc[breaks["init"].idxmax()]
    named = "; ".join(_pair(r, group, distance, by) for _, r in breaks.iterrows())
    return (f"Failing to learn does not go with a vanishing gradient throughout: {_pair(top, group, distance, by)} "
            f"{did[1]} ({counts(top)}) although its gradient at the text is {reach_text(top['init'])} of the "
            f"read-out's at initialisation, while {_pair(floor, group, distance, by)} {did[0]} ({counts(floor)}) "
            f"with {reach_text(floor['init'])}; the rule 'where most runs did not learn, the median reach at "
            f"initialisation is below every reach where most did' breaks at {len(breaks)} of the {len(failed)} "
            f"{group}–{distance} pairs where most runs did not learn ({named}).")


def sentence(data: ReportData) -> str:
    """The mechanism sentence alone (for the answer paragraph); '' where the section is not drawn."""
    sel = T.select(data)
    if sel is None or sel.distance != "lag":
        return ""
    reach = run_reach(data.tables.get("grad_time"), sel.outcomes)
    if reach.empty:
        return ""
    learned = T.learned_values(sel.outcomes, data.tables.get("confusion"))
    table = mechanism_table(sel.outcomes, reach, learned, sel.group, sel.distance, sel.by)
    outcome = "learned" if int(table["learned_n"].sum()) > 0 else "reached"
    return mechanism_sentence(table, sel.group, sel.distance, sel.by, outcome)


def mechanism_markdown(data: ReportData) -> str:
    """The section: which outcome is used, the table per group and distance, and the sentence. ''
    where no lag varies (the reach at the text is defined for a lag with read-out `last` only)."""
    sel = T.select(data)
    if sel is None or sel.distance != "lag":
        return ""
    runs = sel.outcomes
    reach = run_reach(data.tables.get("grad_time"), runs)
    if reach.empty:
        return ("_No gradient-reach probe with a lag and read-out `last` in these runs (train.instrument, "
                "model.readout), so the mechanism cannot be read._\n")
    learned = T.learned_values(runs, data.tables.get("confusion"))
    table = mechanism_table(runs, reach, learned, sel.group, sel.distance, sel.by)
    outcome = "learned" if int(table["learned_n"].sum()) > 0 else "reached"
    rows = []
    for _, r in table.iterrows():
        rows.append({sel.group: r[sel.group], **{k: fmt_value(r[k]) for k in sel.by},
                     sel.distance: fmt_value(r[sel.distance]),
                     "learned (above chance)": f"{r['learned_k']} of {r['learned_n']}",
                     "reached the target": f"{r['reached_k']} of {r['reached_n']}",
                     "reach at initialisation (median)": reach_text(r["init"]),
                     "reach at the end (median)": reach_text(r["end"]), "runs probed": int(r["probed"])})
    what = ("learned at all (test accuracy above chance, exact binomial p < 0.001)" if outcome == "learned"
            else "reached the target (no run has a test accuracy to test against chance)")
    intro = (f"The gradient at the text's last character (position pad_size − 1, {sel.distance} steps before the "
             "read-out) relative to the gradient at the read-out, for the embedding output (the probe's mean "
             "‖∂L/∂x_t‖ over its batch), per run at the first probe (initialisation) and the last (end of "
             f"training); medians over the runs of each {sel.group} and {sel.distance}, against how many runs "
             f"{what}. At {sel.distance} 0 the two positions coincide (10^0 by definition), so it does not enter the "
             "rule.")
    note = f"{sel.seeds_note}\n\n" if sel.seeds_note else ""
    sentence = mechanism_sentence(table, sel.group, sel.distance, sel.by, outcome)
    return f"{intro}\n\n{note}**{sentence}**\n\n{md_table(pd.DataFrame(rows))}"
