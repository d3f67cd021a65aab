"""Tables for the report: pure functions over DataFrames (no I/O, no plotting) that shape the
results into per-configuration summaries and the tables the figures draw. The statistical
estimators (intervals, survival, corrected effects) are in `harness.stats`; per-run outcomes
(success, censoring) in `outcomes`; paired effects in `effects`.

Selection happens on dev data only: where a figure shows one setting of the factors a panel cannot
hold, or one trial per cell × layernorm, it is the one with the best dev accuracy (`best_dev_acc`),
never the best test accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.names import STATUSES, level_rank
from harness.schema import NUMERIC_RUN_COLUMNS
from harness.stats.summaries import iqm

IQM_MIN_RUNS = 4          # the interquartile mean cuts floor(n/4) runs from each end: from 4 runs on
SELECT_BY = "best_dev_acc"  # the column every selection uses (dev data only)

# Grid axes every results table carries, in the order the report shows them.
CORE_FACTORS = ("cell", "layernorm", "pad_size", "batch_size", "lr")
ARM = "arm"  # the runs column naming a trial's bundle of settings (grid.arm)

# ----------------------------------------------------------------------------- tables

def prepare_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of the runs table with its numeric columns as floats (nulls as nan; pad_size,
    batch_size and seed as integers when none is null) and a status column that always holds one
    of STATUSES (anything else, or missing, counts as failed)."""
    df = runs.copy()
    for col in NUMERIC_RUN_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("pad_size", "batch_size", "seed"):
        if col in df.columns and df[col].notna().all() and len(df):
            df[col] = df[col].astype("int64")
    if group_key(df) == ARM and "cell" in df.columns:  # a run without an arm (an older grid) is named by its cell
        df[ARM] = df[ARM].astype(object).where(df[ARM].notna(), df["cell"])
    if "status" not in df.columns:
        df["status"] = "failed"
    df["status"] = df["status"].where(df["status"].isin(STATUSES), "failed").astype(object)
    return df.reset_index(drop=True)


def group_key(runs: pd.DataFrame) -> str:
    """The factor whose value names a group of runs (its colour, legend entry and sentences): 'arm'
    when the runs ran named arms (grid.arm: a non-null `arm` column), else 'cell'."""
    return ARM if ARM in runs.columns and runs[ARM].notna().any() else "cell"


def config_keys(runs: pd.DataFrame, grid_axes: Sequence[str] = (), implied: Sequence[str] = ()) -> list[str]:
    """The columns that identify a configuration (every grid axis but the seed): the core factors,
    then any other grid axis (dotted names such as 'model.readout') present in runs. With arms, 'arm'
    comes first, in place of the `implied` keys (those the arms set, see `arm_settings`), except
    layernorm, which stays as the figures' line style (the arm decides it; it is never listed as
    varying)."""
    keys = [ARM] if group_key(runs) == ARM else []
    keys += [k for k in CORE_FACTORS if k in runs.columns and (k not in implied or k == "layernorm")]
    keys += [a for a in grid_axes if a not in keys and a not in implied and a != "seed" and a in runs.columns]
    return keys


def arm_settings(runs: pd.DataFrame, grid_axes: Sequence[str] = (), given: Sequence[str] | None = None
                 ) -> list[str]:
    """The runs columns the arms set (none without arms): `given` (the config's, short names), else
    inferred from the runs, as the factors that vary but never within one arm."""
    if group_key(runs) != ARM:
        return []
    if given is not None:
        return list(given)
    candidates = [k for k in (*CORE_FACTORS, *grid_axes) if k in runs.columns and k not in (ARM, "seed")]
    return [k for k in dict.fromkeys(candidates) if runs[k].nunique() > 1
            and runs.groupby(ARM)[k].nunique(dropna=False).max() <= 1]


