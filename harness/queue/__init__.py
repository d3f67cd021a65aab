"""The queue protocol: which trials are waiting, and who runs each one, exactly once.

Each grid point × seed (or each search slot of a study) is enqueued once in an Optuna study as a
WAITING trial carrying its `trial_id` (or `slot`) and its settings as Optuna params. Enqueueing
holds a lock that every command on the same storage shares, on any machine (`enqueue_lock`), so
however many commands start together each trial is queued once. A worker claims a waiting trial by
moving it to RUNNING, for one caller only on every storage (one `UPDATE … RETURNING` on a database,
the journal's order of records on a journal file), stamped in the same write, and writes a
heartbeat while it runs. Enqueueing fails RUNNING trials whose worker is gone (stale) so their work
is queued again. A trial is *done* when its shard folder verifies (not when the study says it
finished: a deleted or damaged folder is run again), so re-running the same command enqueues only
what is not done.

Every use of Optuna's private API (the storage behind a study, internal trial and study ids, its
tables and journal records) is in this package; `backends` holds what differs by storage kind.
No torch import.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import study as study_mod
from harness.plan import Plan
from harness.queue.backends import NewTrial, QueueStorage, Row, queue_storage
from harness.records import read_trial, verify_trial
from harness.results_dir import pid_alive, read_run_settings

HEARTBEAT_S = 10.0      # a running trial's worker writes a heartbeat this often
MAX_ATTEMPTS = 2        # a trial that raised is retried once (on resume), then left failed
STALE_AFTER_S = 60.0    # a RUNNING trial with no heartbeat for this long is taken as dead

AnyTrial = optuna.Trial | FrozenTrial


# ----------------------------------------------------------------------------- studies

def open_queue(plan: Plan, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study whose trials are enqueued settings: the grid, or a study's best-setting re-runs."""
    study = optuna.create_study(study_name=plan.cfg.name, storage=storage, load_if_exists=True,
                                direction="maximize")
    if study.metric_names is None:  # the value a finished trial reports (runner: its best_dev_acc)
        with warnings.catch_warnings():  # experimental in Optuna, but what the dashboard labels axes with
            warnings.simplefilter("ignore")
            study.set_metric_names(["best_dev_acc"])
    return study


def open_searches(plan: Plan, storage: optuna.storages.BaseStorage, worker: int = 0
                  ) -> dict[str, optuna.Study]:
    """The search studies, each with the configured sampler and pruner."""
    st = plan.cfg.study
    out = {}
    for s in plan.studies:
        study = optuna.create_study(study_name=s.name, storage=storage, load_if_exists=True,
                                    directions=[o.direction for o in st.objectives],
                                    sampler=study_mod.make_sampler(st, worker), pruner=study_mod.make_pruner(st))
        study.set_user_attr("study", "search")
        with warnings.catch_warnings():  # experimental in Optuna, but what the dashboard labels axes with
            warnings.simplefilter("ignore")
            study.set_metric_names([o.metric for o in st.objectives])
        out[s.name] = study
    return out


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


# ----------------------------------------------------------------------------- Optuna internals

def _trial_id(trial: AnyTrial) -> int:
    """Optuna's storage-wide id of a trial (not its per-study `number`)."""
    return trial._trial_id


def _queue(study: optuna.Study) -> QueueStorage:
    return queue_storage(study._storage)


def set_system_attrs(study: optuna.Study, trial: AnyTrial, attrs: dict[str, Any]) -> None:
    """Write system attributes of a trial (host, pid, heartbeat, worker), in one write where the
    storage can; Optuna has no public call for it. Raises optuna.exceptions.UpdateFinishedTrialError
    once the trial is finished."""
    _queue(study).write_attrs(_trial_id(trial), system=attrs)


def set_user_attrs(study: optuna.Study, trial: AnyTrial, attrs: dict[str, Any]) -> None:
    """Write user attributes of a trial (its summary), in one write where the storage can. Raises
    optuna.exceptions.UpdateFinishedTrialError once the trial is finished."""
    _queue(study).write_attrs(_trial_id(trial), user=attrs)


