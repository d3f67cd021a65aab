"""How each kind of Optuna storage claims, looks up and writes queued trials cheaply.

Optuna's public calls read a whole study to find one waiting trial and write one attribute per
transaction. A queue of 50,000 trials shared by many machines needs better, so this module talks to
Optuna's storage internals directly, one class per storage kind:

- `SqlQueue` (PostgreSQL, SQLite): a claim is one `UPDATE … RETURNING` on an indexed
  `(study_id, state, number)` (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one statement holds the
  write lock from its start), and the claim's attributes go in the same transaction; a trial's key
  is found through a partial index; waiting trials are created in one transaction.
- `JournalQueue` (journal file): reads only what was appended since its last read (Optuna's replay),
  keeps a cursor past the trials that can never be waiting again and an index of keys, and writes a
  batch of attributes in one append (one lock, one fsync).
- `GenericQueue`: any other storage, through Optuna's public calls (correct, not fast).

No torch import.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from harness.journal import cut_trials

KEY_ATTRS = ("trial_id", "slot")   # the user attribute that says what a queued trial stands for
SCAN_LIMIT = 2000                  # waiting trials looked at for a fused group's companions
ANALYZE_AFTER = 500                # a batch this large refreshes PostgreSQL's statistics
_PG_LOCK_KEY = 0x6861726E657373    # "harness": the PostgreSQL advisory lock of the enqueue


@dataclass(frozen=True)
class NewTrial:
    """A trial to create: its settings as Optuna params (with their distributions), its user
    attributes (its key: `trial_id` or `slot`, and maybe `after`), and its state: WAITING, or FAIL
    (a finished trial without values: benchmarks/queue_scale.py fills a study with them)."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    user_attrs: dict[str, Any]
    state: TrialState = TrialState.WAITING


@dataclass(frozen=True)
class Row:
    """What the queue needs of one trial of a study (grid and re-run trials, by trial id)."""

    key: str
    number: int
    state: TrialState
    status: str | None   # user attr `status` (failed, diverged, stale, duplicate, …)
    folder: str | None   # system attr `folder`: the results folder its worker wrote into


class QueueStorage:
    """The queue's operations on one storage. Subclasses make them cheap; this base class does each
    through Optuna's public storage calls."""

    def __init__(self, storage: optuna.storages.BaseStorage):
        self.storage = storage

    # ---------------------------------------------------------------- locking
    def lock(self) -> AbstractContextManager[None]:
        """Held while enqueueing, by every process that uses this storage (not only this folder's)."""
        return nullcontext()

    # ---------------------------------------------------------------- creating
    def create_waiting(self, study_id: int, trials: Sequence[NewTrial]) -> None:
        """Create these trials (WAITING, as a rule), numbered in this order after the study's last."""
        for t in trials:
            self.storage.create_new_trial(study_id, template_trial=_template(t))

    # ---------------------------------------------------------------- claiming
    def claim(self, study_id: int, attrs: dict[str, Any], limit: int = 1,
              wanted: Callable[[str], bool] | None = None) -> list[int]:
        """Move up to `limit` WAITING trials (lowest numbers first; with `wanted`, only those whose key
        it accepts) to RUNNING, each for this caller alone, and write `attrs` as their system
        attributes. Returns their storage-wide trial ids."""
        taken: list[int] = []
        for t in self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            if len(taken) >= limit:
                break
            if wanted is not None and not _accepts(wanted, t.user_attrs):
                continue
            try:
                if not self.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    continue
                self.write_attrs(t._trial_id, system=attrs)
            except UpdateFinishedTrialError:
                continue  # claimed, or failed as stale, by another process meanwhile
            taken.append(t._trial_id)
        return taken

    # ---------------------------------------------------------------- reading
    def same_key(self, study_id: int, name: str, value: Any) -> list[Row]:
        """The study's trials whose user attribute `name` (trial_id or slot) is `value`."""
        return [_row(t, name) for t in self.storage.get_all_trials(study_id, deepcopy=False)
                if t.user_attrs.get(name) == value]

    def remember(self, trial: FrozenTrial, study_id: int) -> None:
        """Called with each trial this process claimed (nothing to do for most storages)."""

    def cut_trials(self) -> set[int]:
        """Trials whose writer is known dead from the storage itself (a journal's torn line)."""
        return set()

    def in_state(self, study_id: int, state: TrialState) -> list[FrozenTrial]:
        """The study's trials in `state` (RUNNING: a few; not for WAITING in a large queue)."""
        return self.storage.get_all_trials(study_id, deepcopy=False, states=(state,))

    def rows(self, study_id: int) -> list[Row]:
        """One Row per trial of the study that has a `trial_id`, in number order."""
        return [_row(t) for t in self.storage.get_all_trials(study_id, deepcopy=False) if "trial_id" in t.user_attrs]

    def state_of(self, trial_id: int) -> TrialState:
        """A trial's state now."""
        return self.storage.get_trial(trial_id).state

    # ---------------------------------------------------------------- writing
    def write_attrs(self, trial_id: int, user: dict[str, Any] | None = None,
                    system: dict[str, Any] | None = None) -> None:
        """Write user and system attributes of an unfinished trial, together where the storage can.
        Raises UpdateFinishedTrialError once the trial is finished."""
        for k, v in (user or {}).items():
            self.storage.set_trial_user_attr(trial_id, k, v)
        for k, v in (system or {}).items():
            self.storage.set_trial_system_attr(trial_id, k, v)

    def finish(self, trial_id: int, state: TrialState, value: float | None, user: dict[str, Any]) -> bool:
        """Write a RUNNING trial's user attributes (its summary), its value (COMPLETE only) and its
        finished `state`, in one write where the storage can. Returns False, changing nothing, when
        the trial was no longer RUNNING (another process failed it as stale meanwhile)."""
        try:
            self.write_attrs(trial_id, user=user)
            return self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        except UpdateFinishedTrialError:
            return False


