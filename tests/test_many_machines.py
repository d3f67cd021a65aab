"""Several commands on one storage, as several machines run them: each with its own results folder,
started at the same moment on a new database. Every trial is queued once and run once, every
command exits 0, and a worker killed before its trial was told leaves no second copy of it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

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