def finish(study: optuna.Study, trial: AnyTrial, state: TrialState, value: float | None,
           attrs: dict[str, Any]) -> bool:
    """Finish a RUNNING grid or re-run trial: its summary `attrs` (user attributes), its value
    (COMPLETE only) and its state in one write. Returns False, writing nothing, when another
    process failed it as stale meanwhile (its work is queued again). Search trials go through
    Optuna's `tell` (their sampler may need to see them finish)."""
    return _queue(study).finish(_trial_id(trial), state, value, attrs)


def state_of(study: optuna.Study, trial: AnyTrial) -> TrialState:
    """A trial's state now (one indexed read on a database)."""
    return _queue(study).state_of(_trial_id(trial))


def _finish(study: optuna.Study, trial: AnyTrial, status: str) -> None:
    """Mark an unfinished trial FAIL with user attr `status` (stale, duplicate)."""
    study._storage.set_trial_user_attr(_trial_id(trial), "status", status)
    study._storage.set_trial_state_values(_trial_id(trial), state=TrialState.FAIL)


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's RUNNING trials (an indexed lookup on a database: not a read of the whole queue)."""
    return _queue(study).in_state(study._study_id, TrialState.RUNNING)


def any_waiting(study: optuna.Study) -> bool:
    """Whether the study holds a WAITING trial (an indexed lookup on a database)."""
    return bool(_queue(study).in_state(study._study_id, TrialState.WAITING))


# ----------------------------------------------------------------------------- enqueueing

@contextmanager
def enqueue_lock(study: optuna.Study) -> Iterator[None]:
    """Held while enqueueing by every command on the same storage, on any machine: a PostgreSQL
    advisory lock, or an flock beside the SQLite database or the journal file. So however many
    commands start at once, each trial is enqueued once."""
    with _queue(study).lock():
        yield


def trial_key(t: AnyTrial) -> str | None:
    """What a queued trial stands for: a trial id (grid, re-run) or a search slot."""
    if "trial_id" in t.user_attrs:
        return t.user_attrs["trial_id"]
    if "slot" in t.user_attrs:
        return f"slot:{t.user_attrs['slot']}"
    return None


def fail_stale(study: optuna.Study, now: float) -> int:
    """Mark RUNNING trials whose worker is gone as FAIL (stale), so their work is queued again: no
    recent heartbeat, a dead pid on this host, or named in a torn journal line this process cut off
    (harness.journal.cut_trials: at once, not after the heartbeat grace). `now` is a time.time()
    timestamp. Returns how many were failed."""
    n = 0
    cut = _queue(study).cut_trials()
    for t in running_trials(study):
        if _trial_id(t) in cut or not worker_alive(t, now):
            try:
                _finish(study, t, "stale")
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # its worker finished it, or another command failed it, meanwhile
            n += 1
    return n


def enqueue_missing(plan: Plan, study: optuna.Study, retry: bool = True) -> dict[str, int]:
    """Enqueue every spec that is not done, not waiting and not running; fail stale RUNNING trials
    (their worker died) so they are enqueued again; retry a failed trial once (`retry`: a command
    does so when it starts, not at the end of a round, so a trial that raised is retried on the next
    run).
    Done means: a shard folder here that verifies (records.verify_trial), whatever the study says
    (a deleted or damaged folder is run again), or a trial finished in the study by a worker that
    wrote into another results folder (another folder id, see results_dir.RunSettings: a machine that
    does not share this folder; its shards are there, or in the artifact store).
    Runs under the storage's enqueue lock (`enqueue_lock`) and writes the new trials in one batch.
    Returns counts: enqueued, stale, retried."""
    counts = {"enqueued": 0, "stale": 0, "retried": 0}
    queue = _queue(study)
    with queue.lock():
        counts["stale"] = fail_stale(study, time.time())
        seen = _queue_state(queue.rows(study._study_id), read_run_settings(plan.out_dir).folder_id)
        new: list[NewTrial] = []
        for spec in plan.specs:
            tid = spec.trial_id
            if tid in seen.active or tid in seen.elsewhere or seen.attempts.get(tid, 0) >= MAX_ATTEMPTS:
                continue
            if verify_trial(plan.out_dir, tid) is None:
                if not (retry and _failed_shard(plan.out_dir, tid)):
                    continue
                counts["retried"] += 1
            attrs: dict[str, Any] = {"trial_id": tid}
            if tid in seen.finished_here:  # its shards were lost: this one replaces that finished trial
                attrs["after"] = seen.finished_here[tid]
            params, distributions = study_mod.trial_params(plan.cfg, spec)
            new.append(NewTrial(params, distributions, attrs))
        queue.create_waiting(study._study_id, new)
        counts["enqueued"] = len(new)
    return counts


