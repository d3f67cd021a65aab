"""Several commands on one storage, as several machines run them: each with its own results folder,
started at the same moment on a new database. Every trial is queued once and run once, every
command exits 0, a worker killed before its trial was told leaves no second copy of it, and a
command killed with kill -9 mid-trial, then run again, leaves each trial once in every report."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
import yaml
from conftest import tiny_raw

from harness import queue, records, runner
from harness.config import config_from_dict
from harness.plan import make_plan
from harness.storage import open_storage

TWELVE = {"cell": ["rnn", "lstm", "gru"], "layernorm": ["none", "output"], "pad_size": [12], "seed": [0, 1]}


def unused_pid() -> int:
    """A pid no process can have: Linux hands out pids below /proc/sys/kernel/pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if kind == "journal":
        return str(tmp_path / "shared.journal")
    url = os.environ.get("HARNESS_TEST_POSTGRES")
    if not url:
        pytest.skip("HARNESS_TEST_POSTGRES is not set (.ci/postgres.sh starts a local server and prints a URL)")
    pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    return url


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_commands_started_together_on_a_new_storage_run_each_trial_once(tmp_path, kind):
    name = f"k4-{uuid.uuid4().hex[:8]}"  # PostgreSQL is shared between tests
    url = storage_url(kind, tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(name, TWELVE)))
    outs = [tmp_path / f"machine{i}" for i in range(4)]
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--storage", url, "--device", "cpu",
           "--set", "run.threads=1"]
    procs = [subprocess.Popen([*cmd, "--out", str(o)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for o in outs]
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err.decode()  # no schema race, no "missing" for trials run elsewhere
        ids = [tid for o in outs for tid in records.load(o)["runs"]["trial_id"]]
        assert len(ids) == 12 and len(set(ids)) == 12  # every trial in exactly one folder
        study = optuna.load_study(study_name=name, storage=open_storage(tmp_path, url))
        trials = study.get_trials()
        assert len(trials) == 12  # N queue entries for N trials: one enqueue, whatever the commands
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finally:
        if kind == "postgresql":
            optuna.delete_study(study_name=name, storage=open_storage(tmp_path, url))


def test_a_worker_killed_before_its_tell_leaves_no_second_copy(tmp_path):
    """Shards staged by a worker that then died (kill -9 between writing them and telling Optuna)
    are never published: the trial runs again once, and the folder holds one copy of each trial."""
    cfg = config_from_dict(tiny_raw("orphan", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]}))
    assert runner.run(cfg, tmp_path / "donor", workers=1, device="cpu", threads=1, progress=False)["complete"] == 2
    out = tmp_path / "o"
    plan = make_plan(cfg, out)
    runner.write_config(plan)
    study = queue.open_queue(plan, open_storage(out, None))
    queue.enqueue_missing(plan, study)
    trial, key = queue.claim(study)
    queue.set_system_attrs(study, trial, {"pid": unused_pid()})  # its worker is gone
    staged = out / "trials" / f"{records.STAGED_PREFIX}{socket.gethostname()}@{unused_pid()}@{key}"
    shutil.copytree(tmp_path / "donor" / "trials" / key, staged)  # what it wrote before it died
    counts = runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    assert not staged.exists()
    runs = records.load(out)["runs"]
    assert sorted(runs["trial_id"]) == sorted(s.trial_id for s in plan.specs)
    assert len([t for t in study.get_trials() if t.user_attrs["trial_id"] == key]) == 2  # stale, then run


def test_a_trial_failed_as_stale_meanwhile_is_not_published(tmp_path):
    """When another command judged the worker dead and failed its trial before the tell, the worker's
    staged shards are deleted: the trial is queued again and runs once more, elsewhere or here."""
    cfg = config_from_dict(tiny_raw("late", {"cell": ["rnn"], "pad_size": [12], "seed": [0]}))
    donor = tmp_path / "donor"
    runner.run(cfg, donor, workers=1, device="cpu", threads=1, progress=False)
    out = tmp_path / "o"
    plan = make_plan(cfg, out)
    study = queue.open_queue(plan, open_storage(out, None))
    queue.enqueue_missing(plan, study)
    trial, key = queue.claim(study)
    staged = records.staged_path(out, key)
    shutil.copytree(donor / "trials" / key, staged)
    row = records.load(donor)["runs"].iloc[0].to_dict()
    queue._finish(study, trial, "stale")  # what another command's fail_stale does
    runner._tell(trial, key, row, cfg, None, out, key)
    assert not staged.exists() and not records.trial_dir(out, key).exists()


@pytest.mark.slow
def test_four_workers_on_sqlite_run_a_grid_with_no_crash_and_no_wrong_row(tmp_path):
    cfg = config_from_dict(tiny_raw("sq4", TWELVE))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    counts = runner.run(cfg, tmp_path / "o", workers=4, storage=url, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 12 and counts["missing"] == 0 and counts["failed"] == 0
    runs = records.combine(tmp_path / "o")["runs"]
    assert len(runs) == 12 and runs["trial_id"].is_unique and set(runs["status"]) == {"complete"}
    trials = optuna.load_study(study_name="sq4", storage=open_storage(tmp_path, url)).get_trials()
    assert len(trials) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["trial_id"] for t in trials) == sorted(runs["trial_id"])
    assert runs["worker"].nunique() >= 2


def in_group(pid: object, pgid: int) -> bool:
    """Whether the process `pid` (a trial's system attr) lives and belongs to process group `pgid`."""
    try:
        return pid is not None and os.getpgid(int(pid)) == pgid  # type: ignore[call-overload]
    except ProcessLookupError:
        return False


