"""Where a run's shared state lives: the Optuna storage, DIR/run.yaml, the artifact store for the
shards of workers that do not share the results folder.
DIR/run.yaml itself (`RunSettings`) is read and written by `harness.results_dir`; the URL redaction
lives in `harness.redact` (both names are importable from here too); whether a trial's worker still lives
in `harness.queue` (`worker_alive`).

No torch import: `harness status` and `harness report` use this module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from harness.config import ConfigError
from harness.files import staged_dir
from harness.journal import CheckedJournalBackend
from harness.redact import first_line, has_password, redact_text, redact_url, without_password  # noqa: F401 (public here too)
from harness.results_dir import (  # noqa: F401 (RunSettings, write_run_settings, pid_alive: public here too)
    MODEL_FILE,
    RunSettings,
    is_done,
    pid_alive,
    read_run_settings,
    trial_dir,
    write_run_settings,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageUnreachable(Exception):
    """The storage database cannot be reached (the message names its URL, without the password)."""


class TrackerUnreachable(StorageUnreachable):
    """A tracker's store (an MLflow tracking server's URL, a SQLite file) cannot be reached or written:
    one line naming it, exit 1, as for the storage database."""


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite lets one process write at a time; several workers on one file wait up to 60 s for the
    lock (SQLite's default is 5 s, which a loaded machine exceeds) instead of failing."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def open_storage(out_dir: Path, url: str | None) -> optuna.storages.BaseStorage:
    """An Optuna storage: a URL (sqlite:///…, postgresql://…) or, by default, a journal file in
    the results directory (safe for many processes on one file system). A journal's torn last line
    is repaired and a damaged one refused (harness.journal.JournalDamaged); a database that cannot
    be reached raises StorageUnreachable."""
    if url and "://" in url:
        return _open_database(url)
    path = Path(url) if url else out_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(CheckedJournalBackend(str(path)))


def _open_database(url: str) -> optuna.storages.BaseStorage:
    from sqlalchemy.exc import ArgumentError, OperationalError

    # Commands starting at once on a new database would each create Optuna's tables (the losers
    # fail on a duplicate key): they do it in turn, under a lock the database's users share. Should a
    # process without that lock (an older harness) race all the same, the loser tries again.
    for attempt in range(6):
        try:
            return _open_locked(url)
        except OperationalError as e:
            why = redact_text(first_line(e.orig or e))
            hint = " (set PGPASSWORD or put the password in ~/.pgpass)" if "password" in why and \
                not has_password(url) else ""
            raise StorageUnreachable(f"cannot reach the storage database {redact_url(url)}: {why}{hint}") from None
        except (ArgumentError, ImportError) as e:  # not a URL SQLAlchemy reads, or its driver is not installed
            raise ConfigError(f"storage URL {redact_url(url)}: {redact_text(first_line(e))}") from None
        except Exception as e:
            if attempt == 5 or not any(w in str(e).lower() for w in ("duplicate", "already exists", "unique")):
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def _open_locked(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage on `url`, its tables created (when new) and the queue's indexes added
    (harness.queue.backends.prepare_database) under the database's shared lock."""
    import sqlalchemy

    from harness.queue.backends import (  # loads the queue and planner: only for a database
        database_lock,
        is_prepared,
        prepare_database,
    )

    probe = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        if is_prepared(probe):  # the usual case: no lock, so many workers starting at once do not queue
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        with database_lock(url, probe):
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            prepare_database(storage.engine)
    finally:
        probe.dispose()
    return storage


# ----------------------------------------------------------------------------- artifact store

def artifact_store(path: str | None) -> Any:
    """Optuna's file-system artifact store at `path` (created if missing), or None without a path."""
    if not path:
        return None
    from optuna.artifacts import FileSystemArtifactStore  # only with an artifact store

    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


def upload_shards(store: Any, trial: optuna.Trial, folder: Path) -> None:
    """Put a finished trial's shard files (in `folder`, its staged folder) and its kept weights
    (train.save_model) into the artifact store, attached to its Optuna trial."""
    from optuna.artifacts import upload_artifact  # only with an artifact store

    weights = Path(folder) / MODEL_FILE
    for path in [*sorted(Path(folder).glob("*.parquet")), *([weights] if weights.is_file() else [])]:
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def download_artifacts(out_dir: Path, storage_url: str | None = None, artifacts: str | None = None) -> int:
    """Download into DIR/trials/ the shards of trials finished by workers that do not share this
    results folder (from the artifact store named at run time; DIR/run.yaml by default).
    Writes one shard folder per fetched trial; returns how many trials were fetched."""
    settings = read_run_settings(out_dir)
    storage_url, artifacts = storage_url or settings.storage, artifacts or settings.artifacts
    store = artifact_store(artifacts)
    if store is None:
        return 0
    from optuna.artifacts import download_artifact, get_all_artifact_meta  # only with an artifact store

    storage = open_storage(out_dir, storage_url)
    fetched = 0
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            tid = t.user_attrs.get("shard")
            if tid is None or is_done(out_dir, tid):
                continue
            metas = get_all_artifact_meta(t, storage=storage)
            if not any(m.filename == "runs.parquet" for m in metas):
                continue
            with staged_dir(trial_dir(out_dir, tid)) as tmp:  # kept if another reader got there first
                for m in metas:
                    download_artifact(artifact_store=store, file_path=str(tmp / m.filename),
                                      artifact_id=m.artifact_id)
            fetched += 1
    return fetched
