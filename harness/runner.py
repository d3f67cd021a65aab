"""The runner: starts the worker processes and runs trials in them. Orchestration only.

`run` plans the experiment (harness.plan), enqueues what is not done (harness.queue), starts
`workers` spawned processes that each claim and run trials until none is waiting (`worker_loop`),
and watches them: progress lines as shards appear, a worker that died is named, Ctrl-C stops them
all. Every worker count runs the same way, in spawned processes. With adaptive seeds it runs in
rounds: after each, the seeds still needed are re-decided from the finished trials (harness.adaptive)
and enqueued; a worker that runs out of trials does the same before it stops.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna import Trial
from optuna.trial import TrialState
from tqdm import tqdm

from harness import __version__
from harness import data as data_mod
from harness import study as study_mod
from harness.config import ExperimentConfig, TrialSpec
from harness.device import check_cuda_graph, resolve_device
from harness.export import live
from harness.files import NoRoom, no_room
from harness.plan import Plan, check_bounds, make_plan, prepare_data, runs_in_rounds, write_adaptive, write_config
from harness.progress import Progress
from harness.queue import (
    GroupHeartbeat,
    Heartbeat,
    add_reruns,
    any_waiting,
    claim,
    claim_matching,
    enqueue_missing,
    enqueue_slots,
    finish,
    finished_elsewhere,
    open_queue,
    open_searches,
    running_elsewhere,
    running_trials,
    searches_finished,
    set_user_attrs,
    state_of,
    trial_key,
)
from harness.records import (
    TrialRecorder,
    combine,
    publish_trial,
    quarantine_damaged,
    remove_orphan_stages,
    stage_trial,
    staged_path,
    verify_trial,
    write_trial,
)
from harness.redact import has_password, redact_text, redact_url
from harness.results_dir import (
    RunSettings,
    cache_dir,
    check_existing,
    load_results_config,
    read_run_settings,
    write_run_settings,
)
from harness.schema import SUMMARY_COLUMNS
from harness.storage import artifact_store, download_artifacts, open_storage, upload_shards
from harness.train import checkpoint_path, remove_stale_checkpoint_tmps, run_trial, settings_columns
from harness.train_fused import check_fusable, fusable, fusable_key, fuse_size, run_fused

SUMMARY_ATTRS = SUMMARY_COLUMNS  # the runs columns copied onto each Optuna trial


class WorkerDied(RuntimeError):
    """A worker process ended with a non-zero exit code (killed, or crashed outside a trial)."""


# ----------------------------------------------------------------------------- one trial, one worker

def git_commit() -> str | None:
    """The commit of the harness's checkout, or None outside git (an installed wheel)."""
    return _git("rev-parse", "HEAD")


def git_dirty() -> bool | None:
    """Whether the harness's checkout has uncommitted changes to tracked files; None outside git."""
    if git_commit() is None:
        return None
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return None if changes is None else bool(changes)


