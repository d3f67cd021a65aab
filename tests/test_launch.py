"""`harness launch`: a job array of workers on one shared storage. Slurm is not on this machine:
the sbatch script is checked with a stand-in `sbatch`, and the whole recipe runs with submitit's
local executor (two jobs, one SQLite storage, one artifact folder)."""

import dataclasses
import os
import shlex
import stat
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_raw
from optuna.trial import TrialState

from harness import records
from harness.cli import build_parser, main
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.extras import install_hint
from harness.launch import LaunchSpec, absolute_storage, launch, mount_of, parse_time, spec_from_args

GRID = {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1]}


@pytest.mark.parametrize("text, minutes", [("90", 90), ("30:30", 31), ("4:00:00", 240), ("1-12", 2160),
                                           ("1-0:30", 1470), ("0-1:00:01", 61)])
def test_parse_time_reads_slurm_forms(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "1h", "0", "1:2:3:4"])
def test_parse_time_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="--time"):
        parse_time(text)


def test_absolute_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_storage("sqlite:///o.db") == f"sqlite:///{tmp_path}/o.db"
    assert absolute_storage("sqlite:////abs/o.db") == "sqlite:////abs/o.db"
    assert absolute_storage("postgresql://u@h/db") == "postgresql://u@h/db"
    assert absolute_storage("j.journal") == str(tmp_path / "j.journal")


def test_arguments_make_the_job_resources(tmp_path):
    args = build_parser().parse_args(
        ["launch", "slurm", "c.yaml", "--jobs", "8", "--gpus-per-job", "2", "--cpus-per-job", "8", "--partition",
         "gpu", "--time", "2:00:00", "--storage", "postgresql://u@h/db", "--artifacts", str(tmp_path / "a"),
         "--out", str(tmp_path / "r"), "--slurm-arg", "account=proj", "--slurm-arg", "qos=low"])
    spec = spec_from_args(args, config_from_dict(tiny_raw("res")))
    assert (spec.jobs, spec.workers_per_job, spec.device, spec.threads) == (8, 2, "cuda:0,cuda:1", 4)
    assert (spec.partition, spec.time_min, spec.slurm_args) == ("gpu", 120, {"account": "proj", "qos": "low"})
    assert spec.logs == tmp_path / "r" / "launch" and spec.job_root == tmp_path / "r" / "launch" / "results"