def finished_elsewhere(plan: Plan, study: optuna.Study) -> set[str]:
    """The planned trial ids finished well by a worker that wrote into another results folder."""
    seen = _queue_state(_queue(study).rows(study._study_id), read_run_settings(plan.out_dir).folder_id)
    return {s.trial_id for s in plan.specs if s.trial_id in seen.elsewhere}


@dataclass
class _QueueState:
    active: set[str] = field(default_factory=set)           # waiting or running
    elsewhere: set[str] = field(default_factory=set)        # finished into another results folder
    finished_here: dict[str, int] = field(default_factory=dict)  # highest number finished into this one
    attempts: dict[str, int] = field(default_factory=dict)  # failed attempts


def _finished_well(state: TrialState, status: str | None) -> bool:
    return state in (TrialState.COMPLETE, TrialState.PRUNED) or status == "diverged"


def _queue_state(rows: list[Row], folder_id: str | None) -> _QueueState:
    """What the study says of each trial id (grid trials and re-runs; search slots are not here)."""
    seen = _QueueState()
    for r in rows:
        tid = r.key
        if r.state in (TrialState.WAITING, TrialState.RUNNING):
            seen.active.add(tid)
        elif _finished_well(r.state, r.status) and (r.folder or folder_id) != folder_id:
            seen.elsewhere.add(tid)
        elif _finished_well(r.state, r.status):
            seen.finished_here[tid] = max(r.number, seen.finished_here.get(tid, -1))
        elif r.status == "failed":
            seen.attempts[tid] = seen.attempts.get(tid, 0) + 1
    return seen


def _failed_shard(out_dir: Path, trial_id: str) -> bool:
    runs = read_trial(out_dir, trial_id).get("runs")
    return bool(runs is not None and len(runs) and runs["status"].iloc[0] == "failed")


def enqueue_slots(plan: Plan, searches: dict[str, optuna.Study]) -> int:
    """Top each search study up to n_trials: finished + waiting + running slots. Returns how many
    slots were added."""
    n_trials, added = plan.cfg.study.n_trials, 0
    for study in searches.values():
        with enqueue_lock(study):
            fail_stale(study, time.time())
            used, highest = 0, -1
            for t in study.get_trials(deepcopy=False):
                if "slot" not in t.user_attrs:
                    continue
                highest = max(highest, int(t.user_attrs["slot"]))
                if t.user_attrs.get("status") not in ("stale", "duplicate"):
                    used += 1
            more = max(0, n_trials - used)
            _queue(study).create_waiting(study._study_id, [NewTrial({}, {}, {"slot": highest + 1 + i})
                                                           for i in range(more)])
            added += more
    return added


def searches_finished(searches: dict[str, optuna.Study]) -> bool:
    """Whether no search study has a WAITING or RUNNING trial."""
    return not any(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                   for study in searches.values())


def add_reruns(plan: Plan, searches: dict[str, optuna.Study]) -> None:
    """Once the searches are done: add to plan.specs the best setting of each study, once per grid seed."""
    if plan.cfg.study is None or not plan.cfg.study.rerun_best or plan.specs or not searches_finished(searches):
        return
    for s in plan.studies:
        best = study_mod.best_trial(searches[s.name], plan.cfg.study)
        if best is not None:
            plan.specs.extend(study_mod.rerun_specs(plan.cfg, plan.data_id, s, best))


