"""Live trackers (`run.trackers`, `harness run --tracker NAME`): each worker streams its trials'
scalars to TensorBoard, MLflow and/or W&B at every evaluation, so a run can be watched while it goes.

Names, steps and grouping are those of `harness export` (harness.export.trials): scalars `dev/acc`,
`train/loss`, `grad_norm/global`, `grad_norm/<group>`, `update_ratio/<group>`, … at the trial's step;
a TensorBoard run folder <configuration>/seed=<s>-<trial_id>/; an MLflow run named like the
exported child run, with the same `harness.trial_id`, `harness.group` and `harness.phase` tags and
the settings as params (no parent run: workers would race to create it). At the trial's end the
MLflow run gets its outcome metrics and status.

W&B (optional) gets one offline run per trial, grouped and named as the export does.

With `train.save_model`, a trial's weights file (runs column model_file) is attached at its end as
`harness export` attaches it: an MLflow artifact under `model/`, a W&B artifact of type "model"
(TensorBoard has no artifacts).

They write beside the exports, never into them: DIR/tensorboard-live/, DIR/mlflow-live/ (a SQLite
store DIR/mlflow-live/mlflow.db, artifacts beside it, as the export makes) and DIR/wandb-live/. So
`harness export DIR --to tensorboard|mlflow|wandb` afterwards writes DIR/tensorboard/, DIR/mlflow/
and DIR/wandb/ as it always does, with nothing skipped and nothing twice.

A tracker whose library is not installed stops `harness run` before any work (exit 2, with the line
that installs it: `check_libraries`). A tracker that cannot be used in a worker all the same (its
library missing on another machine, a write fails) is one warning line on stderr and is dropped for
that trial (a missing library: said once per worker); the trial goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.export import mlflow as mlflow_export
from harness.export import tensorboard as tb_export
from harness.export import wandb as wandb_export
from harness.export.trials import (
    Scalar,
    TrialView,
    group_keys,
    outcomes,
    plain,
    raw_config,
    scalars_of,
    trial_view,
)
from harness.extras import EXTRAS, require
from harness.records import TrialRecorder
from harness.results_dir import find_model

SUFFIX = "-live"
_warned: set[str] = set()  # trackers whose library is missing: said once per process


def check_libraries(trackers: Iterable[str]) -> None:
    """Refuse, before any work, a tracker (`run.trackers`) whose library is not installed: a
    ConfigError (exit 2) that names the extra to install (harness.extras.require)."""
    for name in trackers:
        require(EXTRAS[name][0], name, f"run.trackers: {name}")


def live_out(results_dir: str | Path, tracker: str) -> Path:
    """Where live tracking writes: DIR/tensorboard-live, DIR/mlflow-live."""
    return Path(results_dir) / f"{tracker}{SUFFIX}"


def warn(tracker: str, trial_id: str, error: BaseException) -> None:
    """One line on stderr: the tracker is dropped for this trial, which goes on."""
    if isinstance(error, ImportError):
        if tracker in _warned:
            return
        _warned.add(tracker)
    print(f"harness: warning: live tracker {tracker} failed for trial {trial_id} "
          f"({type(error).__name__}: {error}); the trial goes on without it", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- naming

class Naming:
    """How a results folder's trials are named in the trackers, as `harness export` names them
    once they are all finished: the configuration keys are those that vary among the planned trials."""

    def __init__(self, results_dir: Path, rows: list[dict[str, Any]]):
        import pandas as pd

        self.results_dir = Path(results_dir)
        try:
            self.raw = raw_config(self.results_dir)
        except Exception:  # a damaged config.yaml: named by trial id alone
            self.raw = {}
        name = self.raw.get("name") if isinstance(self.raw, dict) else None
        self.experiment = name if isinstance(name, str) and name else self.results_dir.name
        try:
            self.keys = group_keys(pd.DataFrame(rows), self.raw) if rows else []
        except Exception:  # naming must never stop a trial
            self.keys = []

    def view(self, row: dict[str, Any]) -> TrialView:
        """A started trial (its settings columns and trial_id) as the exporters see it."""
        return trial_view({**row, "status": "running"}, [k for k in self.keys if k in row], [])


def naming_for(plan: Any) -> Naming:
    """The Naming of a plan (harness.plan.Plan), from the settings columns of every planned trial."""
    from harness.train import settings_columns  # torch: only for a run with trackers

    rows = [{**settings_columns(s), "trial_id": s.trial_id} for s in plan.by_id.values()]
    return Naming(plan.out_dir, rows)


# ----------------------------------------------------------------------------- sinks

def _now_ms() -> int:
    return int(time.time() * 1000)


class TensorBoardSink:
    """A SummaryWriter on the trial's run folder under DIR/tensorboard-live/, flushed at every evaluation."""

    def __init__(self, out: Path, view: TrialView, naming: Naming):
        from torch.utils.tensorboard import SummaryWriter  # a tracker's library: only when it is used

        self.writer = SummaryWriter(log_dir=str(tb_export.run_dir(out, view)))

    def write(self, scalars: list[Scalar]) -> None:
        now = time.time()
        for step, _elapsed, name, value in scalars:
            self.writer.add_scalar(name, value, step, walltime=now)
        self.writer.flush()

    def close(self, row: dict[str, Any] | None) -> None:
        self.writer.close()


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive flock on OUT/.lock: one worker at a time creates (migrates) or writes the SQLite
    store (two creating it at once leave it half-migrated; concurrent writers meet 'database is locked')."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): SQLite's own locking only
        yield
        return
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _experiment_id(client: Any, name: str, out: Path) -> str:
    """The experiment `name` in the store, created by whichever worker comes first."""
    for _ in range(5):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=mlflow_export.artifact_location(out))
        except Exception:  # another worker created it meanwhile
            time.sleep(0.05)
    raise RuntimeError(f"cannot create the MLflow experiment {name!r}")


