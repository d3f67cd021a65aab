"""Damaged files and a hostile environment (issue 10): nothing finished is lost, damage does not
spread, and an error of the machine is one line and a non-zero exit, never a traceback.

Each fault-injection test copies one finished run (4 trials), damages it, and resumes with the
same `harness run` command: every trial is then present exactly once, and each finished result is
identical to before (the untouched trials keep even their start times; a trial run again must give
the same numbers, training being deterministic on the CPU with one thread).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT, tiny_raw
from optuna.trial import TrialState

from harness import journal, queue, records
from harness.config import config_from_dict, expand_grid
from harness.journal import JournalDamaged
from harness.plan import Plan, write_config
from harness.schema import TABLES
from harness.storage import (
    RunSettings,
    open_storage,
    read_run_settings,
    redact_url,
    without_password,
    write_run_settings,
)

FOUR = {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1]}
SAME = ["test_acc", "best_dev_acc", "status", "steps"]  # what a trial run again must reproduce
PASSWORD = "s3cretPassw0rd"


# ----------------------------------------------------------------------------- helpers

def harness(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` (this checkout: PYTHONPATH is inherited), text output captured."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def run_cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(config), "--out", str(out), "--device", "cpu", "--quiet", "--set", "run.threads=1", *extra]


def one_line_error(p: subprocess.CompletedProcess, code: int = 1) -> str:
    """Assert an exit code and an error of one line, no traceback; return that line."""
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


def runs_of(out: Path):
    return records.load(out)["runs"].set_index("trial_id").sort_index()


def assert_resumed(config: Path, out: Path, before, rerun: set[str] = frozenset()) -> None:
    """Resume with the same command: every trial exactly once; the trials in `rerun` ran again
    with the same results; all the others untouched."""
    p = harness(*run_cmd(config, out))
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    after = runs_of(out)
    assert after.index.is_unique and sorted(after.index) == sorted(before.index)
    for tid, row in before.iterrows():
        for col in SAME:
            assert after.loc[tid, col] == row[col], (tid, col)
        if tid not in rerun:
            assert after.loc[tid, "started_at"] == row["started_at"], tid
    for tid in rerun:
        assert after.loc[tid, "started_at"] != before.loc[tid, "started_at"], f"{tid} was not run again"
    assert records.verify_trial(out, next(iter(before.index))) is None


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """One finished run of 4 trials: (config file, results folder). Copy it; do not change it."""
    from harness import runner

    base = tmp_path_factory.mktemp("finished")
    config = base / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_raw("faults", FOUR)))
    counts = runner.run(config_from_dict(tiny_raw("faults", FOUR)), base / "o", workers=1, device="cpu",
                        threads=1, progress=False)
    assert counts["complete"] == 4
    return config, base / "o"


@pytest.fixture
def copy(finished, tmp_path) -> tuple[Path, Path, object]:
    """A copy of the finished run: (config, results folder, its runs before any damage)."""
    config, src = finished
    out = tmp_path / "o"
    shutil.copytree(src, out, symlinks=True)
    return config, out, runs_of(out)


def tiny_trial(out: Path, tid: str) -> None:
    """A sound shard folder holding one (made-up) finished trial."""
    records.write_trial(out, tid, {t: records.frame(t, [{"trial_id": tid, "status": "complete"}] if t == "runs"
                                                    else []) for t in TABLES})


# ----------------------------------------------------------------------------- journal (fast)

def journal_with(tmp_path: Path, n: int = 3) -> Path:
    """A real journal of a study with `n` finished trials."""
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="j", storage=open_storage(tmp_path, None))
    for i in range(n):
        study.enqueue_trial({}, user_attrs={"trial_id": f"t{i}"})
        study.optimize(lambda t: 1.0, n_trials=1)
    return path


def test_a_torn_last_line_is_cut_off_and_kept_once_even_when_two_processes_open_it(tmp_path, capsys):
    path = journal_with(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-30])  # a kill -9 in the middle of Optuna's last append
    cut = whole[whole[:-1].rfind(b"\n") + 1:-30]
    barrier = threading.Barrier(4)

    def open_it() -> None:
        barrier.wait()
        open_storage(tmp_path, None)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    copies = list(tmp_path.glob("optuna.journal.torn-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == cut
    assert path.read_bytes() == whole[:len(whole) - 30 - len(cut)]
    assert "cut short" in capsys.readouterr().err
    study = optuna.load_study(study_name="j", storage=open_storage(tmp_path, None))
    study.optimize(lambda t: 2.0, n_trials=1)  # appends cleanly again
    assert len(optuna.load_study(study_name="j", storage=open_storage(tmp_path, None)).trials) == 4
    assert not (tmp_path / "optuna.journal.lock").exists()


@pytest.mark.parametrize("damage, line", [
    ("middle", 4),        # a line in the middle is not a record
    ("appended", None),   # non-UTF-8 garbage appended, no newline: not what a torn write leaves
    ("last", "last"),     # a complete last line that is not a record
])
def test_a_journal_damaged_elsewhere_is_refused_with_how_to_recover(tmp_path, damage, line):
    path = journal_with(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "middle":
        lines[3] = b'{"op_code": \xff\xfe garbage\n'
    elif damage == "appended":
        lines.append(b"\xff\xfe\x00\x01")
    else:
        lines.append(b"garbage\n")
        line = len(lines)
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(JournalDamaged) as e:
        open_storage(tmp_path, None)
    where = f"{path}:{line}:" if line else f"{path}:"
    assert str(e.value).startswith(where) and "move the journal aside" in str(e.value)
    assert path.read_bytes() == before  # nothing repaired, nothing cut
    assert not list(tmp_path.glob("optuna.journal.torn-*"))


def test_a_torn_line_that_was_appended_to_is_refused(tmp_path):
    """What today's Optuna leaves when it appends onto a torn line: damage in the middle."""
    path = journal_with(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-30] + data[data[:-1].rfind(b"\n") + 1:])
    with pytest.raises(JournalDamaged, match="not a journal record"):
        open_storage(tmp_path, None)
    assert journal.first_bad_line(path) == data.count(b"\n")


