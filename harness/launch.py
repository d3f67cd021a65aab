"""`harness launch slurm CONFIG --jobs N --storage URL --artifacts DIR`: a Slurm job array of
`harness run` workers on one shared Optuna storage, submitted with submitit.

Each job is `harness run CONFIG --storage URL --artifacts DIR --out <its own folder>`: it claims
waiting trials from the shared storage (each trial runs exactly once, whichever job takes it), puts
every finished trial's shards into the shared artifact folder, and ends when no trial is left.
The launching machine's results folder (`--out`) gets the config and the storage settings only,
so `harness status DIR` and `harness report DIR` work there (and on any machine given the same
three things) while the jobs run and after. A job that hits its time limit or is preempted is
requeued (WorkerJob.checkpoint) and goes on where the grid stands: the trial it was training runs
again, from its checkpoint when the config sets train.checkpoint_every (a requeued job keeps its
id, so its folder, where the checkpoint is).

The job script is submitit's: it runs a pickled call, so the `harness run` command each job is
equivalent to is written into the script as a comment and printed as the first line of each job's
log. `--setup LINE` (repeatable) adds shell lines before it (module load, environment activation).

Storage across machines: PostgreSQL (the `postgres` extra), or an Optuna journal file on the file
system the nodes share. SQLite is refused for Slurm (its locks do not hold across machines), and a
journal, artifact or log folder on this machine's local disk is warned about.

`harness launch local ...` runs the same jobs as local processes (submitit's LocalExecutor): the
recipe on one machine, and what the tests use. They are this command's processes: it waits for
them (as --wait), and when it ends for any reason it can see (the jobs done, an error, Ctrl-C,
SIGTERM, SIGHUP) it stops every process of every job it started (the job controllers, the jobs,
their workers) and waits for them, so none is left running. More job processes than the
machine's cores are refused unless --allow-oversubscribe. A local job also requeues: sent the
preemption signal (SIGUSR2; submitit's controller sends it before the --time limit), it exits
with submitit's requeue code, its controller starts it again, and its trial resumes from its
checkpoint (train.checkpoint_every) in the job's own folder.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ConfigError, ExperimentConfig, config_from_dict, load_config
from harness.extras import install_hint, require
from harness.redact import redact_text, redact_url, without_password
from harness.results_dir import pid_alive

ENGINES = ("slurm", "local")
DEFAULT_TIME = "4:00:00"
JOB_ID = "<job id>"  # in the command written to the job script: each job's own id
# File system types that live on one machine's disks (/proc/mounts): a path there is not shared
# with the compute nodes (unless this machine exports it).
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "ramfs", "overlay",
                               "vfat", "exfat", "ntfs", "devtmpfs"})


@dataclass(frozen=True)
class LaunchSpec:
    """Where and how the workers run."""

    engine: str                  # slurm | local
    jobs: int                    # array size: how many jobs claim trials at once
    storage: str                 # Optuna storage every job shares (postgresql://…, sqlite:///… on one machine)
    artifacts: str               # shared folder: every job uploads its trials' shards here
    out: Path                    # this machine's results folder (config.yaml, run.yaml) for status/report
    logs: Path                   # submitit's folder (scripts, pickles, logs); must be shared with the nodes
    job_root: Path               # each job's own results folder is job_root/<job id>
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    workers_per_job: int = 1     # worker processes per job (one per GPU when it has GPUs)
    partition: str | None = None
    time_min: int = 240
    mem_gb: float | None = None
    slurm_args: dict[str, str] = field(default_factory=dict)  # more sbatch options, e.g. account, qos
    setup: tuple[str, ...] = ()  # shell lines each job runs first (module load, environment activation)
    python: str | None = None    # the Python command the job script runs (None: see job_python)

    @property
    def device(self) -> str:
        """The device list each job's workers share: cuda:0,…,cuda:K-1, or cpu."""
        if self.gpus_per_job <= 0:
            return "cpu"
        return ",".join(f"cuda:{i}" for i in range(self.gpus_per_job))

    @property
    def threads(self) -> int:
        """Torch threads per worker: the job's CPUs shared by its workers."""
        return max(1, self.cpus_per_job // max(1, self.workers_per_job))


def parse_time(text: str) -> int:
    """A Slurm time limit in minutes: 'M', 'M:S', 'H:M:S', 'D-H', 'D-H:M', 'D-H:M:S' (Slurm's forms)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ConfigError(f"--time {text!r}: expected minutes or [D-]H:M:S, e.g. 90, 4:00:00 or 1-12:00:00")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is None:
        if b is None:
            minutes, seconds = a, 0          # M
        elif c is None:
            minutes, seconds = a, b          # M:S
        else:
            minutes, seconds = a * 60 + b, c  # H:M:S
    else:
        minutes, seconds = days * 1440 + a * 60 + (b or 0), c or 0  # D-H[:M[:S]]
    total = minutes + (1 if seconds else 0)
    if total <= 0:
        raise ConfigError(f"--time {text!r}: the time limit must be positive")
    return total


def absolute_storage(url: str) -> str:
    """The storage URL with a relative SQLite or journal path made absolute (jobs may start elsewhere)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    if "://" not in url:
        return str(Path(url).resolve())
    return url


class WorkerJob:
    """What each job runs: the runner with `workers` processes into job_root/<job id>, against the
    shared storage and artifact folder. Returns the runner's status counts. Checkpointable: on its
    time limit or preemption (SIGUSR2) submitit calls `checkpoint` and requeues the same call, which
    resumes: the trial it was training runs again in the same folder (the job keeps its id), from
    its checkpoint (train.checkpoint_every). `launcher` (local jobs: the launching process's pid
    and start time): the job stops itself once that process has ended (see watch_launcher)."""

    def __call__(self, raw: dict[str, Any], job_root: str, storage: str, artifacts: str, device: str,
                 workers: int, threads: int, command: Sequence[str] = (),
                 launcher: tuple[int, int] | None = None) -> dict[str, int]:
        import submitit  # submitit and torch (and the runner): only inside a job
        import torch

        from harness import runner

        job_id = str(submitit.JobEnvironment().job_id)
        if command:  # the job's log starts with what it runs, as a command line
            print(f"harness: job {job_id} on {socket.gethostname()} runs the equivalent of: "
                  f"{shlex.join(a.replace(JOB_ID, job_id) for a in command)}", flush=True)
        if launcher is not None:  # a local job: started with Ctrl-C ignored (launch), stopped by SIGINT
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, _interrupt_once)
            watch_launcher(*launcher)
        torch.set_num_threads(threads)
        out = Path(job_root) / job_id
        try:
            return runner.run(config_from_dict(raw), out, workers=workers, storage=storage, device=device,
                              threads=threads, progress=False, artifacts=artifacts)
        except KeyboardInterrupt:
            if launcher is None:
                raise
            # stopped by `harness launch local` (or watch_launcher): one line in the job's log, no traceback;
            # an exit code other than submitit's requeue code, so its controller ends too
            print(f"harness: job {job_id} stopped; its workers are stopped, its finished trials kept",
                  file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission  # submitit: only inside a job

        return DelayedSubmission(self, *args, **kwargs)


def _interrupt_once(signum: int, frame: Any) -> None:
    """A local job's SIGINT handler: KeyboardInterrupt, once (a terminal's Ctrl-C and the launching
    command's stop may both arrive; the second must not cut the job's stopping of its workers short)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def watch_launcher(pid: int, start: int, poll_s: float = 1.0) -> None:
    """A local job's thread that interrupts the job (SIGINT: it stops its workers and ends, and is
    not requeued) once the `harness launch local` process that started it (`pid`, started at
    `start`) has ended, also when that process was killed too hard (SIGKILL, the OOM killer) to stop
    its jobs itself."""
    def watch() -> None:
        while process_alive(pid, start):
            time.sleep(poll_s)
        print(f"harness: the launching process (pid {pid}) has ended: stopping this job", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="watch launcher", daemon=True).start()


def job_command(spec: LaunchSpec, job_id: str = JOB_ID) -> list[str]:
    """The `harness run` command a job is equivalent to (its config: OUT/config.yaml, the resolved
    config as run; its folder: JOB_ROOT/<job id>; the storage URL without its password)."""
    return ["harness", "run", str(spec.out / "config.yaml"), "--out", str(spec.job_root / job_id),
            "--storage", without_password(spec.storage) or spec.storage, "--artifacts", spec.artifacts,
            "--device", spec.device, "--workers", str(spec.workers_per_job), "--set", f"run.threads={spec.threads}",
            "--quiet"]


def mount_of(path: Path, mounts: str | None = None) -> tuple[str, str, str] | None:
    """(mount point, file system type, options) of the mount holding `path` (its nearest existing
    folder), from /proc/mounts (or `mounts`, that file's text); None where unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    best: tuple[str, str, str] | None = None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        point = parts[1].replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and (best is None or len(point) > len(best[0])):
            best = (point, parts[2], parts[3])
    return best


def sharing_warnings(spec: LaunchSpec, mounts: str | None = None) -> list[str]:
    """Slurm: the paths every node must reach (a journal storage, --artifacts, --logs) that sit on
    this machine's local disk, and a journal on Lustre mounted with node-local locks."""
    if spec.engine != "slurm":
        return []
    paths = {"--artifacts": spec.artifacts, "--logs": str(spec.logs)}
    if "://" not in spec.storage:
        paths = {"--storage (journal file)": spec.storage, **paths}
    out = []
    for what, path in paths.items():
        mount = mount_of(Path(path), mounts)
        if mount is None:
            continue
        point, kind, options = mount
        if kind in LOCAL_FILESYSTEMS:
            out.append(f"{what} {path} is on this machine's local disk ({kind} at {point}): jobs on other nodes "
                       f"will not see it. Put it on the file system the nodes share (ignore this if {point} "
                       f"is exported to them)")
        elif what.startswith("--storage") and kind == "lustre" and "localflock" in options.split(","):
            out.append(f"{what} {path} is on Lustre mounted with localflock: its lock holds on one node only, so "
                       f"jobs on several nodes can corrupt the journal. Use a mount with -o flock, or PostgreSQL")
    return out


def check_storage(spec: LaunchSpec) -> list[str]:
    """Refuse a storage the jobs cannot share (SQLite for Slurm) or reach without a driver this
    machine lacks; return warnings about paths the nodes may not see."""
    url = spec.storage
    if spec.engine == "slurm" and url.startswith("sqlite"):
        raise ConfigError(
            f"--storage {redact_url(url)}: SQLite cannot be shared by the jobs of a Slurm array: they run on "
            f"different nodes, and SQLite's file locks do not hold across machines (over NFS or Lustre several "
            f"writers corrupt the file or stall on 'database is locked'). Use PostgreSQL (--storage "
            f"postgresql://user@host/db; {install_hint('postgres')}) or an Optuna journal file on the shared file "
            f"system (--storage /shared/path/optuna.journal). SQLite is fine for `harness launch local`")
    if url.startswith("postgresql"):
        _check_driver(url)
    return sharing_warnings(spec)


def _check_driver(url: str) -> None:
    """The database driver a postgresql:// URL needs is importable here, else a ConfigError that
    names the extra providing it."""
    import sqlalchemy

    try:
        sqlalchemy.engine.make_url(url).get_dialect().import_dbapi()
    except ImportError as e:
        raise ConfigError(f"--storage {redact_url(url)}: the PostgreSQL driver is not installed ({e}); install it "
                          f"with: {install_hint('postgres')}") from e
    except Exception:  # not a URL SQLAlchemy reads: opening it says so, with the usual message
        return


def _topmost_missing(path: Path) -> Path | None:
    """The outermost folder (or file) on the way to `path` that does not exist yet; None if it exists."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def _storage_files(url: str) -> list[Path]:
    """The local files a SQLite or journal storage writes (the store and its lock or side files)."""
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        return [db, *(Path(f"{db}{s}") for s in ("-journal", "-wal", "-shm", ".harness.lock"))]
    if "://" not in url:
        return [Path(url), *(Path(f"{url}{s}") for s in (".flock", ".lock", ".enqueue.lock"))]
    return []


@contextmanager
def undo_on_failure(spec: LaunchSpec) -> Iterator[None]:
    """On an error inside, remove what launch created: the results, log and job folders (and the
    folders above them) and a local storage file, each only if it did not exist before."""
    roots = [spec.out, spec.logs, spec.job_root, *_storage_files(spec.storage)]
    created = [m for p in roots if (m := _topmost_missing(p)) is not None]
    try:
        yield
    except BaseException:
        for path in dict.fromkeys(created):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        raise


def prepare_results_dir(cfg: ExperimentConfig, spec: LaunchSpec) -> None:
    """Write this machine's results folder (config.yaml, run.yaml naming the storage and artifacts)
    and open the storage once: a bad URL or a config that clashes with DIR fails here, before any
    job is queued, and the jobs do not race to create the storage's tables."""
    # start-up: `harness launch --dry-run` needs none of these; Optuna with the storage
    from harness.plan import check_existing, make_plan, write_config
    from harness.queue import open_queue
    from harness.storage import RunSettings, open_storage, redact_text, redact_url, write_run_settings

    check_existing(cfg, spec.out)
    spec.out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, spec.out)
    write_config(plan)
    write_run_settings(spec.out, RunSettings(storage=spec.storage, artifacts=spec.artifacts))
    try:
        open_queue(plan, open_storage(spec.out, spec.storage))
    except Exception as e:  # sqlalchemy/psycopg errors: a usage error to the user
        raise ConfigError(f"--storage {redact_url(spec.storage)!r}: cannot open it from this machine "
                          f"({type(e).__name__}: {redact_text(str(e))}); every job must reach it too") from e


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_resources(cfg: ExperimentConfig, spec: LaunchSpec, oversubscribe: bool = False) -> None:
    """Before anything is written: local jobs fit this machine's cores (each job is a process with
    its workers; unless `oversubscribe`), and the config's sizes fit a worker (plan.check_bounds:
    this machine's memory for local jobs; a Slurm node checks its own when its job starts)."""
    from harness.plan import check_bounds  # start-up: the planner (Optuna) only when a launch is checked

    processes = spec.jobs * spec.workers_per_job
    if spec.engine == "local" and not oversubscribe and processes > cores():
        fit = max(1, cores() // spec.workers_per_job)
        raise ConfigError(f"--jobs {spec.jobs}: {spec.jobs} local job(s) × {spec.workers_per_job} worker(s) is more "
                          f"processes than this machine's {cores()} cores; use --jobs {fit} or fewer "
                          f"(--allow-oversubscribe starts them all anyway)")
    check_bounds(cfg, "machine" if spec.engine == "local" else None)


def job_python(spec: LaunchSpec) -> str:
    """The Python command a Slurm job script runs: --python; else, after --setup lines, `python` (the one
    they put first on PATH: an activated environment's); else this machine's interpreter (its path)."""
    if spec.python:
        return spec.python
    return "python" if spec.setup else shlex.quote(sys.executable)


SLURM_JOB_ID = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"  # a job's id in the script: as submitit names it


def setup_lines(spec: LaunchSpec) -> list[str]:
    """The job script's setup: the user's lines, then (Slurm) the `harness run` command each job is
    equivalent to, as a comment and as an echo line that writes it (the job's own id filled in) at the
    top of the job's log. Local jobs chain setup lines with &&, where a comment would swallow the command."""
    if spec.engine != "slurm":
        return list(spec.setup)
    marker = "HARNESSJOBID"
    run = shlex.join(job_command(spec, marker)).replace(marker, SLURM_JOB_ID)
    return [*spec.setup, "# harness: each job does the work of this command (<job id>: the job's own id), run",
            "# through submitit (below), which requeues a job at its time limit:",
            "# " + shlex.join(job_command(spec)),
            f'echo "harness: job {SLURM_JOB_ID} on $(hostname) runs the equivalent of: {run}"']


def slurm_parameters(spec: LaunchSpec, name: str) -> dict[str, Any]:
    """The submitit (AutoExecutor) parameters of the job's resources: its setup lines, a GPU request only
    for GPU jobs, no wckey unless --slurm-arg wckey=… asks for one (submitit's default is 'submitit')."""
    params: dict[str, Any] = {"name": name, "timeout_min": spec.time_min, "cpus_per_task": spec.cpus_per_job,
                              "tasks_per_node": 1, "nodes": 1, "slurm_array_parallelism": spec.jobs,
                              f"{spec.engine}_setup": setup_lines(spec)}
    if spec.engine == "slurm":
        params["slurm_wckey"] = None  # --slurm-arg wckey=… sets it as any other sbatch option
    if spec.gpus_per_job > 0:  # a CPU job asks for no GPU at all (not --gpus-per-node=0)
        params["gpus_per_node"] = spec.gpus_per_job
    if spec.mem_gb is not None:
        params["mem_gb"] = spec.mem_gb
    if spec.partition:
        params["slurm_partition"] = spec.partition
    if spec.slurm_args:
        params["slurm_additional_parameters"] = dict(spec.slurm_args)
    return params


def dry_run_script(spec: LaunchSpec, name: str) -> str:
    """The sbatch script `launch` would submit for `spec` (the job array), made without sbatch or srun
    and without writing anything."""
    require("submitit", "slurm", "harness launch slurm --dry-run")
    from submitit.slurm.slurm import SlurmExecutor  # submitit: an optional library, checked by `require` above

    class _Script(SlurmExecutor):  # submitit's own script maker, off a Slurm machine
        @classmethod
        def affinity(cls) -> int:
            return 2

    ex = slurm_executor(spec, name, _Script)
    ex.parameters["map_count"] = spec.jobs
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")


def slurm_executor(spec: LaunchSpec, name: str, cls: Any = None) -> Any:
    """A submitit SlurmExecutor (or `cls`) with `slurm_parameters`, made directly rather than through
    AutoExecutor, which treats None as "not set" and so cannot leave submitit's wckey out. Raises
    RuntimeError off a Slurm machine (no srun)."""
    if cls is None:
        from submitit.slurm.slurm import SlurmExecutor as cls  # submitit: an optional library, only on a Slurm machine
    ex = cls(folder=str(spec.logs / "%j"), python=job_python(spec))
    params = {k.removeprefix("slurm_"): v for k, v in slurm_parameters(spec, name).items()}
    ex.update_parameters(**ex._convert_parameters(params))  # name -> job_name, mem_gb -> mem, …
    return ex


def make_executor(spec: LaunchSpec, name: str) -> Any:
    """A submitit executor for the engine with the job's resources: its setup lines, and a GPU
    request only for GPU jobs. Raises ConfigError off a Slurm machine, before anything is written."""
    submitit = require("submitit", "slurm", f"harness launch {spec.engine}")
    try:
        if spec.engine == "slurm":
            executor = slurm_executor(spec, name)
            spec.logs.mkdir(parents=True, exist_ok=True)
            return executor
        executor = submitit.AutoExecutor(folder=str(spec.logs / "%j"), cluster=spec.engine)
    except RuntimeError as e:  # e.g. no srun: not a Slurm machine
        raise ConfigError(f"harness launch {spec.engine}: {e} (`harness launch local` runs the same jobs "
                          f"on this machine)") from e
    spec.logs.mkdir(parents=True, exist_ok=True)
    executor.update_parameters(**slurm_parameters(spec, name))
    return executor


def launch(cfg: ExperimentConfig, spec: LaunchSpec, oversubscribe: bool = False) -> list[Any]:
    """Prepare the results folder and submit `spec.jobs` worker jobs (one Slurm array). Returns the
    submitit jobs (`job.job_id`, `job.result()` -> the runner's status counts). Local jobs beyond
    the cores are refused unless `oversubscribe`; local jobs run until the caller stops them
    (`LocalProcesses(jobs).stop()`, as launch_from_args does), or until this process ends."""
    if spec.engine not in ENGINES:
        raise ConfigError(f"harness launch {spec.engine!r}: choose one of {', '.join(ENGINES)}")
    if spec.jobs < 1:
        raise ConfigError(f"--jobs {spec.jobs}: at least one job")
    if spec.setup and any("\n" in line for line in spec.setup):
        raise ConfigError("--setup: one shell line per --setup (repeat it for more lines)")
    check_resources(cfg, spec, oversubscribe)
    with undo_on_failure(spec):  # a failed check or submission leaves no folder behind
        executor = make_executor(spec, f"harness-{cfg.name}")  # off a Slurm machine: refused here
        for warning in check_storage(spec):
            print(f"harness: warning: {warning}", file=sys.stderr)
        prepare_results_dir(cfg, spec)
        args = (cfg.to_dict(), str(spec.job_root), spec.storage, spec.artifacts, spec.device,
                spec.workers_per_job, spec.threads, job_command(spec))
        if spec.engine == "local":  # its jobs end with it (LocalProcesses; watch_launcher if it is killed)
            me = _stat("self")
            if me is not None and len(me) > 19:
                args = (*args, (os.getpid(), int(me[19])))
        try:
            if spec.engine == "local":  # one by one: those started before a failure are stopped again
                jobs: list[Any] = []
                try:
                    for _ in range(spec.jobs):
                        with _sigint_ignored():  # inherited: a terminal's Ctrl-C reaches this command only
                            jobs.append(executor.submit(WorkerJob(), *args))
                except BaseException:
                    LocalProcesses(jobs).stop()
                    raise
            else:
                with executor.batch():
                    jobs = [executor.submit(WorkerJob(), *args) for _ in range(spec.jobs)]
        except (OSError, RuntimeError) as e:  # no sbatch on this machine, sbatch refused the array, ...
            raise ConfigError(f"harness launch {spec.engine}: submitting the jobs failed: {e}") from e
    return jobs


# ----------------------------------------------------------------------------- command line

def spec_from_args(args: argparse.Namespace, cfg: ExperimentConfig) -> LaunchSpec:
    out = Path(args.out or Path("results") / cfg.name).resolve()
    logs = Path(args.logs).resolve() if args.logs else out / "launch"
    gpus = args.gpus_per_job
    workers = args.workers_per_job or max(1, gpus)
    slurm_args = {}
    for item in args.slurm_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm-arg {item!r}: expected KEY=VALUE, e.g. account=myproject")
        slurm_args[key.strip().replace("-", "_")] = value.strip()
    return LaunchSpec(
        engine=args.engine, jobs=args.jobs, storage=absolute_storage(args.storage),
        artifacts=str(Path(args.artifacts).resolve()), out=out, logs=logs,
        job_root=Path(args.job_root).resolve() if args.job_root else logs / "results",
        gpus_per_job=gpus, cpus_per_job=args.cpus_per_job or workers, workers_per_job=workers,
        partition=args.partition, time_min=parse_time(args.time), mem_gb=args.mem_gb, slurm_args=slurm_args,
        setup=tuple(args.setup), python=args.python)


# ----------------------------------------------------------------------------- local jobs: watched, then reaped

class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached `harness launch local`: it stops its jobs as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored inside, so that the processes started here inherit that: a local job's
    controller then ignores it (it ends when its job does; a KeyboardInterrupt there would print a
    traceback onto this command's terminal), and so does its job until WorkerJob makes SIGINT stop
    it (one line in the job's log). This command stops them all in order (LocalProcesses)."""
    if not _in_main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise Terminated in the main thread (by default they end the process
    at once, leaving its local jobs running); the previous handlers after."""
    if not _in_main_thread():  # signal handlers are the main thread's
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, raise_terminated) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (so [0] is the state, [1] the parent pid,
    [19] the start time); None where there is no such process (or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process, from /proc (empty without it)."""
    table: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        fields = _stat(name) if name.isdigit() else None
        if fields is not None and len(fields) > 19:
            table[int(name)] = (int(fields[1]), int(fields[19]))
    return table


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether process `pid` runs (a zombie does not) and, given its start time, is that process (not a
    later one that reuses the pid). Without /proc: whether the pid answers a signal."""
    if start is None or not Path("/proc/self/stat").exists():
        return pid_alive(pid)
    fields = _stat(pid)
    return fields is not None and len(fields) > 19 and fields[0] not in ("Z", "X") and int(fields[19]) == start


class LocalProcesses:
    """Every process of the local jobs this command started: each job's submitit controller (or the
    shell that runs its setup lines first), the job it runs (again, when the job is requeued) and the
    job's worker processes. `watch` notes the process trees (pid and start time, from /proc) while
    the jobs run, so that `stop` finds a process also after its parent has died."""

    def __init__(self, jobs: list[Any]):
        self.jobs = jobs  # submitit LocalJobs (the caller's list: it may be filled later)
        self.seen: dict[int, int] = {}  # pid -> start time

    def _controllers(self) -> list[Any]:
        """The Popen objects of the jobs' controllers: this process's children."""
        return [p for j in self.jobs if (p := getattr(j, "_process", None)) is not None]

    def watch(self) -> None:
        """Note the processes now descending from a running controller or from a noted process that
        still runs."""
        table = _proc_table()
        if not table:  # no /proc: the controllers only
            self.seen.update({p.pid: 0 for p in self._controllers() if p.poll() is None})
            return
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        roots = [p.pid for p in self._controllers() if p.poll() is None]
        roots += [pid for pid, start in self.seen.items() if pid in table and table[pid][1] == start]
        while roots:
            pid = roots.pop()
            if pid in table:
                self.seen[pid] = table[pid][1]
                roots += [c for c in children.get(pid, ()) if c not in self.seen]

    def alive(self) -> list[int]:
        """The noted processes that still run (the same processes: pid and start time)."""
        return [pid for pid, start in self.seen.items() if process_alive(pid, start or None)]

    def wait(self, poll_s: float = 1.0) -> None:
        """Wait until every job's controller has ended, noting the process trees meanwhile."""
        while any(p.poll() is None for p in self._controllers()):
            self.watch()
            time.sleep(poll_s)

    def stop(self, grace_s: float = 10.0) -> int:
        """Stop every noted process that still runs and wait for each: SIGINT first (a job then stops its
        workers and ends, and its controller with it; controllers and workers ignore it), SIGKILL to
        those left after `grace_s`.
        Ctrl-C, SIGTERM and SIGHUP are ignored meanwhile: a second one does not cut the stopping short.
        Returns how many processes were running."""
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, *STOP_SIGNALS)} \
            if _in_main_thread() else {}
        try:
            self.watch()
            running = self.alive()
            if running:
                jobs = sum(p.poll() is None for p in self._controllers())
                print(f"harness: stopping {jobs} local job(s) ({len(running)} process(es))", file=sys.stderr,
                      flush=True)
            for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
                for pid in self.alive():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + wait_s
                while time.monotonic() < deadline:
                    for p in self._controllers():
                        p.poll()  # reaps a controller that ended (this process's child)
                    self.watch()  # one starting meanwhile (a requeued job, a worker) is stopped too
                    if not self.alive():
                        break
                    time.sleep(0.05)
                else:
                    continue
                break
            for p in self._controllers():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5.0)
            return len(running)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def launch_from_args(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    spec = spec_from_args(args, cfg)
    if args.dry_run:
        if spec.engine != "slurm":
            raise ConfigError("--dry-run goes with `harness launch slurm` (it prints the job script)")
        if any("\n" in line for line in spec.setup):
            raise ConfigError("--setup: one shell line per --setup (repeat it for more lines)")
        print(dry_run_script(spec, f"harness-{cfg.name}"), end="")
        return 0
    if spec.engine != "local":
        jobs = launch(cfg, spec, oversubscribe=args.allow_oversubscribe)
        try:
            return _announce(cfg, spec, jobs, args.wait)
        finally:
            # submitit's LocalJob.__del__ fails when it first runs during interpreter shutdown: free them now.
            jobs.clear()
            gc.collect()
    # Local jobs are this command's processes: it waits for them, and stops every one of them when it
    # ends, also on Ctrl-C, SIGTERM, SIGHUP or an error.
    jobs = []
    procs = LocalProcesses(jobs)
    with stop_signals_raise():
        try:
            jobs.extend(launch(cfg, spec, oversubscribe=args.allow_oversubscribe))
            return _announce(cfg, spec, jobs, True, procs)
        except Terminated as e:
            print(f"harness: {signal.Signals(e.signum).name} received: stopping the local jobs; run the same "
                  f"command again to resume", file=sys.stderr, flush=True)
            return 128 + e.signum
        finally:
            procs.stop()
            # submitit's LocalJob.__del__ fails when it first runs during interpreter shutdown: free them now.
            jobs.clear()
            gc.collect()


def _announce(cfg: ExperimentConfig, spec: LaunchSpec, jobs: list[Any], wait: bool,
              procs: LocalProcesses | None = None) -> int:
    """Print the job ids and how to watch and report; with `wait`, each job's counts (local jobs:
    `procs` notes their processes meanwhile). Exit code."""
    ids = [str(j.job_id) for j in jobs]
    print(f"submitted {len(ids)} {spec.engine} job(s) of experiment {cfg.name!r}: {' '.join(ids)}")
    print(f"  each: {spec.workers_per_job} worker(s) on {spec.device}, {spec.threads} torch thread(s) per worker, "
          f"time limit {spec.time_min} min; logs in {spec.logs}")
    print(f"watch:  harness status {spec.out}")
    print(f"report: harness report {spec.out}   (fetches every finished trial from {spec.artifacts})")
    if not wait:
        return 0
    if procs is not None:
        procs.wait()
    missing = 0
    for job in jobs:
        try:
            counts = job.result()
        except Exception as e:
            print(f"job {job.job_id} failed: {redact_text(str(e))}")
            missing += 1
            continue
        missing = max(missing, counts.get("missing", 0))
        print(f"job {job.job_id}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0 if missing == 0 else 1


def add_launch_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    """The `launch` subcommand and its arguments."""
    la = sub.add_parser("launch", help="submit a Slurm job array of workers on a shared storage (submitit)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    la.add_argument("engine", choices=ENGINES,
                    help="slurm: sbatch a job array; local: the same jobs as processes on this machine")
    la.add_argument("config", help="experiment YAML, e.g. configs/bench.yaml")
    la.add_argument("--jobs", type=int, required=True, help="number of jobs in the array (workers claiming trials)")
    la.add_argument("--storage", required=True,
                    help="Optuna storage every job reaches: postgresql://user@host/db (the 'postgres' extra), or a "
                         "journal file on the shared file system (/shared/path/optuna.journal); sqlite:///path "
                         "only for local jobs (refused for slurm)")
    la.add_argument("--artifacts", required=True, metavar="DIR",
                    help="folder every job and this machine reach (shared file system): the trials' shards")
    la.add_argument("--gpus-per-job", type=int, default=0, metavar="K",
                    help="GPUs per job (default 0: CPU); the job runs one worker per GPU")
    la.add_argument("--cpus-per-job", type=int, metavar="C",
                    help="CPU cores per job, shared by its workers as torch threads (default: one per worker)")
    la.add_argument("--workers-per-job", type=int, metavar="W",
                    help="worker processes per job (default: one per GPU, or 1)")
    la.add_argument("--partition", metavar="P", help="Slurm partition (default: the cluster's)")
    la.add_argument("--time", default=DEFAULT_TIME, metavar="T",
                    help=f"time limit per job, minutes or [D-]H:M:S (default {DEFAULT_TIME}); a job that hits "
                         f"it is requeued and resumes")
    la.add_argument("--mem-gb", type=float, metavar="GB", help="memory per job in GB (default: the cluster's)")
    la.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="another sbatch option, e.g. --slurm-arg account=myproject --slurm-arg qos=low (repeatable)")
    la.add_argument("--setup", action="append", default=[], metavar="LINE",
                    help="a shell line each job runs before the harness, e.g. --setup 'module load cuda/12.4' "
                         "--setup 'source /shared/venv/bin/activate' (repeatable; in order)")
    la.add_argument("--python", metavar="CMD",
                    help="slurm: the Python each job runs (default: `python` after --setup lines, which choose it, "
                         "e.g. by activating an environment; without them this machine's, by its path)")
    la.add_argument("--dry-run", action="store_true",
                    help="slurm: print the job script (#SBATCH lines, --setup lines, the `harness run` command each "
                         "job does the work of) and submit nothing, write nothing")
    la.add_argument("--out", help="this machine's results folder for status and report (default results/<name>)")
    la.add_argument("--logs", metavar="DIR",
                    help="submitit's folder for job scripts and logs; the nodes must reach it (default OUT/launch)")
    la.add_argument("--job-root", metavar="DIR",
                    help="each job's own results folder is DIR/<job id> (default LOGS/results)")
    la.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set model.hidden_size=64 (repeatable)")
    la.add_argument("--wait", action="store_true",
                    help="wait for every job and print its counts (local jobs: always; they are stopped when "
                         "this command ends)")
    la.add_argument("--allow-oversubscribe", action="store_true",
                    help="local: start more job processes (jobs × workers per job) than this machine has cores "
                         "(refused otherwise)")
    la.set_defaults(func=func)
