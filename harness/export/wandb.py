"""Weights & Biases, offline: one run per trial under OUT/wandb/offline-run-*-<trial_id>/, in the
project named after the experiment, grouped by configuration (the settings without the seed), so
W&B's grouped view draws each configuration's mean and band over seeds as the report does.
Nothing is sent; upload later with `wandb sync OUT/wandb/offline-run-*`."""

from __future__ import annotations

import os
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


def _write_one(wandb: Any, exp: Experiment, view: TrialView, out: Path) -> None:
    run = wandb.init(project=exp.name, group=view.group, name=view.name, id=view.trial_id,
                     job_type=view.phase, tags=[view.status, view.parent], dir=str(out), mode="offline",
                     config={**view.params, "trial_id": view.trial_id}, settings=_settings(wandb))
    try:
        for step, _elapsed, values in view.by_step():
            run.log(values, step=step)
        run.summary.update({**view.summary, "status": view.status, **{f"info/{k}": v for k, v in view.tags.items()
                                                                      if k not in ("traceback", "status")}})
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
