"""The queue contract (harness.queue), written once and run on every storage a run may use: the
journal file, SQLite, and PostgreSQL when HARNESS_TEST_POSTGRES gives a server's URL.

Enqueueing is idempotent, a trial is claimed by exactly one caller, a RUNNING trial whose worker is
gone is failed and queued again, and a duplicate enqueue is dropped when it is claimed.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from conftest import tiny_raw
from optuna.trial import TrialState

from harness import queue
from harness import study as study_mod
from harness.config import config_from_dict, expand_grid
from harness.plan import Plan
from harness.queue import STALE_AFTER_S, backends
from harness.storage import open_storage

GRID = {"cell": ["rnn", "lstm", "gru"], "pad_size": [12], "seed": [0, 1]}  # 6 trials


@dataclass
class Env:
    """One storage and a plan whose study name is unique to the test (PostgreSQL is shared)."""

    out: Path
    url: str | None
    plan: Plan

    def study(self) -> optuna.Study:
        """The plan's queue study through a storage object of its own (as another process has)."""
        return queue.open_queue(self.plan, open_storage(self.out, self.url))


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def env(request, tmp_path) -> Env:
    url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'optuna.db'}"
    elif request.param == "postgresql":
        url = os.environ.get("HARNESS_TEST_POSTGRES")
        if not url:
            pytest.skip("HARNESS_TEST_POSTGRES is not set (e.g. postgresql://user:pw@127.0.0.1:5432/postgres; "
                        ".ci/postgres.sh starts a local server and prints one)")
        pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    cfg = config_from_dict(tiny_raw(f"queue-{uuid.uuid4().hex[:10]}", GRID))
    yield Env(tmp_path, url, Plan(cfg, tmp_path, expand_grid(cfg, "data0"), "data0"))
    if request.param == "postgresql":
        storage = open_storage(tmp_path, url)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            if s.study_name.startswith(cfg.name):
                optuna.delete_study(study_name=s.study_name, storage=storage)


def waiting_ids(study: optuna.Study) -> list[str]:
    return sorted(t.user_attrs["trial_id"] for t in study.get_trials(states=(TrialState.WAITING,)))


def test_enqueue_is_idempotent(env):
    ids = sorted(s.trial_id for s in env.plan.specs)
    assert len(ids) == 6
    assert queue.enqueue_missing(env.plan, env.study())["enqueued"] == 6
    assert queue.enqueue_missing(env.plan, env.study()) == {"enqueued": 0, "stale": 0, "retried": 0}
    assert waiting_ids(env.study()) == ids  # one waiting trial per spec


def test_each_trial_is_claimed_by_exactly_one_caller(env):
    queue.enqueue_missing(env.plan, env.study())
    callers = [env.study(), env.study()]  # two Study objects on the same storage
    keys: list[str] = []
    turn = 0
    while (claimed := queue.claim(callers[turn % 2]) or queue.claim(callers[(turn + 1) % 2])) is not None:
        keys.append(claimed[1])
        turn += 1
    assert sorted(keys) == sorted(s.trial_id for s in env.plan.specs)  # each once, none twice
    running = env.study().get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 6 and not env.study().get_trials(states=(TrialState.WAITING,))
    assert all(t.system_attrs["pid"] == os.getpid() and "heartbeat" in t.system_attrs for t in running)


