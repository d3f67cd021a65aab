"""Per-run outcomes and the per-configuration tables built on them: success (reached the target
dev accuracy, k of n runs), time to target as survival data, the frontier (D50 against distance),
vanishing ratios with underflow counted, and the machines the runs came from.

Pure functions over DataFrames (no I/O, no plotting); the estimators are in `harness.stats`.

Censoring: a run that reached the target has its event at `steps_to_target`; one that did not is
censored at its own last evaluated step (the last `step` of its curves rows; its `steps` column
only when it has no curves rows). A diverged run can never reach the target, so it stays "below
target" to the end: it is censored at the longest last evaluated step of the results. A failed run
(an error, not a training outcome) has no outcome: it is counted as missing, never as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.names import cell_entry, level_rank
from harness.report.fmt import fmt_value
from harness.report.stats import ARM, group_key, ordered_levels, sort_configs
from harness.stats.frontier import D50Fit, fit_d50
from harness.stats.rates import wilson_interval
from harness.stats.summaries import log_ratio_summary
from harness.stats.survival import kaplan_meier, km_median

# Per-run columns that say which machine and kernel set produced a run (absent in older results).
PROVENANCE_COLUMNS = ("device", "cpu_model", "cpu_capability", "onednn_version", "cudnn_version", "gpu_name",
                      "torch_version")
UNDERFLOW_TEXT = "below 1e-38 (underflow)"


# ----------------------------------------------------------------------------- per run

def largest_per_run(runs: pd.DataFrame, curves: pd.DataFrame | None, curve_column: str, runs_column: str
                    ) -> pd.Series:
    """Each run's largest `curve_column` over its curves rows, else its `runs_column`, else nan (float,
    index aligned with `runs`)."""
    out = pd.Series(np.nan, index=runs.index, dtype="float64")
    if curves is not None and len(curves):
        top = pd.to_numeric(curves[curve_column], errors="coerce").groupby(curves["trial_id"]).max()
        out = runs["trial_id"].map(top).astype("float64")
    if runs_column in runs.columns:
        out = out.fillna(pd.to_numeric(runs[runs_column], errors="coerce"))
    return out


def last_evaluated_step(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    """Each run's last evaluated step (index aligned with `runs`): the largest `step` of its curves
    rows, else its `steps` column, else nan."""
    return largest_per_run(runs, curves, "step", "steps")


def run_outcomes(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """A copy of `runs` with `last_step`, `reached` (1.0 / 0.0; nan for a failed run or one with no
    step recorded) and `time` (the event or censoring step; nan where `reached` is nan)."""
    d = runs.copy()
    d["last_step"] = last_evaluated_step(d, curves)
    stt = pd.to_numeric(d["steps_to_target"], errors="coerce") if "steps_to_target" in d else np.nan
    reached = pd.Series(np.where(np.isfinite(stt), 1.0, 0.0), index=d.index)
    longest = d["last_step"].max() if d["last_step"].notna().any() else np.nan
    censor = np.where(d["status"] == "diverged", longest, d["last_step"])
    time = np.where(reached == 1.0, stt, censor)
    unknown = (d["status"] == "failed").to_numpy() | np.isnan(time.astype(float))
    d["reached"] = reached.mask(unknown)
    d["time"] = pd.Series(time, index=d.index, dtype="float64").mask(unknown)
    return d


# ----------------------------------------------------------------------------- per configuration

def success_summary(runs: pd.DataFrame, keys: Sequence[str], reached: str = "reached") -> pd.DataFrame:
    """One row per configuration (combination of `keys`): k of n runs reached the target, `rate` (k/n,
    nan when n is 0), `low`/`high` (its Wilson 95% interval), `missing` (runs whose outcome is null:
    counted here, not in n) and `undecided` (the interval contains 0.5)."""
    keys = list(keys)
    cols = [*keys, "k", "n", "rate", "low", "high", "missing", "undecided"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in runs.groupby(keys, dropna=False, sort=True) if keys else [((), runs)]:
        key = key if isinstance(key, tuple) else (key,)
        r = pd.to_numeric(g[reached].astype("object"), errors="coerce").to_numpy(dtype=np.float64)
        known = r[~np.isnan(r)]
        k, n = int((known != 0).sum()), int(known.size)
        low, high = wilson_interval(k, n)
        rows.append({**dict(zip(keys, key)), "k": k, "n": n, "rate": k / n if n else math.nan, "low": low,
                     "high": high, "missing": int(np.isnan(r).sum()), "undecided": low <= 0.5 <= high})
    return pd.DataFrame(rows, columns=cols)


def success_table(outcomes: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per configuration: k of n runs reached the target, rate, Wilson 95% interval, `missing`
    (failed runs), and the survival columns: median steps to target with its interval (nan where
    it does not exist), `last_min`/`last_max` (the runs' last evaluated steps, their budgets)."""
    keys = list(keys)
    s = success_summary(outcomes, keys, "reached")
    if s.empty:
        return s
    medians = []
    for key, g in outcomes.groupby(keys, dropna=False, sort=True):
        g = g[g["reached"].notna()]
        m = km_median(g["time"].to_numpy(float), g["reached"].to_numpy(float) == 1.0) if len(g) else None
        medians.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                        **{c: finite_or_nan(v) for c, v in zip(("median", "median_low", "median_high"),
                                                                 m or (None, None, None))}})
    s = s.merge(pd.DataFrame(medians, columns=[*keys, "median", "median_low", "median_high"]), on=keys, how="left")
    budgets = outcomes.groupby(keys, dropna=False)["last_step"].agg(last_min="min", last_max="max").reset_index()
    return sort_configs(s.merge(budgets, on=keys, how="left"), keys)


