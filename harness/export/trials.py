"""One tracker-neutral view of each finished trial, built from the results tables.

Every exporter writes the same four things, each where its tracker expects it:

- settings (`TrialView.params`): the config keys that define the trial, typed (int, float, bool,
  str), one column per setting (a grid axis given by dotted name, such as `model.readout`, is the
  same setting as its runs column `readout` and appears once) -> hyperparameters / params / config;
- outcomes (`TrialView.summary`): `steps_to_target`, `reached` (0/1), test and best dev accuracy, …,
  and timings (`TrialView.timings`, exported as `time/<column>`) -> metrics / summary;
- system facts (`TrialView.system`): hardware, versions, worker, ids, status, errors -> tags
  (MLflow), the `system` config group (W&B), a text table (TensorBoard); never hyperparameters;
- time series (`TrialView.scalars`): scalars by step, with the wall time of each evaluation;
- the weights file (`TrialView.model_file`, with `train.save_model`) -> an artifact (MLflow, W&B;
  TensorBoard has none).

The configuration a trial belongs to is its settings without the seed, keyed by the same columns
the report groups by, so a tracker's "group runs" view averages exactly the runs the report averages.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness import records
from harness.files import weights_problem
from harness.results_dir import results_config_raw
from harness.schema import RUNS

# Runs columns that are a trial's settings (the config keys that define it), exported as
# hyperparameters. Any column with a dotted name (a grid axis or arm setting such as
# `model.forget_bias`) is a setting too, unless it repeats one of these (`model.readout` = `readout`).
SETTINGS = (
    "arm", "cell", "layernorm", "batch_size", "pad_size", "lag", "lr", "seed", "readout", "bidirectional",
    "num_layers", "hidden_size", "embed_dim", "dropout", "init", "forget_bias", "grad_clip", "precision",
    "target_dev_acc", "dataset", "phase", "study",
)
# Settings that are null only where they do not apply (no arms; not a study trial): left out then.
ONLY_WHEN_SET = ("arm", "study")
# Outcome columns, exported as metrics (numbers; null ones left out), headline first. `reached` is
# added: 1 when dev accuracy reached target_dev_acc, 0 when it did not (absent for a failed trial).
SUMMARY_METRICS = (
    "steps_to_target", "reached", "test_acc", "best_dev_acc", "test_macro_f1", "test_loss", "best_step",
    "steps", "epochs", "samples_to_target", "seconds_to_target", "grad_norm_init", "grad_norm_final",
    "vanishing_ratio_init", "vanishing_ratio_final",
)
REACHED_DOC = "1 when dev accuracy reached target_dev_acc during training, 0 when it never did"
# How long the trial took, exported as metrics named time/<column> (numbers to sort and compare,
# not settings).
TIMINGS = ("wall_s", "train_s", "eval_s", "probe_s", "samples_per_s")
# curves column -> scalar name (the same name in every tracker)
CURVE_SCALARS = {
    "train_loss": "train/loss", "train_acc": "train/acc", "dev_loss": "dev/loss", "dev_acc": "dev/acc",
    "grad_norm": "grad_norm/global", "epoch": "progress/epoch", "samples_seen": "progress/samples_seen",
}
# grad_norms column -> scalar name prefix; the parameter group is appended: grad_norm/rnn.l0
GROUP_SCALARS = {"grad_norm": "grad_norm", "update_ratio": "update_ratio"}

Scalar = tuple[int, float | None, str, float]  # (step, elapsed seconds or None, name, value)
Number = int | float


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
    summary: dict[str, Number]  # outcomes that are not null (integers stay int)
    system: dict[str, Any]    # system facts that are not null: hardware, versions, worker, ids, errors
    started_at: float | None  # unix seconds
    timings: dict[str, float] = field(default_factory=dict)  # wall_s, train_s, … that are not null
    scalars: list[Scalar] = field(default_factory=list)  # sorted by step, then name
    model_file: str | None = None  # the kept weights (runs column model_file), relative to the results folder

    @property
    def seed(self) -> Any:
        return self.params.get("seed")

    def model_path(self, results_dir: Path) -> Path | None:
        """The trial's weights file in `results_dir` (None: none kept, or not usable: missing, not
        loadable with weights_only=True, not a state_dict; one warning line says so)."""
        if self.model_file is None:
            return None
        path = Path(results_dir) / self.model_file
        problem = weights_problem(path)
        if problem is not None:
            print(f"harness: warning: trial {self.trial_id}'s weights {path} are {problem}; exported without them",
                  file=sys.stderr)
            return None
        return path

    @property
    def tags(self) -> dict[str, str]:
        """The system facts as text (what a tracker's tags hold)."""
        return {k: fmt(v) for k, v in self.system.items()}

    @property
    def finished_at(self) -> float | None:
        """Unix seconds at which the trial ended: its start plus its wall time (None when unknown)."""
        return self.walltime(self.timings.get("wall_s"))

    @property
    def metrics(self) -> dict[str, Number]:
        """Outcomes under their column names, timings as time/<column>."""
        return {**self.summary, **{f"time/{k}": v for k, v in self.timings.items()}}

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
    config: dict[str, str] = field(default_factory=dict)  # config.yaml flattened: "model.hidden_size" -> "128"


def plain(value: Any) -> Any:
    """A Python scalar for a table value: numpy types unwrapped, NaN/NA/NaT as None, timestamps as
    ISO text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def fmt(value: Any) -> str:
    """A value as text: 0.001 -> '0.001', 12.0 -> '12', 3 -> '3', True -> 'True'."""
    value = plain(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def doc(column: str) -> str:
    """The runs column's description from the schema ('' for a column it does not list)."""
    if column == "reached":
        return REACHED_DOC
    if column.startswith("time/"):
        column = column[len("time/"):]
    if column in RUNS.names:
        return RUNS.field(column).metadata[b"doc"].decode()
    return ""


def raw_config(results_dir: Path) -> dict[str, Any]:
    """DIR/config.yaml as a mapping ({} without one); one that is not UTF-8, YAML or a mapping is a
    ConfigError naming it and how to recover (results_dir.results_config_raw)."""
    return results_config_raw(results_dir) or {}


def flat_config(raw: Any, prefix: str = "") -> dict[str, str]:
    """A config mapping as dotted keys and text values (JSON for all but text), e.g.
    {"model.hidden_size": "128", "grid.cell": '["rnn", "lstm"]'}: the experiment-level params."""
    if isinstance(raw, dict) and raw:
        out: dict[str, str] = {}
        for key, value in raw.items():
            out.update(flat_config(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if not prefix:
        return {}
    return {prefix: raw if isinstance(raw, str) else json.dumps(raw, default=str)}


def _keys(raw: Any, key: str) -> list[str]:
    """The keys of raw[key] when that is a mapping (a damaged config's other shapes: none)."""
    v = raw.get(key) if isinstance(raw, dict) else None
    return [str(k) for k in v] if isinstance(v, dict) else []


def group_keys(runs: pd.DataFrame, raw: dict[str, Any]) -> list[str]:
    """The runs columns that identify a configuration (seed excluded), as the report groups them,
    plus a study's searched settings and, when they vary, the phase and the study. Only the columns
    whose value varies between trials are kept (the others say nothing about the group)."""
    from harness.report.stats import config_keys  # the report package (matplotlib): only for group keys

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


def settings(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row's settings (SETTINGS and dotted-name columns), typed; a dotted column that repeats
    a setting column (`model.readout` beside `readout`, same value) is left out."""
    out = {k: v for k in SETTINGS if k in row and ((v := plain(row[k])) is not None or k not in ONLY_WHEN_SET)}
    for key, value in row.items():
        if "." not in key:
            continue
        short = key.rsplit(".", 1)[1]
        if short in out and out[short] == plain(value):
            continue
        out[key] = plain(value)
    return out


def outcomes(row: dict[str, Any]) -> dict[str, Number]:
    """A runs row's outcome metrics that are not null (integers stay int), with `reached`."""
    out: dict[str, Number] = {}
    for k in SUMMARY_METRICS:
        v = plain(row.get(k))
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int, float)):
            out[k] = v
    if plain(row.get("status")) not in (None, "failed"):
        out["reached"] = int(plain(row.get("steps_to_target")) is not None)
    return {k: out[k] for k in SUMMARY_METRICS if k in out}


def system_facts(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row's other columns that are not null: where and how the trial ran (hardware,
    versions, worker, ids, status, errors), exported as tags. A column the schema gains later lands
    here too, never among the hyperparameters. Plus `finished_at` (ISO text: start + wall_s)."""
    skip = set(SETTINGS) | set(SUMMARY_METRICS) | set(TIMINGS)
    out = {k: v for k, raw in row.items() if k not in skip and "." not in k and (v := plain(raw)) is not None}
    start, wall = _unix(row.get("started_at")), plain(row.get("wall_s"))
    if start is not None and isinstance(wall, (int, float)):
        out["finished_at"] = datetime.fromtimestamp(start + wall, tz=timezone.utc).isoformat()
    return out


def _scalars(trial_id: str, curves: pd.DataFrame, grad_norms: pd.DataFrame) -> list[Scalar]:
    return scalars_of(curves.to_dict("records"), grad_norms.to_dict("records"))


def scalars_of(curve_rows: list[dict[str, Any]], grad_rows: list[dict[str, Any]]) -> list[Scalar]:
    """Curves and grad_norms rows (dicts, as the tables or a TrialRecorder hold them) as the scalars
    every tracker gets (CURVE_SCALARS, GROUP_SCALARS names), sorted by step, then name."""
    out: list[Scalar] = []
    elapsed_at: dict[int, float | None] = {}
    for row in curve_rows:
        step = int(row["step"])
        elapsed_at[step] = plain(row.get("elapsed_s"))
        for col, name in CURVE_SCALARS.items():
            v = plain(row.get(col))
            if v is not None:
                out.append((step, elapsed_at[step], name, float(v)))
    for row in grad_rows:
        step = int(row["step"])
        for col, prefix in GROUP_SCALARS.items():
            v = plain(row.get(col))
            if v is not None:
                out.append((step, elapsed_at.get(step), f"{prefix}/{row['group']}", float(v)))
    out.sort(key=lambda s: (s[0], s[2]))
    return out


def trial_view(row: dict[str, Any], keys: list[str], scalars: list[Scalar]) -> TrialView:
    """One runs row as a TrialView."""
    tid = str(row["trial_id"])
    group = ",".join(f"{k}={fmt(row[k])}" for k in keys) or "all"
    seed = plain(row.get("seed"))
    label = group if group != "all" else ""
    trial_name = ",".join(p for p in (label, f"seed={fmt(seed)}" if seed is not None else "") if p) or tid
    timings = {k: float(v) for k in TIMINGS if isinstance(v := plain(row.get(k)), (int, float))}
    return TrialView(
        trial_id=tid, name=trial_name, group=group, parent=str(plain(row.get("study")) or "grid"),
        status=str(plain(row.get("status")) or "failed"), phase=str(plain(row.get("phase")) or "grid"),
        params=settings(row), summary=outcomes(row), system=system_facts(row),
        started_at=_unix(row.get("started_at")), timings=timings, scalars=scalars,
        model_file=plain(row.get("model_file")))


def load_experiment(results_dir: str | Path) -> Experiment:
    """Every finished trial of a results directory as a `TrialView` (read via `records.load`)."""
    results_dir = Path(results_dir)
    raw = raw_config(results_dir)  # a damaged config.yaml: refused before the shards are read
    tables = records.load(results_dir)
    runs = tables["runs"]
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        name = str(plain(runs["name"].iloc[0]) if "name" in runs.columns and len(runs) else results_dir.name)
    keys = group_keys(runs, raw) if len(runs) else []
    curves = {tid: g for tid, g in tables["curves"].groupby("trial_id", sort=False)}
    norms = {tid: g for tid, g in tables["grad_norms"].groupby("trial_id", sort=False)}
    empty_c, empty_n = tables["curves"].iloc[:0], tables["grad_norms"].iloc[:0]
    views = [trial_view(row, keys, _scalars(str(row["trial_id"]), curves.get(row["trial_id"], empty_c),
                                            norms.get(row["trial_id"], empty_n)))
             for row in runs.to_dict("records")]
    views.sort(key=lambda v: (v.group, str(v.seed), v.trial_id))
    return Experiment(name=name, results_dir=results_dir, trials=views, group_keys=keys, config=flat_config(raw))