def _git(*args: str) -> str | None:
    """`git ARGS` run in the harness's folder: its stripped output, or None when git fails."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() if args[0] == "status" else (out.stdout.strip() or None)


def provenance() -> dict[str, Any]:
    """What ran the trials: the harness version, and its git commit and dirty flag in a checkout."""
    return {"git_commit": git_commit(), "git_dirty": git_dirty(), "harness_version": __version__}


def execute(spec: TrialSpec, dataset: data_mod.Dataset, device: torch.device, out_dir: Path,
            extra: dict[str, Any], recorder: TrialRecorder | None = None, publish: bool = True,
            checkpoint: Path | None = None) -> dict[str, Any]:
    """Run one trial, catching any error as a `failed` row, and write its shards (published, or with
    `publish=False` only staged: records.stage_trial). Returns the row. `checkpoint`: the trial's
    checkpoint file (train.run_trial resumes from it and, with train.checkpoint_every, writes it)."""
    recorder = recorder or TrialRecorder(spec.trial_id)
    try:
        row = run_trial(spec, dataset, device, recorder, checkpoint=checkpoint)
    except Exception as e:  # a failing trial is recorded, the grid goes on
        _raise_no_room(e, out_dir)  # unless the machine refused a write: not the trial's fault
        error = f"{type(e).__name__}: {e}"
        recorder.set_run(**settings_columns(spec), status="failed", error=error,
                         traceback=traceback.format_exc(limit=8), dataset=dataset.name,
                         device=str(device), torch_version=torch.__version__)
        row = recorder.rows["runs"][0]
    row.update(extra)
    recorder.rows["runs"][0] = row
    _write_shards(out_dir, spec.trial_id, recorder, publish)
    return row


NO_ROOM_EXIT = 75  # a worker's exit code when the machine refused a write (EX_TEMPFAIL): the run stops


def _raise_no_room(e: BaseException, out_dir: Path) -> None:
    """Raise `e` as files.NoRoom when it is a write the machine refused (no space, over quota, no
    permission, read-only; however torch reports it), naming its folder (DIR/trials unless the error
    names a file). Such a trial is not failed: the run stops and the trial waits for the next run."""
    refused = no_room(e, Path(out_dir) / "trials")
    if refused is not None:
        raise refused from None


def _write_shards(out_dir: Path, trial_id: str, recorder: TrialRecorder, publish: bool) -> None:
    """Write (publish, or only stage) a finished trial's shards and kept weights; a write the machine
    refuses raises files.NoRoom (the staged folder is gone with it: the trial runs again)."""
    try:
        (write_trial if publish else stage_trial)(out_dir, trial_id, recorder.tables(), recorder.weights)
    except (OSError, RuntimeError) as e:
        _raise_no_room(e, out_dir)
        raise


TOP_UP_WAIT_S = 1.0  # adaptive seeds: how often an idle worker looks again while trials run elsewhere


def worker_loop(out_dir: str | Path, storage_url: str | None, device_name: str, threads: int | None,
                worker: int = 0, artifacts: str | None = None) -> int:
    """Claim and run trials until none is waiting. With adaptive seeds, a worker that finds nothing
    tops the queue up from the finished trials, and waits while trials that may add seeds still run
    (on any worker, in any command on the storage). Returns how many this worker ran."""
    out_dir = Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    cfg = load_results_config(out_dir)
    plan = make_plan(cfg, out_dir)
    storage = open_storage(out_dir, storage_url)
    searches = open_searches(plan, storage, worker) if cfg.study else {}
    add_reruns(plan, searches)
    queues = [*searches.values(), open_queue(plan, storage)]
    store = artifact_store(artifacts)
    device = resolve_device(device_name)
    datasets: dict[str, data_mod.Dataset] = {}  # by data.encoding_key(spec.data)
    extra = {**provenance(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    fuse = fuse_size(cfg.run.fuse, device)  # trials per fused group; 1: each trial on its own
    # Which worker, and which results folder its shards go to: written with the claim.
    stamp = {"worker": worker, "folder": read_run_settings(out_dir).folder_id}
    ran = 0
    while True:
        claimed = next((c for q in queues if (c := claim(q, stamp)) is not None), None)
        if claimed is None and runs_in_rounds(cfg):  # adaptive seeds, a budget check
            if _top_up(plan, queues[-1]):
                continue
            if running_elsewhere([queues[-1]]):  # their outcomes may add seeds: wait for them, do not exit
                time.sleep(TOP_UP_WAIT_S)
                continue
        if claimed is None:
            return ran
        trial, key = claimed
        spec, recorder = _trial_spec(plan, searches, trial, key)
        if spec is None:  # queued by an earlier config whose grid has since shrunk: not ours to run
            trial.set_user_attr("status", "not in config")
            trial.study.tell(trial, state=TrialState.FAIL)
            continue
        data_key = data_mod.encoding_key(spec.data)
        if data_key not in datasets:
            datasets[data_key] = data_mod.load(spec.data, cache_dir(out_dir))
        graph = spec.train.cuda_graph and device.type == "cuda"  # the graph captures the fused step
        if (fuse > 1 or graph) and fusable(spec) is None:  # a search trial, or a plugin's cell, trains alone
            more = _claim_companions(plan, searches, trial, spec, fuse - 1, stamp) if fuse > 1 else []
            if more or graph:
                group = [(trial, key, spec, recorder), *more]
                ran += _run_group(group, datasets[data_key], device, out_dir, extra, cfg, store)
                live.finish(r for *_, r in group)
                continue
        with Heartbeat(trial):  # a requeued or restarted trial resumes from its checkpoint (if it left one)
            row = execute(spec, datasets[data_key], device, out_dir, extra, recorder, publish=False,
                          checkpoint=checkpoint_path(out_dir, spec.trial_id))
        live.finish([recorder])
        _tell(trial, key, row, cfg, store, out_dir, spec.trial_id)
        ran += 1


def execute_fused(specs: list[TrialSpec], dataset: data_mod.Dataset, device: torch.device, out_dir: Path,
                  extra: dict[str, Any], recorders: list[TrialRecorder], publish: bool = True
                  ) -> list[dict[str, Any]]:
    """Run fusable trials as one fused group (harness.train_fused.run_fused), then per trial what
    `execute` does: add `extra` and `fused_group` (the group's first trial id) to its row and write
    its shards (published, or with `publish=False` only staged). If the group raises, every trial of
    it is recorded `failed` as `execute` records one, and the grid goes on. Returns the rows in the
    order of `specs`. A group of the same trials that ran before and was interrupted resumes from its
    checkpoint (train.checkpoint_every), the file of its first trial's id."""
    try:
        rows = run_fused(specs, dataset, device, recorders, checkpoint=checkpoint_path(out_dir, specs[0].trial_id))
    except Exception as e:  # the whole group failed: each of its trials is a failed row
        _raise_no_room(e, out_dir)  # unless the machine refused a write: not the trials' fault
        error, tb = f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)
        rows = []
        for spec, recorder in zip(specs, recorders):
            recorder.set_run(**settings_columns(spec), status="failed", error=error, traceback=tb,
                             dataset=dataset.name, device=str(device), torch_version=torch.__version__)
            rows.append(recorder.rows["runs"][0])
    for spec, recorder, row in zip(specs, recorders, rows):
        row.update(extra, fused_group=specs[0].trial_id)
        recorder.rows["runs"][0] = row
        _write_shards(out_dir, spec.trial_id, recorder, publish)
    return rows


