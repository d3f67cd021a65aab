"""The runner: many workers, every grid point exactly once, resume after kill -9 and after Ctrl-C,
refusal of conflicting configs, `harness status`."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, sigint_default, tiny_raw

from harness import queue as queue_mod
from harness import records, runner
from harness.config import ConfigError, config_from_dict
from harness.config.sections import ADDED_LATER
from harness.queue import STALE_AFTER_S, set_system_attrs, worker_alive
from harness.results_dir import load_results_config, pid_alive
from harness.status import format_status, status
from harness.storage import open_storage

EIGHT = {"cell": ["rnn", "lstm"], "layernorm": ["none", "output"], "pad_size": [12], "seed": [0, 1]}


def study_of(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(out, None))


def assert_exactly_once(out: Path, expected: int, name: str) -> None:
    runs = records.combine(out)["runs"]
    assert len(runs) == expected and runs["trial_id"].is_unique
    done = [t.user_attrs["trial_id"] for t in study_of(out, name).get_trials()
            if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(done) == sorted(runs["trial_id"])  # each trained once: one COMPLETE trial per id


def test_three_workers_run_every_trial_exactly_once(tmp_path):
    cfg = config_from_dict(tiny_raw("w3", EIGHT))
    counts = runner.run(cfg, tmp_path, workers=3, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 8 and counts["missing"] == 0
    assert_exactly_once(tmp_path, 8, "w3")
    workers = records.load(tmp_path)["runs"]["worker"]
    assert workers.nunique() >= 2  # the work really was shared


def harness_run(config: Path, out: Path, workers: int) -> list[str]:
    """A `harness run` command line with one torch thread per worker."""
    return [sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--workers", str(workers),
            "--device", "cpu", "--quiet", "--set", "run.threads=1"]


@pytest.mark.slow
def test_two_commands_started_together_cooperate(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_raw("two", EIGHT)))
    cmd = harness_run(path, tmp_path / "o", 1)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    assert_exactly_once(tmp_path / "o", 8, "two")


@pytest.mark.slow
def test_kill_9_a_worker_then_resume(tmp_path):
    raw = tiny_raw("kill", EIGHT)
    raw["data"]["synth"]["n_train"] = 6000  # ~2 s per trial, so the kill lands mid-trial
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "o"
    cmd = harness_run(path, out, 2)
    main = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline:
        time.sleep(0.05)
        if not (out / "optuna.journal").is_file() or len(records.load(out)["runs"]) < 1:
            continue
        # A trial claimed less than half a second ago has most of its ~2 s still to run.
        running = [t for t in study_of(out, "kill").get_trials(deepcopy=False)
                   if t.state == optuna.trial.TrialState.RUNNING and "pid" in t.system_attrs
                   and time.time() - t.system_attrs.get("claimed_at", 0) < 0.5]
        if running:
            victim = running[0]
            os.kill(int(victim.system_attrs["pid"]), signal.SIGKILL)
    assert victim is not None, "no running trial to kill"
    _, err = main.communicate(timeout=300)
    assert main.returncode == 1  # one trial never finished: the run says so, naming the worker
    assert f"(pid {victim.system_attrs['pid']}) died (signal SIGKILL) while running trial " \
           f"{victim.user_attrs['trial_id']}" in err.decode()
    before = records.load(out)["runs"].set_index("trial_id")
    killed_id = victim.user_attrs["trial_id"]
    assert killed_id not in before.index and len(before) == 7
    info = status(out)
    assert info["finished"]["complete"] == 7 and info["missing"] == 1 and info["stale"] == 1
    assert "no recent heartbeat" in format_status(info)

    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    after = records.load(out)["runs"].set_index("trial_id")
    assert len(after) == 8 and after.index.is_unique and killed_id in after.index
    for tid, row in before.iterrows():  # what completed before the kill keeps its numbers
        assert after.loc[tid, "started_at"] == row["started_at"]
        assert after.loc[tid, "test_acc"] == row["test_acc"]
    info = status(out)
    assert info["finished"]["complete"] == 8 and info["missing"] == 0 and info["stale"] == 0


def test_failed_trial_is_retried_once_then_left_failed(tmp_path):
    raw = tiny_raw("fail", {"cell": ["lstm"], "train.drop_last": [True, False], "pad_size": [12]})
    raw["train"]["batch_size"] = 1000  # larger than the training set: fails with drop_last
    cfg = config_from_dict(raw)
    attempts_after = []
    for _ in range(3):
        runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
        attempts_after.append(len(study_of(tmp_path, "fail").get_trials()))
    assert attempts_after == [2, 3, 3]  # 2 trials; the failed one again on the next run only, then left
    runs = records.load(tmp_path)["runs"]
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 1 and "batch_size" in failed["error"].iloc[0]
    attempts = [t for t in study_of(tmp_path, "fail").get_trials()
                if t.user_attrs.get("trial_id") == failed["trial_id"].iloc[0]]
    assert len(attempts) == 2
    assert (runs.loc[runs["status"] == "complete", "train.drop_last"] == False).all()  # noqa: E712
    text = format_status(status(tmp_path))
    assert "failed 1" in text and "batch_size" in text
    # The failed trial is named with every grid axis, including the dotted ones.
    failed_line = next(line for line in text.splitlines() if line.strip().startswith(failed["trial_id"].iloc[0]))
    assert "lstm/none pad 12" in failed_line and "train.drop_last True" in failed_line


def test_grid_may_grow_but_fixed_settings_may_not_change(tmp_path):
    raw = tiny_raw("grow", {"cell": ["lstm"], "pad_size": [12]})
    runner.run(config_from_dict(raw), tmp_path, workers=1, device="cpu", threads=1, progress=False)
    first = records.load(tmp_path)["runs"]
    raw["grid"]["cell"] = ["lstm", "gru"]
    counts = runner.run(config_from_dict(raw), tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["total"] == 2 and counts["complete"] == 2
    assert records.load(tmp_path)["runs"].set_index("trial_id").loc[
        first["trial_id"].iloc[0], "started_at"] == first["started_at"].iloc[0]
    raw["model"]["hidden_size"] = 16
    with pytest.raises(ConfigError, match=r"model\.hidden_size: 8 -> 16.*another --out"):
        runner.run(config_from_dict(raw), tmp_path, workers=1, device="cpu", threads=1, progress=False)


@pytest.mark.parametrize("key", sorted(ADDED_LATER))
def test_results_from_before_a_later_key_existed_resume(tmp_path, key):
    # A results folder written before the key existed: its absence meant the ADDED_LATER value, and
    # the trial ids leave it out at that value, so the folder resumes with the same trial ids; setting
    # it to another value is a change of a fixed setting.
    from harness.plan import check_compatible, make_plan, write_config

    raw = tiny_raw("later", {"cell": ["lstm"], "pad_size": [12]})
    plan = make_plan(config_from_dict(raw), tmp_path)
    write_config(plan)
    section, name = key.split(".")
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert old[section].pop(name) == ADDED_LATER[key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_compatible(plan)  # no complaint
    assert [s.trial_id for s in make_plan(load_results_config(tmp_path), tmp_path).specs] == \
        [s.trial_id for s in plan.specs]
    other = {"data.lag": 4, "train.cuda_graph": True, "train.stop_at_target": True}[key]
    raw[section] = {**raw.get(section, {}), name: other}
    with pytest.raises(ConfigError, match=rf"other fixed settings \({re.escape(key)}: '<grid axis>' -> "):
        check_compatible(make_plan(config_from_dict(raw), tmp_path))


def test_results_from_before_the_later_generator_keys_resume(tmp_path):
    # A synthetic-data folder written before data.synth.word_len & co. existed: at their defaults the
    # generator's output is version 1's, so the folder resumes; another value is a change of fixed setting.
    from harness.config.sections import SYNTH_ADDED_LATER
    from harness.plan import check_compatible, make_plan, write_config

    raw = tiny_raw("later-synth", {"cell": ["lstm"], "pad_size": [12]})
    plan = make_plan(config_from_dict(raw), tmp_path)
    write_config(plan)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    for key, value in SYNTH_ADDED_LATER.items():
        assert old["data"]["synth"].pop(key) == value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_compatible(plan)  # no complaint
    raw["data"]["synth"] = {**raw["data"].get("synth", {}), "word_len": 2}
    with pytest.raises(ConfigError, match=r"other fixed settings \(data\.synth\.word_len: '<grid axis>' -> 2"):
        check_compatible(make_plan(config_from_dict(raw), tmp_path))


def test_a_queued_trial_the_config_no_longer_has_is_skipped(tmp_path):
    raw = tiny_raw("shrunk", {"cell": ["lstm"], "pad_size": [12]})
    cfg = config_from_dict(raw)
    runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    study = study_of(tmp_path, "shrunk")
    study.enqueue_trial({}, user_attrs={"trial_id": "0123456789ab"})  # left over from a bigger grid
    raw["grid"]["cell"] = ["lstm", "gru"]
    counts = runner.run(config_from_dict(raw), tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    stray = [t for t in study_of(tmp_path, "shrunk").get_trials() if t.user_attrs["trial_id"] == "0123456789ab"]
    assert [t.state for t in stray] == [optuna.trial.TrialState.FAIL]
    assert stray[0].user_attrs["status"] == "not in config"


@pytest.mark.slow
def test_a_trial_claimed_a_moment_ago_is_not_stale():
    # The claim moves a trial to RUNNING before its first heartbeat is written; another process
    # looking in between must not take it for a dead worker's trial.
    study = optuna.create_study()
    study.ask()  # RUNNING, started now, no heartbeat
    t = study.get_trials()[0]
    assert worker_alive(t, time.time())
    assert not worker_alive(t, time.time() + STALE_AFTER_S + 5)
    # A heartbeat from a process of this host that no longer exists is stale at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    set_system_attrs(study, t, {"host": __import__("socket").gethostname(), "pid": dead.pid,
                                "heartbeat": time.time()})
    assert not worker_alive(study.get_trials()[0], time.time())


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="a zombie is told apart through /proc")
def test_a_zombie_worker_is_not_alive():
    # A worker whose main process was killed -9 is re-parented; where nothing reaps it, it stays a
    # zombie that still answers kill(pid, 0). Its trial must count as stale, or a resume skips it.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.time() < deadline, "the child never exited"
        time.sleep(0.05)
    os.kill(child.pid, 0)  # the zombie answers a signal...
    assert not pid_alive(child.pid)  # ...and yet is dead
    child.wait()
    assert not pid_alive(child.pid) and pid_alive(os.getpid())


@pytest.mark.slow
def test_a_trial_whose_worker_died_unseen_is_run_again_in_the_same_command(tmp_path, monkeypatch):
    # A worker moved a trial to RUNNING and died before writing its pid and heartbeat: until its
    # claim is STALE_AFTER_S old it looks alive, so the first enqueue leaves it alone. The command
    # waits for it, then must run it itself instead of ending with it missing.
    monkeypatch.setattr(queue_mod, "STALE_AFTER_S", 3.0)
    raw = tiny_raw("unseen", {"cell": ["rnn", "lstm"], "pad_size": [12]})
    cfg = config_from_dict(raw)
    runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    lost = records.load(tmp_path)["runs"]["trial_id"].iloc[0]
    shutil.rmtree(records.trial_dir(tmp_path, lost))
    study = study_of(tmp_path, "unseen")
    study.enqueue_trial({}, user_attrs={"trial_id": lost, "after": max(t.number for t in study.get_trials())})
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    study._storage.set_trial_state_values(waiting._trial_id, state=optuna.trial.TrialState.RUNNING)
    counts = runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    states = [t.state for t in study_of(tmp_path, "unseen").get_trials() if t.user_attrs["trial_id"] == lost]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the dead claim, failed as stale
    assert states[-1] == optuna.trial.TrialState.COMPLETE


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_the_same_command_resumes(tmp_path):
    raw = tiny_raw("intr", EIGHT)
    raw["data"]["synth"]["n_train"] = 6000  # ~2 s per trial: the interrupt lands while workers train
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "o"
    cmd = harness_run(path, out, 2)
    main = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, preexec_fn=sigint_default)
    deadline = time.time() + 240
    pids: set[int] = set()
    while not pids and time.time() < deadline:  # wait until both workers run a trial
        time.sleep(0.2)
        if (out / "optuna.journal").is_file():
            pids = {int(t.system_attrs["pid"]) for t in study_of(out, "intr").get_trials(deepcopy=False)
                    if t.state == optuna.trial.TrialState.RUNNING and "pid" in t.system_attrs}
            pids = pids if len(pids) == 2 else set()
    assert pids, "the workers never started a trial"
    main.send_signal(signal.SIGINT)
    _, err = main.communicate(timeout=60)
    assert main.returncode == 130, err.decode()
    assert "interrupted; run the same command again to resume" in err.decode()
    assert "Traceback" not in err.decode()
    for pid in pids:  # no worker left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(records.load(out)["runs"]) < 8
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=ROOT)
    runs = records.combine(out)["runs"]
    assert len(runs) == 8 and runs["trial_id"].is_unique and (runs["status"] == "complete").all()


def test_provenance_names_the_checkout_and_whether_it_had_changes(tmp_path, monkeypatch):
    """git_dirty is True when a tracked file differs from its commit, False when none does, and
    None outside a git checkout (an installed wheel); the version is always there."""
    repo = tmp_path / "repo"
    (repo / "harness").mkdir(parents=True)
    (repo / "harness" / "runner.py").write_text("x = 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    monkeypatch.setattr(runner, "__file__", str(repo / "harness" / "runner.py"))
    assert len(runner.git_commit()) == 40 and runner.git_dirty() is False
    (repo / "harness" / "runner.py").write_text("x = 2\n")
    assert runner.git_dirty() is True
    monkeypatch.setattr(runner, "__file__", str(tmp_path / "wheel" / "harness" / "runner.py"))
    (tmp_path / "wheel" / "harness").mkdir(parents=True)
    assert runner.git_commit() is None and runner.git_dirty() is None
    assert runner.provenance()["harness_version"]



def test_a_grid_over_a_data_setting_gives_each_trial_its_own_encoding(tmp_path, monkeypatch):
    # One data key (data.encoding_key of the whole data section): a grid over data.vocab_size encodes
    # the data once per value, in the plan and in the worker, which gives each trial its own.
    from harness import data as data_mod
    from harness.plan import make_plan, prepare_data
    from harness.queue import enqueue_missing, open_queue

    cfg = config_from_dict(tiny_raw("vocab", {"cell": ["rnn"], "pad_size": [12], "data.vocab_size": [8, 10000]}))
    out = tmp_path / "o"
    plan = make_plan(cfg, out)
    prepared = prepare_data(plan)
    assert {data_mod.encoding_key(s.data) for s in plan.specs} == set(prepared)
    small, large = sorted(d.vocab_size for d in prepared.values())
    assert small <= 8 + 2 < large  # the 8 most frequent tokens, plus UNK and PAD
    runner.write_config(plan)
    enqueue_missing(plan, open_queue(plan, open_storage(out, None)))
    seen = []
    real = runner.execute

    def spy(spec, dataset, *args, **kwargs):
        seen.append((spec.data.vocab_size, dataset.vocab_size))
        return real(spec, dataset, *args, **kwargs)

    monkeypatch.setattr(runner, "execute", spy)
    assert runner.worker_loop(out, None, "cpu", 1) == 2
    assert sorted(seen) == [(8, small), (10000, large)]
