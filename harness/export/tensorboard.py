"""TensorBoard: one run folder per trial, OUT/<configuration>/seed=<s>-<trial_id>/, with every scalar
(`add_scalar`, at its step and wall time) and the trial's settings and outcome (`add_hparams`, for
the HParams dashboard). View with `tensorboard --logdir OUT`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.export.trials import Experiment, TrialView, fmt
from harness.extras import require


def run_dir(out: Path, view: TrialView) -> Path:
    """The folder of one trial's event files."""
    seed = f"seed={fmt(view.seed)}-" if view.seed is not None else ""
    return out / safe_name(view.group) / f"{seed}{view.trial_id}"


def safe_name(text: str) -> str:
    """A folder name: path separators replaced."""
    return text.replace("/", "_").replace("\\", "_") or "_"


def exported(out: Path, trial_id: str) -> bool:
    """Whether a run folder for this trial already holds event files (from an earlier export)."""
    return any(any(d.glob("events.out.tfevents.*")) for d in out.glob(f"*/*{trial_id}") if d.is_dir())


def hparams(exp: Experiment) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """Per trial, the settings as TensorBoard accepts them (str, int, float, bool; a setting that is
    null in every trial as the text 'None', otherwise null values left out), and the discrete domain
    of every text or boolean setting (so the HParams dashboard offers them as filters)."""
    names = sorted({k for v in exp.trials for k in v.params} | {"status"})
    per_trial: list[dict[str, Any]] = [{} for _ in exp.trials]
    domains: dict[str, list[Any]] = {}
    for name in names:
        values = [v.status if name == "status" else v.params.get(name) for v in exp.trials]
        if all(x is None for x in values):
            values = ["None"] * len(values)
        for d, x in zip(per_trial, values):
            if x is not None:
                d[name] = x
        present = [x for x in values if x is not None]
        for kind in (str, bool):
            if present and all(type(x) is kind for x in present):
                domains[name] = sorted(set(present))
    return per_trial, domains


def write(exp: Experiment, out: Path) -> tuple[int, int]:
    """Write every trial not exported yet. Returns (written, skipped)."""
    require("tensorboard", "tensorboard", "harness export --to tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    per_trial, domains = hparams(exp)
    written = skipped = 0
    for view, hp in zip(exp.trials, per_trial):
        if exported(out, view.trial_id):
            skipped += 1
            continue
        with SummaryWriter(log_dir=str(run_dir(out, view))) as w:
            for step, elapsed, name, value in view.scalars:
                w.add_scalar(name, value, step, walltime=view.walltime(elapsed))
            metrics = {f"summary/{k}": v for k, v in view.summary.items()}
            trial_domains = {k: d for k, d in domains.items() if k in hp}
            # run_name "." keeps the hparams in the trial's own folder (not a timestamped subfolder).
            w.add_hparams(hp, metrics, hparam_domain_discrete=trial_domains, run_name=".",
                          global_step=int(view.summary.get("steps", 0)))
        written += 1
    return written, skipped
