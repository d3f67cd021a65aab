"""MLflow: an experiment named after the harness experiment, one parent run per grid (or per study)
and a nested child run per trial (tag mlflow.parentRunId).

A child run holds the trial's settings as params (integers as integers), its outcome as metrics
(`steps_to_target`, `reached`, `test_acc`, `best_dev_acc`, …; timings as `time/<column>`), every
scalar as a metric history with its step and time, and its system facts (hardware, versions,
worker, ids, errors) as `harness.<column>` tags, and with `train.save_model` its weights file as the
artifact `model/model.pt`; it starts and ends when the trial did. A parent
run holds the experiment's config (config.yaml, flattened: `model.hidden_size`, `grid.cell`, …) as
params and as an artifact, and spans its trials' times.

OUT is a tracking URI (sqlite:///…, http://…) or a folder, which becomes the SQLite store
OUT/mlflow.db with artifacts in OUT/artifacts. View a local store with
`mlflow ui --backend-store-uri <URI>`; a tracking server's runs at its own URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.export.trials import Experiment, TrialView
from harness.extras import require
from harness.files import one_line
from harness.storage import TrackerUnreachable, redact_text

TRIAL_TAG = "harness.trial_id"     # on a child run: which trial it holds
PARENT_TAG = "harness.parent"      # on a parent run: "grid" or the study's name
GROUP_TAG = "harness.group"        # on a child run: its configuration (settings without the seed)
# harness status -> MLflow run status
RUN_STATUS = {"complete": "FINISHED", "diverged": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
# MLflow's limits per log_batch call
BATCH_METRICS, BATCH_PARAMS = 1000, 100
MAX_VALUE = 5000  # longest param or tag value kept (a long traceback is cut)
_BAD_KEY = re.compile(r"[^\w\-. /:]")  # characters MLflow refuses in a param or tag name


def tracking_uri(out: str | Path) -> str:
    """A tracking URI from OUT: a URI as given; a *.db file or a folder as a SQLite store."""
    text = str(out)
    if "://" in text:
        return text
    path = Path(text).resolve()
    if path.suffix != ".db":
        path = path / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def artifact_location(out: str | Path) -> str | None:
    """Where a new experiment keeps artifacts: beside a local store; the server's choice otherwise."""
    text = str(out)
    if "://" in text:
        return None
    path = Path(text).resolve()
    base = path.parent if path.suffix == ".db" else path
    return (base / "artifacts").as_uri()


def _ms(seconds: float | None, default: int) -> int:
    return int(round(seconds * 1000)) if seconds is not None else default


