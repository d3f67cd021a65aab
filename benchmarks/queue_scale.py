"""The queue at scale: what one claim costs as the queue grows, and trials/s for many workers and
many commands on one storage (benchmarks/README.md §10).

    python benchmarks/queue_scale.py claims [--sizes 100,5000,20000,50000] [--postgres URL]
    python benchmarks/queue_scale.py throughput [--trials 500] [--workers 1,2,4,8] [--commands 4,8] [--postgres URL]

`claims`: for each storage (a journal file, SQLite, and PostgreSQL when a URL is given) and each
size N, a study holding N waiting trials (then one holding N finished trials and 100 waiting), opened
anew as another process would: the first claim (which, on a journal, replays the file) and the
median of 30 further claims, in ms.

`throughput`: a tiny grid (`--trials` trials of ~50 ms of training each) run by one `harness run`
with W workers, and by K commands started together with one worker each (each its own results
folder, as K machines), on each storage. Reports trials/s (trials over the wall time of the whole
run, start-up included), steady trials/s (between the first and the last trial to finish: without
the commands' start-up, which on one machine K commands pay K times on the same cores), the number
of queue entries (one per trial when the enqueue is done once)
and whether every trial ran exactly once (each trial id in one folder only). The ratio compares K
commands with one command of K workers: the same number of processes training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import yaml

from harness import queue
from harness.queue.backends import NewTrial, queue_storage
from harness.storage import open_storage

SCRIPT = "benchmarks/queue_scale.py"


def _storages(tmp: Path, postgres: str | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {"journal": str(tmp / "optuna.journal"), "sqlite": f"sqlite:///{tmp / 'optuna.db'}"}
    if postgres:
        out["postgresql"] = postgres
    return out


def _fill(url: str | None, tmp: Path, name: str, waiting: int, finished: int) -> None:
    storage = open_storage(tmp, url)
    study = optuna.create_study(study_name=name, storage=storage)
    qs = queue_storage(storage)
    for start in range(0, finished, 10_000):
        qs.create_waiting(study._study_id, [NewTrial({}, {}, {"trial_id": f"f{i}"}, optuna.trial.TrialState.FAIL)
                                            for i in range(start, min(finished, start + 10_000))])
    for start in range(0, waiting, 10_000):
        qs.create_waiting(study._study_id, [NewTrial({}, {}, {"trial_id": f"w{i}"})
                                            for i in range(start, min(waiting, start + 10_000))])


def claim_cost(url: str | None, tmp: Path, waiting: int, finished: int, repeats: int = 30) -> tuple[float, float]:
    """(first claim of a new storage object incl. opening it, median of `repeats` more), in ms."""
    name = f"q-{uuid.uuid4().hex[:8]}"
    _fill(url, tmp, name, waiting, finished)
    t0 = time.perf_counter()
    study = optuna.load_study(study_name=name, storage=open_storage(tmp, url))
    assert queue.claim(study) is not None
    first = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(min(repeats, waiting - 1)):
        t = time.perf_counter()
        assert queue.claim(study) is not None
        times.append((time.perf_counter() - t) * 1e3)
    optuna.delete_study(study_name=name, storage=study._storage)
    return first, statistics.median(times)


def run_claims(sizes: list[int], postgres: str | None, kinds: list[str] | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for kind, url in _storages(Path(d), postgres).items():
            if kinds and kind not in kinds:
                continue
            for n in sizes:
                for waiting, finished in ((n, 0), (100, n)):
                    first, warm = claim_cost(url, Path(d), waiting, finished)
                    rows.append({"storage": kind, "waiting": waiting, "finished": finished,
                                 "first_ms": round(first, 1), "claim_ms": round(warm, 2)})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------- throughput

def tiny_config(name: str, trials: int) -> dict:
    """`trials` trials of about 50 ms of training each (one seed per trial)."""
    return {"name": name,
            "data": {"kind": "synthetic", "synth": {"n_train": 128, "n_dev": 32, "n_test": 32, "seed": 3}},
            "model": {"embed_dim": 8, "hidden_size": 8, "num_layers": 1},
            "train": {"epochs": 1, "batch_size": 32, "eval_every": 100, "probe_size": 8, "probe_points": 1,
                      "target_dev_acc": 0.0},
            "run": {"threads": 1},
            "grid": {"cell": ["rnn"], "pad_size": [12], "seed": list(range(trials))}}


def throughput(url: str | None, tmp: Path, trials: int, commands: int, workers: int) -> dict:
    """Run the tiny grid with `commands` commands of `workers` workers each on one storage."""
    name = f"tp-{uuid.uuid4().hex[:8]}"
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(name, trials)))
    outs = [tmp / name / f"machine{i}" for i in range(commands)]
    cmd = [sys.executable, "-m", "harness", "run", str(cfg), "--device", "cpu", "--quiet",
           "--workers", str(workers), "--yes"]
    if url:
        cmd += ["--storage", url]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--out", str(o)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for o in outs]
    codes = [p.wait(timeout=3600) for p in procs]
    wall = time.perf_counter() - t0
    from harness.records import load

    runs = [load(o)["runs"] for o in outs]
    ids = [tid for r in runs for tid in r["trial_id"]]
    finished = sorted(t.timestamp() + w for r in runs for t, w in zip(r["started_at"], r["wall_s"]))
    storage = open_storage(outs[0], url)
    entries = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    if url and "://" in url and url.startswith("postgresql"):
        optuna.delete_study(study_name=name, storage=storage)
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else float("nan")
    return {"commands": commands, "workers": workers, "trials_per_s": round(len(set(ids)) / wall, 2),
            "steady_per_s": round(steady, 2),
            "wall_s": round(wall, 1), "queue_entries": entries, "exactly_once": len(ids) == len(set(ids)) == trials,
            "exit_codes": sorted(set(codes))}


def run_throughput(trials: int, workers: list[int], commands: list[int], postgres: str | None,
                   kinds: list[str] | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind, url in _storages(tmp, postgres).items():
            if kinds and kind not in kinds:
                continue
            if kind == "journal":
                url = str(tmp / f"{uuid.uuid4().hex[:6]}.journal")  # one shared file, outside the folders
            for w in sorted(set(workers) | set(commands)):
                rows.append({"storage": kind, **throughput(url, tmp, trials, 1, w)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            for k in commands:
                rows.append({"storage": kind, **throughput(url, tmp, trials, k, 1)})
                one = next(r for r in rows if r["storage"] == kind and r["commands"] == 1 and r["workers"] == k)
                rows[-1]["vs_one_command"] = round(rows[-1]["trials_per_s"] / one["trials_per_s"], 2)
                rows[-1]["steady_vs_one"] = round(rows[-1]["steady_per_s"] / one["steady_per_s"], 2)
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        print(f"{SCRIPT}: expected a comma-separated list of positive integers, got {text!r}", file=sys.stderr)
        raise SystemExit(2)
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("claims", help="one claim's cost as the queue grows")
    c.add_argument("--sizes", default="100,5000,20000,50000")
    t = sub.add_parser("throughput", help="trials/s for W workers and K commands")
    t.add_argument("--trials", type=int, default=500)
    t.add_argument("--workers", default="1,2,4,8")
    t.add_argument("--commands", default="4,8")
    for p in (c, t):
        p.add_argument("--storages", default="", help="comma-separated subset of journal,sqlite,postgresql")
        p.add_argument("--postgres", help="a PostgreSQL URL to measure as well (e.g. from .ci/postgres.sh)")
        p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    if args.what == "claims":
        rows = run_claims(_ints(args.sizes), args.postgres, [k for k in args.storages.split(",") if k] or None)
    else:
        rows = run_throughput(args.trials, _ints(args.workers), _ints(args.commands), args.postgres,
                              [k for k in args.storages.split(",") if k] or None)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))


if __name__ == "__main__":
    main()
