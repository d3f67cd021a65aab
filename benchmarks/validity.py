"""Does the default synthetic task behave like real news titles? Each real-title fact, its synthetic
analogue, side by side.

The real numbers are quoted from shared/DESIGN.md ("Real-title facts the default task must reproduce
in direction"): THUCNews titles (10k train / 5k dev / 5k test), the reference model and loop, 5
epochs, batch 64, test accuracy. This script trains the same rows on the embedded synthetic data set
at its defaults (titles of 4-32 characters, mean 19; 13% of a title's characters point to its class)
with the same model settings and loop (Adam lr 1e-3, dropout 0.3, 5 epochs, batch 64, read-out
`last` unless the row says otherwise), one arm per row (`grid.arm`), and prints each row's mean test
accuracy over the seeds beside the real numbers, then each real-title direction and whether it holds
here. The training set is 10,000 titles as in the real rows; dev and test are 1,000 each (smaller than
the real 5,000 to keep the run short: a test accuracy's standard error is about 1.5 points).

    python benchmarks/validity.py                       # 2 seeds, results/validity (18 CPU-minutes, measured)
    python benchmarks/validity.py --seeds 3 --workers 2 --out /tmp/validity
    python benchmarks/validity.py --report-only DIR     # the table from a finished folder, no training

A direction "holds" by a fixed rule written below before any run (margins in accuracy points over
chance, 10%), on the seed mean; with 2 seeds a row near a margin can flip on another machine, and the
table prints every seed's accuracy so a reader can see how near.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import records, runner
from harness.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 0.10
LEARNS = 0.20     # "learns": mean test accuracy at least chance + 20 points
AT_CHANCE = 0.05  # "at chance": at most chance + 5 points
CLEARLY = 0.10    # "clearly better": at least 10 points higher

REF = {"model.embed_dim": 300, "model.hidden_size": 128}   # the reference model's sizes
SMALL = {"model.embed_dim": 64, "model.hidden_size": 64}   # the real rows' smaller model


@dataclass(frozen=True)
class Row:
    arm: str
    setting: str
    plain: str      # the reference code's own loop on real titles (test accuracy, %)
    harness: str    # this harness on real titles
    settings: dict


ROWS = [
    Row("ref-lstm", "2×128 BiLSTM, emb 300, pad 32, read-out last", "69.9–71.2", "72.3",
        {"cell": "lstm", **REF, "pad_size": 32}),
    Row("ref-rnn", "same, vanilla RNN", "39.9–41.8", "34.4", {"cell": "rnn", **REF, "pad_size": 32}),
    *[Row(f"fb0-pad{p}", f"emb = h = 64 LSTM, forget bias 0, pad {p}", plain, real,
          {"cell": "lstm", **SMALL, "pad_size": p})
      for p, plain, real in ((32, "63.0", "63.4"), (64, "10.3", "10.0"), (128, "9.9", "9.6"))],
    *[Row(f"fb3-pad{p}", f"same, forget bias 3, pad {p}", plain, real,
          {"cell": "lstm", **SMALL, "pad_size": p, "model.forget_bias": 3.0})
      for p, plain, real in ((32, "—", "74.7"), (64, "72.0", "71.2"), (128, "43.7", "50.6"))],
    Row("rnn-pad128-mean", "emb = h = 64 RNN, pad 128, read-out mean", "60.5", "71.3",
        {"cell": "rnn", **SMALL, "pad_size": 128, "model.readout": "mean"}),
    Row("rnn-pad128-last_valid", "same, read-out last_valid", "—", "63.9",
        {"cell": "rnn", **SMALL, "pad_size": 128, "model.readout": "last_valid"}),
]


def config(seeds: int, workers: int) -> dict:
    """The experiment: one arm per row, the reference loop's settings fixed."""
    return {
        "name": "validity",
        "data": {"kind": "synthetic", "synth": {"n_train": 10000, "n_dev": 1000, "n_test": 1000}},
        "model": {"num_layers": 2, "bidirectional": True, "dropout": 0.3, "readout": "last", "forget_bias": 0.0},
        "train": {"epochs": 5, "batch_size": 64, "lr": 1e-3, "eval_every": 100, "require_improvement": 100000,
                  "target_dev_acc": 0.5, "probe_size": 64, "probe_points": 1},
        "grid": {"arm": {r.arm: r.settings for r in ROWS}, "seed": list(range(seeds))},
        "run": {"workers": workers, "threads": 1},
    }


