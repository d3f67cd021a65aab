"""One progress bar for a whole run, fed by the shard folders that appear in DIR/trials/, and each
running trial's step and last dev accuracy, read from the storage (what its worker reported to its
Optuna trial at its last evaluation).

It reads results and the storage only (never the workers' state), so it works the same for one worker
or many. The running trials are read at most every few seconds, and only those (an indexed lookup:
harness.queue.running_trials), so a large queue on PostgreSQL costs the same. On a terminal a status
line under the bar names the running trials, the longest-running first: `running: cell=lstm lag=32
seed=3 step 450/1000 dev 0.412`. When stderr is not a terminal (a log file, a batch job), there is no bar: one plain
line per finished trial, `[done/total] <trial>`, flushed at once, and every RUNNING_EVERY_S seconds one
line per trial of this command's workers that has run that long, `[running] <trial>  step 450/1000
dev_acc 0.412  elapsed 12m` ($HARNESS_PROGRESS_EVERY sets the period); nothing more when no trial runs
that long.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.config import short_axis_name
from harness.queue import running_trials, worker_alive
from harness.records import read_trial

RUNNING_EVERY_ENV = "HARNESS_PROGRESS_EVERY"
RUNNING_EVERY_S = 60.0  # default seconds between a log's [running] lines for a trial (env: RUNNING_EVERY_ENV)
READ_EVERY_S = 5.0  # the running trials are read from the storage at most this often
SHOWN_ON_BAR = 2  # running trials named in the terminal's status line (then "+K more")


def describe_trial(row: dict[str, Any], factors: list[str]) -> str:
    """One line for a finished trial: its settings, status, test accuracy, steps to target, seconds."""
    settings = _settings(row, factors)
    acc = row.get("test_acc")
    acc_s = f"test_acc={acc:.3f}" if _num(acc) else "test_acc=-"
    stt = row.get("steps_to_target")
    stt_s = f"steps_to_target={int(stt)}" if _num(stt) else "steps_to_target=not reached"
    wall = row.get("wall_s")
    wall_s = f"{wall:.1f}s" if _num(wall) else "-"
    phase = f"{row['phase']} " if row.get("phase") in ("search", "rerun") else ""
    line = f"[{phase}{row.get('status')}] {settings}  {acc_s}  {stt_s}  {wall_s}"
    if row.get("status") in ("failed", "diverged") and row.get("error"):
        line += f"  ({row['error']})"
    return line


def _settings(values: dict[str, Any], factors: list[str]) -> str:
    return " ".join(f"{k}={_short(values.get(k))}" for k in factors if k in values)


def _short(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v


def _num(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def belongs(plan: Any, trial_id: str, row: dict[str, Any]) -> bool:
    """Whether a shard is part of this run: a trial of the current grid, or of this study."""
    if plan.cfg.study is None:
        return trial_id in plan.by_id
    return row.get("name") == plan.cfg.name and row.get("phase") in ("search", "rerun")


# ----------------------------------------------------------------------------- running trials

def step_budget(train: Any, n_train: int | None) -> int | None:
    """At most how many steps a trial with train settings `train` takes on `n_train` training texts
    (as harness.train counts them); None when the size is not known."""
    if not n_train:
        return None
    try:
        return train.budget(n_train)[1]
    except ValueError:  # drop_last leaves no batch
        return None


def train_size(cfg: Any, out_dir: Path | None = None) -> int | None:
    """How many training texts the run's data set holds, without encoding it: the synthetic size, or
    the length of the training labels in an encoded data set cached in DIR/cache (one array read);
    None when not known (nothing encoded yet, a cache that cannot be read)."""
    if cfg.data.kind == "synthetic":
        return cfg.data.synth.n_train
    if out_dir is None:
        return None
    import numpy as np

    for f in sorted((Path(out_dir) / "cache").glob("encoded-*.npz")):  # one data set per results folder
        try:
            with np.load(f, allow_pickle=False) as npz:
                return len(npz["train_labels"])
        except Exception:  # being written, damaged: the budget is just not shown
            continue
    return None


def running_info(plan: Any, study_name: str, t: Any, now: float, n_train: int | None = None) -> dict[str, Any]:
    """What `harness status` and the progress display say of one RUNNING trial (an Optuna FrozenTrial):
    its trial id (or `<study>#<number>` for a search slot), its worker, seconds since its claim, its
    step and dev accuracy at its last evaluation (None before the first), its step budget (None when
    not known) and, under "factors", its settings by short name (a grid or re-run trial's factors, a
    search slot's fixed and sampled values)."""
    tid = t.user_attrs.get("trial_id")
    step = max(t.intermediate_values) if t.intermediate_values else None
    spec = plan.by_id.get(tid) if tid is not None else None
    if spec is not None:
        factors, train = dict(spec.factors), spec.train
    else:  # a search slot: the study's fixed values and what the sampler chose
        search = next((s for s in getattr(plan, "studies", []) if s.name == study_name), None)
        fixed = dict(search.fixed) if search is not None else {}
        long_names = {short_axis_name(k): k for k in (plan.cfg.study.params if plan.cfg.study else {})}
        values = {**fixed, **{long_names.get(k, k): v for k, v in (t.params or {}).items()}}
        factors = {short_axis_name(k): v for k, v in values.items()}
        train = _with_train(plan.cfg.train, values) if tid is None else None
    claimed = t.system_attrs.get("claimed_at", now)
    return {"trial_id": tid or f"{study_name}#{t.number}",
            "worker": f"{t.system_attrs.get('host')}:{t.system_attrs.get('pid')}",
            "elapsed_s": max(0.0, now - claimed), "step": step,
            "dev_acc": None if step is None else t.intermediate_values[step],
            "max_steps": step_budget(train, n_train) if train is not None else None, "factors": factors}


def _with_train(train: Any, values: dict[str, Any]) -> Any:
    """`train` with the dotted `train.*` settings of `values` that decide a step budget."""
    keys = {"batch_size", "epochs", "max_steps", "drop_last"}
    changes = {k[len("train."):]: v for k, v in values.items() if k.startswith("train.") and k[len("train."):] in keys}
    try:
        return dataclasses.replace(train, **changes) if changes else train
    except (TypeError, ValueError):
        return None


def read_running(plan: Any, studies: list[Any], n_train: int | None = None,
                 now: float | None = None) -> list[dict[str, Any]]:
    """`running_info` of every RUNNING trial of `studies` whose worker is alive (queue.worker_alive),
    the longest-running first. Reads only the running trials (harness.queue.running_trials)."""
    now = time.time() if now is None else now
    out = [running_info(plan, study.study_name, t, now, n_train)
           for study in studies for t in running_trials(study) if worker_alive(t, now)]
    return sorted(out, key=lambda r: -r["elapsed_s"])


def _step(r: dict[str, Any]) -> str:
    budget = f"/{r['max_steps']}" if r.get("max_steps") else ""
    return f"step {'-' if r.get('step') is None else r['step']}{budget}"


def bar_text(running: list[dict[str, Any]], factors: list[str], shown: int = SHOWN_ON_BAR) -> str:
    """The terminal's status line under the bar: 'running: cell=lstm lag=32 seed=3 step 450/1000 dev
    0.412; +1 more' (the first `shown` running trials), or '' when none runs."""
    if not running:
        return ""
    parts = []
    for r in running[:shown]:
        dev = "no evaluation yet" if r.get("dev_acc") is None else f"dev {r['dev_acc']:.3f}"
        parts.append(f"{_settings(r['factors'], factors) or r['trial_id']} {_step(r)} {dev}")
    more = f"; +{len(running) - shown} more" if len(running) > shown else ""
    return "running: " + "; ".join(parts) + more


def running_line(r: dict[str, Any], factors: list[str]) -> str:
    """A log's periodic line for a long trial: '[running] cell=lstm lag=32 seed=3  step 450/1000
    dev_acc 0.412  elapsed 12m'."""
    dev = "(no evaluation yet)" if r.get("dev_acc") is None else f"dev_acc {r['dev_acc']:.3f}"
    return (f"[running] {_settings(r['factors'], factors) or r['trial_id']}  {_step(r)} {dev}  "
            f"elapsed {elapsed(r['elapsed_s'])}")


def eta_seconds(done: int, left: int, seconds: float) -> float | None:
    """Seconds until the `left` trials are done, at the rate this run finished `done` trials in `seconds`
    (as the terminal's bar estimates); None before the first finished trial."""
    if done <= 0 or seconds <= 0:
        return None
    return left * seconds / done


def elapsed(seconds: float) -> str:
    """'45s', '12m', '1h05m'."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _own_workers() -> set[str]:
    """'host:pid' of this process's worker processes (its live multiprocessing children)."""
    import multiprocessing as mp

    host = socket.gethostname()
    return {f"{host}:{c.pid}" for c in mp.active_children()}


def running_every() -> float:
    """Seconds between a log's [running] lines for one trial: $HARNESS_PROGRESS_EVERY or RUNNING_EVERY_S."""
    try:
        v = float(os.environ.get(RUNNING_EVERY_ENV, RUNNING_EVERY_S))
    except ValueError:
        return RUNNING_EVERY_S
    return v if v > 0 and math.isfinite(v) else RUNNING_EVERY_S


# ----------------------------------------------------------------------------- the display

class Progress:
    """The display of one `harness run`. `studies`: the run's Optuna studies (its queue and search
    studies), whose running trials are shown (none: finished trials only); `n_train`: the training
    set's size, for the step budgets (default: `train_size`)."""

    def __init__(self, plan: Any, enabled: bool = True, studies: list[Any] | None = None,
                 n_train: int | None = None):
        self.plan = plan
        self.seen: set[str] = set()
        self.status: dict[str, str] = {}
        self.enabled = enabled
        self.studies = list(studies or [])
        if n_train is None and self.studies:
            n_train = train_size(plan.cfg, plan.out_dir)
        self.n_train = n_train
        self.every = running_every()
        self.read_every = min(READ_EVERY_S, self.every)
        self.last_read = -math.inf  # time.monotonic() of the last read of the running trials
        self.said: dict[tuple[str, str], int] = {}  # (trial id, worker) -> periods of its run said in a log
        self.running: list[dict[str, Any]] = []
        self.tty = sys.stderr.isatty()  # no carriage-return bar in a log file: see poll()
        desc = plan.cfg.name + (f" (adaptive seeds, up to {plan.max_total})" if plan.cfg.adaptive else "")
        self.bar = tqdm(total=plan.total, desc=desc, unit="trial", disable=not (enabled and self.tty),
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.0)
        # On a terminal, a status line under the bar names the running trials (once there are any).
        self.line: tqdm | None = None
        self.poll(quiet=True)  # what was done before this run started counts, without a line each
        self.started, self.done_before = time.monotonic(), len(self.status)  # for the log lines' ETA

    def poll(self, quiet: bool = False) -> None:
        self._poll_finished(quiet)
        if not quiet:
            self._poll_running()

    def _poll_finished(self, quiet: bool) -> None:
        trials = self.plan.out_dir / "trials"
        if not trials.is_dir():
            return
        new = 0
        for d in trials.iterdir():
            tid = d.name
            if tid.startswith(".") or tid in self.seen or not (d / "runs.parquet").is_file():
                continue
            runs = read_trial(self.plan.out_dir, tid).get("runs")
            row = runs.iloc[0].to_dict() if runs is not None and len(runs) else {}
            self.seen.add(tid)
            if not belongs(self.plan, tid, row):
                continue
            self.status[tid] = row.get("status", "unknown")
            new += 1
            if not quiet and self.enabled and self.tty:
                self.bar.write(describe_trial(row, self.plan.factor_names))
            elif not quiet and self.enabled:
                total = max(self.plan.total, len(self.status))
                left = eta_seconds(len(self.status) - self.done_before, total - len(self.status),
                                   time.monotonic() - self.started)
                eta = f", eta {elapsed(left)}" if left is not None else ""
                print(f"[{len(self.status)}/{total}{eta}] {describe_trial(row, self.plan.factor_names)}",
                      file=sys.stderr, flush=True)
        if new:
            self.running = [r for r in self.running if r["trial_id"] not in self.status]
            if self.line is not None:
                self._status_line()
            self.bar.total = max(self.bar.total or 0, self.plan.total, len(self.status))
            self._postfix()
            self.bar.update(new)

    def _poll_running(self) -> None:
        """Every few seconds: read the running trials; on a terminal, name them in the bar; in a log,
        one [running] line for each trial that has run another `self.every` seconds since its claim."""
        if not (self.enabled and self.studies) or time.monotonic() - self.last_read < self.read_every:
            return
        self.last_read = time.monotonic()
        try:
            self.running = read_running(self.plan, self.studies, self.n_train)
        except Exception:  # a storage hiccup costs this display one read, never the run
            return
        if self.tty:
            self._status_line()
            return
        own = _own_workers()
        said, self.said = self.said, {}
        for r in self.running:  # a log names its own workers' trials only (each Slurm job's log its own)
            if r["worker"] not in own:
                continue
            key = r["trial_id"], r["worker"]
            periods = int(r["elapsed_s"] // self.every)
            self.said[key] = said.get(key, 0)
            if periods > self.said[key]:
                self.said[key] = periods
                print(running_line(r, self.plan.factor_names), file=sys.stderr, flush=True)

    def _status_line(self) -> None:
        text = bar_text(self.running, self.plan.factor_names)
        if self.line is None and not text:
            return
        if self.line is None:
            self.line = tqdm(total=0, bar_format="{desc}", position=1, leave=False, file=sys.stderr,
                             dynamic_ncols=True)
        self.line.set_description_str(text or "running: none", refresh=True)
        self.bar.refresh()  # its elapsed time too

    def _postfix(self) -> None:
        c = self.counts()
        self.bar.set_postfix_str(f"complete={c['complete']} diverged={c['diverged']} failed={c['failed']}"
                                 f" pruned={c['pruned']}", refresh=False)

    def counts(self) -> dict[str, int]:
        total = max(self.plan.total, len(self.status))
        out = {"total": total, "complete": 0, "diverged": 0, "failed": 0, "pruned": 0}
        for s in self.status.values():
            out[s] = out.get(s, 0) + 1
        out["missing"] = total - len(self.status)
        return out

    def close(self) -> None:
        if self.line is not None:
            self.line.close()
        self.bar.close()