def _claim_companions(plan: Plan, searches: dict, trial: Trial, spec: TrialSpec, limit: int,
                      stamp: dict[str, Any]) -> list[tuple[Trial, str, TrialSpec, TrialRecorder]]:
    """Claim up to `limit` more waiting trials of `trial`'s study that can train fused with `spec`
    (same `fusable_key`; planned trials only, never search slots), each with its own claim, stamped
    with `stamp` (worker, folder), and a recorder reporting to its own Optuna trial."""
    shape = fusable_key(spec)

    def wanted(key: str) -> bool:
        other = plan.by_id.get(key)
        return other is not None and fusable_key(other) == shape

    out = []
    for t, k in claim_matching(trial.study, wanted, limit, stamp):
        s, recorder = _trial_spec(plan, searches, t, k)
        assert s is not None and recorder is not None  # wanted() accepts planned trials only
        out.append((t, k, s, recorder))
    return out


def _run_group(group: list[tuple[Trial, str, TrialSpec, TrialRecorder]], dataset: data_mod.Dataset,
               device: torch.device, out_dir: Path, extra: dict[str, Any], cfg: ExperimentConfig,
               store: Any) -> int:
    """Train a claimed fused group under one heartbeat, then finish each trial as the single-trial
    path does. Returns how many trials ran."""
    trials = [t for t, *_ in group]
    with GroupHeartbeat(trials):
        rows = execute_fused([s for *_, s, _ in group], dataset, device, out_dir, extra, [r for *_, r in group],
                             publish=False)
    for (trial, key, spec, _), row in zip(group, rows):
        _tell(trial, key, row, cfg, store, out_dir, spec.trial_id)
    return len(group)