def accuracies(results: Path) -> dict[str, list[float]]:
    """arm -> the test accuracies of its complete runs, in seed order."""
    runs = records.load(results).runs
    runs = runs[runs["status"] == "complete"].sort_values("seed")
    return {arm: g["test_acc"].astype(float).tolist() for arm, g in runs.groupby("arm")}


def _mean(acc: dict[str, list[float]], arm: str) -> float:
    v = acc.get(arm, [])
    return sum(v) / len(v) if v else float("nan")


# The real-title directions, each a rule on the seed means (fixed before any run).
Direction = tuple[str, Callable[[Callable[[str], float]], bool]]
DIRECTIONS: list[Direction] = [
    ("at the reference setting the LSTM learns clearly better than the RNN (real: 70 vs 40)",
     lambda m: m("ref-lstm") - m("ref-rnn") >= CLEARLY),
    ("forget bias 0: learns at pad 32, at chance from pad 64 on (real: 63 / 10 / 10)",
     lambda m: m("fb0-pad32") >= CHANCE + LEARNS and max(m("fb0-pad64"), m("fb0-pad128")) <= CHANCE + AT_CHANCE),
    ("forget bias 3 still learns at pad 64, where forget bias 0 is at chance (real: 71 vs 10)",
     lambda m: m("fb3-pad64") >= CHANCE + LEARNS and m("fb3-pad64") - m("fb0-pad64") >= CLEARLY),
    ("forget bias 3 at pad 128 above chance and above forget bias 0 (real: 51 vs 10)",
     lambda m: m("fb3-pad128") > CHANCE + AT_CHANCE and m("fb3-pad128") > m("fb0-pad128")),
    ("the RNN at pad 128 learns with read-out mean and with last_valid (real: 71 / 64)",
     lambda m: min(m("rnn-pad128-mean"), m("rnn-pad128-last_valid")) >= CHANCE + LEARNS),
]


def table(acc: dict[str, list[float]]) -> str:
    """The side-by-side markdown table and the directions."""
    lines = ["| setting | real: reference code's loop | real: harness | synthetic: harness (mean; per seed) |",
             "| --- | --- | --- | --- |"]
    for r in ROWS:
        seeds = ", ".join(f"{100 * a:.1f}" for a in acc.get(r.arm, []))
        mean = _mean(acc, r.arm)
        lines.append(f"| {r.setting} | {r.plain} | {r.harness} | {100 * mean:.1f} ({seeds}) |")
    lines += ["", "| real-title direction | holds on the synthetic task |", "| --- | --- |"]
    for text, rule in DIRECTIONS:
        lines.append(f"| {text} | {'yes' if rule(lambda a: _mean(acc, a)) else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="seeds per row (default 2)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "validity")
    ap.add_argument("--report-only", type=Path, metavar="DIR", help="print the table from a finished folder")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        print("validity.py: --seeds and --workers must be at least 1", file=sys.stderr)
        return 2
    out = args.report_only or args.out
    if args.report_only:
        if not (out / "config.yaml").is_file():
            print(f"validity.py: {out} is not a results folder (no config.yaml)", file=sys.stderr)
            return 2
    else:
        runner.run(config_from_dict(config(args.seeds, args.workers)), out, workers=args.workers, device="cpu",
                   threads=1, progress=True)
    acc = accuracies(out)
    if not acc:
        print(f"validity.py: no complete runs in {out}", file=sys.stderr)
        return 2
    print(table(acc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
