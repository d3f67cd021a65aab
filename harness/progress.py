"""One progress bar for a whole run, fed by the shard folders that appear in DIR/trials/.

It reads results only (never the workers' state), so it works the same for one worker or many.
When stderr is not a terminal (a log file, a batch job), there is no bar: one plain line per finished
trial, `[done/total] <trial>`, flushed at once.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from tqdm import tqdm

from harness.records import read_trial


def describe_trial(row: dict[str, Any], factors: list[str]) -> str:
    """One line for a finished trial: its settings, status, test accuracy, steps to target, seconds."""
    settings = " ".join(f"{k}={_short(row.get(k))}" for k in factors if k in row)
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


def _short(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v


def _num(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def belongs(plan: Any, trial_id: str, row: dict[str, Any]) -> bool:
    """Whether a shard is part of this run: a trial of the current grid, or of this study."""
    if plan.cfg.study is None:
        return trial_id in plan.by_id
    return row.get("name") == plan.cfg.name and row.get("phase") in ("search", "rerun")


class Progress:
    def __init__(self, plan: Any, enabled: bool = True):
        self.plan = plan
        self.seen: set[str] = set()
        self.status: dict[str, str] = {}
        self.enabled = enabled
        self.tty = sys.stderr.isatty()  # no carriage-return bar in a log file: see poll()
        desc = plan.cfg.name + (f" (adaptive seeds, up to {plan.max_total})" if plan.cfg.adaptive else "")
        self.bar = tqdm(total=plan.total, desc=desc, unit="trial", disable=not (enabled and self.tty),
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.0)
        self.poll(quiet=True)  # what was done before this run started counts, without a line each

    def poll(self, quiet: bool = False) -> None:
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
                print(f"[{len(self.status)}/{total}] {describe_trial(row, self.plan.factor_names)}",
                      file=sys.stderr, flush=True)
        if new:
            self.bar.total = max(self.bar.total or 0, self.plan.total, len(self.status))
            self._postfix()
            self.bar.update(new)

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
        self.bar.close()