# ----------------------------------------------------------------------------- shards (fast)

def test_verify_trial_names_what_is_wrong(tmp_path):
    tiny_trial(tmp_path, "a")
    assert records.verify_trial(tmp_path, "a") is None
    assert records.verify_trial(tmp_path, "b") == "no shard folder"
    (tmp_path / "trials" / "a" / "curves.parquet").unlink()
    assert records.verify_trial(tmp_path, "a") == "curves.parquet missing"
    tiny_trial(tmp_path, "a")
    (tmp_path / "trials" / "a" / "runs.parquet").write_bytes(b"garbage" * 100)
    assert records.verify_trial(tmp_path, "a").startswith("runs.parquet unreadable (ArrowInvalid")
    tiny_trial(tmp_path, "c")
    shutil.copy(tmp_path / "trials" / "c" / "runs.parquet", tmp_path / "trials" / "a" / "runs.parquet")
    assert "not one of a" in records.verify_trial(tmp_path, "a")  # another trial's row


def test_a_damaged_folder_is_quarantined_and_load_skips_what_it_cannot_read(tmp_path, capsys):
    for tid in "abc":
        tiny_trial(tmp_path, tid)
    (tmp_path / "trials" / "b" / "confusion.parquet").write_bytes(b"\x00" * 64)
    said = records.quarantine_damaged(tmp_path)
    assert len(said) == 1 and "trial b is damaged (confusion.parquet unreadable" in said[0]
    assert sorted(p.name for p in (tmp_path / "trials").iterdir()) == ["a", "c"]
    (moved,) = (tmp_path / "quarantine").iterdir()
    assert moved.name.startswith("b-") and (moved / "confusion.parquet").read_bytes() == b"\x00" * 64
    assert "moved to" in capsys.readouterr().err
    (tmp_path / "trials" / "c" / "curves.parquet").write_bytes(b"PAR1garbagePAR1")  # e.g. a folder left in place
    assert sorted(records.load(tmp_path)["runs"]["trial_id"]) == ["a"]
    assert "trial c is left out" in capsys.readouterr().err