def _fake_slurm(bin_dir: Path, refuse: bool = False) -> None:
    """A stand-in sbatch that keeps the script it is given and answers like Slurm (or, `refuse`, fails
    as sbatch does on a bad request), and an srun, which submitit looks for to tell that it is on a
    Slurm machine."""
    bin_dir.mkdir()
    answer = 'echo "sbatch: error: invalid account" >&2\nexit 1' if refuse else 'echo "Submitted batch job 4242"'
    for name, body in (("sbatch", f'cp "$1" "$(dirname "$0")/submitted.sh"\n{answer}'), ("srun", "exit 1")):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_slurm_without_slurm_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw("noslurm")))
    code = main(["launch", "slurm", str(tmp_path / "c.yaml"), "--jobs", "2", "--storage",
                 f"sqlite:///{tmp_path / 'o.db'}", "--artifacts", str(tmp_path / "a"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "srun" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # checked before anything is written


@pytest.fixture
def shared_fs(monkeypatch):
    """Every path on a network file system, as on a cluster's login node (no sharing warning)."""
    import harness.launch

    monkeypatch.setattr(harness.launch, "mount_of", lambda path, mounts=None: ("/shared", "nfs4", "rw,vers=4.2"))


def test_slurm_array_script(tmp_path, monkeypatch, shared_fs):
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    spec = LaunchSpec(engine="slurm", jobs=3, storage="postgresql://u@h/db", artifacts=str(tmp_path / "a"),
                      out=tmp_path / "r", logs=tmp_path / "logs", job_root=tmp_path / "jobs", gpus_per_job=1,
                      cpus_per_job=4, partition="gpu", time_min=90, mem_gb=16,
                      slurm_args={"account": "proj"})
    cfg = config_from_dict(tiny_raw("slurmy", GRID))
    # The storage is opened before anything is submitted: a URL this machine cannot reach fails here...
    with pytest.raises(ConfigError, match="--storage 'postgresql://u@h/db': cannot open it"):
        launch(cfg, spec)
    assert not (tmp_path / "bin" / "submitted.sh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]  # the folders it made are removed again
    # ...so use a real one here: a journal file (on the shared file system).
    spec = LaunchSpec(**{**spec.__dict__, "storage": str(tmp_path / "optuna.journal")})
    jobs = launch(cfg, spec)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = (tmp_path / "bin" / "submitted.sh").read_text()
    for line in ("--array=0-2%3", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--time=90",
                 "--mem=16GB", "--account=proj", "--job-name=harness-slurmy"):
        assert f"#SBATCH {line}" in script, line
    saved = yaml.safe_load((tmp_path / "r" / "run.yaml").read_text())
    assert {k: saved[k] for k in ("storage", "artifacts")} == {"storage": spec.storage, "artifacts": spec.artifacts}
    assert set(saved) == {"storage", "artifacts", "folder_id"} and len(saved["folder_id"]) == 32
    assert (tmp_path / "r" / "config.yaml").is_file()


def _slurm_argv(tmp_path: Path, *extra: str, storage: str | None = None) -> list[str]:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw("slurmcli", GRID)))
    return ["launch", "slurm", str(tmp_path / "c.yaml"), "--jobs", "2", "--storage",
            storage or str(tmp_path / "optuna.journal"), "--artifacts", str(tmp_path / "a"),
            "--out", str(tmp_path / "r"), *extra]


def test_slurm_script_has_the_setup_lines_the_command_and_no_gpu_for_cpu_jobs(tmp_path, monkeypatch, shared_fs):
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    argv = _slurm_argv(tmp_path, "--setup", "module load x", "--setup", "source /shared/venv/bin/activate")
    assert main(argv) == 0
    script = (tmp_path / "bin" / "submitted.sh").read_text()
    lines = script.splitlines()
    assert "gpus" not in script  # a CPU job asks for no GPU (not --gpus-per-node=0)
    # the setup lines, in order, before the job's command (srun ... submitit)
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    assert lines.index("module load x") < lines.index("source /shared/venv/bin/activate") < srun
    # the harness command each job runs, readable in the script, and a valid `harness run` command line
    (comment,) = [line for line in lines if line.startswith("# harness run ")]
    words = shlex.split(comment[2:])
    args = build_parser().parse_args(words[1:])
    assert args.command == "run" and args.config == str(tmp_path / "r" / "config.yaml")
    assert args.out == str(tmp_path / "r" / "launch" / "results" / "<job id>")
    assert (args.storage, args.artifacts, args.device, args.workers) == (str(tmp_path / "optuna.journal"),
                                                                       str(tmp_path / "a"), "cpu", 1)
    assert args.set == ["run.threads=1"] and args.quiet
    assert (tmp_path / "r" / "config.yaml").is_file()  # the config the command names
    with pytest.raises(ConfigError, match="one shell line per --setup"):
        launch(config_from_dict(tiny_raw("x")), spec_from_args(build_parser().parse_args(
            _slurm_argv(tmp_path, "--setup", "module load x\nrm -rf /")), config_from_dict(tiny_raw("x"))))


def test_each_job_log_starts_with_its_command(monkeypatch, capsys):
    import submitit

    import harness.runner
    from harness.launch import WorkerJob

    class Env:
        job_id = "4242_1"

    monkeypatch.setattr(submitit, "JobEnvironment", Env)
    monkeypatch.setattr(harness.runner, "run", lambda cfg, out, **kw: {"complete": 0, "out": str(out)})
    command = ["harness", "run", "/r/config.yaml", "--out", "/r/jobs/<job id>", "--storage", "postgresql://u@h/db"]
    counts = WorkerJob()(tiny_raw("logged"), "/r/jobs", "postgresql://u:pw@h/db", "/a", "cpu", 1, 1, command)
    assert counts["out"] == "/r/jobs/4242_1"
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("harness: job 4242_1 on ") and first.endswith(
        "runs the equivalent of: harness run /r/config.yaml --out /r/jobs/4242_1 --storage postgresql://u@h/db")


def test_sqlite_is_refused_for_slurm(tmp_path, monkeypatch, capsys, shared_fs):
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert main(_slurm_argv(tmp_path, storage=f"sqlite:///{tmp_path / 'o.db'}")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SQLite cannot be shared by the jobs of a Slurm array" in err
    assert "postgresql://" in err and "optuna.journal" in err and install_hint("postgres") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "c.yaml"]  # nothing written, nothing submitted


def test_paths_on_a_local_disk_are_warned_about(tmp_path, monkeypatch, capsys):
    import harness.launch

    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(harness.launch, "mount_of", lambda path, mounts=None: ("/", "ext4", "rw"))
    assert main(_slurm_argv(tmp_path)) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("harness: warning:")]
    assert [w.split(" ")[2] for w in warnings] == ["--storage", "--artifacts", "--logs"]
    assert "is on this machine's local disk (ext4 at /): jobs on other nodes will not see it" in warnings[0]
    # a journal on Lustre whose locks hold on one node only
    spec = spec_from_args(build_parser().parse_args(_slurm_argv(tmp_path)), config_from_dict(tiny_raw("x")))
    mounts = f"fs@o2ib:/lus {tmp_path} lustre rw,localflock 0 0\n"
    monkeypatch.setattr(harness.launch, "mount_of", mount_of)
    (warning,) = harness.launch.sharing_warnings(spec, mounts)
    assert "localflock" in warning and "corrupt the journal" in warning


def test_mount_of_reads_proc_mounts(tmp_path):
    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              f"server:/export {tmp_path} nfs4 rw,vers=4.2 0 0\n"
              f"tmpfs {tmp_path / 'scratch'} tmpfs rw 0 0\n")
    (tmp_path / "scratch").mkdir()
    assert mount_of(tmp_path / "new" / "optuna.journal", mounts) == (str(tmp_path), "nfs4", "rw,vers=4.2")
    assert mount_of(tmp_path / "scratch" / "x", mounts)[1] == "tmpfs"
    assert mount_of(Path("/elsewhere"), mounts)[1] == "ext4"


