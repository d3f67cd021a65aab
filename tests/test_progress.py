"""Tests for harness.progress: a bar on a terminal, one plain line per trial otherwise; each running
trial's step and dev accuracy (a status line under the bar; in a log, a periodic line per long trial)."""

from __future__ import annotations

import io
import math
import os
import re
import socket

from conftest import tiny_raw

from harness import runner
from harness.config import config_from_dict
from harness.progress import RUNNING_EVERY_ENV, Progress, bar_text, elapsed, running_line


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(tmp_path, name: str) -> dict:
    cfg = config_from_dict(tiny_raw(name, {"cell": ["rnn", "lstm"], "pad_size": [8], "seed": [0]}))
    return runner.run(cfg, tmp_path / name, workers=1, device="cpu", threads=1, progress=True)


def test_not_a_terminal_one_line_per_trial_no_carriage_return(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(RUNNING_EVERY_ENV, raising=False)  # the default: a [running] line after 60 s
    assert _run(tmp_path, "log")["complete"] == 2
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3, err  # no [running] line: no trial ran for 60 s
    # Before the first trial, once the checks passed: what the run is doing (the workers starting).
    assert lines[0].startswith("harness: 2 trials planned, data ready in ")
    assert lines[0].endswith("; starting 1 worker(s) on cpu (1 thread(s) each)")
    # each with the time left at this run's rate: the one trial left takes as long as the first did
    assert re.match(r"\[1/2, eta \d+(s|m)\] \[complete\] cell=(rnn|lstm) pad_size=8 seed=0  test_acc=0\.\d{3}",
                    lines[1])
    assert lines[2].startswith("[2/2, eta 0s] [complete] cell=")


def test_a_terminal_gets_the_bar(tmp_path, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert _run(tmp_path, "tty")["complete"] == 2
    out = term.getvalue()
    assert "\r" in out and "2/2" in out and "trial" in out  # tqdm's bar, redrawn in place
    assert "[1/2]" not in out


# ----------------------------------------------------------------------------- running trials

def _slow_raw(name: str) -> dict:
    """One LSTM trial of 640 steps (several seconds on one thread), evaluated every 10 steps."""
    raw = tiny_raw(name, {"cell": ["lstm"], "pad_size": [8], "seed": [0]})
    raw["data"]["synth"]["n_train"] = 4096
    raw["train"].update(epochs=10, eval_every=10)
    return raw


def test_a_log_gets_a_periodic_line_for_a_long_trial(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(RUNNING_EVERY_ENV, "0.3")  # "long" is 0.3 s here (60 s by default)
    counts = runner.run(config_from_dict(_slow_raw("slow")), tmp_path / "slow", workers=1, device="cpu",
                        threads=1, progress=True)
    assert counts["complete"] == 1
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    running = [line for line in lines if line.startswith("[running] ")]
    pattern = (r"\[running\] cell=lstm pad_size=8 seed=0  step (\d+|-)/640 "
               r"(dev_acc (0\.\d{3}|1\.000)|\(no evaluation yet\))  elapsed \d+(s|m|h\d\dm)")
    assert running and all(re.fullmatch(pattern, line) for line in running), err
    evaluated = [re.fullmatch(pattern, line) for line in running if "dev_acc" in line]
    assert evaluated, err  # at least one line names the step and dev accuracy of the last evaluation
    steps = [int(m.group(1)) for m in evaluated]
    assert steps == sorted(steps) and all(s % 10 == 0 and 0 < s <= 640 for s in steps), err
    # Still one line per finished trial, after the trial's periodic lines.
    assert [line for line in lines if line.startswith("[1/")] == [lines[-1]]
    assert lines[-1].startswith("[1/1, eta 0s] [complete] cell=lstm pad_size=8 seed=0  test_acc=")


def _claimed(tmp_path, grid: dict, **attrs):
    """A planned (not run) experiment with every trial claimed by this process, the first with the claim
    attributes `first` and the others with `attrs`: (plan, study, [(trial, key)])."""
    from harness import queue
    from harness.plan import make_plan, write_config
    from harness.storage import open_storage

    plan = make_plan(config_from_dict(tiny_raw("prog", grid)), tmp_path)
    write_config(plan)
    study = queue.open_queue(plan, open_storage(tmp_path, None))
    queue.enqueue_missing(plan, study)
    claimed = []
    while (c := queue.claim(study, attrs.pop("first", None) or attrs)) is not None:
        claimed.append(c)
    return plan, study, claimed


def test_the_terminal_status_line_names_each_running_trials_step_and_dev_accuracy(tmp_path, monkeypatch):
    import time

    plan, study, claimed = _claimed(tmp_path, {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [3]},
                                    first={"claimed_at": time.time() - 600})
    (busy, busy_key), (_, idle_key) = claimed
    busy.report(0.25, 400)
    busy.report(0.4121, 450)
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monitor = Progress(plan, studies=[study], n_train=64 * 1000)  # batch 64, one epoch: 1,000 steps
    monitor.poll()
    monitor.close()
    first, second = (plan.by_id[k].factors["cell"] for k in (busy_key, idle_key))
    # The longest-running first; a trial not yet evaluated says so.
    want = (f"running: cell={first} pad_size=12 seed=3 step 450/1000 dev 0.412; "
            f"cell={second} pad_size=12 seed=3 step -/1000 no evaluation yet")
    assert want in term.getvalue()
    assert bar_text(monitor.running, plan.factor_names, shown=1).endswith("dev 0.412; +1 more")


def test_a_log_names_only_this_commands_long_trials_once_a_period(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.delenv(RUNNING_EVERY_ENV, raising=False)  # a line a minute

    plan, study, [(trial, key)] = _claimed(tmp_path, {"cell": ["gru"], "pad_size": [12], "seed": [0]},
                                           claimed_at=time.time() - 130)
    trial.report(0.5, 2)
    monitor = Progress(plan, studies=[study])  # 256 texts, batch 64, one epoch: 4 steps
    monitor.poll()
    assert capsys.readouterr().err == ""  # claimed by this process, not by one of its workers
    me = f"{socket.gethostname()}:{os.getpid()}"
    monkeypatch.setattr("harness.progress._own_workers", lambda: {me})
    monitor.last_read = -math.inf
    monitor.poll()
    assert capsys.readouterr().err == "[running] cell=gru pad_size=12 seed=0  step 2/4 dev_acc 0.500  elapsed 2m\n"
    monitor.last_read = -math.inf
    monitor.poll()  # the same period: no second line
    assert capsys.readouterr().err == ""
    monitor.close()


def test_running_line_and_elapsed():
    r = {"trial_id": "abc", "worker": "h:1", "elapsed_s": 3725.0, "step": None, "dev_acc": None,
         "max_steps": None, "factors": {}}
    assert running_line(r, ["cell"]) == "[running] abc  step - (no evaluation yet)  elapsed 1h02m"
    assert [elapsed(s) for s in (0, 59.9, 60, 719, 3600)] == ["0s", "59s", "1m", "11m", "1h00m"]


def test_eta_is_the_trials_left_at_this_runs_rate():
    from harness.progress import elapsed, eta_seconds

    assert eta_seconds(0, 5, 30.0) is None  # nothing finished yet: no rate
    assert eta_seconds(2, 6, 40.0) == 120.0  # 20 s a trial, 6 left
    assert elapsed(eta_seconds(3, 10, 540.0)) == "30m"