def _chunks(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment_id(client: Any, exp: Experiment, out: str | Path) -> str:
    found = client.get_experiment_by_name(exp.name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    eid = client.create_experiment(exp.name, artifact_location=artifact_location(out),
                                   tags={"harness.results_dir": str(exp.results_dir.resolve())})
    return eid


def param_key(name: str) -> str:
    """A param or tag name MLflow accepts: other characters replaced by '_'."""
    return _BAD_KEY.sub("_", name)


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param  # a tracker's library: only when exporting to it

    items = [Param(param_key(k), str(v)[:MAX_VALUE]) for k, v in sorted(params.items())]
    for chunk in _chunks(items, BATCH_PARAMS):
        client.log_batch(run_id, params=list(chunk))


def _parent(client: Any, eid: str, exp: Experiment, key: str, views: list[TrialView],
            existing: dict[str, str]) -> str:
    """The parent run of `key` ("grid" or a study): found, or created with the experiment's config
    as params and artifact, from its first trial's start to its last trial's end."""
    if key in existing:
        return existing[key]
    starts = [v.started_at for v in views if v.started_at is not None]
    ends = [v.finished_at for v in views if v.finished_at is not None]
    run = client.create_run(eid, run_name=key if key != "grid" else exp.name,
                            start_time=_ms(min(starts), 0) if starts else None,
                            tags={PARENT_TAG: key, "harness.group_keys": ",".join(exp.group_keys)})
    _log_params(client, run.info.run_id, exp.config)
    config = exp.results_dir / "config.yaml"
    if config.is_file():
        client.log_artifact(run.info.run_id, str(config))
    client.set_terminated(run.info.run_id, "FINISHED", end_time=_ms(max(ends), 0) if ends else None)
    return run.info.run_id


MODEL_ARTIFACT_DIR = "model"  # a trial's weights file (train.save_model) is the run's artifact model/model.pt


def log_model_file(client: Any, run_id: str, path: Path) -> None:
    """A trial's weights file as an artifact of its run, under MODEL_ARTIFACT_DIR."""
    client.log_artifact(run_id, str(path), artifact_path=MODEL_ARTIFACT_DIR)


def _child(client: Any, eid: str, parent_id: str, view: TrialView, results_dir: Path) -> str:
    from mlflow.entities import Metric, RunTag  # a tracker's library: only when exporting to it

    start = _ms(view.started_at, 0) if view.started_at is not None else None
    tags = {**{f"harness.{param_key(k)}": v[:MAX_VALUE] for k, v in view.tags.items()}, TRIAL_TAG: view.trial_id,
            GROUP_TAG: view.group, "mlflow.parentRunId": parent_id, "harness.phase": view.phase}
    if "git_commit" in view.tags:
        tags["mlflow.source.git.commit"] = view.tags["git_commit"]
    run = client.create_run(eid, run_name=view.name, start_time=start, tags=tags)
    rid = run.info.run_id
    base = start or 0
    metrics = [Metric(name, value, _ms(view.walltime(elapsed), base), step)
               for step, elapsed, name, value in view.scalars]
    last = max((s for s, *_ in view.scalars), default=0)
    end = view.finished_at
    metrics += [Metric(k, float(v), _ms(end, base), last) for k, v in view.metrics.items()]
    _log_params(client, rid, view.params)
    for chunk in _chunks(metrics, BATCH_METRICS):
        client.log_batch(rid, metrics=list(chunk))
    client.log_batch(rid, tags=[RunTag("harness.status", view.status)])
    model = view.model_path(results_dir)
    if model is not None:
        log_model_file(client, rid, model)
    client.set_terminated(rid, RUN_STATUS.get(view.status, "FAILED"),
                          end_time=_ms(end, base) if end is not None else None)
    return rid


# MLflow's HTTP client retries a server that does not answer for minutes (7 retries, backoff 2, 120 s
# timeout by default): set before the client is made, unless the user set them, a tracking server that
# is not there is one line within about 20 s.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def check_store(uri: str) -> None:
    """Refuse, at once and in one line naming it, a store that cannot be written: a SQLite file
    that cannot be opened or written (read-only, no permission; MLflow itself would retry for about
    100 s, then not name it). Servers are checked by their first request (see HTTP_DEFAULTS)."""
    import sqlite3

    if not uri.startswith("sqlite:///"):
        return
    path = uri[len("sqlite:///"):]
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            con.execute("BEGIN IMMEDIATE")  # a write, undone: fails on a read-only file or folder
            con.execute("CREATE TABLE IF NOT EXISTS harness_write_probe (x)")
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.Error as e:
        raise TrackerUnreachable(f"cannot write the MLflow store {path} ({e}): choose a writable OUT, or fix "
                                 f"the file's or its folder's permissions") from None


def _client(uri: str) -> Any:
    """An MlflowClient on `uri`, with HTTP_DEFAULTS, whose store answers (else TrackerUnreachable)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    check_store(uri)
    from mlflow.tracking import MlflowClient  # a tracker's library: only when exporting to it

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as e:  # connection refused, a timeout, a server error: MlflowException, requests'
        raise TrackerUnreachable(f"cannot reach the MLflow tracking store {redact_text(uri)} "
                                 f"({type(e).__name__}: {one_line(redact_text(str(e)), 300)})") from None
    return client


def write(exp: Experiment, out: str | Path) -> tuple[int, int]:
    """Write every trial not exported yet. Returns (written, skipped). A store that cannot be reached
    or written raises TrackerUnreachable (one line naming it)."""
    require("mlflow", "mlflow", "harness export --to mlflow")
    client = _client(tracking_uri(out))
    eid = _experiment_id(client, exp, out)
    runs = _all_runs(client, eid)
    parents = {r.data.tags[PARENT_TAG]: r.info.run_id for r in runs if PARENT_TAG in r.data.tags}
    done = {r.data.tags[TRIAL_TAG] for r in runs if TRIAL_TAG in r.data.tags}
    by_parent: dict[str, list[TrialView]] = {}
    for view in exp.trials:
        by_parent.setdefault(view.parent, []).append(view)
    written = skipped = 0
    for key, views in by_parent.items():
        todo = [v for v in views if v.trial_id not in done]
        skipped += len(views) - len(todo)
        if not todo:
            continue
        parent_id = _parent(client, eid, exp, key, views, parents)
        for view in todo:
            _child(client, eid, parent_id, view, exp.results_dir)
            written += 1
    return written, skipped
