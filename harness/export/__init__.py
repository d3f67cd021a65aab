"""`harness export DIR --to tensorboard|mlflow|wandb [OUT]`: a results folder into a tracker, with
that tracker's own library (an optional extra each).

Every finished trial becomes one tracker run: its curves (train/dev loss and accuracy, the global
gradient norm, by step), per-group gradient norms and update ratios, its settings and its outcome.
Exporting again into the same OUT adds only the trials not there yet.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from harness.config import ConfigError
from harness.export.trials import Experiment, TrialView, load_experiment

TARGETS = ("tensorboard", "mlflow", "wandb")

__all__ = ["TARGETS", "Experiment", "ExportResult", "TrialView", "default_out", "export", "load_experiment"]


@dataclass(frozen=True)
class ExportResult:
    target: str
    out: str          # the folder (or, for MLflow, the tracking URI) written to
    written: int      # trials written now
    skipped: int      # trials already there from an earlier export
    view: str         # the command that shows them


def default_out(results_dir: Path, target: str) -> Path:
    """DIR/<target>: DIR/tensorboard, DIR/mlflow (a SQLite store), DIR/wandb."""
    return Path(results_dir) / target


def _view_command(target: str, out: str) -> str:
    if target == "tensorboard":
        return f"tensorboard --logdir {out}"
    if target == "mlflow":
        return f"mlflow ui --backend-store-uri {out}"
    return f"wandb sync {Path(out) / 'wandb'}/offline-run-*   (uploads; needs `wandb login`)"


def export(results_dir: str | Path, to: str, out: str | Path | None = None) -> ExportResult:
    """Export every finished trial of `results_dir` to the tracker `to` (one of TARGETS) at `out`
    (default DIR/<to>). Raises ConfigError for an unknown target, a folder with no results, or a
    missing tracker library (naming the extra to install)."""
    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    results_dir = Path(results_dir)
    if not (results_dir / "trials").is_dir() and not (results_dir / "config.yaml").is_file():
        raise ConfigError(f"{results_dir} is not a results directory (no config.yaml and no trials/)")
    exp = load_experiment(results_dir)
    target_out = default_out(results_dir, to) if out is None else out if to == "mlflow" else Path(out)
    writer = importlib.import_module(f"harness.export.{to}")
    written, skipped = writer.write(exp, target_out)
    shown = writer.tracking_uri(target_out) if to == "mlflow" else str(target_out)
    return ExportResult(target=to, out=shown, written=written, skipped=skipped, view=_view_command(to, shown))
