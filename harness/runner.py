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
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.trial import TrialState

from harness import data as data_mod
from harness import study as study_mod
from harness.config import (
    AXIS_ALIASES,
    GRIDDABLE_SECTIONS,
    ConfigError,
    ExperimentConfig,
    TrialSpec,
    _lookup_field,
    config_from_dict,
    expand_grid,
    flatten,
    short_axis_name,
)
from harness.records import TrialRecorder, combine, is_done, read_trial, trial_dir, write_trial
from harness.study import SearchStudy
from harness.train import resolve_device, run_trial, settings_columns

HEARTBEAT_S = 10.0      # a running trial's worker writes a heartbeat this often
STALE_AFTER_S = 60.0    # a RUNNING trial with no heartbeat for this long is taken as dead
MAX_ATTEMPTS = 2        # a trial that raised is retried once (on resume), then left failed

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ----------------------------------------------------------------------------- planning

@dataclass
class Plan:
    """What a run is made of: the grid trials (or, for a study, the re-runs of each study's best
    setting once they are known) and the search studies."""

    cfg: ExperimentConfig
    out_dir: Path
    specs: list[TrialSpec]
    data_id: str
    studies: list[SearchStudy] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, TrialSpec]:
        return {s.trial_id: s for s in self.specs}

    @property
    def total(self) -> int:
        """Trials the run will have when it is finished."""
        if self.cfg.study is None:
            return len(self.specs)
        reruns = len(self.studies) * len(study_mod.seeds(self.cfg)) if self.cfg.study.rerun_best else 0
        return len(self.studies) * self.cfg.study.n_trials + reruns

    @property
    def factor_names(self) -> list[str]:
        """Short names of the settings that vary between trials (for progress lines)."""
        names = [short_axis_name(k) for k in self.cfg.grid]
        if self.cfg.study is not None:
            names += [short_axis_name(k) for k in self.cfg.study.params]
        return names


def cache_dir(out_dir: Path) -> Path:
    return out_dir / "cache"


def make_plan(cfg: ExperimentConfig, out_dir: str | Path) -> Plan:
    """Locate/synthesise the data, expand the grid. Raises DataError/ConfigError before training."""
    out_dir = Path(out_dir)
    _, data_id = data_mod.prepare(cfg.data, cache_dir(out_dir))
    if cfg.study is None:
        return Plan(cfg, out_dir, expand_grid(cfg, data_id), data_id)
    return Plan(cfg, out_dir, [], data_id, study_mod.search_studies(cfg))


def prepare_data(plan: Plan) -> dict[int, data_mod.Dataset]:
    """Encode the data once per pad_size (cached on disk for every worker); validate embeddings."""
    cfg = plan.cfg
    pads = set(cfg.grid.get("data.pad_size", [cfg.data.pad_size]))
    if cfg.study is not None and "data.pad_size" in cfg.study.params:
        p = cfg.study.params["data.pad_size"]
        pads = set(p.choices) if p.type == "categorical" else set()  # sampled sizes encode on first use
    dims = {s.model.embed_dim for s in plan.specs} or {cfg.model.embed_dim}
    out = {}
    for pad in sorted(pads):
        ds = data_mod.load(cfg.data, cache_dir(plan.out_dir), pad)
        if ds.embeddings is not None and dims != {ds.embeddings.shape[1]}:
            raise ConfigError(f"config key 'model.embed_dim': {sorted(dims)} does not match the "
                              f"pretrained embeddings' width {ds.embeddings.shape[1]} ({cfg.data.embedding})")
        out[pad] = ds
    return out


