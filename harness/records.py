"""Records: what a trial measured, as five tables, and their files.

The trainer fills a `TrialRecorder` (in memory, no I/O). The runner writes each finished trial's
tables as Parquet shards into `DIR/trials/<trial_id>/`, first under a temporary name that is then
renamed, so a folder named by a trial id is always complete. `load(DIR)` reads every shard;
`combine(DIR)` rebuilds `DIR/<table>.parquet` from them (also atomically).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import SCHEMA_VERSION

TABLES = ("runs", "curves", "grad_norms", "grad_time", "confusion")

# Columns every consumer may rely on (DESIGN.md). Grid axes given by dotted name are added to runs.
COLUMNS: dict[str, list[str]] = {
    "runs": [
        "trial_id", "status", "error", "cell", "layernorm", "batch_size", "pad_size", "lr", "seed",
        "readout", "bidirectional", "num_layers", "hidden_size", "embed_dim", "dataset", "test_acc",
        "test_macro_f1", "test_loss", "best_dev_acc", "best_step", "steps", "epochs", "target_dev_acc",
        "steps_to_target", "samples_to_target", "seconds_to_target", "grad_norm_init",
        "grad_norm_final", "vanishing_ratio_init", "vanishing_ratio_final", "wall_s", "train_s",
        "samples_per_s", "device", "torch_version", "started_at", "schema_version",
    ],
    "curves": ["trial_id", "step", "epoch", "samples_seen", "elapsed_s", "train_loss", "train_acc",
               "dev_loss", "dev_acc", "grad_norm"],
    "grad_norms": ["trial_id", "step", "group", "grad_norm", "update_ratio"],
    "grad_time": ["trial_id", "step", "layer", "position", "pad_fraction", "grad_norm"],
    "confusion": ["trial_id", "true_label", "pred_label", "count"],
}

STATUSES = ("complete", "diverged", "failed", "pruned")


class TrialRecorder:
    """Collects one trial's rows in memory. `on_eval(step, dev_acc) -> bool` (optional) is called
    at every evaluation point; returning True asks the trainer to stop (a pruned trial)."""

    def __init__(self, trial_id: str, on_eval: Callable[[int, float], bool] | None = None):
        self.trial_id = trial_id
        self.on_eval = on_eval
        self.rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}

    def add(self, table: str, **row: Any) -> None:
        self.rows[table].append({"trial_id": self.trial_id, **row})

    def add_many(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.rows[table].extend({"trial_id": self.trial_id, **r} for r in rows)

    def report_eval(self, step: int, dev_acc: float) -> bool:
        return bool(self.on_eval and self.on_eval(step, dev_acc))

    def set_run(self, **row: Any) -> None:
        row.setdefault("schema_version", SCHEMA_VERSION)
        self.rows["runs"] = [{"trial_id": self.trial_id, **row}]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {t: _frame(t, rows) for t, rows in self.rows.items()}


def _frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in COLUMNS[table]:
        if col not in df.columns:
            df[col] = pd.Series(dtype="object" if col in ("error", "device") else "float64")
    extra = [c for c in df.columns if c not in COLUMNS[table]]
    return df[COLUMNS[table] + extra]


def trial_dir(results_dir: str | Path, trial_id: str) -> Path:
    return Path(results_dir) / "trials" / trial_id


def is_done(results_dir: str | Path, trial_id: str) -> bool:
    """A trial is done when its shard folder exists (it only ever appears complete)."""
    return (trial_dir(results_dir, trial_id) / "runs.parquet").is_file()


def write_trial(results_dir: str | Path, trial_id: str, tables: dict[str, pd.DataFrame]) -> Path:
    """Write one trial's shards to a temporary folder, then rename it to trials/<trial_id>.
    A previous folder for the same id (a failed attempt being retried) is replaced."""
    trials = Path(results_dir) / "trials"
    trials.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{trial_id}-", dir=trials))
    for name, df in tables.items():
        df.to_parquet(tmp / f"{name}.parquet", index=False)
    final = trials / trial_id
    if final.exists():
        old = trials / f".old-{trial_id}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, final)
    return final


def read_trial(results_dir: str | Path, trial_id: str) -> dict[str, pd.DataFrame]:
    d = trial_dir(results_dir, trial_id)
    return {t: pd.read_parquet(d / f"{t}.parquet") for t in TABLES if (d / f"{t}.parquet").is_file()}


def load(results_dir: str | Path) -> dict[str, pd.DataFrame]:
    """All five tables of a results directory as DataFrames, rebuilt from the trial shards
    (works while a run is still going). Tables with no rows have the documented columns."""
    trials = Path(results_dir) / "trials"
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    if trials.is_dir():
        for d in sorted(trials.iterdir()):
            if d.name.startswith(".") or not (d / "runs.parquet").is_file():
                continue
            for t in TABLES:
                path = d / f"{t}.parquet"
                if path.is_file():
                    df = pd.read_parquet(path)
                    if len(df):
                        parts[t].append(df)
    out = {}
    for t in TABLES:
        df = pd.concat(parts[t], ignore_index=True) if parts[t] else _frame(t, [])
        out[t] = df
    return out


def combine(results_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Rebuild DIR/<table>.parquet from the shards (each written to a temp name, then renamed)."""
    results_dir = Path(results_dir)
    tables = load(results_dir)
    for name, df in tables.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".parquet", dir=results_dir)
        os.close(fd)
        df.to_parquet(tmp, index=False)
        os.replace(tmp, results_dir / f"{name}.parquet")
    return tables
