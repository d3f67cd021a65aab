"""Weights & Biases, offline: one run per trial under OUT/wandb/offline-run-*-<trial_id>/, in the
project named after the experiment, grouped by configuration (the settings without the seed), so
W&B's grouped view draws each configuration's mean and band over seeds as the report does.
Nothing is sent; upload later with `wandb sync OUT/wandb/offline-run-*`.

A run's config is the trial's settings, with its system facts (hardware, versions, worker, ids)
under `system`; its summary holds the outcome metrics (`steps_to_target`, `reached`, `test_acc`, …),
the timings as `time/<column>` and the status; with `train.save_model` it logs the trial's weights
file as an artifact of type "model" named `model-<trial_id>`. Its start time is the trial's, and each history row's
`_timestamp` is the trial's start plus its training seconds at that step, so W&B's wall-time axes
and run dates are the trial's. `_runtime` (W&B's process clock) is measured by wandb's own service
while exporting and cannot be set: the trial's duration is `time/wall_s`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.export.trials import Experiment, TrialView
from harness.extras import require

# W&B settings that keep an export quiet and small; only those this wandb version knows are passed.
QUIET_SETTINGS = {"silent": True, "console": "off", "x_disable_stats": True, "x_disable_meta": True,
                  "x_disable_machine_info": True, "x_save_requirements": False, "save_code": False,
                  "disable_git": True, "disable_job_creation": True}


def exported(out: Path, trial_id: str) -> bool:
    """Whether an offline run of this trial is already in OUT/wandb (from an earlier export)."""
    return any((out / "wandb").glob(f"offline-run-*-{trial_id}"))


def _settings(wandb: Any) -> Any:
    fields = getattr(wandb.Settings, "model_fields", None) or {}
    return wandb.Settings(**{k: v for k, v in QUIET_SETTINGS.items() if k in fields})


@contextmanager
def started_at(seconds: float | None) -> Iterator[None]:
    """Within it, a run that `wandb.init` creates starts at `seconds` (unix time) instead of now.

    wandb has no setting for a run's start time: `Run.__init__` takes time.time() and `wandb.init`
    sends it in the run record right after `Run._set_backend`. So that method is wrapped to set the
    time first. With a wandb that lacks either, runs start at the export time (the trial's own start
    is in config `system.started_at` all the same)."""
    from wandb.sdk import wandb_run  # a tracker's library: only when exporting to it

    run_class = getattr(wandb_run, "Run", None)
    original = getattr(run_class, "_set_backend", None)
    if seconds is None or original is None:
        yield
        return

    def set_backend(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._start_time = seconds
        return original(self, *args, **kwargs)

    run_class._set_backend = set_backend
    try:
        yield
    finally:
        run_class._set_backend = original


def history(view: TrialView) -> Iterator[tuple[int, dict[str, Any]]]:
    """(step, row) per evaluation step; a row carries `_timestamp` when its wall time is known."""
    for step, elapsed, values in view.by_step():
        when = view.walltime(elapsed)
        yield step, values if when is None else {**values, "_timestamp": when}


def log_model_file(run: Any, trial_id: str, path: Path) -> None:
    """A trial's weights file as a W&B artifact of type "model", `model-<trial_id>`, logged by `run`."""
    import wandb  # a tracker's library: only when exporting to it

    artifact = wandb.Artifact(name=f"model-{trial_id}", type="model", metadata={"trial_id": trial_id})
    artifact.add_file(str(path), name=Path(path).name)
    run.log_artifact(artifact)


def _write_one(wandb: Any, exp: Experiment, view: TrialView, out: Path) -> None:
    system = {k: v for k, v in view.system.items() if k != "traceback"}
    with started_at(view.started_at):
        run = wandb.init(project=exp.name, group=view.group, name=view.name, id=view.trial_id,
                         job_type=view.phase, tags=[view.status, view.parent], dir=str(out), mode="offline",
                         config={**view.params, "system": system}, settings=_settings(wandb))
    try:
        for step, values in history(view):
            run.log(values, step=step)
        run.summary.update({**view.metrics, "status": view.status})
        model = view.model_path(exp.results_dir)
        if model is not None:
            log_model_file(run, view.trial_id, model)
    finally:
        run.finish(exit_code=0 if view.status != "failed" else 1)


def write(exp: Experiment, out: Path) -> tuple[int, int]:
    """Write every trial not exported yet as an offline run. Returns (written, skipped)."""
    wandb = require("wandb", "wandb", "harness export --to wandb")
    out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    previous = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline"  # also for anything wandb starts on its own
    try:
        for view in exp.trials:
            if exported(out, view.trial_id):
                skipped += 1
                continue
            _write_one(wandb, exp, view, out)
            written += 1
    finally:
        if previous is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = previous
    return written, skipped