def _fixed_settings(raw: dict) -> dict[str, Any]:
    """The parts of a resolved config that must not change between runs into one directory:
    everything in data/model/train that is not a grid axis."""
    axes = {AXIS_ALIASES.get(a, a) for a in raw.get("grid", {})}
    axes |= {AXIS_ALIASES.get(a, a) for a in (raw.get("study") or {}).get("params", {})}
    flat = {}
    for section in GRIDDABLE_SECTIONS:
        for k, v in flatten(raw.get(section, {}), section + ".").items():
            if k not in axes:
                flat[k] = v
    return flat


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
        # Two workers starting at once on a fresh database both create Optuna's tables; the loser
        # sees a duplicate-key error. The tables exist by then: try again.
        for attempt in range(6):
            try:
                return optuna.storages.RDBStorage(url)
            except Exception as e:  # noqa: BLE001 - sqlalchemy's IntegrityError/ProgrammingError
                if attempt == 5 or "duplicate" not in str(e).lower() and "already exists" not in str(e).lower():
                    raise
                time.sleep(0.2 + 0.3 * attempt)
    path = Path(url) if url else out_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_queue(plan: Plan, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study whose trials are enqueued settings: the grid, or a study's best-setting re-runs."""
    return optuna.create_study(study_name=plan.cfg.name, storage=storage, load_if_exists=True,
                               direction="maximize")


def open_searches(plan: Plan, storage: optuna.storages.BaseStorage, worker: int = 0
                  ) -> dict[str, optuna.Study]:
    """The search studies, each with the configured sampler and pruner."""
    st = plan.cfg.study
    out = {}
    for s in plan.studies:
        study = optuna.create_study(study_name=s.name, storage=storage, load_if_exists=True,
                                    directions=[o.direction for o in st.objectives],
                                    sampler=study_mod.make_sampler(st, worker), pruner=study_mod.make_pruner(st))
        study.set_user_attr("study", "search")
        with warnings.catch_warnings():  # experimental in Optuna, but what the dashboard labels axes with
            warnings.simplefilter("ignore")
            study.set_metric_names([o.metric for o in st.objectives])
        out[s.name] = study
    return out


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def worker_alive(trial: optuna.trial.FrozenTrial, now: float) -> bool:
    """Whether a RUNNING trial's worker still lives: a recent heartbeat (or, just after the claim and
    before the first heartbeat is written, a recent start), and (on this host) its process."""
    attrs = trial.system_attrs
    beat = attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
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


def _key(t: optuna.trial.FrozenTrial) -> str | None:
    """What a queued trial stands for: a trial id (grid, re-run) or a search slot."""
    if "trial_id" in t.user_attrs:
        return t.user_attrs["trial_id"]
    if "slot" in t.user_attrs:
        return f"slot:{t.user_attrs['slot']}"
    return None


def _fail_stale(study: optuna.Study, now: float) -> int:
    """Mark RUNNING trials whose worker is gone as FAIL (stale), so their work is queued again."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_alive(t, now):
            study._storage.set_trial_user_attr(t._trial_id, "status", "stale")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
    return n


def enqueue_missing(plan: Plan, study: optuna.Study) -> dict[str, int]:
    """Enqueue every spec that is not done, not waiting and not running; fail stale RUNNING trials
    (their worker died) so they are enqueued again; retry a failed trial once.
    Done means: a shard folder here, or a finished trial in the study (another machine ran it)."""
    counts = {"enqueued": 0, "stale": 0, "retried": 0}
    with _file_lock(plan.out_dir / ".enqueue.lock"):
        counts["stale"] = _fail_stale(study, time.time())
        active: set[str] = set()
        finished: set[str] = set()
        attempts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            tid = t.user_attrs.get("trial_id")
            if tid is None:
                continue
            status = t.user_attrs.get("status")
            if t.state in (TrialState.WAITING, TrialState.RUNNING):
                active.add(tid)
            elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or status == "diverged":
                finished.add(tid)
            elif status == "failed":
                attempts[tid] = attempts.get(tid, 0) + 1
        for spec in plan.specs:
            tid = spec.trial_id
            if tid in active or tid in finished:
                continue
            if attempts.get(tid, 0) >= MAX_ATTEMPTS:
                continue
            if is_done(plan.out_dir, tid):
                runs = read_trial(plan.out_dir, tid).get("runs")
                failed = runs is not None and len(runs) and runs["status"].iloc[0] == "failed"
                if not failed:
                    continue
                counts["retried"] += 1
            study.enqueue_trial(_param_values(spec), user_attrs={"trial_id": tid}, skip_if_exists=False)
            counts["enqueued"] += 1
    return counts


def enqueue_slots(plan: Plan, searches: dict[str, optuna.Study]) -> int:
    """Top each search study up to n_trials: finished + waiting + running slots."""
    n_trials, added = plan.cfg.study.n_trials, 0
    with _file_lock(plan.out_dir / ".enqueue.lock"):
        now = time.time()
        for study in searches.values():
            _fail_stale(study, now)
            used, highest = 0, -1
            for t in study.get_trials(deepcopy=False):
                if "slot" not in t.user_attrs:
                    continue
                highest = max(highest, int(t.user_attrs["slot"]))
                if t.user_attrs.get("status") not in ("stale", "duplicate"):
                    used += 1
            for i in range(max(0, n_trials - used)):
                study.enqueue_trial({}, user_attrs={"slot": highest + 1 + i}, skip_if_exists=False)
                added += 1
    return added


def searches_finished(searches: dict[str, optuna.Study]) -> bool:
    return not any(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                   for study in searches.values())


def add_reruns(plan: Plan, searches: dict[str, optuna.Study]) -> None:
    """Once the searches are done: the best setting of each study, once per grid seed."""
    if plan.cfg.study is None or not plan.cfg.study.rerun_best or plan.specs or not searches_finished(searches):
        return
    for s in plan.studies:
        best = study_mod.best_trial(searches[s.name], plan.cfg.study)
        if best is not None:
            plan.specs.extend(study_mod.rerun_specs(plan.cfg, plan.data_id, s, best))


def _param_values(spec: TrialSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.factors.items() if v is not None}


def _suggest_params(trial: optuna.Trial, spec: TrialSpec) -> None:
    """Record the trial's settings as Optuna params (so the dashboard can plot them)."""
    for axis, value in spec.factors.items():
        if value is None:
            continue
        _, meta = _lookup_field(AXIS_ALIASES.get(axis, axis))
        if isinstance(value, bool):
            trial.suggest_categorical(axis, [False, True])
        elif isinstance(value, str):
            trial.suggest_categorical(axis, list(meta.get("choices") or [value]))
        elif isinstance(value, int):
            trial.suggest_int(axis, value, value)
        else:
            trial.suggest_float(axis, value, value)


def claim(study: optuna.Study) -> tuple[optuna.Trial, str] | None:
    """Atomically take one WAITING trial (WAITING → RUNNING succeeds for one caller only).
    A duplicate enqueue (same trial id or slot as a lower-numbered live trial) is dropped here."""
    storage = study._storage
    waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    for frozen in waiting:
        try:
            if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        key = _key(frozen)
        now = time.time()
        try:
            for name, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("heartbeat", now),
                                ("claimed_at", now)):
                storage.set_trial_system_attr(frozen._trial_id, name, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process judged it stale and failed it meanwhile; it will be queued again
        if key is None or _held_elsewhere(study, frozen, key):
            storage.set_trial_user_attr(frozen._trial_id, "status", "duplicate")
            storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL)
            continue
        return optuna.Trial(study, frozen._trial_id), key
    return None