def varying(runs: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The keys with more than one distinct value in runs."""
    return [k for k in keys if runs[k].nunique(dropna=True) > 1]


def n_seeds(runs: pd.DataFrame, keys: Sequence[str]) -> int:
    """The largest number of runs with a test accuracy in any one configuration."""
    ok = runs[runs["test_acc"].notna()]
    if ok.empty:
        return 0
    return int(ok.groupby(list(keys), dropna=False).size().max())


def summarize(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per configuration: run counts by status and the test accuracies of the runs that
    finished (diverged and failed runs are counted, not averaged): n, mean, min, max and — from 4
    runs on — the interquartile mean (robust to a few runs stuck at chance). No interval: accuracy
    after a fixed budget is bimodal, so the report's intervals are on success and time to target."""
    keys = list(keys)
    cols = [*keys, "runs", *STATUSES, "acc_n", "acc_mean", "acc_min", "acc_max", "acc_iqm", "samples_per_s"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in runs.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        acc = g["test_acc"].dropna().to_numpy(dtype=float)
        rows.append({
            **dict(zip(keys, key)), "runs": len(g), **{s: int((g["status"] == s).sum()) for s in STATUSES},
            "acc_n": int(acc.size), "acc_mean": float(acc.mean()) if acc.size else math.nan,
            "acc_min": float(acc.min()) if acc.size else math.nan,
            "acc_max": float(acc.max()) if acc.size else math.nan,
            "acc_iqm": iqm(acc) if acc.size >= IQM_MIN_RUNS else math.nan,
            "samples_per_s": float(g["samples_per_s"].mean()) if g["samples_per_s"].notna().any() else math.nan,
        })
    return sort_configs(pd.DataFrame(rows, columns=cols), keys)


def chance_level(confusion: pd.DataFrame, n_classes: int | None = None) -> float | None:
    """1 / number of classes: from the confusion table (its labels), else the given count."""
    if confusion is not None and len(confusion):
        labels = pd.concat([confusion["true_label"], confusion["pred_label"]]).nunique()
        if labels > 0:
            return 1.0 / labels
    if n_classes:
        return 1.0 / n_classes
    return None


def sort_configs(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by `keys`, cells and layernorms in registry order, numbers ascending."""
    keys = [k for k in keys if k in df.columns]
    if df.empty or not keys:
        return df.reset_index(drop=True)

    def key(col: pd.Series) -> pd.Series:
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            return col.map(lambda v: (level_rank(v), str(v)))
        return col
    return df.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def ordered_levels(values: pd.Series) -> list:
    """Distinct values in a stable, meaningful order: the cell and layernorm names in their
    registry order (rnn, lstm, gru; none, output, recurrent), everything else sorted."""
    levels = list(pd.unique(values.dropna()))
    try:
        return sorted(levels, key=lambda v: (level_rank(v), v))
    except TypeError:
        return sorted(levels, key=str)


# ----------------------------------------------------------------------------- figure tables

def best_settings(runs: pd.DataFrame, keys: Sequence[str], by: Sequence[str] | None = None) -> pd.DataFrame:
    """For each combination of `by`, the trials of the configuration (setting of the other keys)
    with the best mean dev accuracy (`best_dev_acc`; never the test accuracy) — what the curves,
    gradient and weight figures show when more factors vary than a panel can hold. Configurations
    with no dev accuracy at all (every seed diverged) are chosen only when nothing else exists.
    `by` defaults to the group key (`group_key`: cell, or arm), layernorm and pad_size. Returns the
    runs rows of the chosen trials."""
    by = [b for b in (by or (group_key(runs), "layernorm", "pad_size")) if b in runs.columns]
    others = [k for k in keys if k not in by]
    if runs.empty:
        return runs
    if not others:
        return runs.copy()
    chosen = []
    for _, g in runs.groupby(by, dropna=False, sort=True):
        score = g.groupby(others, dropna=False)[SELECT_BY].mean()
        best = score.idxmax() if score.notna().any() else score.index[0]
        best = best if isinstance(best, tuple) else (best,)
        mask = np.ones(len(g), dtype=bool)
        for k, v in zip(others, best):
            mask &= (g[k] == v).to_numpy() | (g[k].isna().to_numpy() & pd.isna(v))
        chosen.append(g[mask])
    return pd.concat(chosen, ignore_index=True)


def curve_bands(curves: pd.DataFrame, runs: pd.DataFrame, by: Sequence[str], x: str, y: str) -> pd.DataFrame:
    """Mean, min and max of `y` over the seeds at each `x`, per combination of `by` (runs columns),
    for the trials in `runs`. Columns: *by, x, mean, low, high, n."""
    cols = [*by, x, "mean", "low", "high", "n"]
    if curves.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    d = curves.merge(runs[["trial_id", *by]], on="trial_id")
    d = d[d[y].notna() & d[x].notna()]
    if d.empty:
        return pd.DataFrame(columns=cols)
    g = d.groupby([*by, x], dropna=False)[y]
    out = g.agg(mean="mean", low="min", high="max", n="count").reset_index()
    return out[cols]


def reach_table(grad_time: pd.DataFrame, runs: pd.DataFrame, layer: str = "input") -> pd.DataFrame:
    """Gradient reach ‖∂L/∂x_t‖ for `layer`, against the distance from the read-out position
    (T - 1 - position for readout 'last', T = pad_size + lag the sequence length, lag 0 when null;
    the position itself for other readouts, which read a different position per text), at step 0
    ('start') and at each trial's last probe ('end').
    Per (cell, layernorm, pad_size, lag, phase, distance) — the arm in place of the cell, with arms:
    `grad_norm`, the geometric mean over the seeds whose gradient there is not exactly 0 (nan when
    every seed's is), `n` seeds and `n_zero`, how many underflowed to exactly 0 — counted, never
    clipped to a made-up floor. `lag` is nan for runs without one (the seed's layout)."""
    keys = [group_key(runs), "layernorm", "pad_size", "lag", "phase", "distance"]
    cols = [*keys, "grad_norm", "n", "n_zero"]
    if grad_time.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    meta = runs[["trial_id", keys[0], "layernorm", "pad_size"]].copy()
    meta["lag"] = pd.to_numeric(runs["lag"], errors="coerce") if "lag" in runs.columns else np.nan
    meta["readout"] = runs["readout"] if "readout" in runs.columns else "last"
    d = grad_time[grad_time["layer"] == layer].merge(meta, on="trial_id")
    if d.empty:
        return pd.DataFrame(columns=cols)
    last = d.groupby("trial_id")["step"].transform("max")
    start = d[d["step"] == 0].assign(phase="start")
    end = d[(d["step"] == last) & (last > 0)].assign(phase="end")
    d = pd.concat([start, end], ignore_index=True)
    pos = pd.to_numeric(d["position"])
    length = d["pad_size"] + d["lag"].fillna(0)
    d["distance"] = np.where(d["readout"] == "last", length - 1 - pos, pos).astype("int64")
    g = pd.to_numeric(d["grad_norm"], errors="coerce")
    d["log_g"] = np.log10(g.where(g > 0))
    d["zero"] = (g == 0).astype(int)
    out = (d.groupby(keys, dropna=False)
           .agg(log_g=("log_g", "mean"), n=("zero", "size"), n_zero=("zero", "sum")).reset_index())
    out["grad_norm"] = 10 ** out["log_g"]
    return out[cols]


def group_norm_table(grad_norms: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, layernorm, group, step) — the arm in place of the cell, with arms: the geometric
    mean over the given trials of the group's gradient norm and update ratio (both spread over
    decades, hence the log mean)."""
    g = group_key(runs)
    cols = [g, "layernorm", "group", "step", "grad_norm", "update_ratio"]
    if grad_norms.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    d = grad_norms.merge(runs[["trial_id", g, "layernorm"]], on="trial_id")
    if d.empty:
        return pd.DataFrame(columns=cols)
    for c in ("grad_norm", "update_ratio"):
        v = pd.to_numeric(d[c], errors="coerce")
        d[c] = np.log10(v.where(v > 0))
    out = d.groupby([g, "layernorm", "group", "step"], dropna=False)[["grad_norm", "update_ratio"]].mean()
    return (10 ** out).reset_index()[cols]


def convergence_table(outcomes: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per run of `outcomes.run_outcomes`: its configuration, status, whether it reached the
    target, steps- and samples-to-target, `time` (event or censoring step, nan for a failed run) and
    its budget (`steps`: its last evaluated step; `samples`: that many batches). A censored run is
    known only to need more than its budget; a failed run is kept, to be shown as such."""
    d = outcomes.copy()
    cols = [*keys, "seed", "trial_id", "status", "reached", "time", "steps_to_target", "samples_to_target",
            "steps", "samples"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d["reached"] = d["reached"] == 1.0
    d["steps"] = d["last_step"]
    d["samples"] = d["steps"] * d["batch_size"] if "batch_size" in d.columns else np.nan
    return d[[c for c in cols if c in d.columns]].reset_index(drop=True)


def best_trials(runs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The runs row with the highest dev accuracy (`best_dev_acc`; never the test accuracy) for each
    combination of `by` (default: the group key, cell or arm, and layernorm; ties: first)."""
    ok = runs[runs[SELECT_BY].notna()] if SELECT_BY in runs.columns else runs.iloc[0:0]
    if ok.empty:
        return ok
    by = list(by or (group_key(runs), "layernorm"))
    idx = ok.groupby(list(by), dropna=False)[SELECT_BY].idxmax()
    return sort_configs(ok.loc[idx.to_numpy()], by)


def confusion_matrix(confusion: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    """A (true × predicted) count matrix for one trial, indexed by class name where known."""
    d = confusion[confusion["trial_id"] == trial_id]
    if d.empty:
        return pd.DataFrame()
    true_col = "true_name" if "true_name" in d.columns and d["true_name"].notna().all() else "true_label"
    pred_col = "pred_name" if "pred_name" in d.columns and d["pred_name"].notna().all() else "pred_label"
    order_t = d.sort_values("true_label").drop_duplicates("true_label")[true_col].tolist()
    order_p = d.sort_values("pred_label").drop_duplicates("pred_label")[pred_col].tolist()
    m = d.pivot_table(index=true_col, columns=pred_col, values="count", aggfunc="sum", fill_value=0)
    return m.reindex(index=order_t, columns=order_p, fill_value=0)