def test_a_refused_submission_leaves_no_folder_behind(tmp_path, monkeypatch, capsys, shared_fs):
    _fake_slurm(tmp_path / "bin", refuse=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "a").mkdir()  # there before: kept
    assert main(_slurm_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "submitting the jobs failed" in err and "invalid account" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "bin", "c.yaml"]  # no r/, no journal


def test_a_missing_postgres_driver_names_the_extra(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    assert main(_launch_argv(tmp_path, "--jobs", "1", storage="postgresql://u@127.0.0.1:1/db")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PostgreSQL driver is not installed" in err and install_hint("postgres") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)
    spec = LaunchSpec(engine="local", jobs=1, storage=f"sqlite:///{tmp_path / 'o.db'}", artifacts=str(tmp_path / "a"),
                      out=tmp_path / "r", logs=tmp_path / "logs", job_root=tmp_path / "jobs")
    with pytest.raises(ConfigError, match=install_hint("slurm").replace("[", r"\[").replace("]", r"\]")):
        launch(config_from_dict(tiny_raw("nosub")), spec)


@pytest.mark.slow
def test_two_local_jobs_share_one_storage_and_the_report_sees_every_trial(tmp_path, capsys):
    raw = tiny_raw("launched", GRID)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = tmp_path / "results"
    code = main(["launch", "local", str(tmp_path / "c.yaml"), "--jobs", "2", "--storage", storage,
                 "--artifacts", str(tmp_path / "artifacts"), "--out", str(out), "--time", "10", "--wait",
                 "--allow-oversubscribe"])  # two job processes, also on a machine of one core
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "submitted 2 local job(s)" in printed and f"harness status {out}" in printed
    # This machine's folder held no trial; the report fetches them all from the artifact folder.
    assert records.load(out)["runs"].empty
    assert main(["report", str(out)]) == 0
    runs = records.load(out)["runs"]
    planned = {s.trial_id for s in expand_grid(config_from_dict(raw), runs["data_id"].iloc[0])}
    assert len(planned) == 4
    assert sorted(runs["trial_id"]) == sorted(planned) and set(runs["status"]) == {"complete"}
    # Exactly once: one COMPLETE Optuna trial per grid point, whichever job ran it.
    study = optuna.load_study(study_name="launched", storage=storage)
    done = [t.user_attrs["trial_id"] for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(done) == sorted(planned)
    assert main(["status", str(out)]) == 0
    assert "4/4 finished" in capsys.readouterr().out
    # each job's log starts (after submitit's own lines) with the harness command it ran, in its own folder
    logs = sorted((out / "launch").glob("*/*_log.out"))
    assert len(logs) == 2
    for log in logs:
        job_id = log.parent.name
        first = next(line for line in log.read_text().splitlines() if not line.startswith("submitit "))
        assert first.startswith(f"harness: job {job_id} on ") and "runs the equivalent of: harness run" in first
        assert f"--out {out / 'launch' / 'results' / job_id} " in first


# ----------------------------------------------------------------------------- bad input (one line, exit 2)

def _launch_argv(tmp_path: Path, *extra: str, storage: str | None = None) -> list[str]:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_raw("refused", GRID)))
    return ["launch", "local", str(tmp_path / "c.yaml"), "--storage", storage or f"sqlite:///{tmp_path / 'o.db'}",
            "--artifacts", str(tmp_path / "a"), "--out", str(tmp_path / "r"), *extra]


def test_local_jobs_beyond_the_cores_are_refused_unless_asked(tmp_path, monkeypatch, capsys):
    import harness.launch

    monkeypatch.setattr(harness.launch, "cores", lambda: 2)
    assert main(_launch_argv(tmp_path, "--jobs", "1000")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--jobs 1000" in err and "2 cores" in err and "--jobs 2 or fewer" in err and "--allow-oversubscribe" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # nothing written, nothing started
    # Workers per job are processes too; the flag lifts the cap; Slurm jobs use the cluster's cores.
    from harness.launch import check_resources

    cfg = config_from_dict(tiny_raw("refused", GRID))
    spec = LaunchSpec(engine="local", jobs=2, storage="sqlite:///x.db", artifacts=str(tmp_path / "a"),
                      out=tmp_path / "r", logs=tmp_path / "l", job_root=tmp_path / "j", workers_per_job=2)
    with pytest.raises(ConfigError, match=r"--jobs 2: 2 local job\(s\) × 2 worker\(s\).*--jobs 1 or fewer"):
        check_resources(cfg, spec)
    check_resources(cfg, spec, oversubscribe=True)
    check_resources(cfg, dataclasses.replace(spec, engine="slurm", jobs=1000))
    assert build_parser().parse_args(_launch_argv(tmp_path, "--jobs", "9", "--allow-oversubscribe")).allow_oversubscribe


def test_a_storage_password_is_not_printed(tmp_path, capsys):
    url = "postgresql://u:s3cr3t@127.0.0.1:1/db"  # nothing listens on port 1: refused at once
    code = main(_launch_argv(tmp_path, "--jobs", "1", storage=url))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "s3cr3t" not in err and "postgresql://u:***@127.0.0.1:1/db" in err


def test_every_error_line_is_redacted(capsys, monkeypatch):
    import harness.cli

    def fail(args):
        raise ConfigError("cannot open sqlite:///a.db nor mysql+pymysql://me:pa55@h/db\n(second line)")

    monkeypatch.setattr(harness.cli, "_cmd_status", fail)
    assert main(["status", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "harness: error: cannot open sqlite:///a.db nor mysql+pymysql://me:***@h/db (second line)\n"


def test_a_worker_job_requeues_itself_with_the_same_call():
    """submitit's checkpointing: on a timeout or preemption it calls `checkpoint` with the job's own
    arguments and requeues what it returns (the same call: the runner resumes; see
    tests/test_launch_requeue.py for a local job preempted and requeued for real)."""
    from submitit.helpers import DelayedSubmission

    from harness.launch import WorkerJob

    job = WorkerJob()
    args = (tiny_raw("rq"), "/r/jobs", "sqlite:////r/o.db", "/a", "cpu", 1, 1, ["harness", "run"], (123, 456))
    again = job.checkpoint(*args)
    assert isinstance(again, DelayedSubmission) and again.function is job
    assert again.args == args and again.kwargs == {}


def test_dry_run_prints_the_script_and_submits_nothing(tmp_path, monkeypatch, capsys, shared_fs):
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    argv = _slurm_argv(tmp_path, "--setup", "module load cuda/12.4", "--setup", "source /shared/venv/bin/activate",
                       "--dry-run")
    assert main(argv) == 0
    script = capsys.readouterr().out
    assert not (tmp_path / "bin" / "submitted.sh").exists()  # nothing submitted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "c.yaml"]  # nothing written
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and "#SBATCH --array=0-1%2" in lines
    assert not any("wckey" in line for line in lines)  # no submitit-specific account key unless asked
    # the setup lines first, then the harness run command (a real line: echoed into the job's log), then
    # the Python the setup chose (python from PATH, not this machine's interpreter)
    (echo,) = [i for i, line in enumerate(lines) if line.startswith("echo ")]
    (srun,) = [i for i, line in enumerate(lines) if line.startswith("srun ")]
    assert lines.index("module load cuda/12.4") < lines.index("source /shared/venv/bin/activate") < echo < srun
    assert " python -u -m submitit.core._submit " in lines[srun] and sys.executable not in lines[srun]
    run = lines[echo].split("runs the equivalent of: ", 1)[1].rstrip('"')
    args = build_parser().parse_args(shlex.split(run)[1:])
    assert args.command == "run" and args.out == str(tmp_path / "r" / "launch" / "results" /
                                                     "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}")
    # as sbatch would get it: the same script but for its log folder's job id
    assert main(_slurm_argv(tmp_path, "--setup", "module load cuda/12.4", "--setup",
                            "source /shared/venv/bin/activate")) == 0
    submitted = (tmp_path / "bin" / "submitted.sh").read_text()
    assert [line for line in submitted.splitlines() if line.startswith("srun ")] == [lines[srun]]
    assert "wckey" not in submitted and lines[echo] in submitted.splitlines()


def test_dry_run_python_and_asked_for_wckey(tmp_path, capsys):
    argv = _slurm_argv(tmp_path, "--dry-run", "--slurm-arg", "wckey=mine", "--python", "/opt/py/bin/python3")
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "#SBATCH --wckey=mine" in lines
    assert any(line.startswith("srun ") and " /opt/py/bin/python3 -u -m submitit" in line for line in lines)
    # without --setup or --python: this machine's interpreter, by its path
    assert main(_slurm_argv(tmp_path, "--dry-run")) == 0
    assert any(line.startswith("srun ") and f" {sys.executable} -u -m submitit" in line
               for line in capsys.readouterr().out.splitlines())
    assert main(["launch", "local", *_slurm_argv(tmp_path, "--dry-run")[2:]]) == 2
    assert "--dry-run goes with `harness launch slurm`" in capsys.readouterr().err
