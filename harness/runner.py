"""The runner: which trials run, where, and exactly once. Knows Optuna; knows nothing of training.

Each grid point × seed is enqueued once in an Optuna study as a WAITING trial carrying its
`trial_id`. Workers claim a waiting trial by moving it to RUNNING, which every Optuna storage does
atomically (only one caller sees the change succeed), train it, write its shards, and tell the study
the outcome. A trial is *done* when its shard folder exists; re-running the same command enqueues
only what is not done, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import fcntl
import multiprocessing as mp
import os
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.trial import TrialState

from harness import data as data_mod
from harness.config import (
    GRIDDABLE_SECTIONS,
    ConfigError,
    ExperimentConfig,
    TrialSpec,
    _lookup_field,
    config_from_dict,
    expand_grid,
)
from harness.records import TrialRecorder, is_done, read_trial, write_trial
from harness.train import resolve_device, run_trial, settings_columns

HEARTBEAT_S = 10.0      # a running trial's worker writes a heartbeat this often
STALE_AFTER_S = 60.0    # a RUNNING trial with no heartbeat for this long is taken as dead
MAX_ATTEMPTS = 2        # a trial that raised is retried once (on resume), then left failed

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ----------------------------------------------------------------------------- planning

@dataclass
class Plan:
    cfg: ExperimentConfig
    out_dir: Path
    specs: list[TrialSpec]
    data_id: str

    @property
    def by_id(self) -> dict[str, TrialSpec]:
        return {s.trial_id: s for s in self.specs}


def cache_dir(out_dir: Path) -> Path:
    return out_dir / "cache"


def make_plan(cfg: ExperimentConfig, out_dir: str | Path) -> Plan:
    """Locate/synthesise the data, expand the grid. Raises DataError/ConfigError before training."""
    out_dir = Path(out_dir)
    _, data_id = data_mod.prepare(cfg.data, cache_dir(out_dir))
    specs = expand_grid(cfg, data_id)
    return Plan(cfg, out_dir, specs, data_id)


def prepare_data(plan: Plan) -> dict[int, data_mod.Dataset]:
    """Encode the data once per pad_size (cached on disk for every worker); validate embeddings."""
    out = {}
    for pad in sorted({s.data.pad_size for s in plan.specs}):
        ds = data_mod.load(plan.specs[0].data, cache_dir(plan.out_dir), pad)
        if ds.embeddings is not None:
            dims = {s.model.embed_dim for s in plan.specs}
            if dims != {ds.embeddings.shape[1]}:
                raise ConfigError(f"config key 'model.embed_dim': {sorted(dims)} does not match the "
                                  f"pretrained embeddings' width {ds.embeddings.shape[1]} "
                                  f"({plan.cfg.data.embedding})")
        out[pad] = ds
    return out


def _fixed_settings(raw: dict) -> dict[str, Any]:
    """The parts of a resolved config that must not change between runs into one directory:
    everything in data/model/train that is not a grid axis."""
    axes = set(raw.get("grid", {}))
    from harness.config import AXIS_ALIASES
    axes = {AXIS_ALIASES.get(a, a) for a in axes}
    flat = {}
    for section in GRIDDABLE_SECTIONS:
        for k, v in _flatten(raw.get(section, {}), section + ".").items():
            if k not in axes:
                flat[k] = v
    return flat


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_compatible(plan: Plan) -> None:
    """Refuse to mix results of different fixed settings in one directory."""
    path = plan.out_dir / "config.yaml"
    if not path.is_file():
        return
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = plan.cfg.to_dict()
    if old.get("name") != new["name"]:
        raise ConfigError(f"{plan.out_dir} holds results of experiment {old.get('name')!r}, not "
                          f"{new['name']!r}; choose another --out")
    a, b = _fixed_settings(old), _fixed_settings(new)
    # A key that became a grid axis (or stopped being one) changes what the old trials mean.
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k, "<grid axis>") != b.get(k, "<grid axis>")]
    if changed:
        detail = "; ".join(f"{k}: {a.get(k, '<grid axis>')!r} -> {b.get(k, '<grid axis>')!r}"
                           for k in changed[:6])
        raise ConfigError(
            f"{plan.out_dir} holds results run with other fixed settings ({detail}). Only grid axes "
            f"may grow when resuming into the same directory; use another --out for a new experiment")


def write_config(plan: Plan) -> None:
    path = plan.out_dir / "config.yaml"
    tmp = path.with_name(f".config.{os.getpid()}.yaml")
    tmp.write_text(yaml.safe_dump(plan.cfg.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, path)


def load_results_config(out_dir: str | Path) -> ExperimentConfig:
    """The resolved config a results directory was run with."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a results directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


# ----------------------------------------------------------------------------- storage and study