def unused_pid() -> int:
    """A pid no process can have: Linux hands out pids below /proc/sys/kernel/pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


@pytest.mark.parametrize("gone", ["dead pid", "old heartbeat"])
def test_a_running_trial_whose_worker_is_gone_is_failed_and_queued_again(env, gone):
    study = env.study()
    queue.enqueue_missing(env.plan, study)
    trial, key = queue.claim(study)
    if gone == "dead pid":
        queue.set_system_attrs(study, trial, {"pid": unused_pid()})
    else:  # a worker on another machine that stopped writing its heartbeat
        queue.set_system_attrs(study, trial, {"host": "elsewhere-" + socket.gethostname(),
                                              "heartbeat": time.time() - STALE_AFTER_S - 1,
                                              "claimed_at": time.time() - STALE_AFTER_S - 1})
    # A live claim (this process, fresh heartbeat) is left alone.
    live, live_key = queue.claim(study)
    counts = queue.enqueue_missing(env.plan, env.study())
    assert counts == {"enqueued": 1, "stale": 1, "retried": 0}
    trials = env.study().get_trials()
    old = next(t for t in trials if t.number == trial.number)
    assert old.state == TrialState.FAIL and old.user_attrs["status"] == "stale"
    assert next(t for t in trials if t.number == live.number).state == TrialState.RUNNING
    assert waiting_ids(env.study()).count(key) == 1 and live_key not in waiting_ids(env.study())
    # The re-enqueued trial is claimable again, and then nothing is left for it.
    claimed = []
    while (c := queue.claim(env.study())) is not None:
        claimed.append(c[1])
    assert claimed.count(key) == 1 and len(claimed) == 5


def test_a_duplicate_enqueue_is_dropped_at_claim_time(env):
    study = env.study()
    queue.enqueue_missing(env.plan, study)
    dup = env.plan.specs[2].trial_id
    # What a second command that enqueued at the same time (without the lock: another machine) leaves.
    env.study().enqueue_trial({}, user_attrs={"trial_id": dup})
    keys = []
    while (c := queue.claim(study)) is not None:
        keys.append(c[1])
    assert sorted(keys) == sorted(s.trial_id for s in env.plan.specs)  # the duplicate never ran
    dropped = [t for t in env.study().get_trials() if t.user_attrs.get("status") == "duplicate"]
    assert len(dropped) == 1 and dropped[0].user_attrs["trial_id"] == dup
    assert dropped[0].state == TrialState.FAIL and dropped[0].number == 6  # the later enqueue lost


def test_search_slots_are_topped_up_once(env):
    raw = tiny_raw(env.plan.cfg.name, {"seed": [0]})
    raw["study"] = {"n_trials": 3, "sampler": "random",
                    "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}
    cfg = config_from_dict(raw)
    plan = Plan(cfg, env.out, [], "data0", study_mod.search_studies(cfg))
    searches = queue.open_searches(plan, open_storage(env.out, env.url))
    assert queue.enqueue_slots(plan, searches) == 3
    assert queue.enqueue_slots(plan, searches) == 0
    study = next(iter(searches.values()))
    assert sorted(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.WAITING,))) == [0, 1, 2]
    assert not queue.searches_finished(searches)


def _claim_all(url: str | None, out: str, name: str, start: float, result: str) -> None:
    """One racing process: open its own storage, wait for the common start, claim until nothing waits,
    and write the keys it got (one per line) to `result`."""
    import torch

    torch.set_num_threads(1)
    study = optuna.load_study(study_name=name, storage=open_storage(Path(out), url))
    time.sleep(max(0.0, start - time.time()))
    keys = []
    while (c := queue.claim(study)) is not None:
        keys.append(c[1])
    Path(result).write_text("\n".join(keys))


@pytest.mark.slow
def test_racing_processes_never_claim_one_trial_twice(env):
    """4 processes race for 1,000 waiting trials on one storage: every trial is claimed once, by the
    process whose pid it carries, and nothing is left waiting."""
    import multiprocessing as mp

    n, procs = 1000, 4
    study = env.study()
    backends.queue_storage(study._storage).create_waiting(
        study._study_id, [backends.NewTrial({}, {}, {"trial_id": f"t{i:04d}"}) for i in range(n)])
    ctx = mp.get_context("spawn")
    start = time.time() + 6.0  # every process is up and has its storage open by then
    results = [env.out / f"claims-{i}.txt" for i in range(procs)]
    ps = [ctx.Process(target=_claim_all, args=(env.url, str(env.out), env.plan.cfg.name, start, str(r)))
          for r in results]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout=300)
        assert p.exitcode == 0
    got = [k for r in results for k in r.read_text().split()]
    assert len(got) == n and sorted(got) == [f"t{i:04d}" for i in range(n)]  # each once, none twice
    assert all(r.read_text() for r in results)  # the work really was shared
    by_pid = {p.pid: set(r.read_text().split()) for p, r in zip(ps, results)}
    trials = env.study().get_trials(deepcopy=False)
    assert len(trials) == n and all(t.state == TrialState.RUNNING for t in trials)
    for t in trials:  # the storage agrees on who holds each trial
        assert t.user_attrs["trial_id"] in by_pid[t.system_attrs["pid"]]


def test_enqueue_holds_a_lock_every_command_on_the_storage_shares(env):
    """Another command on the same storage (another results folder, another machine) waits for the
    lock; then one of them enqueues every trial and the other finds them all queued."""
    import threading

    other = Plan(env.plan.cfg, env.out / "elsewhere", env.plan.specs, "data0")
    counts: list[dict] = []
    with queue.enqueue_lock(env.study()):
        t = threading.Thread(target=lambda: counts.append(queue.enqueue_missing(other, env.study())))
        t.start()
        time.sleep(1.0)
        assert not counts  # waiting for the lock
    t.join(timeout=60)
    assert counts == [{"enqueued": 6, "stale": 0, "retried": 0}]
    assert queue.enqueue_missing(env.plan, env.study()) == {"enqueued": 0, "stale": 0, "retried": 0}
    assert len(env.study().get_trials()) == 6  # N queue entries for N trials


def test_enqueued_trials_carry_their_settings_as_params(env):
    queue.enqueue_missing(env.plan, env.study())
    trial, key = queue.claim(env.study())
    spec = env.plan.by_id[key]
    frozen = env.study().get_trials()[trial.number]
    assert frozen.params == {k: v for k, v in spec.factors.items() if v is not None}
    assert set(frozen.distributions["cell"].choices) >= {"rnn", "lstm", "gru"}


def test_claim_attributes_and_summary_are_written_together(env):
    queue.enqueue_missing(env.plan, env.study())
    study = env.study()
    trial, _ = queue.claim(study, {"worker": 3, "folder": "abc"})
    frozen = env.study().get_trials()[trial.number]
    assert {"host", "pid", "heartbeat", "claimed_at"} <= set(frozen.system_attrs)
    assert frozen.system_attrs["worker"] == 3 and frozen.system_attrs["folder"] == "abc"
    queue.set_user_attrs(study, trial, {"shard": "x", "best_dev_acc": 0.5})
    assert env.study().get_trials()[trial.number].user_attrs["best_dev_acc"] == 0.5
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        queue.set_user_attrs(study, trial, {"shard": "y"})
    assert env.study().get_trials()[trial.number].user_attrs["shard"] == "x"


def test_claim_cost_does_not_read_the_queue(env, monkeypatch):
    """A claim never lists the study's trials (Optuna's get_all_trials), whatever the storage."""
    queue.enqueue_missing(env.plan, env.study())
    study = env.study()
    if type(backends.queue_storage(study._storage)) is backends.QueueStorage:
        pytest.skip("a storage without a fast path")
    calls = []
    real = type(study._storage).get_all_trials
    monkeypatch.setattr(type(study._storage), "get_all_trials",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    assert queue.claim(study) is not None and queue.claim_matching(study, lambda k: True, 2)
    assert queue.running_trials(study) and not calls


def test_finish_writes_summary_value_and_state_once(env):
    queue.enqueue_missing(env.plan, env.study())
    study = env.study()
    (done, _), (lost, _) = queue.claim(study), queue.claim(study)
    assert queue.finish(study, done, TrialState.COMPLETE, 0.75, {"shard": "a", "test_acc": 0.5})
    frozen = env.study().get_trials()[done.number]
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.75
    assert frozen.user_attrs["shard"] == "a" and frozen.user_attrs["test_acc"] == 0.5
    assert not queue.finish(study, done, TrialState.FAIL, None, {"shard": "b"})  # once only
    queue._finish(env.study(), lost, "stale")  # another command judged its worker dead
    assert not queue.finish(study, lost, TrialState.COMPLETE, 0.9, {"shard": "c"})
    frozen = env.study().get_trials()[lost.number]
    assert frozen.state == TrialState.FAIL and "shard" not in frozen.user_attrs and frozen.value is None
    assert queue.state_of(study, lost) == TrialState.FAIL
    # Nothing of the refused writes is left to trip a later call on the same storage object.
    trial, _ = queue.claim(study)
    queue.set_system_attrs(study, trial, {"heartbeat": time.time()})
    assert queue.finish(study, trial, TrialState.FAIL, None, {"status": "failed"})