def _trial_spec(plan: Plan, searches: dict, trial: Trial, key: str
                ) -> tuple[TrialSpec | None, TrialRecorder | None]:
    """The settings of a claimed trial (None: not in the config) and, for a pruned search trial,
    a recorder that reports to the pruner. Re-plans (in place) for a re-run enqueued after this
    worker planned."""
    cfg = plan.cfg
    if key.startswith("slot:"):  # a search trial: the sampler chooses its settings now
        search = next(s for s in plan.studies if s.name == trial.study.study_name)
        spec = study_mod.search_spec(cfg, plan.data_id, search, trial)
        recorder = None
        if len(cfg.study.objectives) == 1:  # multi-objective trials cannot report
            recorder = TrialRecorder(spec.trial_id, on_eval=_pruning_hook(trial))
        return spec, live.attach(plan, spec, recorder)  # run.trackers: streamed at each evaluation
    spec = plan.by_id.get(key)
    if spec is None:
        fresh = make_plan(cfg, plan.out_dir)
        add_reruns(fresh, searches)
        plan.update(fresh)
        spec = plan.by_id.get(key)
    if spec is None:
        return None, None
    return spec, live.attach(plan, spec, TrialRecorder(spec.trial_id, on_eval=_reporting_hook(trial)))


def _top_up(plan: Plan, queue: Any) -> bool:
    """Adaptive seeds or a budget check: re-decide from the finished trials and enqueue the trials now
    needed, so a worker that ran out goes on without waiting for the round to end. Returns whether any was."""
    plan.update(make_plan(plan.cfg, plan.out_dir))
    return enqueue_missing(plan, queue)["enqueued"] > 0


def _tell(trial: Trial, key: str, row: dict[str, Any], cfg: ExperimentConfig, store: Any, out_dir: Path,
          trial_id: str) -> None:
    """Finish a trial whose shards are staged (records.stage_trial): its shards into the artifact
    store, then its summary, value and state onto the Optuna trial in one write (a search trial:
    through Optuna's tell); then publish the shards. So a trial
    is published in this folder only once Optuna has it finished here: a worker killed before that
    leaves only a staged folder, and the trial runs again (here or elsewhere) with one set of rows.
    When Optuna refuses the state (another command judged this worker dead and failed the trial,
    so it is queued again), the staged shards are deleted."""
    staged = staged_path(out_dir, trial_id)
    summary = {k: v for k in SUMMARY_ATTRS if (v := row.get(k)) is not None
               and not (isinstance(v, float) and v != v)}
    status = row["status"]
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(status, TrialState.FAIL)
    attrs = {"shard": trial_id, **summary}
    if not key.startswith("slot:"):  # summary, value and state in one write
        if store is not None:
            upload_shards(store, trial, staged)
        told = finish(trial.study, trial, state, row["best_dev_acc"] if state == TrialState.COMPLETE else None,
                      attrs)
    else:  # a search trial: through Optuna's tell, so its sampler sees it finish
        try:
            set_user_attrs(trial.study, trial, attrs)
            if store is not None:
                upload_shards(store, trial, staged)
            values = study_mod.objective_values(cfg, row) if state == TrialState.COMPLETE else None
            trial.study.tell(trial, values, state=state, skip_if_finished=True)
            told = state_of(trial.study, trial) == state
        except optuna.exceptions.UpdateFinishedTrialError:
            told = False
    if not told:
        shutil.rmtree(staged, ignore_errors=True)  # failed as stale meanwhile: it runs again
        return
    publish_trial(staged, out_dir, trial_id)


def _pruning_hook(trial: Trial):
    """Report dev accuracy at each evaluation and stop the trial when the pruner says so."""
    def on_eval(step: int, dev_acc: float) -> bool:
        trial.report(dev_acc, step)
        return trial.should_prune()
    return on_eval


def _reporting_hook(trial: Trial):
    """Report dev accuracy at each evaluation (optuna-dashboard's intermediate values); never prune."""
    def on_eval(step: int, dev_acc: float) -> bool:
        trial.report(dev_acc, step)
        return False
    return on_eval


# ----------------------------------------------------------------------------- worker processes