def outcome_label(low: float, high: float) -> str:
    """'reached' / 'failed' when the success rate's interval lies above / below 0.5, else 'undecided'."""
    return "reached" if low > 0.5 else "failed" if high < 0.5 else "undecided"


def mark_near_frontier(success: pd.DataFrame, keys: Sequence[str], distance: str | None) -> pd.DataFrame:
    """`success` (see success_table) with a bool column `near_frontier`: a configuration whose runs
    are mixed (some reached the target, some not), or whose neighbour along the distance (the next
    shorter or longer distance tested, every other factor the same) has another outcome label.

    Why: the outcome of a run near the edge of learning is chaotic (another seed, or another CPU
    kernel set's floating-point order, flips it), so whether such a configuration is decided, and
    every claim that pools it, can differ between two machines even when neither is wrong. The mark is a
    caution for the reader, not a licence: the reproduction check (benchmarks/compare_conclusions.py)
    tests counts against counts whatever the marks say."""
    s = success.copy()
    if s.empty:
        s["near_frontier"] = pd.Series(dtype=bool)
        return s
    label = [outcome_label(lo, hi) for lo, hi in zip(s["low"], s["high"])]
    near = ((s["k"] > 0) & (s["k"] < s["n"])).to_numpy(copy=True)
    if distance in s.columns and s[distance].nunique(dropna=True) > 1:
        others = [k for k in keys if k != distance]
        s["_label"] = label
        groups = s.groupby(others, dropna=False, sort=False).groups.values() if others else [s.index]
        for idx in groups:
            g = s.loc[idx].sort_values(distance, key=lambda c: c.astype(float))
            labels = g["_label"].tolist()
            for i, row in enumerate(g.index):
                if (i > 0 and labels[i - 1] != labels[i]) or (i + 1 < len(labels) and labels[i + 1] != labels[i]):
                    near[s.index.get_loc(row)] = True
        s = s.drop(columns="_label")
    s["near_frontier"] = near
    return s


