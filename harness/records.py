"""Records: what a trial measured, as five tables, and their files.

The trainer fills a `TrialRecorder` (in memory, no I/O). The runner writes each finished trial's
tables as Parquet shards into `DIR/trials/<trial_id>/`, first under a temporary name that is then
renamed, so a folder named by a trial id is always complete. `load(DIR)` reads every shard into a
`Results` (the public API for analysis: the five tables, their schemas and the run's resolved
config); `combine(DIR)` rebuilds `DIR/<table>.parquet` from them (also atomically).

Every shard is written with the table's Arrow schema (`harness.schema`), and every frame this
module returns has the same dtypes whatever the rows hold: integers `Int64` (`int64` where the
schema forbids nulls), floats `float64`, strings `str`, booleans `boolean`, timestamps
`datetime64[us, UTC]`. Columns beyond the schema keep the types Arrow infers for them.

With `train.save_model` the trainer also hands the recorder the trial's weights (`TrialRecorder.weights`,
a state_dict); `stage_trial` writes them beside the shards as `model.pt` (`MODEL_FILE`), so they are
staged, published, quarantined and removed with the shards. The loaders read only the five shards: the
weights file is for `torch.load(path, weights_only=True)` (files.load_tensors; files.weights_problem says
why one cannot be used), named by the runs column `model_file` (relative to DIR).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.config import ConfigError, ExperimentConfig
from harness.files import atomic_path, staged_dir
from harness.results_dir import (
    MODEL_FILE,
    STAGED_PREFIX,
    find_model,
    is_done,
    load_results_config,
    model_file,
    pid_alive,
    staged_path,
    trial_dir,
)
from harness.schema import COLUMNS, SCHEMA_VERSION, SCHEMAS, TABLES

__all__ = ["COLUMNS", "TABLES", "MODEL_FILE", "Results", "TrialRecorder", "frame", "conform", "to_arrow", "to_frame",
           "trial_dir", "model_file", "find_model", "is_done", "write_trial", "read_trial", "verify_trial",
           "quarantine_damaged", "load", "combine", "STAGED_PREFIX", "staged_path", "stage_trial", "publish_trial",
           "remove_orphan_stages"]

_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


class TrialRecorder:
    """Collects one trial's rows in memory. `on_eval(step, dev_acc) -> bool` (optional) is called
    at every evaluation point; returning True asks the trainer to stop (a pruned trial). `weights`:
    the trial's model state_dict (CPU tensors) the trainer keeps with `train.save_model`, else None;
    `stage_trial` writes it as the trial's MODEL_FILE."""

    def __init__(self, trial_id: str, on_eval: Callable[[int, float], bool] | None = None):
        self.trial_id = trial_id
        self.on_eval = on_eval
        self.rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self.weights: dict[str, Any] | None = None

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
        return {t: frame(t, rows) for t, rows in self.rows.items()}


# ----------------------------------------------------------------------------- types