def running_elsewhere(studies: list[optuna.Study]) -> bool:
    """Whether any trial of these studies is RUNNING with a live worker."""
    now = time.time()
    return any(worker_alive(t, now) for study in studies for t in running_trials(study))


# ----------------------------------------------------------------------------- claiming

def _stamp(attrs: dict[str, Any] | None) -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": now, "claimed_at": now, **(attrs or {})}


def claim(study: optuna.Study, attrs: dict[str, Any] | None = None) -> tuple[optuna.Trial, str] | None:
    """Atomically take the lowest-numbered WAITING trial (WAITING → RUNNING succeeds for one caller
    only), stamped in the same write with this host, pid, a first heartbeat and `attrs` (worker,
    folder). Returns the trial and its key, or None when nothing is waiting. A duplicate enqueue
    (same trial id or slot as a lower-numbered live trial) is dropped here.
    Its cost does not grow with the number of waiting or finished trials (see harness.queue.backends)."""
    queue = _queue(study)
    while True:
        ids = queue.claim(study._study_id, _stamp(attrs))
        if not ids:
            return None
        trial = optuna.Trial(study, ids[0])
        queue.remember(trial._cached_frozen_trial, study._study_id)
        key = trial_key(trial)
        if key is None or _held_elsewhere(queue, study, trial, key):
            _finish(study, trial, "duplicate")
            continue
        return trial, key


def claim_matching(study: optuna.Study, wanted: Callable[[str], bool], limit: int,
                   attrs: dict[str, Any] | None = None) -> list[tuple[optuna.Trial, str]]:
    """Atomically take up to `limit` more WAITING trials whose key `wanted` accepts (the companions
    of a fused group; among the first backends.SCAN_LIMIT waiting), each claimed and stamped as
    `claim` does. Takes what is waiting now; never waits."""
    if limit < 1:
        return []
    queue = _queue(study)
    taken: list[tuple[optuna.Trial, str]] = []
    for tid in queue.claim(study._study_id, _stamp(attrs), limit=limit, wanted=wanted):
        trial = optuna.Trial(study, tid)
        queue.remember(trial._cached_frozen_trial, study._study_id)
        key = trial_key(trial)
        if key is None or _held_elsewhere(queue, study, trial, key):
            _finish(study, trial, "duplicate")
            continue
        taken.append((trial, key))
    return taken


def _held_elsewhere(queue: QueueStorage, study: optuna.Study, mine: AnyTrial, key: str) -> bool:
    """True when another, lower-numbered trial with the same key is waiting, running or finished
    well: then that one is the real one and mine is a duplicate. A finished trial numbered up to
    mine's `after` attr does not count: mine replaces it (its shards were lost). An indexed lookup
    of the trials with this key, not a read of the study."""
    after = mine.user_attrs.get("after", -1)
    name, value = ("slot", int(key[5:])) if key.startswith("slot:") else ("trial_id", key)
    for t in queue.same_key(study._study_id, name, value):
        if t.number < mine.number and (t.state in (TrialState.WAITING, TrialState.RUNNING) or
                                       _finished_well(t.state, t.status) and t.number > after):
            return True
    return False


class Heartbeat:
    """Writes a claimed trial's heartbeat every HEARTBEAT_S seconds from a background thread, while
    the `with` block runs."""

    def __init__(self, trial: optuna.Trial):
        self.study, self.trial = trial.study, trial
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                set_system_attrs(self.study, self.trial, {"heartbeat": time.time()})
            except Exception:
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class GroupHeartbeat(Heartbeat):
    """One heartbeat thread for every trial of a fused group. A trial that can no longer be written
    (another process failed it as stale) is dropped; the others go on beating."""

    def __init__(self, trials: Sequence[optuna.Trial]):
        super().__init__(trials[0])
        self.trials = list(trials)

    def _run(self) -> None:
        while self.trials and not self.stop.wait(HEARTBEAT_S):
            now = time.time()
            for trial in list(self.trials):
                try:
                    set_system_attrs(trial.study, trial, {"heartbeat": now})
                except Exception:
                    self.trials.remove(trial)