def queue_env(tmp_path: Path) -> tuple[Plan, optuna.Study]:
    cfg = config_from_dict(tiny_raw("q", FOUR))
    plan = Plan(cfg, tmp_path, expand_grid(cfg, "data0"), "data0")
    return plan, queue.open_queue(plan, open_storage(tmp_path, None))


def finish_all(plan: Plan, study: optuna.Study) -> None:
    """Claim, 'run' (a made-up shard) and complete every waiting trial, as a worker does."""
    while (claimed := queue.claim(study)) is not None:
        trial, key = claimed
        queue.set_system_attrs(study, trial, {"folder": read_run_settings(plan.out_dir).folder_id})
        tiny_trial(plan.out_dir, key)
        study.tell(trial, 1.0)


def test_done_means_the_shard_folder_verifies_not_the_study_state(tmp_path):
    plan, study = queue_env(tmp_path)
    write_run_settings(tmp_path, RunSettings())
    queue.enqueue_missing(plan, study)
    finish_all(plan, study)
    ids = sorted(s.trial_id for s in plan.specs)
    assert queue.enqueue_missing(plan, study)["enqueued"] == 0
    shutil.rmtree(records.trial_dir(tmp_path, ids[0]))                # a deleted trial folder
    (records.trial_dir(tmp_path, ids[1]) / "grad_time.parquet").unlink()  # a deleted shard
    assert queue.enqueue_missing(plan, study)["enqueued"] == 2
    assert queue.enqueue_missing(plan, study)["enqueued"] == 0  # waiting now: not twice
    claimed = []
    while (c := queue.claim(study)) is not None:  # not dropped as duplicates of the COMPLETE ones
        claimed.append(c[1])
        tiny_trial(tmp_path, c[1])
        study.tell(c[0], 1.0)
    assert sorted(claimed) == ids[:2]
    assert queue.enqueue_missing(plan, study)["enqueued"] == 0


def test_a_trial_finished_into_another_results_folder_counts_as_done_without_its_shards_here(tmp_path):
    plan, study = queue_env(tmp_path)
    write_run_settings(tmp_path, RunSettings())
    queue.enqueue_missing(plan, study)
    while (claimed := queue.claim(study)) is not None:  # workers elsewhere, not sharing this folder
        queue.set_system_attrs(study, claimed[0], {"folder": "another folder's id"})
        study.tell(claimed[0], 1.0)
    assert queue.enqueue_missing(plan, study)["enqueued"] == 0


# ----------------------------------------------------------------------------- secrets (fast)

def test_a_password_is_never_written(tmp_path):
    url = f"postgresql://user:{PASSWORD}@db.example:5432/optuna"
    assert redact_url(url) == "postgresql://user:***@db.example:5432/optuna"
    assert without_password(url) == "postgresql://user@db.example:5432/optuna"
    assert without_password("sqlite:////x/y.db") == "sqlite:////x/y.db" and redact_url(None) is None
    write_run_settings(tmp_path, RunSettings(storage=url))
    assert read_run_settings(tmp_path).storage == "postgresql://user@db.example:5432/optuna"
    raw = tiny_raw("s", FOUR)
    raw["run"] = {"storage": url}
    cfg = config_from_dict(raw)
    write_config(Plan(cfg, tmp_path, [], "d"))
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["run"]["storage"] == without_password(url)
    assert not grep(tmp_path, PASSWORD)