def open_storage(out_dir: Path, url: str | None) -> optuna.storages.BaseStorage:
    """An Optuna storage: a URL (sqlite:///…, postgresql://…) or, by default, a journal file in
    the results directory (safe for many processes on one file system)."""
    if url and "://" in url:
        return optuna.storages.RDBStorage(url)
    path = Path(url) if url else out_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(plan: Plan, storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(study_name=plan.cfg.name, storage=storage, load_if_exists=True,
                               direction="maximize")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def worker_alive(attrs: dict, now: float) -> bool:
    """Whether a RUNNING trial's worker still lives: a recent heartbeat, or its process on this host."""
    beat = attrs.get("heartbeat")
    if beat is not None and now - beat < STALE_AFTER_S:
        if attrs.get("host") == socket.gethostname() and attrs.get("pid"):
            return _pid_alive(int(attrs["pid"]))
        return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def enqueue_missing(plan: Plan, study: optuna.Study) -> dict[str, int]:
    """Enqueue every trial that is not done, not waiting and not running; fail stale RUNNING
    trials (their worker died) so they are enqueued again; retry a failed trial once.
    Returns counts of what it did."""
    counts = {"enqueued": 0, "stale": 0, "retried": 0}
    with _file_lock(plan.out_dir / ".enqueue.lock"):
        storage = study._storage
        now = time.time()
        active: set[str] = set()
        attempts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            tid = t.user_attrs.get("trial_id")
            if tid is None:
                continue
            if t.state == TrialState.WAITING:
                active.add(tid)
            elif t.state == TrialState.RUNNING:
                if worker_alive(t.system_attrs, now):
                    active.add(tid)
                else:
                    storage.set_trial_system_attr(t._trial_id, "stale", True)
                    storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                    counts["stale"] += 1
            elif t.state == TrialState.FAIL and t.user_attrs.get("status") == "failed":
                attempts[tid] = attempts.get(tid, 0) + 1
        for spec in plan.specs:
            tid = spec.trial_id
            if tid in active:
                continue
            if is_done(plan.out_dir, tid):
                runs = read_trial(plan.out_dir, tid).get("runs")
                failed = runs is not None and len(runs) and runs["status"].iloc[0] == "failed"
                if not failed or attempts.get(tid, 0) >= MAX_ATTEMPTS:
                    continue
                counts["retried"] += 1
            study.enqueue_trial(_param_values(spec), user_attrs={"trial_id": tid},
                                skip_if_exists=False)
            counts["enqueued"] += 1
    return counts


def _param_values(spec: TrialSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.factors.items() if v is not None}


def _suggest_params(trial: optuna.Trial, spec: TrialSpec) -> None:
    """Record the trial's grid settings as Optuna params (so the dashboard can plot them)."""
    from harness.config import AXIS_ALIASES
    for axis, value in spec.factors.items():
        if value is None:
            continue
        tp, meta = _lookup_field(AXIS_ALIASES.get(axis, axis))
        if isinstance(value, bool):
            trial.suggest_categorical(axis, [False, True])
        elif isinstance(value, str):
            trial.suggest_categorical(axis, list(meta.get("choices") or [value]))
        elif isinstance(value, int):
            trial.suggest_int(axis, value, value)
        else:
            trial.suggest_float(axis, value, value)


def claim(study: optuna.Study, known: set[str]) -> tuple[optuna.Trial, str] | None:
    """Atomically take one WAITING trial (WAITING → RUNNING succeeds for one caller only).
    A duplicate enqueue of a trial id that another trial already holds is dropped here."""
    storage = study._storage
    waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    for frozen in waiting:
        try:
            if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        tid = frozen.user_attrs.get("trial_id")
        storage.set_trial_system_attr(frozen._trial_id, "host", socket.gethostname())
        storage.set_trial_system_attr(frozen._trial_id, "pid", os.getpid())
        storage.set_trial_system_attr(frozen._trial_id, "heartbeat", time.time())
        storage.set_trial_system_attr(frozen._trial_id, "claimed_at", time.time())
        if tid not in known or _held_elsewhere(study, frozen, tid):
            storage.set_trial_user_attr(frozen._trial_id, "status", "duplicate")
            storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL)
            continue
        return optuna.Trial(study, frozen._trial_id), tid
    return None


