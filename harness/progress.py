"""One progress bar for a whole run, fed by the shard folders that appear in DIR/trials/.

It reads results only (never the workers' state), so it works the same for one worker or many.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm

from harness.records import is_done, read_trial


def describe_trial(row: dict[str, Any], factors: dict[str, Any]) -> str:
    """One line for a finished trial: its settings, status, test accuracy, steps to target, seconds."""
    settings = " ".join(f"{k}={v}" for k, v in factors.items())
    acc = row.get("test_acc")
    acc_s = f"test_acc={acc:.3f}" if _num(acc) else "test_acc=-"
    stt = row.get("steps_to_target")
    stt_s = f"steps_to_target={int(stt)}" if _num(stt) else "steps_to_target=not reached"
    wall = row.get("wall_s")
    wall_s = f"{wall:.1f}s" if _num(wall) else "-"
    line = f"[{row.get('status')}] {settings}  {acc_s}  {stt_s}  {wall_s}"
    if row.get("status") in ("failed", "diverged") and row.get("error"):
        line += f"  ({row['error']})"
    return line


def _num(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


class Progress:
    def __init__(self, plan: Any, enabled: bool = True):
        self.plan = plan
        self.total = len(plan.specs)
        self.seen: set[str] = set()
        self.status: dict[str, str] = {}
        self.bar = tqdm(total=self.total, desc=plan.cfg.name, unit="trial", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.0)
        self.enabled = enabled
        self.start = time.time()
        # What was done before this run started counts as done, without a line each.
        for spec in plan.specs:
            if is_done(plan.out_dir, spec.trial_id):
                self._mark(spec.trial_id, quiet=True)
        self.bar.reset(total=self.total)
        self.bar.update(len(self.seen))
        self._postfix()

    def _mark(self, trial_id: str, quiet: bool = False) -> None:
        runs = read_trial(self.plan.out_dir, trial_id).get("runs")
        row = runs.iloc[0].to_dict() if runs is not None and len(runs) else {}
        self.seen.add(trial_id)
        self.status[trial_id] = row.get("status", "unknown")
        if not quiet and self.enabled:
            spec = self.plan.by_id[trial_id]
            self.bar.write(describe_trial(row, spec.factors))

    def poll(self) -> None:
        new = 0
        for spec in self.plan.specs:
            if spec.trial_id not in self.seen and is_done(self.plan.out_dir, spec.trial_id):
                self._mark(spec.trial_id)
                new += 1
        if new:
            self.bar.update(new)
            self._postfix()

    def _postfix(self) -> None:
        c = self.counts()
        self.bar.set_postfix_str(f"complete={c['complete']} diverged={c['diverged']} failed={c['failed']}"
                                 f" pruned={c['pruned']}", refresh=False)

    def counts(self) -> dict[str, int]:
        out = {"total": self.total, "complete": 0, "diverged": 0, "failed": 0, "pruned": 0}
        for s in self.status.values():
            out[s] = out.get(s, 0) + 1
        out["missing"] = self.total - len(self.seen)
        return out

    def close(self) -> None:
        self.bar.close()