def _held_elsewhere(study: optuna.Study, mine: optuna.trial.FrozenTrial, key: str) -> bool:
    """True when another, lower-numbered trial with the same key is waiting, running or finished
    well: then that one is the real one and mine is a duplicate."""
    for t in study.get_trials(deepcopy=False):
        if t.number < mine.number and _key(t) == key and (
                t.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
                or t.user_attrs.get("status") == "diverged"):
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

SUMMARY_ATTRS = ("status", "steps", "test_acc", "test_macro_f1", "best_dev_acc", "steps_to_target",
                 "seconds_to_target", "vanishing_ratio_init", "vanishing_ratio_final", "wall_s",
                 "samples_per_s", "error", "stop_reason")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def execute(spec: TrialSpec, dataset: data_mod.Dataset, device: torch.device, out_dir: Path,
            extra: dict[str, Any], recorder: TrialRecorder | None = None) -> dict[str, Any]:
    """Run one trial, catching any error as a `failed` row, and write its shards. Returns the row."""
    recorder = recorder or TrialRecorder(spec.trial_id)
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


@dataclass
class RunSettings:
    """Where a run's shared state lives (written to DIR/run.yaml so report/status find it)."""

    storage: str | None = None
    artifacts: str | None = None


def write_run_settings(out_dir: Path, settings: RunSettings) -> None:
    path = out_dir / "run.yaml"
    tmp = path.with_name(f".run.{os.getpid()}.yaml")
    tmp.write_text(yaml.safe_dump(dataclasses.asdict(settings), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def read_run_settings(out_dir: Path) -> RunSettings:
    path = Path(out_dir) / "run.yaml"
    if not path.is_file():
        return RunSettings()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return RunSettings(storage=raw.get("storage"), artifacts=raw.get("artifacts"))


def _artifact_store(path: str | None):
    if not path:
        return None
    from optuna.artifacts import FileSystemArtifactStore

    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


def upload_shards(store: Any, trial: optuna.Trial, out_dir: Path, trial_id: str) -> None:
    """Put a finished trial's shard files into the artifact store, attached to its Optuna trial."""
    from optuna.artifacts import upload_artifact

    for path in sorted(trial_dir(out_dir, trial_id).glob("*.parquet")):
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def gather_artifacts(out_dir: Path, storage_url: str | None = None, artifacts: str | None = None) -> int:
    """Download the shards of trials finished by workers that do not share this results folder
    (from the artifact store named at run time). Returns how many trials were fetched."""
    settings = read_run_settings(out_dir)
    storage_url, artifacts = storage_url or settings.storage, artifacts or settings.artifacts
    store = _artifact_store(artifacts)
    if store is None:
        return 0
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    storage = open_storage(out_dir, storage_url)
    fetched = 0
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            tid = t.user_attrs.get("shard")
            if tid is None or is_done(out_dir, tid):
                continue
            metas = get_all_artifact_meta(t, storage=storage)
            if not any(m.filename == "runs.parquet" for m in metas):
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{tid}-", dir=_mkdir(out_dir / "trials")))
            for m in metas:
                download_artifact(artifact_store=store, file_path=str(tmp / m.filename), artifact_id=m.artifact_id)
            try:
                os.rename(tmp, trial_dir(out_dir, tid))
                fetched += 1
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
    return fetched


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def worker_loop(out_dir: str | Path, storage_url: str | None, device_name: str, threads: int | None,
                worker: int = 0, artifacts: str | None = None) -> int:
    """Claim and run trials until none is waiting. Returns how many this worker ran."""
    out_dir = Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    cfg = load_results_config(out_dir)
    plan = make_plan(cfg, out_dir)
    storage = open_storage(out_dir, storage_url)
    searches = open_searches(plan, storage, worker) if cfg.study else {}
    add_reruns(plan, searches)
    queues = [*searches.values(), open_queue(plan, storage)]
    store = _artifact_store(artifacts)
    device = resolve_device(device_name)
    datasets: dict[int, data_mod.Dataset] = {}
    extra = {"git_commit": git_commit(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    ran = 0
    while True:
        claimed = next((c for q in queues if (c := claim(q)) is not None), None)
        if claimed is None:
            return ran
        trial, key = claimed
        study = trial.study
        recorder = None
        if key.startswith("slot:"):  # a search trial: the sampler chooses its settings now
            spec = study_mod.search_spec(cfg, plan.data_id, next(s for s in plan.studies if s.name == study.study_name),
                                         trial)
            if len(cfg.study.objectives) == 1:  # multi-objective trials cannot report
                recorder = TrialRecorder(spec.trial_id, on_eval=_pruning_hook(trial))
        else:
            spec = plan.by_id.get(key)
            if spec is None:  # a re-run enqueued after this worker planned: plan again
                plan = make_plan(cfg, out_dir)
                add_reruns(plan, searches)
                spec = plan.by_id.get(key)
            if spec is None:  # queued by an earlier config whose grid has since shrunk: not ours to run
                storage.set_trial_user_attr(trial._trial_id, "status", "not in config")
                study.tell(trial, state=TrialState.FAIL)
                continue
            _suggest_params(trial, spec)
            recorder = TrialRecorder(spec.trial_id, on_eval=_reporting_hook(trial))
        storage.set_trial_system_attr(trial._trial_id, "worker", worker)
        pad = spec.data.pad_size
        if pad not in datasets:
            datasets[pad] = data_mod.load(spec.data, cache_dir(out_dir), pad)
        with _Heartbeat(storage, trial._trial_id):
            row = execute(spec, datasets[pad], device, out_dir, extra, recorder)
        trial.set_user_attr("shard", spec.trial_id)
        for k in SUMMARY_ATTRS:
            value = row.get(k)
            if value is not None and not (isinstance(value, float) and value != value):
                trial.set_user_attr(k, value)
        if store is not None:
            upload_shards(store, trial, out_dir, spec.trial_id)
        status = row["status"]
        if status == "complete":
            study.tell(trial, study_mod.objective_values(cfg, row) if key.startswith("slot:")
                       else row["best_dev_acc"])
        elif status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
        ran += 1


def _pruning_hook(trial: optuna.Trial):
    def on_eval(step: int, dev_acc: float) -> bool:
        trial.report(dev_acc, step)
        return trial.should_prune()
    return on_eval


def _reporting_hook(trial: optuna.Trial):
    """Report dev accuracy at each evaluation (optuna-dashboard's intermediate values); never prune."""
    def on_eval(step: int, dev_acc: float) -> bool:
        trial.report(dev_acc, step)
        return False
    return on_eval


def _worker_main(args: tuple) -> None:
    worker_loop(*args)


def _run_workers(plan: Plan, monitor: Any, workers: int, storage: str | None, devices: list[str],
                 threads: int, artifacts: str | None) -> None:
    if workers == 1:
        runner = threading.Thread(target=worker_loop,
                                  args=(plan.out_dir, storage, devices[0], threads, 0, artifacts), daemon=True)
        runner.start()
        while runner.is_alive():
            monitor.poll()
            runner.join(0.5)
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main,
                         args=((plan.out_dir, storage, devices[i % len(devices)], threads, i, artifacts),))
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


def run(cfg: ExperimentConfig, out_dir: str | Path, *, workers: int = 1, storage: str | None = None,
        device: str = "auto", threads: int | None = None, progress: bool = True,
        artifacts: str | None = None) -> dict[str, int]:
    """Run (or resume) the experiment into out_dir with `workers` processes. Returns status counts."""
    from harness.progress import Progress

    devices = device.split(",")
    for d in devices:  # a device that is not there is a usage error, found before any work
        resolve_device(d)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg, out_dir)
    check_compatible(plan)
    prepare_data(plan)
    write_config(plan)
    write_run_settings(out_dir, RunSettings(storage=storage, artifacts=artifacts))
    store = open_storage(out_dir, storage)
    queue = open_queue(plan, store)
    searches = open_searches(plan, store) if cfg.study else {}
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    monitor = Progress(plan, enabled=progress)
    if cfg.study:
        enqueue_slots(plan, searches)
        _run_workers(plan, monitor, workers, storage, devices, threads, artifacts)
        while not searches_finished(searches):  # slots still running in another command
            monitor.poll()
            time.sleep(1.0)
        add_reruns(plan, searches)
    enqueue_missing(plan, queue)
    _run_workers(plan, monitor, workers, storage, devices, threads, artifacts)
    # Trials still running in another command (same storage) finish there: wait for them.
    while _running_elsewhere([queue, *searches.values()]):
        monitor.poll()
        time.sleep(1.0)
    gather_artifacts(out_dir, storage, artifacts)
    monitor.poll()
    monitor.close()
    combine(out_dir)
    return monitor.counts()


def _running_elsewhere(studies: list[optuna.Study]) -> bool:
    """Whether any trial of these studies is RUNNING with a live worker."""
    now = time.time()
    return any(worker_alive(t, now) for study in studies
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def dry_run(cfg: ExperimentConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """The trials the config describes, whether each is done, and a rough cost estimate."""
    plan = make_plan(cfg, out_dir)
    n_train = cfg.data.synth.n_train if cfg.data.kind == "synthetic" else None

    def steps(t: Any) -> int | None:
        if not n_train:
            return None
        s = t.epochs * -(-n_train // t.batch_size)
        return min(s, t.max_steps) if t.max_steps else s

    if cfg.study is not None:
        return [{"trial_id": f"{s.name} × {cfg.study.n_trials} sampled trials", **s.fixed,
                 "max_steps": steps(cfg.train), "done": False, "trials": cfg.study.n_trials} for s in plan.studies]
    return [{"trial_id": spec.trial_id, **spec.factors, "max_steps": steps(spec.train),
             "done": is_done(plan.out_dir, spec.trial_id)} for spec in plan.specs]
