"""`harness launch`: a job array of workers on one shared storage. Slurm is not on this machine:
the sbatch script is checked with a stand-in `sbatch`, and the whole recipe runs with submitit's
local executor (two jobs, one SQLite storage, one artifact folder)."""

import dataclasses
import os
import stat
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
from harness.launch import LaunchSpec, absolute_storage, launch, parse_time, spec_from_args

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


def _fake_slurm(bin_dir: Path) -> None:
    """A stand-in sbatch that keeps the script it is given and answers like Slurm (and an srun, which
    submitit looks for to tell that it is on a Slurm machine)."""
    bin_dir.mkdir()
    for name, body in (("sbatch", 'cp "$1" "$(dirname "$0")/submitted.sh"\necho "Submitted batch job 4242"'),
                       ("srun", "exit 1")):
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


def test_slurm_array_script(tmp_path, monkeypatch):
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
    # ...so use a real (SQLite) one here.
    spec = LaunchSpec(**{**spec.__dict__, "storage": f"sqlite:///{tmp_path / 'o.db'}"})
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