class MlflowSink:
    """One MLflow run per trial in the SQLite store DIR/mlflow-live/mlflow.db (as `harness export`
    makes DIR/mlflow/mlflow.db); metrics logged with their step at
    every evaluation; at the end the outcome metrics, the status tag and the run's end."""

    def __init__(self, out: Path, view: TrialView, naming: Naming):
        from mlflow.tracking import MlflowClient  # a tracker's library: only when it is used

        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        with _locked(out):
            self.client = MlflowClient(tracking_uri=mlflow_export.tracking_uri(out))
            eid = _experiment_id(self.client, naming.experiment, out)
        tags = {mlflow_export.TRIAL_TAG: view.trial_id, mlflow_export.GROUP_TAG: view.group,
                "harness.phase": view.phase, "harness.status": "running", "harness.live": "true"}
        with _locked(out):
            run = self.client.create_run(eid, run_name=view.name, tags=tags)
            self.run_id = run.info.run_id
            mlflow_export._log_params(self.client, self.run_id, view.params)
        self.last_step = 0

    def write(self, scalars: list[Scalar]) -> None:
        from mlflow.entities import Metric  # a tracker's library: only when it is used

        now = _now_ms()
        metrics = [Metric(name, value, now, step) for step, _elapsed, name, value in scalars]
        self.last_step = max([self.last_step, *(s for s, *_ in scalars)])
        with _locked(self.out):
            for chunk in mlflow_export._chunks(metrics, mlflow_export.BATCH_METRICS):
                self.client.log_batch(self.run_id, metrics=list(chunk))

    def attach_model(self, path: Path) -> None:
        """The trial's weights file as an artifact of its run (under `model/`)."""
        with _locked(self.out):
            mlflow_export.log_model_file(self.client, self.run_id, path)

    def close(self, row: dict[str, Any] | None) -> None:
        from mlflow.entities import Metric, RunTag  # a tracker's library: only when it is used

        status = str(plain((row or {}).get("status")) or "failed")
        now = _now_ms()
        metrics = [Metric(k, float(v), now, self.last_step) for k, v in outcomes(row or {}).items()]
        with _locked(self.out):
            for chunk in mlflow_export._chunks(metrics, mlflow_export.BATCH_METRICS):
                self.client.log_batch(self.run_id, metrics=list(chunk))
            self.client.log_batch(self.run_id, tags=[RunTag("harness.status", status)])
            self.client.set_terminated(self.run_id, mlflow_export.RUN_STATUS.get(status, "FAILED"))


class WandbSink:
    """One offline W&B run per trial under DIR/wandb-live/wandb/offline-run-*-<trial_id>/, in the
    project, group and name `harness export --to wandb` gives it; a history row per evaluation; at the
    end the outcome metrics and status in its summary. Upload with `wandb sync`."""

    def __init__(self, out: Path, view: TrialView, naming: Naming):
        import wandb  # a tracker's library: only when it is used

        out.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=naming.experiment, group=view.group, name=view.name, id=view.trial_id,
                              job_type=view.phase, tags=[view.parent], dir=str(out), mode="offline",
                              config=view.params, settings=wandb_export._settings(wandb), reinit="create_new")

    def write(self, scalars: list[Scalar]) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for step, _elapsed, name, value in scalars:
            by_step.setdefault(step, {})[name] = value
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)

    def attach_model(self, path: Path) -> None:
        """The trial's weights file as a W&B artifact of type "model" logged by the run."""
        wandb_export.log_model_file(self.run, self.run.id, path)

    def close(self, row: dict[str, Any] | None) -> None:
        status = str(plain((row or {}).get("status")) or "failed")
        self.run.summary.update({**outcomes(row or {}), "status": status})
        self.run.finish(exit_code=0 if status != "failed" else 1)


