"""`harness status DIR`: trial counts by state, running trials, the slowest and the failed ones.

Reads the shards (what finished) and the Optuna study (what is waiting or running), so it works
while a run is going and after it ended or was interrupted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from harness.adaptive import summary_line
from harness.config import ARM, arm_keys, short_axis_name
from harness.names import STATUSES
from harness.plan import make_plan
from harness.progress import belongs, running_info, train_size
from harness.queue import worker_alive
from harness.records import load, quarantine_damaged
from harness.results_dir import load_results_config, read_run_settings
from harness.storage import download_artifacts, open_storage


def status(out_dir: Path, storage_url: str | None = None) -> dict[str, Any]:
    """Counts, running, slowest and failed trials of a results directory. First downloads into
    DIR/trials/ the shards that workers elsewhere put in the artifact store (storage.download_artifacts),
    and moves damaged trial folders to DIR/quarantine/ (records.quarantine_damaged)."""
    cfg = load_results_config(out_dir)
    plan = make_plan(cfg, out_dir)
    settings = read_run_settings(out_dir)
    storage_url = storage_url or settings.storage
    download_artifacts(out_dir, storage_url, settings.artifacts)
    quarantine_damaged(out_dir, again="the next `harness run` runs it again")
    runs = load(out_dir)["runs"]
    if len(runs):
        keep = [belongs(plan, tid, row) for tid, row in zip(runs["trial_id"], runs.to_dict("records"))]
        runs = runs[keep]
    by_status = runs["status"].value_counts().to_dict() if len(runs) else {}
    implied = {short_axis_name(k) for k in arm_keys(cfg.arms)}  # an arm's name stands for its settings
    cols = [c for c in ("trial_id", "phase", *_BASE_FACTORS) if c in runs.columns
            and (c not in implied or c == "layernorm")]
    axes = [short_axis_name(a) for a in cfg.grid]
    cols += [a for a in axes if a not in cols and a != "seed" and a in runs.columns]  # arm, lag, model.readout, …
    info: dict[str, Any] = {
        "dir": str(out_dir), "name": cfg.name, "total": plan.total,
        "finished": {k: int(by_status.get(k, 0)) for k in STATUSES},
        "running": [], "waiting": 0, "stale": 0,
        "slowest": runs.nlargest(5, "wall_s")[cols + ["wall_s"]].to_dict("records") if len(runs) else [],
        "failures": runs[runs["status"].isin(["failed", "diverged"])][cols + ["status", "error"]].to_dict("records"),
    }
    if storage_url or (out_dir / "optuna.journal").is_file():
        storage = open_storage(out_dir, storage_url)
        now = time.time()
        done_ids = set(runs["trial_id"])
        names = [cfg.name] + [s.name for s in plan.studies]
        n_train: Any = _UNKNOWN  # the training set's size, for the step budgets: read once, if needed
        for name in names:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
                tid = t.user_attrs.get("trial_id")
                if t.state == TrialState.WAITING and tid not in done_ids:
                    info["waiting"] += 1
                elif t.state == TrialState.RUNNING:
                    if not worker_alive(t, now):
                        info["stale"] += tid not in done_ids  # else it finished, but was not told so
                        continue
                    if n_train is _UNKNOWN:
                        n_train = train_size(cfg, out_dir)
                    r = running_info(plan, name, t, now, n_train)  # as the progress display shows it
                    r.pop("factors")
                    info["running"].append({**r, **(t.params or {})})
    info["missing"] = info["total"] - sum(info["finished"].values())
    info["models"] = _model_problems(out_dir, runs)
    if plan.adaptive is not None:  # decided from the shards now, as the runner decides
        from harness.adaptive import summary

        info["adaptive"] = summary(cfg, plan.adaptive)
    return info


def _model_problems(out_dir: Path, runs: Any) -> list[dict[str, str]]:
    """The kept weights files (runs column model_file, train.save_model) that cannot be used:
    missing, or not loadable with weights_only=True (files.weights_problem), with the trial and why."""
    if not len(runs) or "model_file" not in runs.columns:
        return []
    from harness.files import weights_problem  # imports torch: only where weights were kept

    out = []
    for tid, rel in zip(runs["trial_id"], runs["model_file"]):
        if isinstance(rel, str) and (problem := weights_problem(out_dir / rel)) is not None:
            out.append({"trial_id": tid, "model_file": rel, "problem": problem})
    return out


_UNKNOWN = object()
_BASE_FACTORS = ("cell", "layernorm", "pad_size", "batch_size", "lr", "seed")
_RUNNING_KEYS = ("trial_id", "worker", "elapsed_s", "step", "dev_acc", "max_steps")
_NOT_FACTORS = {"trial_id", "phase", "wall_s", "status", "error", "cell", "layernorm", ARM}


def _factors(r: dict[str, Any]) -> str:
    """'lstm/none pad 8 batch 64 lr 0.005 seed 3 lag 32 model.readout last' for a slowest/failed row;
    a trial of an arm (grid.arm) is named by the arm: 'lstm-fb0/none pad 32 batch 64 lr 0.001 seed 0 lag 16'
    (a cell that is an axis of its own besides the arms follows it: 'fb0/none cell lstm …')."""
    words = {"pad_size": "pad", "batch_size": "batch"}
    arm = r.get(ARM)
    named = arm if isinstance(arm, str) else r.get("cell")
    extra = f"cell {r['cell']} " if isinstance(arm, str) and "cell" in r else ""
    rest = " ".join(f"{words.get(k, k)} {v}" for k, v in r.items() if k not in _NOT_FACTORS)
    return f"{named}/{r.get('layernorm')} {extra}{rest}".strip()


def format_status(info: dict[str, Any]) -> str:
    f = info["finished"]
    lines = [f"{info['dir']} ({info['name']}): {sum(f.values())}/{info['total']} finished — "
             f"complete {f['complete']}, diverged {f['diverged']}, failed {f['failed']}, pruned {f['pruned']}; "
             f"running {len(info['running'])}, waiting {info['waiting']}, not finished {info['missing']}"]
    if info.get("adaptive"):
        lines.append("  " + summary_line(info["adaptive"]))
    if info["stale"]:
        lines.append(f"  {info['stale']} running trial(s) have no recent heartbeat (worker gone?): "
                     f"re-run the same `harness run` command to run them again")
    if info["running"]:
        lines.append("running:")
        for r in info["running"]:
            budget = f"/{r['max_steps']}" if r.get("max_steps") else ""
            at = ("no evaluation yet" if r.get("step") is None
                  else f"step {r['step']}{budget} dev_acc {r['dev_acc']:.3f}")  # as of its last evaluation
            lines.append(f"  {r['trial_id']}  worker {r['worker']}  {r['elapsed_s']:.0f}s  {at}  " + " ".join(
                f"{k}={v}" for k, v in r.items() if k not in _RUNNING_KEYS))
    if info["slowest"]:
        lines.append("slowest:")
        for r in info["slowest"]:
            lines.append(f"  {r['trial_id']}  {r['wall_s']:.1f}s  {_factors(r)}")
    if info.get("models"):
        lines.append("kept weights that cannot be used (train.save_model):")
        for m in info["models"]:
            lines.append(f"  {m['trial_id']}  {m['model_file']}: {m['problem']}")
    if info["failures"]:
        lines.append("failed or diverged:")
        for r in info["failures"]:
            lines.append(f"  {r['trial_id']}  {r['status']}  {_factors(r)}: {r['error']}")
    return "\n".join(lines)


def status_json(info: dict[str, Any]) -> str:
    """`status(...)` as JSON (`harness status --json`): the same keys; missing values (NaN, NA) as
    null, numbers as numbers, anything else (timestamps) as its string."""
    return json.dumps(_plain(info), indent=2, ensure_ascii=False, allow_nan=False)


def _plain(v: Any) -> Any:
    """`v` as JSON-ready plain data."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, str)):
        return v
    if hasattr(v, "item") and not isinstance(v, (int, float)):  # a numpy scalar
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, int):
        return v
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)
