"""Statistics for the report: pure functions over arrays and DataFrames (no I/O, no plotting).

Conventions (as in rliable):

- An interval is a percentile interval from a *stratified* bootstrap: the runs of each stratum
  (a configuration; the seeds are its runs) are resampled with replacement independently, at the
  stratum's own size, so every configuration keeps its weight in every resample.
- Every estimate is `(point, low, high)`. With no values all three are nan; when no stratum has two
  or more values there is nothing to resample and the interval is `(nan, nan)` — one seed gives no
  interval, which the report says rather than drawing a zero-width one.
- Steps-to-target is *censored*: a run that never reached the target has no value (null / nan),
  which here means "more than the run's budget", i.e. +inf — never zero, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.names import STATUSES, level_rank
from harness.schema import NUMERIC_RUN_COLUMNS

CONFIDENCE = 0.95
N_BOOT = 2000

# Grid axes every results table carries, in the order the report shows them.
CORE_FACTORS = ("cell", "layernorm", "pad_size", "batch_size", "lr")

Estimate = tuple[float, float, float]


# ----------------------------------------------------------------------------- bootstrap

def bootstrap_ci(values: Sequence[float] | np.ndarray, strata: Sequence | np.ndarray | None = None, *,
                 statistic: Callable[..., np.ndarray] = np.mean, n_boot: int = N_BOOT,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """`(statistic(values), low, high)`: the point estimate and a stratified-bootstrap percentile
    interval. `statistic(x, axis=-1)` must reduce the last axis (np.mean, np.median, …). nan values
    are dropped; ±inf values are kept (a censored steps-to-target is +inf). Seeded: the same input
    always gives the same interval."""
    x = np.asarray(values, dtype=np.float64)
    s = np.zeros(len(x), dtype=np.int64) if strata is None else pd.factorize(pd.Series(list(strata)))[0]
    keep = ~np.isnan(x)
    x, s = x[keep], s[keep]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = float(statistic(x, axis=-1))
    groups = [np.flatnonzero(s == k) for k in np.unique(s)]
    if max(len(g) for g in groups) < 2:
        return (point, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    cols = [g[rng.integers(0, len(g), size=(n_boot, len(g)))] for g in groups]
    boot = statistic(x[np.concatenate(cols, axis=1)], axis=-1)  # (n_boot,)
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return (point, math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    # No interpolation: a resample median may be ±inf (censored runs) and inf - inf is nan.
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], method="inverted_cdf")
    return (point, float(low), float(high))


# ----------------------------------------------------------------------------- censoring

def censored(steps: Sequence[float] | np.ndarray) -> np.ndarray:
    """Steps-to-target with "not reached" (null/nan) as +inf."""
    x = np.asarray(pd.to_numeric(pd.Series(list(steps), dtype="object"), errors="coerce"), dtype=np.float64)
    return np.where(np.isnan(x), np.inf, x)


def censored_median(steps: Sequence[float] | np.ndarray) -> tuple[float, int, int]:
    """`(median, reached, n)`: the median of steps-to-target with "not reached" as +inf (so the
    median itself is inf when fewer than half reached), how many reached, out of how many."""
    x = censored(steps)
    if x.size == 0:
        return (math.nan, 0, 0)
    return (float(np.median(x)), int(np.isfinite(x).sum()), int(x.size))


def log2_ratio(a: float, b: float) -> float:
    """log2(b / a) for two censored steps-to-target: +inf when only a reached, -inf when only b
    reached, nan when neither did (the pair says nothing about speed)."""
    fa, fb = math.isfinite(a), math.isfinite(b)
    if fa and fb:
        return math.log2(max(b, 1e-12) / max(a, 1e-12))
    if fa:
        return math.inf
    if fb:
        return -math.inf
    return math.nan


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
    if "status" not in df.columns:
        df["status"] = "failed"
    df["status"] = df["status"].where(df["status"].isin(STATUSES), "failed").astype(object)
    return df.reset_index(drop=True)


def config_keys(runs: pd.DataFrame, grid_axes: Sequence[str] = ()) -> list[str]:
    """The columns that identify a configuration (every grid axis but the seed): the core factors,
    then any other grid axis (dotted names such as 'model.readout') present in runs."""
    keys = [k for k in CORE_FACTORS if k in runs.columns]
    keys += [a for a in grid_axes if a not in keys and a != "seed" and a in runs.columns]
    return keys


def varying(runs: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The keys with more than one distinct value in runs."""
    return [k for k in keys if runs[k].nunique(dropna=True) > 1]