def km_curves(outcomes: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, censored): per configuration, the Kaplan-Meier share of runs that have reached the
    target by each step (1 - S, a step function from (0, 0) to the last observed time) with n, and
    the censored runs as points (time, share at that time) for the figure's tick marks."""
    keys = list(keys)
    rows, marks = [], []
    known = outcomes[outcomes["reached"].notna()]
    for key, g in (known.groupby(keys, dropna=False, sort=True) if len(known) else []):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        t, e = g["time"].to_numpy(float), g["reached"].to_numpy(float) == 1.0
        km = kaplan_meier(t, e)
        end = max(float(t.max()), float(g["last_step"].max()) if g["last_step"].notna().any() else 0.0)
        xs = np.concatenate([[0.0], km.times, [end]])
        ys = np.concatenate([[0.0], 1.0 - km.survival, [1.0 - (km.survival[-1] if km.times.size else 1.0)]])
        rows += [{**key, "time": x, "share": y, "n": len(g)} for x, y in zip(xs, ys)]
        for tc in t[~e]:
            marks.append({**key, "time": tc, "share": float(ys[np.searchsorted(xs, tc, side="right") - 1])})
    cols = [*keys, "time", "share", "n"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(marks, columns=[*keys, "time", "share"])


# ----------------------------------------------------------------------------- frontier (D50)

def distance_column(runs: pd.DataFrame) -> str:
    """'lag' when the runs carry a varying lag (a controlled distance), or a lag while pad_size does
    not vary (the distance is then the lag, not the length texts are cut to); else 'pad_size'."""
    if "lag" not in runs.columns or runs["lag"].notna().sum() == 0:
        return "pad_size"
    if runs["lag"].nunique(dropna=True) > 1:
        return "lag"
    pad_varies = "pad_size" in runs.columns and runs["pad_size"].nunique(dropna=True) > 1
    return "pad_size" if pad_varies or runs["lag"].isna().any() else "lag"


@dataclass(frozen=True)
class FrontierFit:
    """The D50 fit of one group (a setting of every varied factor but the distance)."""

    group: dict
    distance: str
    points: pd.DataFrame          # per distance: k, n, rate, low, high (Wilson)
    fit: D50Fit | None          # None when the group has no run with an outcome


def frontier_fits(outcomes: pd.DataFrame, varying: Sequence[str], *, n_boot: int = 1000) -> list[FrontierFit]:
    """Per cell (or arm, with arms) × layernorm × every other varied factor: the success rate at each
    distance and `fit_d50` of reaching the target against distance (distance: `distance_column`)."""
    dist = distance_column(outcomes)
    if dist not in outcomes.columns:
        return []
    by = [k for k in (group_key(outcomes), "layernorm") if k in outcomes.columns]
    by += [k for k in varying if k not in (*by, dist)]
    known = outcomes[outcomes["reached"].notna() & outcomes[dist].notna()]
    out = []
    for key, g in (known.groupby(by, dropna=False, sort=False) if len(known) else []):
        group = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        points = success_summary(g, [dist], "reached")
        fit = fit_d50(g[dist].to_numpy(float), g["reached"].to_numpy(float) == 1.0, n_boot=n_boot, rng=0)
        out.append(FrontierFit(group, dist, points, fit))
    return sorted(out, key=lambda f: tuple(_level_key(v) for v in f.group.values()))


def _level_key(v: object) -> tuple:
    """Numbers ascending, then names in registry order (rnn, lstm, gru; none, output, recurrent)."""
    return (0, v, 0, "") if isinstance(v, (int, float, np.number)) else (1, 0, level_rank(v), str(v))


# ----------------------------------------------------------------------------- vanishing ratios

def ratio_summaries(runs: pd.DataFrame, by: Sequence[str], cols: Sequence[str]) -> pd.DataFrame:
    """Per group of `by`, for each log10-ratio column: `log_ratio_summary` (mean over the finite
    values, and how many runs underflowed to -inf), flattened as `<col>_<field>`."""
    rows = []
    for key, g in runs.groupby(list(by), dropna=False, sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for c in cols:
            v = pd.to_numeric(g[c], errors="coerce").to_numpy(float) if c in g else np.full(len(g), np.nan)
            row.update({f"{c}_{k}": x for k, x in log_ratio_summary(v).items()})
        rows.append(row)
    return sort_configs(pd.DataFrame(rows), by) if rows else pd.DataFrame()


def ratio_text(s: pd.Series | dict, col: str) -> str:
    """'10^-4.6' for a mean over all runs; with underflow, '10^-4.6 in 1 of 2 runs, below 1e-38
    (underflow) in 1 of 2'; 'not recorded' when no run recorded it."""
    n, under, finite = int(s[f"{col}_n"]), int(s[f"{col}_underflow"]), int(s[f"{col}_n_finite"])
    recorded = n - int(s[f"{col}_missing"])
    if recorded == 0:
        return "not recorded"
    parts = []
    if finite:
        mean = f"10^{s[f'{col}_mean']:.1f}"
        parts.append(mean if finite == recorded else f"{mean} in {finite} of {recorded} runs")
    if under:
        parts.append(f"{UNDERFLOW_TEXT} in {under} of {recorded} runs")
    over = int(s[f"{col}_overflow"])
    if over:
        parts.append(f"undefined (zero gradient at the read-out) in {over} of {recorded} runs")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- provenance

def machine_kinds(runs: pd.DataFrame) -> pd.Series:
    """Each run's kind of machine and kernel set, as one string from the provenance columns it
    has ('' when it has none). Missing values read '?'."""
    cols = [c for c in PROVENANCE_COLUMNS if c in runs.columns]
    if not cols:
        return pd.Series("", index=runs.index, dtype=object)
    vals = runs[cols].astype(object).where(runs[cols].notna(), "?").astype(str)
    return vals.apply(lambda r: "; ".join(f"{c}={v}" for c, v in r.items() if v != "?") or "", axis=1)


def mixed_machines(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The configurations whose runs come from more than one kind of machine: keys, `kinds` (the
    distinct kinds), `differ` (the provenance columns with more than one recorded value) and `runs`.
    Only recorded values count: a run that lacks a column (older results) differs from none."""
    cols = [c for c in PROVENANCE_COLUMNS if c in runs.columns]
    out_cols = [*keys, "kinds", "differ", "runs"]
    if runs.empty or not cols:
        return pd.DataFrame(columns=out_cols)
    d = runs.assign(_kind=machine_kinds(runs))
    rows = []
    for key, g in d.groupby(list(keys), dropna=False, sort=True):
        differ = [c for c in cols if g[c].nunique(dropna=True) > 1]
        if differ:
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                         "kinds": sorted(set(g["_kind"]) - {""}), "differ": differ, "runs": len(g)})
    return pd.DataFrame(rows, columns=out_cols)


def cell_name(cell: object) -> str:
    """How a sentence names a cell: its registry entry's label ('the RNN', 'the LSTM', 'the GRU'); a
    plugin's or any other name as given."""
    entry = cell_entry(str(cell))
    return entry.label if entry is not None else str(cell)


def group_name(key: str, value: object) -> str:
    """How a sentence names a group: a cell as 'the LSTM', an arm (grid.arm) as 'arm lstm-fb0'."""
    return f"arm {value}" if key == ARM else cell_name(value)


def fits_group_key(fits: Sequence[FrontierFit]) -> str:
    """The key that names the fits' groups: 'arm' when they were fitted per arm, else 'cell'."""
    return ARM if any(ARM in f.group for f in fits) else "cell"


def ordered_groups(fits: Sequence[FrontierFit]) -> list[tuple[object, list[FrontierFit]]]:
    """The fits grouped by cell (or by arm, with arms), in registry order."""
    key = fits_group_key(fits)
    names = ordered_levels(pd.Series([f.group.get(key) for f in fits]))
    return [(c, [f for f in fits if f.group.get(key) == c]) for c in names]


def finite_or_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


# ----------------------------------------------------------------------------- D50 in words

def _dist(x: float) -> str:
    return fmt_value(int(x) if float(x).is_integer() else float(x))


def unsplit_reason(fit: D50Fit, distance: str) -> str:
    """Why a D50 whose runs split with one mixed distance (status 'separated', not `perfect`) has no
    estimate: 'the runs are mixed only at lag 16 (5 of 12 reached the target), all reached it up to
    lag 8 and none from lag 32 on: a logistic fit has no finite slope'."""
    mixed = fit.mixed()
    if not mixed:
        return "the runs split with mixed outcomes at one distance: a logistic fit has no finite slope"
    at = "; ".join(f"{distance} {_dist(d)} ({k} of {n} reached the target)" for d, k, n in mixed)
    full = [d for d, k, n in fit.counts if k == n and (not mixed or d < mixed[0][0])]
    none = [d for d, k, n in fit.counts if k == 0 and (not mixed or d > mixed[-1][0])]
    sides = []
    if full:
        sides.append(f"every run reached it up to {distance} {_dist(max(full))}")
    if none:
        sides.append(f"none from {distance} {_dist(min(none))} on")
    return (f"the runs are mixed only at {at}" + (f", {' and '.join(sides)}" if sides else "")
            + ": a logistic fit has no finite slope")


def d50_range_text(fit: D50Fit, distance: str) -> str:
    """Where the data put a D50 that has no estimate, from the distances whose rates are decided
    ('between lag 8 and 32', 'above lag 16', 'below lag 8')."""
    if fit.low is not None and fit.high is not None:
        return f"between {distance} {_dist(fit.low)} and {_dist(fit.high)}"
    if fit.low is not None:
        return f"above {distance} {_dist(fit.low)}"
    return f"below {distance} {_dist(fit.high)}" if fit.high is not None else "anywhere in the range tested"


# ----------------------------------------------------------------------------- the budget

def budget_steps(runs: pd.DataFrame) -> float | None:
    """The training budget a negative statement may rest on, in steps: the fewest steps that any run
    which finished without reaching the target trained (`steps`, or `last_step`), so "did not reach the
    target within N steps" holds for every such run; where every run reached it, the most steps any
    run trained. None without a steps column."""
    col = "steps" if "steps" in runs.columns else "last_step" if "last_step" in runs.columns else None
    if col is None or runs.empty:
        return None
    steps = pd.to_numeric(runs[col], errors="coerce")
    ok = runs["status"].isin(["complete", "pruned"]) if "status" in runs.columns else pd.Series(True, runs.index)
    stt = (pd.to_numeric(runs["steps_to_target"], errors="coerce") if "steps_to_target" in runs.columns
           else pd.Series(np.nan, index=runs.index))
    missed = steps[ok & stt.isna() & steps.notna()]
    if len(missed):
        return float(missed.min())
    return float(steps.max()) if steps.notna().any() else None


def steps_text(n: float | None) -> str:
    """'1,000 steps' ('its budget' when unknown)."""
    return "its budget" if n is None or not math.isfinite(n) else f"{n:,.0f} steps"
