"""`harness status DIR`: trial counts by state, running trials, the slowest and the failed ones.

Reads the shards (what finished) and the Optuna study (what is waiting or running), so it works
while a run is going and after it ended or was interrupted.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from harness.records import load
from harness.runner import load_results_config, make_plan, open_storage, worker_alive


def status(out_dir: Path, storage_url: str | None = None) -> dict[str, Any]:
    cfg = load_results_config(out_dir)
    plan = make_plan(cfg, out_dir)
    wanted = {s.trial_id for s in plan.specs}
    runs = load(out_dir)["runs"]
    runs = runs[runs["trial_id"].isin(wanted)]
    by_status = runs["status"].value_counts().to_dict() if len(runs) else {}
    info: dict[str, Any] = {
        "dir": str(out_dir), "name": cfg.name, "total": len(wanted),
        "finished": {k: int(by_status.get(k, 0)) for k in ("complete", "diverged", "failed", "pruned")},
        "running": [], "waiting": 0, "stale": 0,
        "slowest": runs.nlargest(5, "wall_s")[["trial_id", "cell", "layernorm", "pad_size", "batch_size",
                                               "lr", "seed", "wall_s"]].to_dict("records") if len(runs) else [],
        "failures": runs[runs["status"].isin(["failed", "diverged"])][
            ["trial_id", "status", "cell", "layernorm", "pad_size", "lr", "seed", "error"]].to_dict("records"),
    }
    journal = out_dir / "optuna.journal"
    if storage_url or journal.is_file():
        import optuna

        storage = open_storage(out_dir, storage_url)
        try:
            study = optuna.load_study(study_name=cfg.name, storage=storage)
        except KeyError:
            study = None
        now = time.time()
        done_ids = set(runs["trial_id"])
        for t in study.get_trials(deepcopy=False) if study else []:
            tid = t.user_attrs.get("trial_id")
            if t.state == TrialState.WAITING and tid not in done_ids:
                info["waiting"] += 1
            elif t.state == TrialState.RUNNING:
                if not worker_alive(t.system_attrs, now):
                    info["stale"] += 1
                else:
                    claimed = t.system_attrs.get("claimed_at", now)
                    info["running"].append({"trial_id": tid, "worker": f"{t.system_attrs.get('host')}:"
                                            f"{t.system_attrs.get('pid')}", "elapsed_s": now - claimed,
                                            **(t.params or {})})
    info["missing"] = info["total"] - sum(info["finished"].values())
    return info


def format_status(info: dict[str, Any]) -> str:
    f = info["finished"]
    lines = [f"{info['dir']} ({info['name']}): {sum(f.values())}/{info['total']} finished — "
             f"complete {f['complete']}, diverged {f['diverged']}, failed {f['failed']}, pruned {f['pruned']}; "
             f"running {len(info['running'])}, waiting {info['waiting']}, not finished {info['missing']}"]
    if info["stale"]:
        lines.append(f"  {info['stale']} running trial(s) have no recent heartbeat (worker gone?): "
                     f"re-run the same `harness run` command to run them again")
    if info["running"]:
        lines.append("running:")
        for r in info["running"]:
            lines.append(f"  {r['trial_id']}  worker {r['worker']}  {r['elapsed_s']:.0f}s  " + " ".join(
                f"{k}={v}" for k, v in r.items() if k not in ("trial_id", "worker", "elapsed_s")))
    if info["slowest"]:
        lines.append("slowest:")
        for r in info["slowest"]:
            lines.append(f"  {r['trial_id']}  {r['wall_s']:.1f}s  {r['cell']}/{r['layernorm']} pad {r['pad_size']} "
                         f"batch {r['batch_size']} lr {r['lr']} seed {r['seed']}")
    if info["failures"]:
        lines.append("failed or diverged:")
        for r in info["failures"]:
            lines.append(f"  {r['trial_id']}  {r['status']}  {r['cell']}/{r['layernorm']} pad {r['pad_size']} "
                         f"lr {r['lr']} seed {r['seed']}: {r['error']}")
    return "\n".join(lines)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