def _row(t: FrozenTrial, name: str = "trial_id") -> Row:
    return Row(t.user_attrs[name], t.number, t.state, t.user_attrs.get("status"), t.system_attrs.get("folder"))


def _accepts(wanted: Callable[[str], bool], user_attrs: dict[str, Any]) -> bool:
    key = user_attrs.get("trial_id")
    return key is not None and wanted(key)


def _template(t: NewTrial) -> FrozenTrial:
    done = datetime.now() if t.state.is_finished() else None
    return FrozenTrial(number=-1, state=t.state, value=None, values=None, datetime_start=done,
                       datetime_complete=done, params=t.params, distributions=t.distributions,
                       user_attrs=t.user_attrs, system_attrs={}, intermediate_values={}, trial_id=-1)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing); the kernel releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ============================================================================= journal file

class JournalQueue(QueueStorage):
    """A journal file: everything in memory after Optuna's incremental replay; writes batched."""

    def __init__(self, storage: optuna.storages.JournalStorage):
        super().__init__(storage)
        self.replay = storage._replay_result
        self.cursor: dict[int, int] = {}                 # study -> index before which no trial waits
        self.open_cursor: dict[int, int] = {}            # study -> index before which every trial finished
        self.indexed: dict[int, int] = {}                # study -> how many of its trials are in `by_key`
        self.by_key: dict[tuple[int, str, Any], list[int]] = {}

    def lock(self) -> AbstractContextManager[None]:
        return file_lock(Path(str(self.storage._backend._file_path) + ".enqueue.lock"))

    def cut_trials(self) -> set[int]:
        return cut_trials(self.storage._backend._file_path)

    def _sync(self) -> None:
        """Read what other processes appended (call with the storage's thread lock held)."""
        self.storage._sync_with_backend()
        self.replay = self.storage._replay_result

    def _append(self, trial_id: int, logs: list[dict[str, Any]]) -> None:
        """Append these records about one unfinished trial in one write (one lock, one fsync), then
        read. Raises UpdateFinishedTrialError (writing nothing) when the trial is already finished,
        or (after reading every record) when another process finished it just before the append."""
        worker = self.replay.worker_id
        with self.storage._thread_lock:
            self._sync()
            trial = self.replay._trials.get(trial_id)
            if trial is None or trial.state.is_finished():
                raise UpdateFinishedTrialError(f"trial {trial_id} is finished (or gone): nothing written")
            self.storage._backend.append_logs([{**log, "worker_id": worker} for log in logs])
            rejected = False
            while True:  # the replay rejects our records one at a time; read past every one
                try:
                    self._sync()
                    break
                except UpdateFinishedTrialError:
                    rejected = True
        if rejected:
            raise UpdateFinishedTrialError(f"trial {trial_id} was finished by another process meanwhile")

    def create_waiting(self, study_id: int, trials: Sequence[NewTrial]) -> None:
        from optuna.storages.journal._storage import JournalOperation  # Optuna's private API: only on this path

        logs = []
        for t in trials:
            done = datetime.now(timezone.utc).isoformat(timespec="microseconds") if t.state.is_finished() else None
            logs.append({"op_code": JournalOperation.CREATE_TRIAL, "study_id": study_id, "datetime_start": done,
                         **({"datetime_complete": done} if done else {}),
                         "state": int(t.state), "value": None, "values": None,
                         "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                         "params": {k: t.distributions[k].to_internal_repr(v) for k, v in t.params.items()},
                         "user_attrs": t.user_attrs, "system_attrs": {}, "intermediate_values": {}})
        if logs:
            worker = self.replay.worker_id
            with self.storage._thread_lock:
                self.storage._backend.append_logs([{**log, "worker_id": worker} for log in logs])
                self._sync()

    def _waiting_ids(self, study_id: int) -> Iterator[int]:
        """The study's WAITING trial ids, lowest number first (call with the thread lock held). A
        trial never returns to WAITING, so the cursor only moves forward."""
        ids = self.replay._study_id_to_trial_ids.get(study_id, [])
        trials = self.replay._trials
        start = self.cursor.get(study_id, 0)
        while start < len(ids) and trials[ids[start]].state != TrialState.WAITING:
            start += 1
        self.cursor[study_id] = start
        for i in range(start, len(ids)):
            if trials[ids[i]].state == TrialState.WAITING:
                yield ids[i]

    def in_state(self, study_id: int, state: TrialState) -> list[FrozenTrial]:
        """From the first unfinished trial on (a finished trial stays finished, so that index only
        moves forward)."""
        with self.storage._thread_lock:
            self._sync()
            ids = self.replay._study_id_to_trial_ids.get(study_id, [])
            trials = self.replay._trials
            start = self.open_cursor.get(study_id, 0)
            while start < len(ids) and trials[ids[start]].state.is_finished():
                start += 1
            self.open_cursor[study_id] = start
            return [trials[i] for i in ids[start:] if trials[i].state == state]

    def claim(self, study_id: int, attrs: dict[str, Any], limit: int = 1,
              wanted: Callable[[str], bool] | None = None) -> list[int]:
        taken: list[int] = []
        tried: set[int] = set()
        while len(taken) < limit:
            with self.storage._thread_lock:
                self._sync()
                candidate = next((i for i in self._waiting_ids(study_id) if i not in tried and (
                    wanted is None or _accepts(wanted, self.replay._trials[i].user_attrs))), None)
            if candidate is None:
                break
            tried.add(candidate)
            try:
                if not self.storage.set_trial_state_values(candidate, state=TrialState.RUNNING):
                    continue  # another process's claim came first in the journal
                self.write_attrs(candidate, system=attrs)
            except UpdateFinishedTrialError:
                continue
            taken.append(candidate)
        return taken

    def _index(self, study_id: int) -> None:
        ids = self.replay._study_id_to_trial_ids.get(study_id, [])
        for i in range(self.indexed.get(study_id, 0), len(ids)):
            attrs = self.replay._trials[ids[i]].user_attrs
            for name in KEY_ATTRS:
                if name in attrs:
                    self.by_key.setdefault((study_id, name, attrs[name]), []).append(ids[i])
        self.indexed[study_id] = len(ids)

    def same_key(self, study_id: int, name: str, value: Any) -> list[Row]:
        with self.storage._thread_lock:
            self._sync()
            self._index(study_id)
            return [_row(self.replay._trials[i], name) for i in self.by_key.get((study_id, name, value), [])]

    def write_attrs(self, trial_id: int, user: dict[str, Any] | None = None,
                    system: dict[str, Any] | None = None) -> None:
        from optuna.storages.journal._storage import JournalOperation  # Optuna's private API: only on this path

        # Optuna's replay takes one attribute per record; one append writes them all under one lock.
        logs = [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "trial_id": trial_id, "user_attr": {k: v}}
                for k, v in (user or {}).items()]
        logs += [{"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR, "trial_id": trial_id, "system_attr": {k: v}}
                 for k, v in (system or {}).items()]
        if logs:
            self._append(trial_id, logs)

    def state_of(self, trial_id: int) -> TrialState:
        with self.storage._thread_lock:
            self._sync()
            return self.replay._trials[trial_id].state

    def finish(self, trial_id: int, state: TrialState, value: float | None, user: dict[str, Any]) -> bool:
        from optuna.storages.journal._storage import JournalOperation  # Optuna's private API: only on this path

        logs = [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "trial_id": trial_id, "user_attr": {k: v}}
                for k, v in user.items()]
        logs.append({"op_code": JournalOperation.SET_TRIAL_STATE_VALUES, "trial_id": trial_id, "state": int(state),
                     "values": None if value is None else [value],
                     "datetime_complete": datetime.now(timezone.utc).isoformat(timespec="microseconds")})
        try:
            self._append(trial_id, logs)
        except UpdateFinishedTrialError:
            return False
        return self.state_of(trial_id) == state


