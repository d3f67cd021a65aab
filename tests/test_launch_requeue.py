"""`harness launch local` as processes: a job preempted in the middle of a trial is requeued by
submitit and resumes the trial from its checkpoint; and the command stops, and waits for, every
process of every job it started when it is itself stopped (SIGTERM, Ctrl-C).

Each test runs `harness launch local` as a subprocess (one torch thread per process) and follows
its process tree through /proc."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import sigint_default, tiny_raw
from optuna.trial import TrialState
from test_checkpoint import assert_same_results, mark

from harness import records, runner
from harness.config import config_from_dict
from harness.launch import LocalProcesses, _proc_table, process_alive

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="follows processes through /proc")]

ROOT = Path(__file__).resolve().parents[1]


def _start_launch(tmp_path: Path, raw: dict, jobs: int) -> subprocess.Popen:
    """`harness launch local` of `raw` with `jobs` jobs (one worker, one torch thread each) on a SQLite
    storage, in the background; its output in tmp_path/launch.out and launch.err."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    argv = [sys.executable, "-m", "harness", "launch", "local", str(tmp_path / "c.yaml"), "--jobs", str(jobs),
            "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--artifacts", str(tmp_path / "artifacts"),
            "--out", str(tmp_path / "results"), "--time", "20",
            "--allow-oversubscribe"]  # jobs × 1 process each, also on a machine of one core
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(tmp_path / "launch.out", "w") as out, open(tmp_path / "launch.err", "w") as err:
        # a session of its own, as a command started from a terminal is its own process group
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=sigint_default)  # Ctrl-C reaches it also under a background run


def _said(tmp_path: Path) -> str:
    return (tmp_path / "launch.out").read_text() + (tmp_path / "launch.err").read_text()


def _tree(pid: int) -> dict[int, int]:
    """The processes descending from `pid` (not itself): pid -> start time."""
    table = _proc_table()
    seen: dict[int, int] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, start) in table.items():
            if ppid == parent and child not in seen:
                seen[child] = start
                frontier.append(child)
    return seen