def _held_elsewhere(study: optuna.Study, mine: optuna.trial.FrozenTrial, tid: str) -> bool:
    """True when another, lower-numbered trial with the same id is waiting, running or complete:
    then that one is the real one and mine is a duplicate."""
    for t in study.get_trials(deepcopy=False):
        if t.number < mine.number and t.user_attrs.get("trial_id") == tid and t.state in (
                TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
            return True
    return False


class _Heartbeat:
    """Writes the claimed trial's heartbeat every HEARTBEAT_S seconds from a background thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.storage.set_trial_system_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a finished trial refuses writes; stop quietly
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# ----------------------------------------------------------------------------- workers

SUMMARY_ATTRS = ("status", "test_acc", "test_macro_f1", "best_dev_acc", "steps_to_target",
                 "seconds_to_target", "vanishing_ratio_init", "vanishing_ratio_final", "wall_s",
                 "samples_per_s", "error")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def execute(spec: TrialSpec, dataset: data_mod.Dataset, device: torch.device, out_dir: Path,
            extra: dict[str, Any]) -> dict[str, Any]:
    """Run one trial, catching any error as a `failed` row, and write its shards. Returns the row."""
    recorder = TrialRecorder(spec.trial_id)
    try:
        row = run_trial(spec, dataset, device, recorder)
    except Exception as e:  # noqa: BLE001 - a failing trial is recorded, the grid goes on
        error = f"{type(e).__name__}: {e}"
        recorder.set_run(**settings_columns(spec), status="failed", error=error,
                         traceback=traceback.format_exc(limit=8), dataset=dataset.name,
                         device=str(device), torch_version=torch.__version__)
        row = recorder.rows["runs"][0]
    row.update(extra)
    recorder.rows["runs"][0] = row
    write_trial(out_dir, spec.trial_id, recorder.tables())
    return row


def worker_loop(out_dir: str | Path, storage_url: str | None, device_name: str, threads: int | None,
                worker: int = 0) -> int:
    """Claim and run trials until none is waiting. Returns how many this worker ran."""
    out_dir = Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    cfg = load_results_config(out_dir)
    plan = make_plan(cfg, out_dir)
    study = open_study(plan, open_storage(out_dir, storage_url))
    device = resolve_device(device_name)
    datasets: dict[int, data_mod.Dataset] = {}
    by_id = plan.by_id
    extra = {"git_commit": git_commit(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    ran = 0
    while (claimed := claim(study, set(by_id))) is not None:
        trial, tid = claimed
        spec = by_id[tid]
        _suggest_params(trial, spec)
        study._storage.set_trial_system_attr(trial._trial_id, "worker", worker)
        pad = spec.data.pad_size
        if pad not in datasets:
            datasets[pad] = data_mod.load(spec.data, cache_dir(out_dir), pad)
        with _Heartbeat(study._storage, trial._trial_id):
            row = execute(spec, datasets[pad], device, out_dir, extra)
        for key in SUMMARY_ATTRS:
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and value != value):
                trial.set_user_attr(key, value)
        status = row["status"]
        if status == "complete":
            study.tell(trial, row["best_dev_acc"])
        elif status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
        ran += 1
    return ran


def _worker_main(args: tuple) -> None:
    worker_loop(*args)


def run(cfg: ExperimentConfig, out_dir: str | Path, *, workers: int = 1, storage: str | None = None,
        device: str = "auto", threads: int | None = None, progress: bool = True) -> dict[str, int]:
    """Run (or resume) the experiment into out_dir with `workers` processes. Returns status counts."""
    from harness.progress import Progress

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, out_dir)
    check_compatible(plan)
    prepare_data(plan)
    resolve_device(device.split(",")[0])
    write_config(plan)
    study = open_study(plan, open_storage(out_dir, storage))
    enqueue_missing(plan, study)
    devices = device.split(",")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    monitor = Progress(plan, enabled=progress)
    if workers == 1:
        runner = threading.Thread(target=worker_loop, args=(out_dir, storage, devices[0], threads, 0),
                                  daemon=True)
        runner.start()
        while runner.is_alive():
            monitor.poll()
            runner.join(0.5)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_main,
                             args=((out_dir, storage, devices[i % len(devices)], threads, i),), daemon=False)
                 for i in range(workers)]
        for p in procs:
            p.start()
        try:
            while any(p.is_alive() for p in procs):
                monitor.poll()
                time.sleep(0.5)
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            raise
    # Trials still running in another command (same storage) finish there: wait for them.
    while _running_elsewhere(study, plan):
        monitor.poll()
        time.sleep(1.0)
    monitor.poll()
    monitor.close()
    from harness.records import combine
    combine(out_dir)
    return monitor.counts()


def _running_elsewhere(study: optuna.Study, plan: Plan) -> bool:
    """Whether a not-yet-done trial of this plan is RUNNING with a live worker."""
    now = time.time()
    wanted = plan.by_id
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tid = t.user_attrs.get("trial_id")
        if tid in wanted and not is_done(plan.out_dir, tid) and worker_alive(t.system_attrs, now):
            return True
    return False


def dry_run(cfg: ExperimentConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """The trials the config describes, whether each is done, and a rough cost estimate."""
    plan = make_plan(cfg, out_dir)
    s = cfg.data.synth
    n_train = s.n_train if cfg.data.kind == "synthetic" else None
    rows = []
    for spec in plan.specs:
        steps = None
        if n_train:
            steps = spec.train.epochs * -(-n_train // spec.train.batch_size)
            if spec.train.max_steps:
                steps = min(steps, spec.train.max_steps)
        rows.append({"trial_id": spec.trial_id, **spec.factors, "max_steps": steps,
                     "done": is_done(plan.out_dir, spec.trial_id)})
    return rows


def spec_dict(spec: TrialSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)
