"""`harness export DIR --to tensorboard|mlflow|wandb [OUT]`: a results folder into a tracker, with
that tracker's own library (an optional extra each).

Every finished trial becomes one tracker run: its curves (train/dev loss and accuracy, the global
gradient norm, by step), per-group gradient norms and update ratios, its settings (as the tracker's
hyperparameters), its outcome (`steps_to_target`, `reached`, accuracies, …) and timings (as metrics),
and its system facts (hardware, versions, worker: as tags, never hyperparameters), at the trial's own
start and end times (harness.export.trials says which column is which). Exporting again into the
same OUT adds only the trials not there yet.
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


def _local_path(out: str | Path) -> Path | None:
    """The file-system path OUT writes to: itself, or a sqlite:/// or file: URI's path; None for a
    server (http://...)."""
    text = str(out)
    if "://" not in text:
        return Path(text)
    for prefix in ("sqlite:///", "file://"):  # sqlite:///rel.db, sqlite:////abs.db, file:///abs
        if text.startswith(prefix):
            return Path(text[len(prefix):])
    return None


def check_out(results_dir: Path, to: str, out: str | Path) -> None:
    """Refuse an OUT inside the results folder other than (below) its default DIR/<tracker>: what
    it writes would mix with the run's own files (in DIR/trials, the next `harness status` or `harness
    run` takes it for a damaged trial)."""
    path = _local_path(out)
    if path is None:
        return
    path, home = path.expanduser().resolve(), Path(results_dir).resolve()
    if path.is_relative_to(home) and not path.is_relative_to(default_out(home, to)):
        raise ConfigError(f"harness export: OUT {out} is inside the results folder {results_dir}, where it would "
                          f"mix with the run's files; write it outside {results_dir}, or leave OUT out for the "
                          f"default {default_out(results_dir, to)}")


def _view_command(target: str, out: str, experiment: str) -> str:
    """How to look at what was written: the tracker's viewer on a local store, a server's own URL."""
    if target == "tensorboard":
        return f"tensorboard --logdir {out}"
    if target == "mlflow":
        if _local_path(out) is None:  # a tracking server (http://, https://, databricks, ...)
            return f"open {out} in a browser (the tracking server's UI), experiment {experiment!r}"
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
    target_out = default_out(results_dir, to) if out is None else out if to == "mlflow" else Path(out)
    check_out(results_dir, to, target_out)
    exp = load_experiment(results_dir)
    writer = importlib.import_module(f"harness.export.{to}")
    written, skipped = writer.write(exp, target_out)
    shown = writer.tracking_uri(target_out) if to == "mlflow" else str(target_out)
    return ExportResult(target=to, out=shown, written=written, skipped=skipped, view=_view_command(to, shown, exp.name))
