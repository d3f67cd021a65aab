"""Where a run's shared state lives: the Optuna storage, DIR/run.yaml, the artifact store for the
shards of workers that do not share the results folder, and whether a trial's worker still lives.

No torch import: `harness status` and `harness report` use this module.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from harness.files import atomic_write_text, staged_dir
from harness.records import MODEL_FILE, is_done, trial_dir

STALE_AFTER_S = 60.0    # a RUNNING trial with no heartbeat for this long is taken as dead

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
    from harness.journal import CheckedJournalBackend

    path = Path(url) if url else out_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(CheckedJournalBackend(str(path)))


def _open_database(url: str) -> optuna.storages.BaseStorage:
    from sqlalchemy.exc import ArgumentError, OperationalError

    from harness.config import ConfigError

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

    from harness.queue.backends import database_lock, is_prepared, prepare_database

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


# ----------------------------------------------------------------------------- secrets

_PASSWORD_IN_TEXT = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]+@")


def redact_url(url: str | None) -> str | None:
    """`url` with its password (if any) shown as ***: postgresql://user:***@host/db. For messages."""
    if not url or "://" not in url:
        return url
    return _PASSWORD_IN_TEXT.sub(r"\1***@", url)


def without_password(url: str | None) -> str | None:
    """`url` with its password left out (postgresql://user@host/db): what is written to files.
    libpq (psycopg) then takes the password from PGPASSWORD or ~/.pgpass."""
    if not url or "://" not in url:
        return url
    return _PASSWORD_IN_TEXT.sub(lambda m: m.group(1)[:-1] + "@", url)


def has_password(url: str | None) -> bool:
    """Whether `url` carries a password."""
    return bool(url) and without_password(url) != url


def redact_text(text: str) -> str:
    """`text` with the password of every URL in it shown as ***."""
    return _PASSWORD_IN_TEXT.sub(r"\1***@", text)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (drivers add hints and SQL on further lines)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


# ----------------------------------------------------------------------------- DIR/run.yaml

@dataclass
class RunSettings:
    """Where a run's shared state lives (written to DIR/run.yaml so report/status find it), and the
    results folder's identity: a random id made by its first run, which a copied or moved folder
    keeps; each trial records the id of the folder its worker wrote its shards into."""

    storage: str | None = None
    artifacts: str | None = None
    folder_id: str | None = None


def write_run_settings(out_dir: Path, settings: RunSettings) -> None:
    """Write DIR/run.yaml (atomically: temp file, then rename), the storage URL without its password,
    keeping the folder's id (or making one)."""
    folder = settings.folder_id or read_run_settings(out_dir).folder_id or uuid.uuid4().hex
    settings = dataclasses.replace(settings, storage=without_password(settings.storage), folder_id=folder)
    atomic_write_text(out_dir / "run.yaml", yaml.safe_dump(dataclasses.asdict(settings), sort_keys=False))


def read_run_settings(out_dir: Path) -> RunSettings:
    """DIR/run.yaml, or the defaults (journal in DIR, no artifact store) when there is none. A file
    that is not UTF-8, not YAML or not a mapping of these settings (each a string or null) is a
    ConfigError naming it and how to recover."""
    path = Path(out_dir) / "run.yaml"
    if not path.is_file():
        return RunSettings()
    from harness.config import ConfigError
    from harness.files import kind, read_yaml_mapping

    recover = (f"delete it (the next `harness run` writes it again; give --storage and --artifacts again if the "
               f"run used them) or delete {out_dir} to start over")
    raw = read_yaml_mapping(path, recover)
    names = [f.name for f in dataclasses.fields(RunSettings)]
    wrong = next((k for k in names if raw.get(k) is not None and not isinstance(raw[k], str)), None)
    if wrong is not None:
        raise ConfigError(f"{path}: '{wrong}' holds {kind(raw[wrong])}, not a string: {recover}")
    return RunSettings(**{k: raw.get(k) for k in names})


# ----------------------------------------------------------------------------- artifact store

def artifact_store(path: str | None) -> Any:
    """Optuna's file-system artifact store at `path` (created if missing), or None without a path."""
    if not path:
        return None
    from optuna.artifacts import FileSystemArtifactStore

    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


def upload_shards(store: Any, trial: optuna.Trial, folder: Path) -> None:
    """Put a finished trial's shard files (in `folder`, its staged folder) and its kept weights
    (train.save_model) into the artifact store, attached to its Optuna trial."""
    from optuna.artifacts import upload_artifact

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
    from optuna.artifacts import download_artifact, get_all_artifact_meta

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


# ----------------------------------------------------------------------------- liveness

def worker_alive(trial: optuna.trial.FrozenTrial, now: float) -> bool:
    """Whether a RUNNING trial's worker still lives: a recent heartbeat (or, just after the claim and
    before the first heartbeat is written, a recent start), and (on this host) its process."""
    attrs = trial.system_attrs
    beat = attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    if beat is not None and now - beat < STALE_AFTER_S:
        if attrs.get("host") == socket.gethostname() and attrs.get("pid"):
            return pid_alive(int(attrs["pid"]))
        return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host. A zombie (exited, not yet reaped) does not:
    a worker whose main process was killed is re-parented, and where no process reaps it (an init
    that does not, as in some containers) it stays a zombie that answers signals."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether /proc says this process is a zombie (False where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return bool(fields) and fields[0] == "Z"