SINKS: dict[str, Callable[[Path, TrialView, Naming], Any]] = {"tensorboard": TensorBoardSink, "mlflow": MlflowSink,
                                                              "wandb": WandbSink}


# ----------------------------------------------------------------------------- the tracker

class LiveTracker:
    """A recorder's `on_eval` hook that first writes the rows recorded since the last evaluation to
    every tracker, then calls the hook it wraps (whose answer it returns: prune or not)."""

    def __init__(self, results_dir: str | Path, trackers: Iterable[str], naming: Naming, row: dict[str, Any],
                 recorder: Any, inner: Callable[[int, float], bool] | None = None):
        self.recorder, self.inner = recorder, inner
        self.results_dir = Path(results_dir)
        self.trial_id = recorder.trial_id
        self.view = naming.view({**row, "trial_id": self.trial_id})
        self.sinks: dict[str, Any] = {}
        self.done = {"curves": 0, "grad_norms": 0}
        for name in trackers:
            try:
                self.sinks[name] = SINKS[name](live_out(results_dir, name), self.view, naming)
            except Exception as e:  # a tracker never stops a trial
                warn(name, self.trial_id, e)

    def __call__(self, step: int, dev_acc: float) -> bool:
        self.update()
        return bool(self.inner and self.inner(step, dev_acc))

    def _new(self, table: str) -> list[dict[str, Any]]:
        rows = self.recorder.rows[table]
        if len(rows) < self.done[table]:  # rows put back from a checkpoint: all of them again
            self.done[table] = 0
        new, self.done[table] = rows[self.done[table]:], len(rows)
        return new

    def _each(self, what: Callable[[Any], None]) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                what(sink)
            except Exception as e:  # one warning, the tracker is dropped, the trial goes on
                warn(name, self.trial_id, e)
                del self.sinks[name]
                try:
                    sink.close(None)
                except Exception:  # already said
                    pass

    def update(self) -> None:
        """Write the scalars of the rows recorded since the last call."""
        if not self.sinks:
            return
        scalars = scalars_of(self._new("curves"), self._new("grad_norms"))
        if scalars:
            self._each(lambda s: s.write(scalars))

    def close(self) -> None:
        """At the trial's end: what is left (a last evaluation not reported), the weights file
        (train.save_model) to the trackers that keep artifacts, then close each tracker."""
        self.update()
        runs = self.recorder.rows.get("runs") or [None]
        self.attach_model(runs[0])
        self._each(lambda s: s.close(runs[0]))
        self.sinks.clear()

    def attach_model(self, row: dict[str, Any] | None) -> None:
        """Attach the trial's weights file, when its row names one, to every tracker that has an
        `attach_model` (MLflow, W&B). The runner closes a trial's trackers before or after it publishes
        the trial's folder: the file is looked for in the staged folder first (records.find_model)."""
        if not self.sinks or plain((row or {}).get("model_file")) is None:
            return
        path = find_model(self.results_dir, self.trial_id)
        if path is None:
            warn("live", self.trial_id, FileNotFoundError(f"{row['model_file']} is not in {self.results_dir}"))
            return
        self._each(lambda s: s.attach_model(path) if hasattr(s, "attach_model") else None)


def attach(plan: Any, spec: Any, recorder: Any) -> Any:
    """With `run.trackers` set: `recorder` (one made for `spec` when None) with its on_eval hook
    wrapped in a LiveTracker. Otherwise `recorder` unchanged."""
    trackers = list(getattr(plan.cfg.run, "trackers", None) or [])
    if not trackers:
        return recorder
    from harness.train import settings_columns  # torch: only for a run with trackers

    if recorder is None:
        recorder = TrialRecorder(spec.trial_id)
    naming = getattr(plan, "_live_naming", None)
    if naming is None:
        try:
            naming = naming_for(plan)
        except Exception:  # naming must never stop a trial
            naming = Naming(plan.out_dir, [])
        plan._live_naming = naming
    try:
        row = settings_columns(spec)
    except Exception:
        row = {}
    recorder.on_eval = LiveTracker(plan.out_dir, trackers, naming, row, recorder, recorder.on_eval)
    return recorder


def finish(recorders: Iterable[Any]) -> None:
    """Close the live trackers of finished trials' recorders (those without one: nothing)."""
    for recorder in recorders:
        hook = getattr(recorder, "on_eval", None)
        if isinstance(hook, LiveTracker):
            try:
                hook.close()
            except Exception as e:
                warn("live", hook.trial_id, e)
