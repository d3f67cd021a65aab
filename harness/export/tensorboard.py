"""TensorBoard: one run folder per trial, OUT/<configuration>/seed=<s>-<trial_id>/, and the HParams
experiment in OUT itself. View with `tensorboard --logdir OUT`.

A trial's folder holds every scalar (at its step and wall time: the trial's start plus its training
seconds), its outcome metrics as `summary/<column>` and its timings as `time/<column>` (at its last
step and end time), its settings as the HParams session (started at the trial's start, ended with
its status at its end), and its system facts (hardware, versions, worker, …) as the text `system`.

OUT's own event file holds the HParams experiment, written with TensorBoard's hparams API: every
setting with its type and domain (integer settings as their discrete values, booleans as booleans;
TensorBoard has no integer type) and every metric column, `steps_to_target` and `reached` first.
Each export rewrites it for all the experiment's trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.export.trials import SUMMARY_METRICS, TIMINGS, Experiment, TrialView, doc, fmt
from harness.extras import require

EXPERIMENT_SUFFIX = ".hparams"  # OUT/events.out.tfevents.*.hparams: the HParams experiment
MAX_DISCRETE = 20               # a numeric setting with more distinct values gets an interval domain
# Metric columns the dashboard always shows, even while no trial has a value (none reached the target yet)
HEADLINE = ("steps_to_target", "reached", "test_acc", "best_dev_acc")
# harness status -> the HParams session status (TensorBoard knows success, failure, running, unknown)
SESSION_STATUS = {"complete": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE",
                  "pruned": "STATUS_FAILURE"}


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


def metric_tag(name: str) -> str:
    """The scalar tag of a metric: summary/<outcome>, time/<timing>."""
    return name if name.startswith("time/") else f"summary/{name}"


def hparams(exp: Experiment) -> list[dict[str, Any]]:
    """Per trial, its settings as TensorBoard takes them (str, int, float, bool): a setting null in
    every trial as the text 'None', otherwise null values left out; a setting whose values mix types
    as text."""
    names = sorted({k for v in exp.trials for k in v.params})
    per_trial: list[dict[str, Any]] = [{} for _ in exp.trials]
    for name in names:
        values = [v.params.get(name) for v in exp.trials]
        if all(x is None for x in values):
            values = ["None"] * len(values)
        if len({_kind(x) for x in values if x is not None}) > 1:
            values = [fmt(x) if x is not None else None for x in values]
        for d, x in zip(per_trial, values):
            if x is not None:
                d[name] = x
    return per_trial


def _kind(value: Any) -> type:
    """The HParams type of a value: bool, str, or float for any number."""
    return bool if isinstance(value, bool) else str if isinstance(value, str) else float


def _domain(hp: Any, values: list[Any]) -> Any:
    """The domain of a setting from its values: discrete for text, booleans and a few numbers (so
    the dashboard lists the exact values), an interval for many numbers."""
    kind = next((t for t in (bool, str, int) if all(type(x) is t for x in values)), float)
    distinct = sorted({kind(x) for x in values})
    if kind in (str, bool) or len(distinct) <= MAX_DISCRETE:
        return hp.Discrete(distinct, dtype=kind)
    if kind is int:
        return hp.IntInterval(distinct[0], distinct[-1])
    return hp.RealInterval(distinct[0], distinct[-1])


def experiment_summary(exp: Experiment, per_trial: list[dict[str, Any]]) -> Any:
    """The HParams experiment (a Summary): every setting with its domain and description, the
    metric columns (HEADLINE first, then every other metric some trial has), created at the first
    trial's start."""
    from tensorboard.plugins.hparams import summary_v2 as hp  # a tracker's library: only when exporting to it

    names = sorted({k for d in per_trial for k in d})
    settings = [hp.HParam(name, _domain(hp, [d[name] for d in per_trial if name in d]), description=doc(name))
                for name in names]
    present = {k for v in exp.trials for k in v.metrics}
    metric_names = [k for k in (*SUMMARY_METRICS, *(f"time/{t}" for t in TIMINGS)) if k in present or k in HEADLINE]
    metrics = [hp.Metric(metric_tag(k), display_name=k, description=doc(k)) for k in metric_names]
    starts = [v.started_at for v in exp.trials if v.started_at is not None]
    return hp.hparams_config_pb(settings, metrics, time_created_secs=min(starts) if starts else None)


