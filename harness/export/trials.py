"""One tracker-neutral view of each finished trial, built from the results tables.

Every exporter writes the same things: a trial's settings (params), its outcome (summary metrics),
its provenance (tags), and its time series (scalars by step). The configuration a trial belongs to
is its settings without the seed, keyed by the same columns the report groups by, so a tracker's
"group runs" view averages exactly the runs the report averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness import records

# Outcome columns of the runs table, exported as summary metrics (numbers; null ones left out).
SUMMARY_METRICS = (
    "test_acc", "test_macro_f1", "test_loss", "best_dev_acc", "best_step", "steps", "epochs",
    "steps_to_target", "samples_to_target", "seconds_to_target", "grad_norm_init", "grad_norm_final",
    "vanishing_ratio_init", "vanishing_ratio_final", "wall_s", "train_s", "samples_per_s",
)
# Columns that say where and how a trial ran, exported as tags (strings), not as settings.
PROVENANCE = (
    "trial_id", "status", "error", "traceback", "device", "torch_version", "started_at", "schema_version",
    "git_commit", "worker", "name", "data_id", "stop_reason", "dataset",
)
# curves column -> scalar name (the same name in every tracker)
CURVE_SCALARS = {
    "train_loss": "train/loss", "train_acc": "train/acc", "dev_loss": "dev/loss", "dev_acc": "dev/acc",
    "grad_norm": "grad_norm/global", "epoch": "progress/epoch", "samples_seen": "progress/samples_seen",
}
# grad_norms column -> scalar name prefix; the parameter group is appended: grad_norm/rnn.l0
GROUP_SCALARS = {"grad_norm": "grad_norm", "update_ratio": "update_ratio"}

Scalar = tuple[int, float | None, str, float]  # (step, elapsed seconds or None, name, value)


@dataclass(frozen=True)
class TrialView:
    """What the exporters write for one trial."""

    trial_id: str
    name: str                 # readable, unique within a configuration: "cell=lstm,pad_size=12,seed=0"
    group: str                # the configuration without the seed: "cell=lstm,pad_size=12" ("all" if one)
    parent: str               # what it belongs to: "grid", or a study's name
    status: str               # complete | diverged | failed | pruned
    phase: str                # grid | search | rerun
    params: dict[str, Any]    # settings: str, int, float, bool or None
    summary: dict[str, float]  # outcomes that are not null
    tags: dict[str, str]      # provenance
    started_at: float | None  # unix seconds
    scalars: list[Scalar] = field(default_factory=list)  # sorted by step, then name

    @property
    def seed(self) -> Any:
        return self.params.get("seed")

    def by_step(self) -> list[tuple[int, float | None, dict[str, float]]]:
        """The scalars as one (step, elapsed seconds, {name: value}) per step, steps increasing."""
        out: list[tuple[int, float | None, dict[str, float]]] = []
        for step, elapsed, name, value in self.scalars:
            if not out or out[-1][0] != step:
                out.append((step, elapsed, {}))
            elif out[-1][1] is None and elapsed is not None:
                out[-1] = (step, elapsed, out[-1][2])
            out[-1][2][name] = value
        return out

    def walltime(self, elapsed: float | None) -> float | None:
        """Unix seconds of a point `elapsed` seconds into training (None when unknown)."""
        if self.started_at is None or elapsed is None:
            return None
        return self.started_at + elapsed


@dataclass(frozen=True)
class Experiment:
    name: str
    results_dir: Path
    trials: list[TrialView]
    group_keys: list[str]     # the columns that make a configuration (seed excluded)


def plain(value: Any) -> Any:
    """A Python scalar for a table value: numpy types unwrapped, NaN/NA as None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def fmt(value: Any) -> str:
    """A setting as text in a name: 0.001 -> '0.001', 12.0 -> '12', True -> 'True'."""
    value = plain(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _raw_config(results_dir: Path) -> dict[str, Any]:
    """DIR/config.yaml as a mapping ({} without one); one that is not UTF-8, YAML or a mapping is a
    ConfigError naming it and how to recover (plan.results_config_raw)."""
    from harness.plan import results_config_raw

    return results_config_raw(results_dir) or {}


def _keys(raw: Any, key: str) -> list[str]:
    """The keys of raw[key] when that is a mapping (a damaged config's other shapes: none)."""
    v = raw.get(key) if isinstance(raw, dict) else None
    return [str(k) for k in v] if isinstance(v, dict) else []


def group_keys(runs: pd.DataFrame, raw: dict[str, Any]) -> list[str]:
    """The runs columns that identify a configuration (seed excluded), as the report groups them,
    plus a study's searched settings and, when they vary, the phase and the study. Only the columns
    whose value varies between trials are kept (the others say nothing about the group)."""
    from harness.report.stats import config_keys

    axes = _keys(raw, "grid") + _keys(raw.get("study"), "params")
    keys = config_keys(runs, axes) + [a for a in axes if a != "seed" and a in runs.columns]
    keys += [c for c in ("study", "phase") if c in runs.columns]
    keys = list(dict.fromkeys(keys))
    return [k for k in keys if runs[k].astype(str).nunique() > 1]


def _unix(value: Any) -> float | None:
    value = plain(value)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _scalars(trial_id: str, curves: pd.DataFrame, grad_norms: pd.DataFrame) -> list[Scalar]:
    out: list[Scalar] = []
    elapsed_at: dict[int, float | None] = {}
    for row in curves.to_dict("records"):
        step = int(row["step"])
        elapsed_at[step] = plain(row.get("elapsed_s"))
        for col, name in CURVE_SCALARS.items():
            v = plain(row.get(col))
            if v is not None:
                out.append((step, elapsed_at[step], name, float(v)))
    for row in grad_norms.to_dict("records"):
        step = int(row["step"])
        for col, prefix in GROUP_SCALARS.items():
            v = plain(row.get(col))
            if v is not None:
                out.append((step, elapsed_at.get(step), f"{prefix}/{row['group']}", float(v)))
    out.sort(key=lambda s: (s[0], s[2]))
    return out


def load_experiment(results_dir: str | Path) -> Experiment:
    """Every finished trial of a results directory as a `TrialView` (read via `records.load`)."""
    results_dir = Path(results_dir)
    raw = _raw_config(results_dir)  # a damaged config.yaml: refused before the shards are read
    tables = records.load(results_dir)
    runs = tables["runs"]
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        name = str(plain(runs["name"].iloc[0]) if "name" in runs.columns and len(runs) else results_dir.name)
    keys = group_keys(runs, raw) if len(runs) else []
    curves = {tid: g for tid, g in tables["curves"].groupby("trial_id", sort=False)}
    norms = {tid: g for tid, g in tables["grad_norms"].groupby("trial_id", sort=False)}
    empty_c, empty_n = tables["curves"].iloc[:0], tables["grad_norms"].iloc[:0]
    views = []
    for row in runs.to_dict("records"):
        tid = str(row["trial_id"])
        params = {k: plain(v) for k, v in row.items() if k not in PROVENANCE and k not in SUMMARY_METRICS}
        summary = {k: float(v) for k in SUMMARY_METRICS if (v := plain(row.get(k))) is not None}
        tags = {k: str(v) for k in PROVENANCE if (v := plain(row.get(k))) is not None}
        group = ",".join(f"{k}={fmt(row[k])}" for k in keys) or "all"
        seed = plain(row.get("seed"))
        label = group if group != "all" else ""
        trial_name = ",".join(p for p in (label, f"seed={fmt(seed)}" if seed is not None else "") if p) or tid
        views.append(TrialView(
            trial_id=tid, name=trial_name, group=group, parent=str(plain(row.get("study")) or "grid"),
            status=str(plain(row.get("status")) or "failed"), phase=str(plain(row.get("phase")) or "grid"),
            params=params, summary=summary, tags=tags, started_at=_unix(row.get("started_at")),
            scalars=_scalars(tid, curves.get(tid, empty_c), norms.get(tid, empty_n))))
    views.sort(key=lambda v: (v.group, str(v.seed), v.trial_id))
    return Experiment(name=name, results_dir=results_dir, trials=views, group_keys=keys)
