"""Memory: peak resident memory of one trial and of a 2-worker `harness run configs/bench.yaml`, and
the growth of a long-running worker's resident memory over 20 trials.

1. One trial, bench-size settings (configs/bench.yaml's model and data, its largest pad_size), in a
   fresh process: VmRSS after the imports, after loading the encoded data, and the process's peak
   (VmHWM) at the end. The trial's own share is the peak minus the RSS after imports.
2. `harness run configs/bench.yaml` (2 workers), its process tree polled through /proc: each
   process's peak (VmHWM), their sum, and the peak of the summed RSS.
3. 20 trials one after another in one worker (`runner.worker_loop`, called in this process after
   the run is planned and enqueued): RSS right after each trial's shards appear. A small config
   (bench model, 3,000 titles, 2 epochs) so the 20 trials take about a minute on 2 cores; every
   trial has the same shapes (the grid is 20 seeds), so any growth is the worker's, not a bigger model's.

    python benchmarks/memory.py
    python benchmarks/memory.py --skip-run          # parts 1 and 3 only
    python benchmarks/memory.py --bench-set train.epochs=1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import read_status, run_monitored

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024.0


def rss_kb() -> dict[str, int]:
    import os
    return read_status(os.getpid())


# ----------------------------------------------------------------------------- 1. one trial

def child_one_trial(pad: int, cell: str, layernorm: str) -> None:
    """Runs in a fresh process: prints a JSON line with the RSS at each stage."""
    stages = {"start": rss_kb()["VmRSS"]}
    import torch
    import yaml

    from harness import data as data_mod
    from harness.config import config_from_dict, expand_grid
    from harness.records import TrialRecorder
    from harness.train import run_trial

    torch.set_num_threads(1)
    stages["imports"] = rss_kb()["VmRSS"]
    raw = yaml.safe_load((ROOT / "configs" / "bench.yaml").read_text())
    raw["grid"] = {"cell": [cell], "layernorm": [layernorm], "pad_size": [pad], "seed": [0]}
    cfg = config_from_dict(raw)
    cache = tempfile.mkdtemp(prefix="memory-one-")
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    ds = data_mod.load(spec.data, cache)
    stages["data"] = rss_kb()["VmRSS"]
    t0 = time.perf_counter()
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder(spec.trial_id))
    st = rss_kb()
    stages.update(after=st["VmRSS"], peak=st["VmHWM"], seconds=time.perf_counter() - t0, steps=row["steps"])
    shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps(stages))


def one_trial(pad: int, cell: str, layernorm: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child-one-trial", str(pad), cell, layernorm],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- 3. growth

def growth(n_trials: int) -> list[tuple[int, float, int]]:
    """(trial number, seconds since start, VmRSS kB) right after each trial's shards appear."""
    import torch

    from harness import runner
    from harness.config import config_from_dict
    from harness.plan import make_plan, prepare_data, write_config
    from harness.queue import enqueue_missing, open_queue
    from harness.storage import open_storage

    torch.set_num_threads(1)
    raw = {
        "name": "memory-growth",
        "data": {"kind": "synthetic", "pad_size": 32, "synth": {"n_train": 3000, "n_dev": 500, "n_test": 500}},
        "model": {"cell": "lstm", "layernorm": "output", "embed_dim": 32, "hidden_size": 32, "num_layers": 2,
                  "dropout": 0.1},
        "train": {"epochs": 2, "eval_every": 25, "lr": 5e-3, "probe_size": 128, "target_dev_acc": 0.6},
        "grid": {"seed": list(range(n_trials))},
    }
    out = Path(tempfile.mkdtemp(prefix="memory-growth-")) / "run"
    samples: list[tuple[int, float, int]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            trials = out / "trials"
            n = sum(1 for p in trials.iterdir() if not p.name.startswith(".")) if trials.is_dir() else 0
            if n > seen:
                samples.append((n, time.perf_counter() - t0, rss_kb()["VmRSS"]))
                seen = n
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = rss_kb()["VmRSS"]
    out.mkdir(parents=True)
    plan = make_plan(config_from_dict(raw), out)
    prepare_data(plan)
    write_config(plan)
    enqueue_missing(plan, open_queue(plan, open_storage(out, None)))
    runner.worker_loop(out, None, "cpu", threads=1)
    stop.set()
    watcher.join()
    shutil.rmtree(out.parent, ignore_errors=True)
    return [(0, 0.0, before)] + samples


def slope(points: list[tuple[int, int]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


# ----------------------------------------------------------------------------- main

def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-one-trial":
        child_one_trial(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pad", type=int, default=64, help="pad_size of the one-trial measurement")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--layernorm", default="output")
    ap.add_argument("--skip-run", action="store_true", help="skip the 2-worker harness run")
    ap.add_argument("--bench-set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to the 2-worker harness run as --set")
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()

    print(f"1. One trial (configs/bench.yaml settings, {args.cell}, layernorm {args.layernorm}, "
          f"pad {args.pad}, 1 thread), fresh process:\n", flush=True)
    one = one_trial(args.pad, args.cell, args.layernorm)
    print("| RSS at start (MiB) | after imports | after data load | after the trial | peak (VmHWM) | "
          "peak - after imports | trial (s, steps) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {one['start'] / MiB:.0f} | {one['imports'] / MiB:.0f} | {one['data'] / MiB:.0f} | "
          f"{one['after'] / MiB:.0f} | **{one['peak'] / MiB:.0f}** | {(one['peak'] - one['imports']) / MiB:.0f} | "
          f"{one['seconds']:.0f} s, {one['steps']} |\n", flush=True)

    if not args.skip_run:
        script = Path(sys.executable).parent / "harness"
        harness = [str(script)] if script.exists() else [sys.executable, "-m", "harness"]
        tmp = tempfile.mkdtemp(prefix="memory-run-")
        cmd = harness + ["run", str(ROOT / "configs" / "bench.yaml"), "--out", f"{tmp}/bench", "--quiet",
                         "--workers", "2"]
        for s in args.bench_set:
            cmd += ["--set", s]
        print("2. $ " + " ".join(cmd) + "\n", flush=True)
        res = run_monitored(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
        print("| process | peak RSS (VmHWM, MiB) |")
        print("| --- | --- |")
        for pid, p in sorted(res["procs"].items()):
            cmdl = p["cmd"]
            role = ("worker (spawn)" if "spawn_main" in cmdl else "resource tracker" if "resource_tracker" in cmdl
                    else "harness run (main)" if pid == min(res["procs"]) else cmdl[:60])
            print(f"| {role} | {p['hwm_kb'] / MiB:.0f} |")
        total = sum(p["hwm_kb"] for p in res["procs"].values())
        print(f"| **sum of the peaks** | **{total / MiB:.0f}** |")
        print(f"| peak of the summed RSS (polled every 0.2 s) | {res['peak_sum_kb'] / MiB:.0f} |")
        print(f"\n(rc {res['rc']}, {res['wall_s']:.0f} s wall)\n", flush=True)

    print(f"3. {args.trials} trials one after another in one worker (this process):\n", flush=True)
    pts = growth(args.trials)
    print("| after trial | seconds | RSS (MiB) |")
    print("| --- | --- | --- |")
    for n, t, kb in pts:
        print(f"| {n if n else 'start (imports done)'} | {t:.1f} | {kb / MiB:.1f} |")
    trials = [(n, kb / MiB) for n, _, kb in pts if n >= 1]
    later = [(n, v) for n, v in trials if n >= 2]
    print(f"\nfirst trial {trials[0][1]:.1f} MiB, last (trial {trials[-1][0]}) {trials[-1][1]:.1f} MiB, "
          f"growth {trials[-1][1] - trials[0][1]:+.1f} MiB; slope over trials 2-{trials[-1][0]}: "
          f"{slope(later):+.2f} MiB/trial")


if __name__ == "__main__":
    main()