def _typed(values: pa.Array | pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    try:
        return pa.chunked_array([values]).cast(field.type) if isinstance(values, pa.Array) \
            else values.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ValueError(f"column '{field.name}': cannot hold its values as {field.type} ({e})") from None


def conform(table: str, data: pa.Table) -> pa.Table:
    """`data` with the schema's columns first, each cast to its type (absent: all null), then any
    other columns as they are."""
    schema = SCHEMAS[table]
    present = set(data.column_names)
    columns = [_typed(data.column(f.name), f) if f.name in present else pa.nulls(len(data), f.type)
               for f in schema]
    extra = [c for c in data.column_names if c not in schema.names]
    fields = [*schema, *(data.schema.field(c) for c in extra)]
    return pa.Table.from_arrays([*columns, *(data.column(c) for c in extra)], schema=pa.schema(fields))


def to_arrow(table: str, df: pd.DataFrame) -> pa.Table:
    """A frame of `table` as an Arrow table with the table's schema (see `conform`)."""
    return conform(table, pa.Table.from_pandas(df, preserve_index=False))


def to_frame(table: str, data: pa.Table) -> pd.DataFrame:
    """A conformed Arrow table as a frame with the stable dtypes named in the module docstring."""
    df = data.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for f in SCHEMAS[table]:
        if not f.nullable and pa.types.is_integer(f.type):
            df[f.name] = df[f.name].astype("int64")
    return df


def frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) of `table` as a frame: every schema column, typed, then any other keys."""
    return to_frame(table, to_arrow(table, pd.DataFrame(rows)))


# ----------------------------------------------------------------------------- files

def write_trial(results_dir: str | Path, trial_id: str, tables: dict[str, pd.DataFrame],
                weights: Mapping[str, Any] | None = None) -> Path:
    """Write one trial's shards (and `weights`: see `stage_trial`) to a temporary folder, then rename
    it to trials/<trial_id>. A previous folder for the same id (a failed attempt being retried) is
    replaced."""
    return publish_trial(stage_trial(results_dir, trial_id, tables, weights), results_dir, trial_id)


def stage_trial(results_dir: str | Path, trial_id: str, tables: dict[str, pd.DataFrame],
                weights: Mapping[str, Any] | None = None) -> Path:
    """Write one trial's shards into its staged folder (`staged_path`), complete or not at all.
    Nothing counts it as done until `publish_trial`. Returns the staged folder.

    `weights` (a state_dict: `TrialRecorder.weights`) is written beside them as MODEL_FILE
    (torch.save, atomically), and the runs shard's model_file names it; without weights model_file is
    null, whatever the row said (the column names a file only where there is one)."""
    staged = staged_path(results_dir, trial_id)
    if "runs" in tables and (weights is not None or "model_file" in tables["runs"].columns):
        tables = {**tables, "runs": tables["runs"].assign(model_file=model_file(trial_id) if weights is not None
                                                          else None)}
    with staged_dir(staged, replace=True) as tmp:
        for name, df in tables.items():
            pq.write_table(to_arrow(name, df), tmp / f"{name}.parquet")
        if weights is not None:
            save_weights(weights, tmp / MODEL_FILE)
    return staged


def save_weights(weights: Mapping[str, Any], path: Path) -> None:
    """torch.save a state_dict to `path` atomically (a temporary file beside it, then os.replace)."""
    import torch  # only here: the loaders and the report stay torch-free

    with atomic_path(path) as tmp:
        torch.save(weights, tmp)


def publish_trial(staged: Path, results_dir: str | Path, trial_id: str) -> Path:
    """Rename a staged folder to trials/<trial_id>, replacing a previous one (a failed attempt)."""
    final = trial_dir(results_dir, trial_id)
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(staged, final)
    return final


def remove_orphan_stages(results_dir: str | Path) -> int:
    """Delete the staged folders that processes of this host left when they died (killed between
    writing a trial's shards and publishing them). Returns how many were deleted."""
    trials, host, n = Path(results_dir) / "trials", socket.gethostname(), 0
    if not trials.is_dir():
        return 0
    for d in trials.glob(f"{STAGED_PREFIX}*"):
        parts = d.name[len(STAGED_PREFIX):].split("@", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not pid_alive(int(parts[1])):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def verify_trial(results_dir: str | Path, trial_id: str) -> str | None:
    """What is wrong with a trial's shard folder, or None when it is sound: the folder and all five
    shards are there, each shard's Parquet footer reads, and runs has one row, of this trial."""
    d = trial_dir(results_dir, trial_id)
    if not d.is_dir():
        return "no shard folder"
    missing = [f"{t}.parquet" for t in TABLES if not (d / f"{t}.parquet").is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    for t in TABLES:
        try:
            if t != "runs":
                pq.read_metadata(d / f"{t}.parquet")
                continue
            ids = pq.read_table(d / "runs.parquet", columns=["trial_id"]).column("trial_id").to_pylist()
        except (OSError, ValueError, KeyError, pa.ArrowException) as e:
            return f"{t}.parquet unreadable ({type(e).__name__}: {e})"
    if ids != [trial_id]:
        return f"runs.parquet holds {len(ids)} rows of trials {sorted(set(map(str, ids)))}, not one of {trial_id}"
    return None


def quarantine(results_dir: str | Path, trial_id: str) -> Path:
    """Move a trial's folder to DIR/quarantine/<trial_id>-<time>/ (so it is run again). Returns
    where it went."""
    dest_dir = Path(results_dir) / "quarantine"
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{trial_id}-{time.strftime('%Y%m%dT%H%M%S')}"
    n = 1
    while dest.exists():
        n += 1
        dest = dest_dir / f"{trial_id}-{time.strftime('%Y%m%dT%H%M%S')}-{n}"
    os.rename(trial_dir(results_dir, trial_id), dest)
    return dest


def quarantine_damaged(results_dir: str | Path, again: str = "it will be run again") -> list[str]:
    """Verify every trial folder in DIR/trials/ (`verify_trial`) and move each damaged one to
    DIR/quarantine/ (a folder that cannot be moved is left, and `load` skips what it cannot read).
    Says so on stderr; returns those messages. `again`: what happens to the trial next."""
    trials = Path(results_dir) / "trials"
    said: list[str] = []
    if not trials.is_dir():
        return said
    for d in sorted(trials.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        problem = verify_trial(results_dir, d.name)
        if problem is None or not d.is_dir():  # sound, or replaced by its writer meanwhile
            continue
        try:
            dest = quarantine(results_dir, d.name)
        except FileNotFoundError:
            continue
        except OSError as e:
            said.append(f"harness: trial {d.name} is damaged ({problem}) and could not be moved aside "
                        f"({e.strerror}): it is left out")
            continue
        said.append(f"harness: trial {d.name} is damaged ({problem}): moved to {dest}; {again}")
    for line in said:
        print(line, file=sys.stderr)
    return said


def _read(path: Path, table: str) -> pa.Table:
    return conform(table, pq.read_table(path))


def read_trial(results_dir: str | Path, trial_id: str) -> dict[str, pd.DataFrame]:
    d = trial_dir(results_dir, trial_id)
    return {t: to_frame(t, _read(d / f"{t}.parquet", t)) for t in TABLES if (d / f"{t}.parquet").is_file()}


@dataclass(frozen=True, eq=False)
class Results(Mapping[str, pd.DataFrame]):
    """A results directory as `load` reads it: the five tables as pandas DataFrames (typed as
    `harness.schema` says), the resolved config the run used, and the directory.

    Also a read-only mapping of table name -> frame, so `load(DIR)["runs"]`, `dict(load(DIR))` and
    `for name, df in load(DIR).items()` work as they did when `load` returned a dict.
    """

    dir: Path
    runs: pd.DataFrame          # one row per trial
    curves: pd.DataFrame        # trial × evaluation point
    grad_norms: pd.DataFrame    # trial × evaluation point × parameter group
    grad_time: pd.DataFrame     # trial × probe step × layer × input position
    confusion: pd.DataFrame     # trial × true label × predicted label (test set)
    config: ExperimentConfig | None  # DIR/config.yaml validated; None when absent or unreadable
    config_error: str | None = None  # why DIR/config.yaml could not be read (None when it could or is absent)

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in TABLES:
            raise KeyError(f"no table {table!r}; the tables are {', '.join(TABLES)}")
        return getattr(self, table)

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def __len__(self) -> int:
        return len(TABLES)

    def __repr__(self) -> str:
        """One line (a notebook shows this, not five frames and the whole config)."""
        sizes = ", ".join(f"{t} {len(getattr(self, t))} rows" for t in TABLES)
        config = f"config {self.config.name!r}" if self.config is not None else "no config"
        return f"Results({str(self.dir)!r}: {sizes}; {config})"

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Table name -> frame, in schema order."""
        return {t: getattr(self, t) for t in TABLES}

    @staticmethod
    def schema(table: str) -> pa.Schema:
        """The Arrow schema of `table` (each field's metadata b"doc" documents the column)."""
        return SCHEMAS[table]

    @staticmethod
    def columns_doc(table: str) -> dict[str, str]:
        """Column -> its one-line documentation, for the columns every consumer may rely on."""
        return {f.name: (f.metadata or {}).get(b"doc", b"").decode() for f in SCHEMAS[table]}


def _read_config(results_dir: Path) -> tuple[ExperimentConfig | None, str | None]:
    """DIR/config.yaml validated, or (None, why) when it cannot be read; (None, None) when absent."""
    if not (results_dir / "config.yaml").is_file():
        return None, None
    try:
        return load_results_config(results_dir), None
    except (ConfigError, OSError) as e:
        return None, str(e)


def load(results_dir: str | Path) -> Results:
    """A results directory as a `Results`: all five tables rebuilt from the trial shards (works
    while a run is still going; a table with no rows still has every schema column) and the resolved
    config from DIR/config.yaml."""
    tables = _load_tables(Path(results_dir))
    config, error = _read_config(Path(results_dir))
    return Results(dir=Path(results_dir), **tables, config=config, config_error=error)


def _load_tables(results_dir: Path) -> dict[str, pd.DataFrame]:
    trials = Path(results_dir) / "trials"
    parts: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
    if trials.is_dir():
        for d in sorted(trials.iterdir()):
            if d.name.startswith(".") or not (d / "runs.parquet").is_file():
                continue
            for t, part in _read_folder(d).items():
                if len(part):
                    parts[t].append(part)
    out = {}
    for t in TABLES:
        data = pa.concat_tables(parts[t], promote_options="permissive") if parts[t] else conform(t, pa.table({}))
        out[t] = to_frame(t, data)
    return out


def _read_folder(d: Path) -> dict[str, pa.Table]:
    """The shards of one trial folder; none (said on stderr) when one of them is not Parquet."""
    try:
        return {t: _read(d / f"{t}.parquet", t) for t in TABLES if (d / f"{t}.parquet").is_file()}
    except ValueError as e:  # pa.ArrowInvalid (not Parquet), or a column that cannot hold its type
        print(f"harness: trial {d.name} is left out: its shards cannot be read ({e})", file=sys.stderr)
        return {}


def combine(results_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Rebuild DIR/<table>.parquet from the shards (each written to a temp name, then renamed)."""
    results_dir = Path(results_dir)
    tables = _load_tables(results_dir)
    for name, df in tables.items():
        with atomic_path(results_dir / f"{name}.parquet") as tmp:
            pq.write_table(to_arrow(name, df), tmp)
    return tables
