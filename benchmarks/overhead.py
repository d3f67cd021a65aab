"""The grid around the trials: the share of `make bench`'s wall time spent outside a trial's training
and evaluation (start-up, imports, data encoding, study bookkeeping, writing records, the report).

Runs `harness run CONFIG --out DIR --quiet` and then `harness report DIR`, timing both from here,
or takes an existing results directory with the wall time its run took (`--existing DIR --wall S`;
the report is then timed here). Inside a trial = `wall_s` of its runs row (run_trial from model build
to the test evaluation: training, dev evaluations, the probe, the test evaluation). With W workers
the command offers W x (run + report) worker-seconds; the outside share is the part of that not
covered by the trials' wall_s, per worker and in all. Goal: under 10%.

Per worker the outside time is split, to about a second (`started_at` has one-second resolution),
into: before its first trial (process start, imports, plan, data load), gaps between its trials
(claim, writing shards, Optuna bookkeeping) and after its last trial (waiting for the other worker,
combining the tables, exit); the report comes on top. The start-up (import of torch, of the
harness's runner, and `harness --help`) is timed separately, in fresh processes.

    python benchmarks/overhead.py                                  # configs/bench.yaml into a temp dir
    python benchmarks/overhead.py --existing results/bench --wall 412
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import existing_file, finished_runs
from _proc import run_monitored

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).name


def harness_cmd() -> list[str]:
    script = Path(sys.executable).parent / "harness"
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def startup(repeats: int) -> dict[str, float]:
    """Median seconds of fresh processes that only import (interleaved)."""
    cmds = {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -c 'import harness.runner' (what a worker imports: torch, optuna, pandas, ...)":
            [sys.executable, "-c", "import harness.runner"],
        "python -c 'import harness.status' (status and report: no torch)":
            [sys.executable, "-c", "import harness.status"],
        "harness --help": harness_cmd() + ["--help"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for k, c in cmds.items():
            times[k].append(timed(c))
    return {k: statistics.median(v) for k, v in times.items()}


def _epoch(value: object) -> float:
    """Epoch seconds of a `started_at` value (a timestamp, or ISO text in older tables)."""
    return pd.Timestamp(value).timestamp()


def busy_shares(runs: pd.DataFrame) -> dict[str, float]:
    """Per worker: the share of the span from the first trial's start to the last trial's end (over
    all workers) that it spent inside trials (sum of wall_s / span)."""
    t0 = runs["started_at"].map(_epoch)
    span = float((t0 + runs["wall_s"]).max() - t0.min())
    return {str(w): float(g["wall_s"].sum()) / span for w, g in runs.groupby("worker", sort=True)}


def accounting(runs: pd.DataFrame, start: float, run_s: float, report_s: float) -> tuple[list[dict], dict]:
    """Per-worker and total split of the command's wall time (see the module docstring)."""
    runs = runs.copy()
    runs["t0"] = [_epoch(s) - start for s in runs["started_at"]]
    runs["t1"] = runs["t0"] + runs["wall_s"]
    total = run_s + report_s
    rows = []
    for worker, g in runs.groupby("worker", sort=True):
        busy = float(g["wall_s"].sum())
        first, last = float(g["t0"].min()), float(g["t1"].max())
        rows.append({
            "worker": worker, "trials": len(g), "in_trials_s": busy, "training_s": float(g["train_s"].sum()),
            "before_first_s": first, "gaps_s": last - first - busy, "after_last_s": run_s - last,
            "outside_s": total - busy, "outside_share": 1 - busy / total,
        })
    w = len(rows)
    busy = sum(r["in_trials_s"] for r in rows)
    summary = {"workers": w, "trials": len(runs), "run_s": run_s, "report_s": report_s, "total_s": total,
               "in_trials_s": busy, "training_s": float(runs["train_s"].sum()),
               "outside_share": 1 - busy / (w * total)}
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "bench.yaml"))
    ap.add_argument("--out", help="results directory for the run (default: a temporary one, removed after)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to harness run")
    ap.add_argument("--existing", help="an existing results directory: no run, only the accounting and the report")
    ap.add_argument("--wall", type=float, help="with --existing: the wall seconds its `harness run` took")
    ap.add_argument("--start", type=float, help="with --existing: the run's start, epoch seconds (default: "
                                                "the first trial's start)")
    ap.add_argument("--startup-repeats", type=int, default=3)
    ap.add_argument("--same-trials-as", metavar="DIR", help="another results folder of the same config (e.g. run "
                                                             "with 1 worker): say whether both ran the same trials")
    args = ap.parse_args()
    if args.existing:
        finished_runs(SCRIPT, "--existing", args.existing)
    else:
        existing_file(SCRIPT, "--config", args.config)

    print(f"Start-up, fresh processes (median of {args.startup_repeats}):\n")
    print("| command | seconds |")
    print("| --- | --- |")
    for k, v in startup(args.startup_repeats).items():
        print(f"| {k} | {v:.2f} |")
    print(flush=True)

    tmp = None
    if args.existing:
        if args.wall is None:
            ap.error("--existing needs --wall (the measured wall seconds of its harness run)")
        out, run_s = Path(args.existing), args.wall
        mem = None
    else:
        out = Path(args.out) if args.out else Path(tmp := tempfile.mkdtemp(prefix="overhead-")) / "bench"
        cmd = harness_cmd() + ["run", args.config, "--out", str(out), "--quiet"]
        for s in args.set:
            cmd += ["--set", s]
        print("$ " + " ".join(cmd), flush=True)
        mem = run_monitored(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
        if mem["rc"] != 0:
            sys.exit(f"harness run exited with {mem['rc']}")
        run_s = mem["wall_s"]
    print("$ " + " ".join(harness_cmd() + ["report", str(out)]), flush=True)
    report_s = timed(harness_cmd() + ["report", str(out)])

    runs = pd.read_parquet(out / "runs.parquet")
    start = mem["start"] if mem else (args.start or min(_epoch(s) for s in runs["started_at"]))
    rows, s = accounting(runs, start, run_s, report_s)
    print(f"\n`harness run` {run_s:.1f} s + `harness report` {report_s:.1f} s = {s['total_s']:.1f} s wall; "
          f"{s['trials']} trials on {s['workers']} workers; in trials {s['in_trials_s']:.1f} worker-s "
          f"(of which training {s['training_s']:.1f} s)\n")
    print("| worker | trials | in trials (s) | before first trial (s) | between trials (s) | after last trial (s) "
          "| report (s) | outside trials (s) | outside share |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows):
        print(f"| {i} | {r['trials']} | {r['in_trials_s']:.1f} | {r['before_first_s']:.1f} | {r['gaps_s']:.1f} | "
              f"{r['after_last_s']:.1f} | {report_s:.1f} | {r['outside_s']:.1f} | {r['outside_share']:.1%} |")
    goal = "met" if s["outside_share"] < 0.10 else "not met"
    print(f"| all | {s['trials']} | {s['in_trials_s']:.1f} | | | | {report_s:.1f} | "
          f"{s['workers'] * s['total_s'] - s['in_trials_s']:.1f} | **{s['outside_share']:.1%}** (goal < 10%: {goal}) |")
    shares = busy_shares(runs)
    low = min(shares.values())
    print("\nBusy from the first trial's start to the last trial's end: "
          + ", ".join(f"worker {i} {v:.1%}" for i, v in enumerate(shares.values()))
          + f" (goal: every worker >= 90%: {'met' if low >= 0.9 else 'not met'})")
    if args.same_trials_as:
        other = set(finished_runs(SCRIPT, "--same-trials-as", args.same_trials_as)["trial_id"])
        mine = set(runs["trial_id"])
        differ = f"{len(mine - other)} only here, {len(other - mine)} only there"
        print(f"Trials against {args.same_trials_as}: {len(mine)} here, {len(other)} there: "
              f"{'the same set' if mine == other else differ}")
    if mem:  # the same run's memory, polled through /proc (benchmarks/memory.py, part 2, measures it alone)
        print("\n| process of `harness run` | peak RSS (VmHWM, MiB) |\n| --- | --- |")
        for pid, p in sorted(mem["procs"].items()):
            role = ("worker (spawn)" if "spawn_main" in p["cmd"] else "resource tracker" if "resource_tracker"
                    in p["cmd"] else "harness run (main)" if pid == min(mem["procs"]) else p["cmd"][:60])
            print(f"| {role} | {p['hwm_kb'] / 1024:.0f} |")
        print(f"| **sum of the peaks** | **{sum(p['hwm_kb'] for p in mem['procs'].values()) / 1024:.0f}** |")
        print(f"| peak of the summed RSS (polled every 0.2 s) | {mem['peak_sum_kb'] / 1024:.0f} |")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