def n_seeds(runs: pd.DataFrame, keys: Sequence[str]) -> int:
    """The largest number of runs with a test accuracy in any one configuration."""
    ok = runs[runs["test_acc"].notna()]
    if ok.empty:
        return 0
    return int(ok.groupby(list(keys), dropna=False).size().max())


def summarize(runs: pd.DataFrame, keys: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """One row per configuration: run counts by status, test accuracy mean with a bootstrap
    interval over seeds (runs without a test accuracy — diverged, failed — are counted, not
    averaged), the censored median steps- and samples-to-target with how many reached it, and the
    mean throughput. Failed runs are left out of steps-to-target (they say nothing about speed)."""
    rows = []
    keys = list(keys)
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "runs", *STATUSES, "acc_n", "acc_mean", "acc_low",
                                     "acc_high", "steps_median", "samples_median", "reached",
                                     "speed_n", "max_steps", "samples_per_s"])
    for key, g in runs.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        acc = g["test_acc"].dropna().to_numpy()
        point, low, high = bootstrap_ci(acc, seed=seed)
        trained = g[g["status"] != "failed"]
        steps_med, reached, speed_n = censored_median(trained["steps_to_target"])
        samples_med, _, _ = censored_median(trained["samples_to_target"])
        rows.append({
            **dict(zip(keys, key)), "runs": len(g),
            **{s: int((g["status"] == s).sum()) for s in STATUSES},
            "acc_n": int(acc.size), "acc_mean": point, "acc_low": low, "acc_high": high,
            "steps_median": steps_med, "samples_median": samples_med, "reached": reached,
            "speed_n": speed_n, "max_steps": float(trained["steps"].max()) if len(trained) else math.nan,
            "samples_per_s": float(g["samples_per_s"].mean()) if g["samples_per_s"].notna().any()
            else math.nan,
        })
    return sort_configs(pd.DataFrame(rows), keys)


def chance_level(confusion: pd.DataFrame, n_classes: int | None = None) -> float | None:
    """1 / number of classes: from the confusion table (its labels), else the given count."""
    if confusion is not None and len(confusion):
        labels = pd.concat([confusion["true_label"], confusion["pred_label"]]).nunique()
        if labels > 0:
            return 1.0 / labels
    if n_classes:
        return 1.0 / n_classes
    return None


# ----------------------------------------------------------------------------- effects

@dataclass
class Effect:
    """The paired effect of switching `factor` from `baseline` to `level`, within `within`."""

    factor: str
    baseline: object
    level: object
    within: str                  # "all", or e.g. "cell=lstm"
    pairs: int                   # matched pairs (same other factors and seed)
    acc_pairs: int               # pairs where both runs have a test accuracy
    acc: Estimate                # mean difference level - baseline, in accuracy (0..1)
    steps_pairs: int             # pairs where at least one reached the target
    steps: Estimate              # median paired log2(steps_level / steps_baseline)
    only_level: int              # pairs where only `level` reached
    only_baseline: int           # pairs where only `baseline` reached
    neither: int                 # pairs where neither reached
    strata: int                  # distinct configurations of the other factors
    max_seeds: int               # most pairs in one stratum (1: no interval)