# ============================================================================= SQL databases

_WAITING, _RUNNING = TrialState.WAITING.name, TrialState.RUNNING.name


def _utc_now() -> datetime:
    """Now, as Optuna's tables store times: naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def prepare_database(engine: Any) -> None:
    """Add the indexes the queue's lookups need to Optuna's tables (idempotent): waiting trials by
    study and number, and trials by key. Call it under `database_lock` (PostgreSQL's CREATE INDEX
    IF NOT EXISTS is not safe against a concurrent one)."""
    from sqlalchemy import text

    with engine.begin() as c:
        c.execute(text("CREATE INDEX IF NOT EXISTS ix_harness_queue ON trials (study_id, state, number)"))
        for name in KEY_ATTRS:
            c.execute(text(f"CREATE INDEX IF NOT EXISTS ix_harness_key_{name} ON trial_user_attributes "
                           f"(value_json) WHERE key = '{name}'"))


def is_prepared(engine: Any) -> bool:
    """Whether Optuna's tables and the queue's indexes already exist in this database (then opening
    it needs no lock: nothing is created)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        inspector = inspect(engine)
        return inspector.has_table("version_info") and any(
            ix["name"] == "ix_harness_queue" for ix in inspector.get_indexes("trials"))
    except SQLAlchemyError:
        return False