def grep(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


# ----------------------------------------------------------------------------- fault injection (processes)

@pytest.mark.slow
def test_torn_journal(copy):
    config, out, before = copy
    path = out / "optuna.journal"
    path.write_bytes(path.read_bytes()[:-40])  # the last append cut mid-line
    p = harness("status", out)
    assert p.returncode == 0 and "cut short" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert path.read_bytes().endswith(b"\n") and len(list(out.glob("optuna.journal.torn-*"))) == 1
    assert_resumed(config, out, before)


@pytest.mark.slow
def test_garbage_journal(copy):
    config, out, before = copy
    path = out / "optuna.journal"
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\x00 garbage \x80\n{}\n")
    damaged = path.read_bytes()
    for args in (["status", out], run_cmd(config, out)):
        line = one_line_error(harness(*args), code=2)
        assert "damaged" in line and f"mv {path} {path}.damaged" in line
    assert harness("report", out).returncode == 0  # a grid's report reads the shards only
    assert path.read_bytes() == damaged  # refused, not "repaired"
    path.rename(path.with_name("optuna.journal.damaged"))  # as the message says
    assert_resumed(config, out, before)


@pytest.mark.slow
def test_corrupt_shard(copy):
    """status, report and run each meet a trial whose runs.parquet was overwritten: each moves it to
    DIR/quarantine/ and goes on; run runs it again."""
    config, out, before = copy
    ids = list(before.index)
    for tid, args in zip(ids, (["status", out], ["report", out], run_cmd(config, out))):
        (out / "trials" / tid / "runs.parquet").write_bytes(os.urandom(2000))
        p = harness(*args)
        assert p.returncode == 0 and f"trial {tid} is damaged (runs.parquet unreadable" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    assert len(list((out / "quarantine").iterdir())) == 3
    assert_resumed(config, out, before, rerun=set(ids[:3]))


@pytest.mark.slow
def test_deleted_trial_folder(copy):
    config, out, before = copy
    tid = before.index[0]
    shutil.rmtree(out / "trials" / tid)  # the Optuna study still says COMPLETE
    assert "not finished 1" in harness("status", out).stdout
    assert_resumed(config, out, before, rerun={tid})


@pytest.mark.slow
def test_deleted_single_shard(copy):
    config, out, before = copy
    tid = before.index[1]
    (out / "trials" / tid / "curves.parquet").unlink()
    p = harness(*run_cmd(config, out, "--dry-run"))
    assert p.returncode == 0 and f"{tid}  to run" in p.stdout
    assert_resumed(config, out, before, rerun={tid})
    assert (out / "trials" / tid / "curves.parquet").is_file()


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.mark.slow
def test_read_only_results_folder(copy, tmp_path):
    """run and report on a read-only folder: one line naming the path, exit 1, nothing changed.
    As root (chmod does not stop root) through a read-only bind mount of the folder."""
    config, out, before = copy
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if not (_mount("--bind", str(out), str(ro)) and _mount("-o", "remount,bind,ro", str(ro))):
            subprocess.run(["umount", str(ro)], capture_output=True)
            pytest.skip("running as root (chmod does not bite) and a read-only bind mount is not allowed here")
    else:
        ro.rmdir()
        ro.symlink_to(out)
        for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
    listing = sorted((str(p.relative_to(out)), p.stat().st_mtime_ns) for p in out.rglob("*"))
    try:
        for args in (run_cmd(config, ro), ["report", ro]):
            line = one_line_error(harness(*args))
            assert str(ro) in line and ("Read-only file system" in line or "Permission denied" in line), line
        assert harness("status", ro).returncode == 0  # reading needs no writing
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
                d.chmod(0o755)
    assert sorted((str(p.relative_to(out)), p.stat().st_mtime_ns) for p in out.rglob("*")) == listing
    assert_resumed(config, out, before)


def fill(path: Path) -> None:
    """Append zeros to `path` until its file system is full."""
    with open(path, "ab", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * (1 << 16))
        except OSError:
            pass


@pytest.mark.slow
def test_full_disk(copy, tmp_path):
    """A grown grid run on a small tmpfs with little room left: the disk fills in the middle of the
    run (a shard, the journal or the tables); one line, exit 1; so does `report` on the full disk.
    Once space is freed the same command finishes, every trial once and the first four untouched."""
    config, src, before = copy
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)):
        pytest.skip("cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN) to fill a disk")
    try:
        out = mnt / "o"
        shutil.copytree(src, out, symlinks=True)
        grown = tmp_path / "grown.yaml"
        grown.write_text(yaml.safe_dump(tiny_raw("faults", {**FOUR, "seed": [0, 1, 2, 3]})))
        filler = mnt / "filler"
        fill(filler)
        os.truncate(filler, max(0, filler.stat().st_size - 100 * 1024))  # room for a trial or two
        line = one_line_error(harness(*run_cmd(grown, out)))
        assert "No space left on device" in line and str(out) in line and "the disk is full" in line, line
        fill(filler)
        line = one_line_error(harness("report", out))
        assert "No space left on device" in line and str(out) in line, line
        filler.unlink()
        p = harness(*run_cmd(grown, out))
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        after = runs_of(out)
        assert len(after) == 8 and after.index.is_unique
        for tid, row in before.iterrows():
            assert after.loc[tid, "started_at"] == row["started_at"] and after.loc[tid, "test_acc"] == row["test_acc"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.slow
def test_unreachable_storage_and_the_password_stays_out_of_every_file(copy, tmp_path):
    config, out, before = copy
    url = f"postgresql://harness:{PASSWORD}@localhost:1/x"  # nothing listens on port 1
    fresh = tmp_path / "fresh"
    for args in (run_cmd(config, fresh, "--storage", url), run_cmd(config, fresh, "--set", f"run.storage={url}"),
                 ["status", out, "--storage", url]):
        p = harness(*args)
        line = one_line_error(p)
        assert "cannot reach the storage database postgresql://harness:***@localhost:1/x" in line, line
        assert PASSWORD not in p.stderr + p.stdout
    assert not grep(fresh, PASSWORD) and not grep(out, PASSWORD)
    assert yaml.safe_load((fresh / "run.yaml").read_text())["storage"] == "postgresql://harness@localhost:1/x"
    assert_resumed(config, out, before)


@pytest.fixture
def pg_role():
    """A URL, with the password PASSWORD, of a throw-away role and database on the HARNESS_TEST_POSTGRES server."""
    admin = os.environ.get("HARNESS_TEST_POSTGRES")
    if not admin:
        pytest.skip("HARNESS_TEST_POSTGRES is not set (.ci/postgres.sh starts a local server and prints a URL)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    import uuid

    from sqlalchemy.engine import make_url

    role = f"faults_{uuid.uuid4().hex[:8]}"
    base = make_url(admin)
    conninfo = {"host": base.host, "port": base.port, "user": base.username, "password": base.password,
                "dbname": base.database}
    with psycopg.connect(**conninfo, autocommit=True) as db:  # a role and a database of its own
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        db.execute(f"CREATE DATABASE {role} OWNER {role}")
    yield base.set(username=role, password=PASSWORD, database=role).render_as_string(hide_password=False)
    with psycopg.connect(**conninfo, autocommit=True) as db:
        db.execute(f"DROP DATABASE {role} WITH (FORCE)")
        db.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_a_password_url_runs_and_status_reconnects_through_pgpassword(pg_role, tmp_path):
    import uuid

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_raw(f"pw-{uuid.uuid4().hex[:8]}", {"cell": ["rnn"], "pad_size": [12]})))
    out = tmp_path / "o"
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    p = harness(*run_cmd(config, out, "--storage", pg_role), env=env)
    assert p.returncode == 0 and "carries a password" in p.stderr and PASSWORD not in p.stderr, p.stderr
    assert not grep(out, PASSWORD)
    p = harness("status", out, env={**env, "PGPASSWORD": PASSWORD})  # libpq takes the password from PGPASSWORD
    assert p.returncode == 0 and "1/1 finished" in p.stdout, p.stderr