def _worker_main(args: tuple, parent: int | None = None, reports: Any = None) -> None:
    """A worker process: dies with its parent (`parent`: its pid), so a main process killed with
    kill -9 leaves no worker running; an error outside a trial is one line on stderr and exit 1
    (the main process then names the worker and the trial it held). A write the machine refused
    (files.NoRoom) goes to the main process through `reports` (a queue: the disk may be full) and
    the worker exits with NO_ROOM_EXIT, its trial left unfinished (not failed): the next run runs it."""
    if parent is not None:
        _die_with_parent(parent)
    if hasattr(signal, "SIGUSR2"):  # Slurm's and submitit's preemption signal is for the job, which
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # stops its workers itself and requeues
    try:
        worker_loop(*args)
    except Exception as e:
        refused = no_room(e, Path(args[0]) / "trials")  # a trial's write, or publishing, uploading its shards
        if refused is not None:
            if reports is not None:
                reports.put((refused.errno, refused.strerror, refused.filename))
            sys.exit(NO_ROOM_EXIT)
        print(f"harness: worker {args[4]} (pid {os.getpid()}) failed: {type(e).__name__}: {redact_text(str(e))}",
              file=sys.stderr, flush=True)
        sys.exit(1)


def _die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL) when the parent process ends: prctl(PR_SET_PDEATHSIG) on Linux, else a
    thread that polls the parent pid every second. Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            _watch_parent(parent)
    else:
        _watch_parent(parent)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="watch parent", daemon=True).start()


def _start_workers(plan: Plan, workers: int, storage: str | None, devices: list[str], threads: int,
                   artifacts: str | None, reports: Any = None) -> list[mp.process.BaseProcess]:
    """Spawn the worker processes with SIGINT ignored (inherited through exec), so Ctrl-C reaches
    the main process only and it stops them: no half-written tracebacks from each worker. `reports`:
    the queue a worker puts a refused write on (see _worker_main)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, name=f"worker {i}",
                         args=((plan.out_dir, storage, devices[i % len(devices)], threads, i, artifacts),
                               os.getpid(), reports))
             for i in range(workers)]
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        for p in procs:
            p.start()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old)
    return procs


def _stop(procs: list[mp.process.BaseProcess], grace_s: float = 5.0) -> None:
    """Terminate the workers still alive (SIGTERM, then SIGKILL after grace_s) and reap them all."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def _died(p: mp.process.BaseProcess, held: Any = None) -> str:
    """What to say of a dead worker: its name, pid, signal or exit code, and the trials it held
    (`held(pid) -> list of trial ids`, from the study)."""
    code = p.exitcode
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    trials = held(p.pid) if held is not None else []
    during = f" while running trial {', '.join(trials)}" if trials else ""
    return f"{p.name} (pid {p.pid}) died ({how}){during}"


def held_trials(studies: list[Any]) -> Any:
    """A function pid -> the keys of the RUNNING trials that a worker process of this host holds."""
    host = socket.gethostname()

    def held(pid: int) -> list[str]:
        try:
            return [trial_key(t) or f"{study.study_name}#{t.number}" for study in studies
                    for t in running_trials(study)
                    if t.system_attrs.get("pid") == pid and t.system_attrs.get("host") == host]
        except Exception:  # the storage itself may be what failed: name the worker all the same
            return []
    return held


def _run_workers(plan: Plan, monitor: Any, workers: int, storage: str | None, devices: list[str],
                 threads: int, artifacts: str | None, held: Any = None) -> list[str]:
    """Run the workers until each has found nothing left to claim. A worker that dies is named at
    once, with the trial it held (`held`, see held_trials; the others go on); returns those messages.
    A worker stopped by a write the machine refused says nothing: once every worker has ended, the
    first such refusal is raised here (files.NoRoom: one line, the trial waits). Ctrl-C stops every
    worker, then re-raises."""
    reports = mp.get_context("spawn").SimpleQueue()
    procs = _start_workers(plan, workers, storage, devices, threads, artifacts, reports)
    dead: dict[int, str] = {}
    refused: list[tuple] = []
    try:
        while True:
            for i, p in enumerate(procs):
                if p.exitcode == NO_ROOM_EXIT and i not in dead:
                    dead[i] = ""
                    while not reports.empty():
                        refused.append(reports.get())
                elif p.exitcode and i not in dead:
                    dead[i] = _died(p, held)
                    rest = "; the other workers go on" if len(procs) > 1 else ""
                    tqdm.write(f"harness: {dead[i]}{rest}", file=sys.stderr)
            monitor.poll()
            if not any(p.is_alive() for p in procs):
                break
            time.sleep(0.5)
    finally:
        _stop(procs)
    while not reports.empty():
        refused.append(reports.get())
    if refused:
        raise NoRoom(*refused[0])
    return [d for d in dead.values() if d]