def paired(runs: pd.DataFrame, factor: str, baseline: object, level: object,
           match_on: Sequence[str]) -> pd.DataFrame:
    """Runs at `baseline` joined with runs at `level` on every column of `match_on` (the other
    factors and the seed). Columns: the match keys, then for a = baseline and b = level:
    acc_a, acc_b, steps_a, steps_b (censored: +inf = not reached; nan for failed runs), status_a,
    status_b. A duplicate run of one setting keeps its latest row."""
    match_on = list(match_on)
    cols = [*match_on, "test_acc", "steps_to_target", "status"]

    def side(value: object, tag: str) -> pd.DataFrame:
        d = runs[runs[factor] == value]
        if "started_at" in d.columns:
            d = d.sort_values("started_at", na_position="first", kind="stable")
        d = d.drop_duplicates(match_on, keep="last")[cols].copy()
        steps = censored(d["steps_to_target"])
        d["steps_to_target"] = np.where(d["status"] == "failed", np.nan, steps)
        return d.rename(columns={"test_acc": f"acc_{tag}", "steps_to_target": f"steps_{tag}",
                                 "status": f"status_{tag}"})

    return side(baseline, "a").merge(side(level, "b"), on=match_on, how="inner")


def paired_effect(runs: pd.DataFrame, factor: str, baseline: object, level: object,
                  match_on: Sequence[str], *, within: str = "all", seed: int = 0) -> Effect:
    """The difference in test accuracy (mean over pairs) and in steps-to-target (median paired
    log2 ratio, censored-aware) of `level` against `baseline`, with stratified-bootstrap intervals:
    strata are the configurations of the other factors; the seeds are resampled within each."""
    p = paired(runs, factor, baseline, level, match_on)
    others = [k for k in match_on if k != "seed"]
    strata = p[others].astype(str).agg("|".join, axis=1) if others and len(p) else pd.Series(["all"] * len(p))
    acc_ok = p["acc_a"].notna() & p["acc_b"].notna()
    diff = (p["acc_b"] - p["acc_a"])[acc_ok].to_numpy()
    acc = bootstrap_ci(diff, strata[acc_ok].to_numpy(), seed=seed)
    trained = p["steps_a"].notna() & p["steps_b"].notna()
    ratio = np.array([log2_ratio(a, b) for a, b in zip(p["steps_a"][trained], p["steps_b"][trained])])
    informative = ~np.isnan(ratio) if ratio.size else np.zeros(0, dtype=bool)
    steps = bootstrap_ci(ratio[informative], strata[trained].to_numpy()[informative],
                         statistic=np.median, seed=seed)
    fa = np.isfinite(p["steps_a"][trained].to_numpy())
    fb = np.isfinite(p["steps_b"][trained].to_numpy())
    per_stratum = strata[acc_ok].value_counts()
    return Effect(
        factor=factor, baseline=baseline, level=level, within=within, pairs=len(p),
        acc_pairs=int(acc_ok.sum()), acc=acc, steps_pairs=int(informative.sum()), steps=steps,
        only_level=int((fb & ~fa).sum()), only_baseline=int((fa & ~fb).sum()),
        neither=int((~fa & ~fb).sum()), strata=int(strata.nunique()),
        max_seeds=int(per_stratum.max()) if len(per_stratum) else 0)


def effects(runs: pd.DataFrame, keys: Sequence[str], *, seed: int = 0) -> list[Effect]:
    """For every key that varies: each level against the first level (the baseline, in sorted
    order; 'none' first for layernorm and 'rnn' first for cell), over all pairs, and — for the
    factors other than the cell — also within each cell."""
    out: list[Effect] = []
    keys = list(keys)
    for factor in varying(runs, keys):
        levels = ordered_levels(runs[factor])
        match_on = [k for k in keys if k != factor] + ["seed"]
        scopes: list[tuple[str, pd.DataFrame]] = [("all", runs)]
        if factor != "cell" and "cell" in runs.columns and runs["cell"].nunique() > 1:
            scopes += [(f"cell={c}", runs[runs["cell"] == c]) for c in ordered_levels(runs["cell"])]
        for within, sub in scopes:
            for level in levels[1:]:
                e = paired_effect(sub, factor, levels[0], level, match_on, within=within, seed=seed)
                if e.pairs:
                    out.append(e)
    return out


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