@pytest.mark.slow
def test_broken_pipe(copy):
    """`harness status DIR | head`: the reader goes away; the harness stops quietly."""
    _, out, _ = copy
    proc = subprocess.Popen([sys.executable, "-m", "harness", "status", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # before it writes anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b"", err.decode()


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_kill_9_of_the_main_process_leaves_no_worker_and_resumes(tmp_path):
    raw = tiny_raw("k9", {**FOUR, "layernorm": ["none", "output"]})
    raw["data"]["synth"]["n_train"] = 6000  # ~2 s per trial: the kill lands while workers train
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "o"
    main = subprocess.Popen([sys.executable, "-m", "harness", *run_cmd(config, out, "--workers", "2")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline, workers, running = time.time() + 240, set(), set()
    while time.time() < deadline:  # until a trial has finished and both workers run one
        time.sleep(0.2)
        if not (out / "optuna.journal").is_file() or not len(records.load(out)["runs"]):
            continue
        study = optuna.load_study(study_name="k9", storage=open_storage(out, None))
        running = {int(t.system_attrs["pid"]) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if "pid" in t.system_attrs}
        if len(running) == 2:
            workers = children(main.pid)
            break
    assert workers >= running, "the workers never both ran a trial"
    main.send_signal(signal.SIGKILL)
    main.wait(timeout=30)
    deadline = time.time() + 10
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "workers left running after the main process died"
    before = runs_of(out)
    assert 1 <= len(before) < 8
    p = harness(*run_cmd(config, out, "--workers", "2"))
    assert p.returncode == 0, p.stderr
    after = runs_of(out)
    assert len(after) == 8 and after.index.is_unique
    for tid, row in before.iterrows():  # what finished before the kill keeps its numbers
        assert after.loc[tid, "started_at"] == row["started_at"] and after.loc[tid, "test_acc"] == row["test_acc"]
    done = [t.user_attrs["trial_id"] for t in optuna.load_study(study_name="k9", storage=open_storage(out, None))
            .get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == len(set(done)) and set(done) <= set(after.index)  # none trained (and finished) twice


def test_a_trial_named_in_a_torn_line_is_run_again_at_once(tmp_path):
    """A full disk (or kill) cut the append that held a claimed trial's host, pid and heartbeat: the
    repair knows that trial's writer died, so it is failed as stale at once, not after the grace."""
    cfg = config_from_dict(tiny_raw("cut", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]}))
    plan = Plan(cfg, tmp_path, expand_grid(cfg, "d"), "d")
    storage = open_storage(tmp_path, None)
    study = queue.open_queue(plan, storage)
    queue.enqueue_missing(plan, study)
    victim = study.get_trials()[0]
    assert storage.set_trial_state_values(victim._trial_id, state=TrialState.RUNNING)  # the claim's state
    path = tmp_path / "optuna.journal"
    with open(path, "ab") as f:  # its attributes' append, cut short
        f.write(b'{"op_code":9,"worker_id":"w-1","trial_id":%d,"system_attr":{"host":"h' % victim._trial_id)
    fresh = queue.open_queue(plan, open_storage(tmp_path, None))  # opening repairs the journal
    assert queue.fail_stale(fresh, time.time()) == 1
    after = {t.number: t for t in fresh.get_trials()}
    assert after[victim.number].state == TrialState.FAIL and after[victim.number].user_attrs["status"] == "stale"
    assert after[1].state == TrialState.WAITING


# ----------------------------------------------------------------------------- the machine refuses a write (issue 29)

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"  # torch's writer, disk full


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__context__ = inner
    return outer


@pytest.mark.parametrize("error,code", [
    (OSError(28, "No space left on device"), 28),
    (OSError(122, "Disk quota exceeded"), 122),
    (PermissionError(13, "Permission denied"), 13),
    (OSError(30, "Read-only file system"), 30),
    (RuntimeError(TORCH_FULL), 28),  # no errno at all: a writable folder, so the disk
    (_chained(RuntimeError(TORCH_FULL), OSError(28, "No space left on device")), 28),  # a file object's write
    (_chained(RuntimeError("[enforce fail at inline_container.cc:603] . file write failed"),
              OSError(122, "Disk quota exceeded")), 122),
])
def test_a_refused_write_is_recognised_however_the_library_reports_it(tmp_path, error, code):
    from harness.files import NoRoom, no_room

    refused = no_room(error, tmp_path, needed=3 * 2**20)
    assert isinstance(refused, NoRoom) and refused.errno == code
    assert refused.filename == str(tmp_path)
    assert refused.strerror.startswith(os.strerror(code))
    if code in (28, 122):
        assert "MB free there" in refused.strerror and "the write needs about 3.0 MB" in refused.strerror


@pytest.mark.parametrize("error", [OSError(5, "Input/output error"), ValueError("x"), RuntimeError("CUDA error"),
                                   KeyError("step")])
def test_other_errors_are_not_a_refused_write(tmp_path, error):
    from harness.files import no_room

    assert no_room(error, tmp_path) is None


REFUSALS = {"ENOSPC": lambda: OSError(28, "No space left on device"),
            "EDQUOT": lambda: OSError(122, "Disk quota exceeded"),
            "EACCES": lambda: PermissionError(13, "Permission denied"),
            "EROFS": lambda: OSError(30, "Read-only file system"),
            "torch-writer": lambda: RuntimeError(TORCH_FULL)}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_refused_checkpoint_write_stops_the_trial_without_failing_it(tmp_path, monkeypatch, kind):
    """The writer of the checkpoint raises each kind of refusal: runner.execute raises NoRoom (no
    failed row, no shards), the checkpoint already there is untouched, no temporary file is left."""
    import torch
    from conftest import tiny_specs

    from harness import runner, train
    from harness.files import NoRoom

    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]}, epochs=2, batch_size=32, checkpoint_every=5)
    out = tmp_path / "out"
    ckpt = train.checkpoint_path(out, specs[0].trial_id)
    real_save, calls = torch.save, []

    def save(obj, f, *a, **kw):  # the first checkpoint is written, the second refused
        calls.append(1)
        if len(calls) > 1:
            f.write(b"partial")
            raise REFUSALS[kind]()
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(train.torch, "save", save)
    with pytest.raises(NoRoom) as e:
        runner.execute(specs[0], ds, torch.device("cpu"), out, {}, publish=False, checkpoint=ckpt)
    assert e.value.filename == str(ckpt.parent)
    assert not records.staged_path(out, specs[0].trial_id).exists() and not records.is_done(out, specs[0].trial_id)
    assert torch.load(ckpt, weights_only=True)["step"] == 5  # the previous checkpoint, whole
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]  # no temporary file left


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_refused_shard_write_stops_the_trial_without_failing_it(tmp_path, monkeypatch, kind):
    import torch
    from conftest import tiny_specs

    from harness import runner
    from harness.files import NoRoom

    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]}, save_model="last")
    out = tmp_path / "out"

    def save_weights(weights, path):
        raise REFUSALS[kind]()

    monkeypatch.setattr(records, "save_weights", save_weights)
    with pytest.raises(NoRoom) as e:
        runner.execute(specs[0], ds, torch.device("cpu"), out, {}, publish=False)
    assert e.value.filename == str(out / "trials")
    assert not records.staged_path(out, specs[0].trial_id).exists() and not records.is_done(out, specs[0].trial_id)