def _wait_while(busy: Any, monitor: Any) -> None:
    """Poll progress until `busy()` is false (trials that another command runs finish there)."""
    while busy():
        monitor.poll()
        time.sleep(1.0)


def _files(folder: Path) -> set[Path]:
    """Every file and folder below `folder` (empty when it does not exist)."""
    return set(folder.rglob("*")) if folder.is_dir() else set()


def _remove_new_files(folder: Path, before: set[Path]) -> None:
    """Remove what below `folder` was not there before (what a refused run wrote): its files, then
    its folders, deepest first, once empty; whatever was there before is untouched."""
    new = _files(folder) - before
    for f in new:
        if f.is_file():
            f.unlink(missing_ok=True)
    for d in sorted((p for p in new if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders this call created (deepest first) while they hold nothing but empty
    folders (what a failed plan may leave)."""
    if not created:
        return
    inner = sorted((p for p in created[0].rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*inner, *created]:
        try:
            d.rmdir()
        except OSError:
            return


def run(cfg: ExperimentConfig, out_dir: str | Path, *, workers: int = 1, storage: str | None = None,
        device: str = "auto", threads: int | None = None, progress: bool = True,
        artifacts: str | None = None) -> dict[str, int]:
    """Run (or resume) the experiment into out_dir with `workers` processes. Returns status counts.
    Raises WorkerDied (after writing the tables of what finished) when a worker process died."""
    devices = device.split(",")
    # A device that is not there, or CUDA graphs without CUDA, is a usage error, found before any work.
    check_cuda_graph(cfg, [resolve_device(d) for d in devices])
    check_fusable(cfg)  # run.fuse K or a CUDA graph with a cell or read-out that has no fused form
    check_bounds(cfg)  # sizes that would not fit this machine, step counts beyond reason
    live.check_libraries(cfg.run.trackers)  # a tracker whose library is missing: exit 2 and the install line
    out_dir = Path(out_dir)
    check_existing(cfg, out_dir)  # an existing folder's config.yaml and run.yaml, before anything is written
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # deepest first
    before = _files(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        plan = make_plan(cfg, out_dir)
        n_train = min((len(d.train.labels) for d in prepare_data(plan).values()), default=None)  # step budgets
    except BaseException:
        _remove_new_files(out_dir, before)  # e.g. a data set encoded before its embedding file was refused
        _remove_empty(created)  # a failed check leaves no empty results folder behind
        raise
    write_config(plan)
    write_run_settings(out_dir, RunSettings(storage=storage, artifacts=artifacts))
    if has_password(storage):
        print(f"harness: warning: the storage URL {redact_url(storage)} carries a password: it is used for this "
              f"run only and written to {out_dir / 'run.yaml'} without it; set PGPASSWORD or put it in ~/.pgpass "
              f"so that `harness status` and `harness report` can connect", file=sys.stderr)
    quarantine_damaged(out_dir)
    remove_orphan_stages(out_dir)  # shards a killed worker of this host staged and never published
    remove_stale_checkpoint_tmps(out_dir)  # checkpoint writes a killed worker left half done
    store = open_storage(out_dir, storage)
    queue = open_queue(plan, store)
    searches = open_searches(plan, store) if cfg.study else {}
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    # After every check (bad input stays one error line), before the workers' start-up (seconds).
    _say(progress, f"harness: {len(plan.specs)} trials planned, data ready in {out_dir / 'cache'}; starting "
                   f"{workers} worker(s) on {','.join(devices)} ({threads} thread(s) each)")
    monitor = Progress(plan, enabled=progress, studies=[queue, *searches.values()], n_train=n_train)
    try:
        held = held_trials([queue, *searches.values()])
        dead = _run_phases(plan, queue, searches, monitor,
                           lambda: _run_workers(plan, monitor, workers, storage, devices, threads, artifacts, held),
                           lambda: _next_round(plan, storage, artifacts))
        download_artifacts(out_dir, storage, artifacts)
        monitor.poll()
    finally:
        monitor.close()  # also on Ctrl-C: the bar ends its line before the message
    combine(out_dir)
    _next_round(plan, storage, artifacts)  # adaptive.json as the finished trials leave it
    if dead:
        raise WorkerDied("; ".join(dead) + ". Its trial did not finish; the others are kept: run the same "
                         "command again to resume")
    counts = monitor.counts()
    elsewhere = [t for t in finished_elsewhere(plan, queue) if verify_trial(out_dir, t) is not None]
    if elsewhere:  # finished by another command into a results folder this one does not share
        counts["elsewhere"] = len(elsewhere)
        counts["missing"] = max(0, counts["missing"] - len(elsewhere))
        _say(progress, f"harness: {len(elsewhere)} trial(s) finished into another results folder on the same "
                       f"storage; their shards are there (give every command the same --artifacts folder to "
                       f"gather them here)")
    return counts


def _say(enabled: bool, message: str) -> None:
    """One line on stderr about what the run is doing before its progress bar has anything to show."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _next_round(plan: Plan, storage: str | None, artifacts: str | None) -> frozenset[str]:
    """Adaptive seeds or a budget check: re-decide from every finished trial (fetching those finished
    elsewhere), write DIR/adaptive.json (adaptive seeds), and return the ids of the needed trials not
    done yet."""
    if not runs_in_rounds(plan.cfg):
        return frozenset()
    download_artifacts(plan.out_dir, storage, artifacts)
    plan.update(make_plan(plan.cfg, plan.out_dir))
    write_adaptive(plan)
    return frozenset(s.trial_id for s in plan.specs if verify_trial(plan.out_dir, s.trial_id) is not None)


def _run_phases(plan: Plan, queue: Any, searches: dict[str, Any], monitor: Any, run_workers: Any,
                next_round: Any = frozenset) -> list[str]:
    """Enqueue and run: a study's search slots first (then its best settings' re-runs), or the grid,
    in rounds while `next_round()` names needed trials not done (and the last round changed them).
    Waits for trials that another command runs on the same storage; a trial whose worker died
    meanwhile without anyone seeing it (stale, see queue.worker_alive) is queued and run again.
    Returns dead-worker messages (and stops at the first phase that has any)."""
    studies = [queue, *searches.values()]
    while plan.cfg.study:  # until every slot finished (a slot whose worker died unseen is filled again)
        enqueue_slots(plan, searches)
        dead = run_workers()
        if dead:
            return dead
        _wait_while(lambda: running_elsewhere(list(searches.values())), monitor)
        if searches_finished(searches):
            add_reruns(plan, searches)
            break
    last: frozenset[str] | None = None
    requeued = False  # the previous round ended by queueing a dead worker's trial: nothing more to enqueue
    while True:  # one round; with adaptive seeds, rounds while needed trials are left and some ran
        if not requeued:  # (and no failed trial retried before the next run)
            enqueue_missing(plan, queue)
        dead = run_workers()
        if dead:
            return dead
        _wait_while(lambda: running_elsewhere(studies), monitor)
        # A worker that died unseen (another command's, or one killed with its main process) left its
        # trial RUNNING: enqueue_missing fails it as stale and queues it again, both under the storage's
        # enqueue lock, so of several commands one queues it and the others find it waiting. Either
        # way this command goes on: it claims the trial, or waits while another command runs it.
        requeued = bool(enqueue_missing(plan, queue, retry=False)["enqueued"]) or any_waiting(queue)
        if requeued:
            continue
        left = next_round()
        if not left or left == last:
            return []
        last = left