def session_summaries(view: TrialView, hp_values: dict[str, Any]) -> tuple[Any, Any]:
    """The trial's HParams session: its start (settings, started at the trial's start) and its end
    (status, at the trial's end)."""
    from tensorboard.compat.proto.summary_pb2 import Summary  # a tracker's library: only when exporting to it
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    start = hp.hparams_pb(hp_values, trial_id=view.trial_id, start_time_secs=view.started_at)
    end_info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(SESSION_STATUS.get(view.status,
                                                                                             "STATUS_UNKNOWN")))
    if view.finished_at is not None:
        end_info.end_time_secs = view.finished_at
    content = plugin_data_pb2.HParamsPluginData(session_end_info=end_info, version=metadata.PLUGIN_DATA_VERSION)
    end = Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                                       metadata=metadata.create_summary_metadata(content))])
    return start, end


def system_text(view: TrialView) -> str:
    """The trial's system facts and timings as a Markdown table (TensorBoard's text tab)."""
    rows = {**view.system, **{f"time/{k}": v for k, v in view.timings.items()}}
    rows.pop("traceback", None)
    cells = [f"| {k} | {fmt(v).replace('|', '/')} |" for k, v in rows.items()]
    return "\n".join(["| fact | value |", "| --- | --- |", *cells])


def write_experiment(exp: Experiment, out: Path, per_trial: list[dict[str, Any]]) -> None:
    """OUT's HParams experiment for every trial of `exp`, replacing the one an earlier export wrote."""
    from torch.utils.tensorboard import SummaryWriter  # a tracker's library: only when exporting to it

    for old in out.glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"):
        old.unlink()
    with SummaryWriter(log_dir=str(out), filename_suffix=EXPERIMENT_SUFFIX) as w:
        w.file_writer.add_summary(experiment_summary(exp, per_trial), 0)


def write_trial(out: Path, view: TrialView, hp_values: dict[str, Any]) -> None:
    """One trial's run folder: scalars, metrics, the HParams session and the system text."""
    from torch.utils.tensorboard import SummaryWriter  # a tracker's library: only when exporting to it

    last = max((s for s, *_ in view.scalars), default=int(view.summary.get("steps", 0)))
    end = view.finished_at
    with SummaryWriter(log_dir=str(run_dir(out, view))) as w:
        for step, elapsed, name, value in view.scalars:
            w.add_scalar(name, value, step, walltime=view.walltime(elapsed))
        for name, value in view.metrics.items():
            w.add_scalar(metric_tag(name), float(value), last, walltime=end)
        w.add_text("system", system_text(view), last, walltime=end)
        start_summary, end_summary = session_summaries(view, hp_values)
        writer = w.file_writer
        writer.add_summary(start_summary, 0, walltime=view.started_at)
        writer.add_summary(end_summary, last, walltime=end)


def write(exp: Experiment, out: Path) -> tuple[int, int]:
    """Write every trial not exported yet, and OUT's HParams experiment. Returns (written, skipped)."""
    require("tensorboard", "tensorboard", "harness export --to tensorboard")
    per_trial = hparams(exp)
    written = skipped = 0
    for view, hp_values in zip(exp.trials, per_trial):
        if exported(out, view.trial_id):
            skipped += 1
            continue
        write_trial(out, view, hp_values)
        written += 1
    if exp.trials:
        out.mkdir(parents=True, exist_ok=True)
        write_experiment(exp, out, per_trial)
    return written, skipped