@pytest.mark.slow
def test_a_disk_full_mid_trial_stops_the_run_and_the_same_command_finishes_every_trial(tmp_path):
    """A 3 MB tmpfs that fills with checkpoints and kept weights mid-run: one line naming the folder,
    exit 1, no trial failed and no retry spent; run twice more on the full disk, the same; once there
    is room, the same command finishes every trial, each once and complete."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)):
        pytest.skip("cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN) to fill a disk")
    try:
        raw = tiny_raw("full", FOUR)
        raw["model"].update(embed_dim=32, hidden_size=128)  # LSTM weights of about 1 MB: checkpoints of ~5 MB
        raw["train"].update(epochs=2, batch_size=32, checkpoint_every=4, save_model="last")
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump(raw))
        out = mnt / "o"
        for _ in range(3):  # the retry of a failed trial would be spent by the second
            line = one_line_error(harness(*run_cmd(config, out)))
            assert "No space left on device" in line and str(out / "trials") in line and "MB free there" in line
            assert "the disk is full" in line, line
            shards = list((out / "trials").glob("*/runs.parquet")) if (out / "trials").is_dir() else []
            assert not any(records.read_trial(out, p.parent.name)["runs"]["status"].eq("failed").any()
                           for p in shards)
        assert _mount("-o", "remount,size=64m", str(mnt))
        p = harness(*run_cmd(config, out))
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        runs = runs_of(out)
        assert len(runs) == 4 and runs.index.is_unique and (runs["status"] == "complete").all()
        assert not list((out / "trials").glob(".ckpt-*"))  # no checkpoint nor temporary file left
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