def held_by(storage: object, name: str, pgid: int) -> tuple[int, optuna.trial.FrozenTrial | None]:
    """How many trials of study `name` are COMPLETE, and a RUNNING one claimed on this host by a process
    of group `pgid` (None if none; (0, None) while the study does not exist yet)."""
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return 0, None
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    held = next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                 and t.system_attrs.get("host") == socket.gethostname()
                 and in_group(t.system_attrs.get("pid"), pgid)), None)
    return done, held


def stop_while_it_holds_a_trial(storage: object, name: str, proc: subprocess.Popen,
                                limit_s: float = 300) -> optuna.trial.FrozenTrial | None:
    """Once 2 trials of study `name` are COMPLETE, SIGSTOP the process group of `proc` (started with
    start_new_session) at a moment it holds a RUNNING trial, and return that trial (looked at again
    while the group is stopped, so no tell slips in between); None if that never happened."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        done, candidate = held_by(storage, name, proc.pid)
        if done >= 2 and candidate is not None:
            os.killpg(proc.pid, signal.SIGSTOP)
            held = held_by(storage, name, proc.pid)[1]
            if held is not None:
                return held
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    return None


@pytest.mark.slow
def test_kill_9_of_one_of_several_commands_then_resume_leaves_each_trial_once_in_the_report(tmp_path):
    """The issue's criterion, end to end on PostgreSQL: three `harness run` commands share one storage
    and one artifact folder, each with its own results folder. One is killed with kill -9 (its whole
    process group: main process and worker) while it holds a RUNNING trial, once some trials have
    finished; the other two finish (exit 0), the killed command's same command line runs again to
    completion (exit 0), and then every trial id of the grid is in each folder's report exactly once,
    and the study has exactly one COMPLETE trial per trial id (the killed one also a FAIL, stale)."""
    from conftest import ROOT

    from harness.storage import download_artifacts

    url = storage_url("postgresql", tmp_path)
    name = f"k9m-{uuid.uuid4().hex[:8]}"  # PostgreSQL is shared between tests
    raw = tiny_raw(name, TWELVE)
    raw["train"]["epochs"] = 2  # a trial takes about a second: long enough to be caught mid-trial
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    ids = sorted(s.trial_id for s in make_plan(config_from_dict(raw), tmp_path / "plan", write=False).specs)
    assert len(ids) == 12
    shared = tmp_path / "artifacts"
    outs = [tmp_path / f"machine{i}" for i in range(3)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def argv(out: Path) -> list[str]:
        return [sys.executable, "-m", "harness", "run", str(path), "--out", str(out), "--storage", url,
                "--artifacts", str(shared), "--workers", "1", "--device", "cpu", "--quiet",
                "--set", "run.threads=1"]

    def start(i: int, attempt: str) -> subprocess.Popen:
        with (tmp_path / f"machine{i}.{attempt}.log").open("w") as log:  # the child keeps its own copy
            return subprocess.Popen(argv(outs[i]), cwd=ROOT, env=env, start_new_session=True, stdout=log,
                                    stderr=subprocess.STDOUT)

    def log(i: int, attempt: str) -> str:
        return (tmp_path / f"machine{i}.{attempt}.log").read_text()

    storage = open_storage(tmp_path, url)
    procs = [start(i, "first") for i in range(3)]
    victim = procs[0]
    try:
        held = stop_while_it_holds_a_trial(storage, name, victim)
        assert held is not None, f"the command never held a RUNNING trial after 2 had finished:\n{log(0, 'first')}"
        os.killpg(victim.pid, signal.SIGKILL)  # kill -9 of the command: its main process and its worker
        assert victim.wait(timeout=60) == -signal.SIGKILL
        killed_tid = held.user_attrs["trial_id"]

        codes = {i: p.wait(timeout=600) for i, p in enumerate(procs[1:], start=1)}  # asserted last
        resumed = start(0, "resume")  # the same command line again
        procs.append(resumed)
        codes[0] = resumed.wait(timeout=600)

        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        complete = sorted(t.user_attrs["trial_id"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
        assert complete == ids  # exactly one COMPLETE Optuna trial per trial id
        others = [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
        assert all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("status") == "stale"
                   for t in others), [(t.number, t.state, t.user_attrs) for t in others]
        killed = next(t for t in trials if t.number == held.number)
        assert killed.state == optuna.trial.TrialState.FAIL and killed.user_attrs["trial_id"] == killed_tid
        assert not list((outs[0] / "trials").glob(f"{records.STAGED_PREFIX}*"))  # its staged shards are gone

        report = subprocess.run([sys.executable, "-m", "harness", "report", str(outs[0])], cwd=ROOT,
                                env={**env, "PGPASSWORD": urlsplit(url).password or ""},
                                capture_output=True, text=True, timeout=600)
        assert report.returncode == 0, report.stderr
        text = (outs[0] / "report.md").read_text()
        assert "over 12 trials" in text, text
        for out in outs[1:]:
            download_artifacts(out, url, str(shared))  # what `harness report DIR` fetches first
        for out in outs:
            got = records.load(out)["runs"]["trial_id"]
            assert sorted(got) == ids, out  # every trial id of the grid, once, in every folder
        assert codes == {0: 0, 1: 0, 2: 0}, (f"killed mid-trial {killed_tid}", codes,
                                             {i: log(i, "resume" if i == 0 else "first") for i in codes})
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=60)
        with contextlib.suppress(KeyError):  # KeyError: the study was never created
            optuna.delete_study(study_name=name, storage=storage)