def best_settings(runs: pd.DataFrame, keys: Sequence[str], by: Sequence[str] = ("cell", "layernorm", "pad_size")
                  ) -> pd.DataFrame:
    """For each combination of `by`, the trials of the configuration (setting of the other keys)
    with the best mean test accuracy — what the curves, gradient and weight figures show when more
    factors vary than a panel can hold. Configurations with no test accuracy at all (every seed
    diverged) are chosen only when nothing else exists. Returns the runs rows of the chosen trials."""
    by = [b for b in by if b in runs.columns]
    others = [k for k in keys if k not in by]
    if runs.empty:
        return runs
    if not others:
        return runs.copy()
    chosen = []
    for _, g in runs.groupby(by, dropna=False, sort=True):
        score = g.groupby(others, dropna=False)["test_acc"].mean()
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
    (pad_size - 1 - position for readout 'last'; the position itself for other readouts, which read
    a different position per text), at step 0 ('start') and at each trial's last probe ('end').
    The geometric mean over seeds per (cell, layernorm, pad_size, phase, distance)."""
    cols = ["cell", "layernorm", "pad_size", "phase", "distance", "grad_norm", "n"]
    if grad_time.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    meta = runs[["trial_id", "cell", "layernorm", "pad_size"]].copy()
    meta["readout"] = runs["readout"] if "readout" in runs.columns else "last"
    d = grad_time[grad_time["layer"] == layer].merge(meta, on="trial_id")
    if d.empty:
        return pd.DataFrame(columns=cols)
    last = d.groupby("trial_id")["step"].transform("max")
    start = d[d["step"] == 0].assign(phase="start")
    end = d[(d["step"] == last) & (last > 0)].assign(phase="end")
    d = pd.concat([start, end], ignore_index=True)
    pos = pd.to_numeric(d["position"])
    d["distance"] = np.where(d["readout"] == "last", d["pad_size"] - 1 - pos, pos)
    d["log_g"] = np.log10(pd.to_numeric(d["grad_norm"]).clip(lower=1e-30))
    out = (d.groupby(["cell", "layernorm", "pad_size", "phase", "distance"], dropna=False)["log_g"]
           .agg(["mean", "count"]).reset_index())
    out["grad_norm"] = 10 ** out["mean"]
    out = out.rename(columns={"count": "n"})
    return out[cols]


def group_norm_table(grad_norms: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, layernorm, group, step): the geometric mean over the given trials of the group's
    gradient norm and update ratio (both spread over decades, hence the log mean)."""
    cols = ["cell", "layernorm", "group", "step", "grad_norm", "update_ratio"]
    if grad_norms.empty or runs.empty:
        return pd.DataFrame(columns=cols)
    d = grad_norms.merge(runs[["trial_id", "cell", "layernorm"]], on="trial_id")
    if d.empty:
        return pd.DataFrame(columns=cols)
    for c in ("grad_norm", "update_ratio"):
        v = pd.to_numeric(d[c], errors="coerce")
        d[c] = np.log10(v.where(v > 0))
    out = d.groupby(["cell", "layernorm", "group", "step"], dropna=False)[["grad_norm", "update_ratio"]].mean()
    return (10 ** out).reset_index()[cols]


def convergence_table(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per run: its configuration, status, whether it reached the target, steps- and
    samples-to-target, and its budget (steps run, samples seen) — a censored run is known only to
    need more than its budget; a failed run (an error, not a training outcome) is kept, to be shown
    as such, and left out of medians."""
    d = runs.copy()
    cols = [*keys, "seed", "trial_id", "status", "reached", "steps_to_target", "samples_to_target",
            "steps", "samples"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d["reached"] = d["steps_to_target"].notna()
    d["samples"] = d["steps"] * d["batch_size"] if "batch_size" in d.columns else np.nan
    return d[[c for c in cols if c in d.columns]].reset_index(drop=True)


def best_trials(runs: pd.DataFrame, by: Sequence[str] = ("cell", "layernorm")) -> pd.DataFrame:
    """The runs row with the highest test accuracy for each combination of `by` (ties: first)."""
    ok = runs[runs["test_acc"].notna()]
    if ok.empty:
        return ok
    idx = ok.groupby(list(by), dropna=False)["test_acc"].idxmax()
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