def _workers(pid: int) -> list[int]:
    """The harness worker processes (multiprocessing spawn children) below `pid`."""
    out = []
    for child in _tree(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--multiprocessing-fork" in cmdline and b"spawn_main" in cmdline:
            out.append(child)
    return out


def _end(proc: subprocess.Popen) -> None:
    """End a launch still running (a failed test): SIGTERM, so that it stops its jobs; SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _until(what, proc: subprocess.Popen, tmp_path: Path, timeout_s: float, poll_s: float = 0.01):
    """Poll `what()` until it is truthy (returned); fail when the launch ends or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        assert proc.poll() is None, f"the launch ended (exit code {proc.returncode}):\n{_said(tmp_path)}"
        time.sleep(poll_s)
    _end(proc)
    pytest.fail(f"timed out after {timeout_s} s:\n{_said(tmp_path)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_stopped_local_launch_leaves_no_job_process(tmp_path, sig):
    """SIGTERM, Ctrl-C (a terminal's: to the whole process group): the command stops every job process
    and waits for them before it exits. SIGKILL (it cannot): each job notices that its launcher is
    gone and stops itself."""
    raw = tiny_raw("reaped", {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1, 2, 3]})
    raw["train"].update(epochs=2000, require_improvement=10**9)  # minutes of training: still busy when stopped
    proc = _start_launch(tmp_path, raw, jobs=2)
    try:
        _until(lambda: len(_workers(proc.pid)) == 2, proc, tmp_path, timeout_s=180, poll_s=0.2)
        started = _tree(proc.pid)  # 2 × (controller, job, its worker, the job's resource tracker)
        assert len(started) >= 6, started
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # as Ctrl-C on a terminal: the command and every process it started
        else:
            proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        _end(proc)
    said = _said(tmp_path)
    left = lambda: [pid for pid, start in started.items() if process_alive(pid, start)]  # noqa: E731
    if sig == signal.SIGKILL:
        assert code == -sig
        deadline = time.monotonic() + 60
        while left() and time.monotonic() < deadline:
            time.sleep(0.2)
        logs = "".join(f.read_text() for f in (tmp_path / "results" / "launch").glob("*/*_log.err"))
        assert logs.count("has ended: stopping this job") == 2, logs
    else:
        assert code == 128 + sig, said
        assert "stopping 2 local job(s)" in said and "Traceback" not in (tmp_path / "launch.err").read_text(), said
        for log in (tmp_path / "results" / "launch").glob("*/*_log.err"):  # one line each, no traceback
            assert "stopped; its workers are stopped" in log.read_text() and "Traceback" not in log.read_text()
    assert left() == []


def test_a_preempted_local_job_is_requeued_and_resumes_its_trial_from_its_checkpoint(tmp_path):
    raw = tiny_raw("requeued", {"cell": ["lstm"], "pad_size": [12]})
    # 160 steps (a few seconds), a checkpoint every 5: preempted after one, long before the end
    raw["train"].update(epochs=20, batch_size=32, eval_every=4, probe_points=3, checkpoint_every=5,
                        require_improvement=10**9)
    out, job_root = tmp_path / "results", tmp_path / "results" / "launch" / "results"
    proc = _start_launch(tmp_path, raw, jobs=1)
    try:
        (worker,) = _until(lambda: _workers(proc.pid), proc, tmp_path, timeout_s=180)
        ckpt = _until(lambda: next(job_root.glob("*/trials/.ckpt-*.pt"), None), proc, tmp_path, timeout_s=120)
        # Preempted: the worker is held still (so the checkpoint stays the one read here), the checkpoint
        # tagged (its resumed rows show it), then the job is sent submitit's preemption signal (as Slurm
        # does, and submitit's local controller before the time limit) and the worker killed.
        os.kill(worker, signal.SIGSTOP)
        job = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[-1].split()[1])  # the worker's parent
        step = torch.load(ckpt, weights_only=False)["step"]
        mark(ckpt)
        os.kill(job, signal.SIGUSR2)
        os.kill(worker, signal.SIGKILL)
        code = proc.wait(timeout=240)
    finally:
        _end(proc)
    said = _said(tmp_path)
    assert code == 0, said
    assert 5 <= step < 160
    # submitit requeued the same job (same id, same folder), which started again and finished the trial
    (job_dir,) = job_root.iterdir()
    logs = out / "launch" / job_dir.name
    log = (logs / f"{job_dir.name}_0_log.out").read_text() + (logs / f"{job_dir.name}_0_log.err").read_text()
    assert "this job is preempted" in log and f"Requeued job {job_dir.name}" in log, log
    assert log.count(f"harness: job {job_dir.name} on ") == 2, log
    assert f"job {job_dir.name}: total 1, complete 1" in said
    # ... from its checkpoint: the rows before it are the checkpoint's (tagged), and it is gone
    got = records.load(job_dir)
    assert len(got["runs"]) == 1 and got["runs"]["status"].iloc[0] == "complete"
    assert got["curves"]["resumed_from"].iloc[0] == step
    assert not ckpt.exists()
    # Optuna: the preempted attempt failed as stale, the requeued one complete: one finished trial
    study = optuna.load_study(study_name="requeued", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = sorted((t.state.name, t.user_attrs.get("status")) for t in study.get_trials())
    assert [s for s, _ in states].count(TrialState.COMPLETE.name) == 1
    assert [s for s in states if s[0] != TrialState.COMPLETE.name] == [(TrialState.FAIL.name, "stale")], states
    # and the same numbers as an uninterrupted run (timings aside)
    ref = tmp_path / "ref"
    runner.run(config_from_dict(raw), ref, workers=1, device="cpu", threads=1, progress=False)
    assert_same_results(records.load(ref), got)


def test_local_processes_notes_a_tree_and_stops_it(tmp_path):
    """LocalProcesses alone: a controller whose child and grandchild ignore SIGINT is stopped (SIGKILL
    after the grace), and so is the grandchild, also after its parent died."""
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "if len(sys.argv) < 2:\n"
              "    subprocess.Popen([sys.executable, __file__, 'leaf'])\n"
              "time.sleep(300)\n")
    (tmp_path / "tree.py").write_text(script)

    class Job:  # what LocalProcesses reads of a submitit LocalJob
        _process = subprocess.Popen([sys.executable, str(tmp_path / "tree.py")])

    procs = LocalProcesses([Job()])
    deadline = time.monotonic() + 30
    while len(procs.seen) < 2 and time.monotonic() < deadline:
        procs.watch()
        time.sleep(0.05)
    assert len(procs.seen) == 2
    seen = dict(procs.seen)
    t0 = time.monotonic()
    assert procs.stop(grace_s=1.0) == 2
    assert time.monotonic() - t0 < 10
    assert [pid for pid, start in seen.items() if process_alive(pid, start)] == []
    assert Job._process.returncode is not None  # reaped


def test_a_submission_that_fails_midway_stops_the_jobs_already_started(tmp_path, monkeypatch):
    """`--jobs 1000 --allow-oversubscribe` where the machine runs out of processes: the jobs started
    before the failing one are stopped and waited for, the error is one line, no folder is left."""
    import harness.launch
    from harness.config import ConfigError
    from harness.launch import LaunchSpec, launch

    started: list[subprocess.Popen] = []

    class Job:
        def __init__(self, process):
            self._process, self.job_id = process, str(process.pid)

    class Executor:
        def submit(self, fn, *args):
            if len(started) == 2:
                raise BlockingIOError(11, "Resource temporarily unavailable")  # fork() at the process limit
            started.append(subprocess.Popen(  # started with Ctrl-C ignored: stops on SIGINT as a job does
                [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                       "print('ready', flush=True); time.sleep(300)"], stdout=subprocess.PIPE))
            started[-1].stdout.readline()
            return Job(started[-1])

    monkeypatch.setattr(harness.launch, "make_executor", lambda spec, name: Executor())
    spec = LaunchSpec(engine="local", jobs=1000, storage=f"sqlite:///{tmp_path / 'o.db'}",
                      artifacts=str(tmp_path / "a"), out=tmp_path / "r", logs=tmp_path / "r" / "launch",
                      job_root=tmp_path / "r" / "launch" / "results")
    with pytest.raises(ConfigError, match="submitting the jobs failed: .*Resource temporarily unavailable"):
        launch(config_from_dict(tiny_raw("midway")), spec, oversubscribe=True)
    assert len(started) == 2 and all(p.returncode is not None for p in started)  # stopped and reaped
    for p in started:
        p.stdout.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no results folder, no storage file