@contextmanager
def database_lock(url: str, engine: Any) -> Iterator[None]:
    """A lock every process on this database shares: a PostgreSQL advisory lock held by one
    connection, or, for SQLite, an flock on a file beside the database file."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as c:
            c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            c.commit()
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                c.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with file_lock(Path(engine.url.database + ".harness.lock")):
            yield
    else:
        yield


class SqlQueue(QueueStorage):
    """PostgreSQL or SQLite through Optuna's tables, one statement or one transaction per operation."""

    def __init__(self, storage: optuna.storages.BaseStorage, rdb: optuna.storages.RDBStorage):
        super().__init__(storage)
        self.rdb = rdb
        self.engine = rdb.engine
        self.pg = self.engine.dialect.name == "postgresql"

    def lock(self) -> AbstractContextManager[None]:
        return database_lock(self.rdb.url, self.engine)

    def create_waiting(self, study_id: int, trials: Sequence[NewTrial]) -> None:
        from optuna.storages._rdb import models  # Optuna's private API: only on this path
        from sqlalchemy import insert, text

        if not trials:
            return
        t_trials, t_user = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
        t_params = models.TrialParamModel.__table__
        now = _utc_now()
        with self.engine.begin() as c:
            # Optuna numbers a trial by counting the study's earlier ones under a lock on the study's
            # row; this takes the same lock (on SQLite: the write lock) before counting.
            c.execute(text("UPDATE studies SET study_name = study_name WHERE study_id = :s"), {"s": study_id})
            first = c.execute(text("SELECT count(*) FROM trials WHERE study_id = :s"), {"s": study_id}).scalar()
            ids = c.execute(insert(t_trials).returning(t_trials.c.trial_id, sort_by_parameter_order=True),
                            [{"number": first + i, "study_id": study_id, "state": t.state,
                              "datetime_start": now if t.state.is_finished() else None,
                              "datetime_complete": now if t.state.is_finished() else None}
                             for i, t in enumerate(trials)]).scalars().all()
            users = [{"trial_id": tid, "key": k, "value_json": json.dumps(v)}
                     for tid, t in zip(ids, trials) for k, v in t.user_attrs.items()]
            params = [{"trial_id": tid, "param_name": k, "param_value": t.distributions[k].to_internal_repr(v),
                       "distribution_json": distribution_to_json(t.distributions[k])}
                      for tid, t in zip(ids, trials) for k, v in t.params.items()]
            if users:
                c.execute(insert(t_user), users)
            if params:
                c.execute(insert(t_params), params)
        if self.pg and len(trials) >= ANALYZE_AFTER:
            # PostgreSQL plans by its table statistics; until autovacuum refreshes them (a minute or
            # more) it takes a new study for one row and reads the whole queue per claim instead of
            # using the indexes.
            with self.engine.begin() as c:
                c.execute(text("ANALYZE trials, trial_user_attributes, trial_system_attributes"))

    def claim(self, study_id: int, attrs: dict[str, Any], limit: int = 1,
              wanted: Callable[[str], bool] | None = None) -> list[int]:
        from sqlalchemy import bindparam, text

        now = _utc_now()
        with self.engine.begin() as c:
            if wanted is None:
                pick = (f"SELECT trial_id FROM trials WHERE study_id = :s AND state = '{_WAITING}' "
                        f"ORDER BY number LIMIT :k")
                if self.pg:  # the picked rows are locked once (a subquery in IN may run once per row)
                    sql = (f"WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED) UPDATE trials t SET "
                           f"state = '{_RUNNING}', datetime_start = :now FROM picked "
                           f"WHERE t.trial_id = picked.trial_id RETURNING t.trial_id")
                else:  # SQLite: one statement holds the write lock from its start
                    sql = (f"UPDATE trials SET state = '{_RUNNING}', datetime_start = :now WHERE trial_id IN "
                           f"({pick}) AND state = '{_WAITING}' RETURNING trial_id")
                ids = c.execute(text(sql), {"now": now, "s": study_id, "k": limit}).scalars().all()
            else:
                rows = c.execute(text(
                    f"SELECT t.trial_id, a.value_json FROM trials t JOIN trial_user_attributes a "
                    f"ON a.trial_id = t.trial_id AND a.key = 'trial_id' WHERE t.study_id = :s "
                    f"AND t.state = '{_WAITING}' ORDER BY t.number LIMIT {SCAN_LIMIT}"), {"s": study_id}).all()
                pick = [tid for tid, v in rows if wanted(json.loads(v))][:limit]
                ids = []
                if pick:  # a conditional update: a trial another process took meanwhile is not updated
                    ids = c.execute(text(
                        f"UPDATE trials SET state = '{_RUNNING}', datetime_start = :now WHERE trial_id IN :ids "
                        f"AND state = '{_WAITING}' RETURNING trial_id").bindparams(
                        bindparam("ids", expanding=True)), {"now": now, "ids": pick}).scalars().all()
            if ids and attrs:
                self._upsert(c, "trial_system_attributes", [(tid, k, v) for tid in ids for k, v in attrs.items()])
        return sorted(ids)

    def remember(self, trial: FrozenTrial, study_id: int) -> None:
        """Tell Optuna's cache in front of the database (if any) of a trial it has not read: its
        `set_trial_param` (a search trial's sampler) looks the trial's study up there."""
        # Optuna's private API: only on this path
        from optuna.storages._cached_storage import _CachedStorage, _StudyInfo

        cache = self.storage
        if not isinstance(cache, _CachedStorage):
            return
        with cache._lock:
            info = cache._studies.setdefault(study_id, _StudyInfo())
            cache._add_trials_to_cache(study_id, [trial])
            info.unfinished_trial_ids.add(trial._trial_id)

    def _upsert(self, c: Any, table: str, rows: list[tuple[int, str, Any]]) -> None:
        from sqlalchemy import text

        c.execute(text(f"INSERT INTO {table} (trial_id, key, value_json) VALUES (:t, :k, :v) "
                       f"ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json"),
                  [{"t": t, "k": k, "v": json.dumps(v)} for t, k, v in rows])

    def _trial_ids(self, sql: str, params: dict[str, Any]) -> list[int]:
        from sqlalchemy import text

        with self.engine.connect() as c:
            return list(c.execute(text(sql), params).scalars().all())

    def same_key(self, study_id: int, name: str, value: Any) -> list[Row]:
        assert name in KEY_ATTRS
        return self._rows(f"a.key = '{name}' AND a.value_json = :v AND t.study_id = :s",
                          {"v": json.dumps(value), "s": study_id}, name)

    def in_state(self, study_id: int, state: TrialState) -> list[FrozenTrial]:
        ids = self._trial_ids(f"SELECT trial_id FROM trials WHERE study_id = :s AND state = '{state.name}' "
                              f"ORDER BY number", {"s": study_id})
        return [self.storage.get_trial(i) for i in ids]

    def rows(self, study_id: int) -> list[Row]:
        return self._rows("t.study_id = :s", {"s": study_id})

    def _rows(self, where: str, params: dict[str, Any], name: str = "trial_id") -> list[Row]:
        """Rows of the trials with user attribute `name` (alias a) that match `where`, in one query."""
        from sqlalchemy import text

        sql = (f"SELECT a.value_json, t.number, t.state, s.value_json, f.value_json FROM trials t "
               f"JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = '{name}' "
               f"LEFT JOIN trial_user_attributes s ON s.trial_id = t.trial_id AND s.key = 'status' "
               f"LEFT JOIN trial_system_attributes f ON f.trial_id = t.trial_id AND f.key = 'folder' "
               f"WHERE {where} ORDER BY t.number")
        with self.engine.connect() as c:
            out = c.execute(text(sql), params).all()
        return [Row(json.loads(k), n, TrialState[st] if isinstance(st, str) else TrialState[st.name],
                    None if s is None else json.loads(s), None if f is None else json.loads(f))
                for k, n, st, s, f in out]

    def state_of(self, trial_id: int) -> TrialState:
        from sqlalchemy import text

        with self.engine.connect() as c:
            return TrialState[c.execute(text("SELECT state FROM trials WHERE trial_id = :t"), {"t": trial_id}).scalar()]

    def finish(self, trial_id: int, state: TrialState, value: float | None, user: dict[str, Any]) -> bool:
        from optuna.storages._rdb import models  # Optuna's private API: only on this path
        from sqlalchemy import text

        with self.engine.begin() as c:
            # The state first: one conditional write takes the row (on SQLite the write lock) and
            # says whether this worker still holds the trial.
            n = c.execute(text(f"UPDATE trials SET state = '{state.name}', datetime_complete = :now "
                               f"WHERE trial_id = :t AND state = '{_RUNNING}'"),
                          {"now": _utc_now(), "t": trial_id}).rowcount
            if n != 1:
                return False
            if user:
                self._upsert(c, "trial_user_attributes", [(trial_id, k, v) for k, v in user.items()])
            if value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                c.execute(text("INSERT INTO trial_values (trial_id, objective, value, value_type) "
                               "VALUES (:t, 0, :v, :k)"), {"t": trial_id, "v": stored, "k": kind.name})
        return True

    def write_attrs(self, trial_id: int, user: dict[str, Any] | None = None,
                    system: dict[str, Any] | None = None) -> None:
        from sqlalchemy import text

        with self.engine.begin() as c:
            # First a write (it takes the row's lock; on SQLite the write lock), which also says
            # whether the trial may still be updated.
            n = c.execute(text(f"UPDATE trials SET state = state WHERE trial_id = :t AND state IN "
                               f"('{_WAITING}', '{_RUNNING}')"), {"t": trial_id}).rowcount
            if n != 1:
                raise UpdateFinishedTrialError(f"trial {trial_id} is finished (or gone): attributes not changed")
            if user:
                self._upsert(c, "trial_user_attributes", [(trial_id, k, v) for k, v in user.items()])
            if system:
                self._upsert(c, "trial_system_attributes", [(trial_id, k, v) for k, v in system.items()])


# ============================================================================= choosing

def queue_storage(storage: optuna.storages.BaseStorage) -> QueueStorage:
    """The QueueStorage for an Optuna storage (made once per storage object and kept on it)."""
    made = getattr(storage, "_harness_queue", None)
    if made is not None:
        return made
    from optuna.storages import JournalStorage, RDBStorage  # Optuna's private API: only on this path
    from optuna.storages._cached_storage import _CachedStorage

    rdb = storage._backend if isinstance(storage, _CachedStorage) else storage
    if isinstance(storage, JournalStorage) and hasattr(storage._backend, "_file_path"):
        made = JournalQueue(storage)
    elif isinstance(rdb, RDBStorage) and rdb.engine.dialect.name in ("postgresql", "sqlite"):
        made = SqlQueue(storage, rdb)
    else:
        made = QueueStorage(storage)
    storage._harness_queue = made
    return made
