"""Command line: `harness run | report | status | data synth | data check` (also `python -m harness`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.config import ConfigError, SynthConfig, apply_overrides, config_from_dict, load_config


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    out = Path(args.out or Path("results") / cfg.name)
    workers = args.workers or cfg.run.workers
    device = args.device or cfg.run.device
    storage = args.storage or cfg.run.storage
    if args.dry_run:
        from harness.plan import dry_run

        rows = dry_run(cfg, out)
        n = sum(r.get("trials", 1) for r in rows)
        done = sum(r["done"] for r in rows)
        steps = sum((r["max_steps"] or 0) * r.get("trials", 1) for r in rows if not r["done"])
        for r in rows:
            factors = " ".join(f"{k}={v}" for k, v in r.items()
                               if k not in ("trial_id", "max_steps", "done", "trials"))
            print(f"{r['trial_id']}  {'done   ' if r['done'] else 'to run '} {factors}  "
                  f"steps<={r['max_steps'] if r['max_steps'] is not None else '?'}")
        reruns = ""
        if cfg.study is not None and cfg.study.rerun_best:
            reruns = " (then each study's best setting re-run once per seed)"
        print(f"{n} trials{reruns}, {done} already done in {out}; at most {steps} training steps to run "
              f"with {workers} worker(s) on {device}")
        return 0
    from harness import runner  # imports torch: only for a real run

    try:
        counts = runner.run(cfg, out, workers=workers, storage=storage, device=device,
                            threads=cfg.run.threads, progress=not args.quiet, artifacts=args.artifacts)
    except runner.WorkerDied as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 1
    print(f"{out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0 if counts.get("missing", 0) == 0 else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report

    path = write_report(Path(args.dir))
    print(f"wrote {path}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from harness.status import format_status, status

    print(format_status(status(Path(args.dir), args.storage)))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from harness.data.synth import write_synthetic

    raw = apply_overrides({"name": "synth", "data": {"synth": {}}},
                          [f"data.synth.{s}" if not s.startswith("data.") else s for s in args.set])
    cfg = config_from_dict(raw).data.synth
    out = write_synthetic(Path(args.out_dir), cfg)
    print(f"wrote {out} (train {cfg.n_train}, dev {cfg.n_dev}, test {cfg.n_test}, seed {cfg.seed})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from harness.data import describe

    info = describe(Path(args.dir), args.tokenizer)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"{info['dir']}: {len(info['classes'])} classes ({', '.join(info['classes'])}); vocabulary: "
          f"{info['vocab']}")
    for split, s in info["splits"].items():
        ln = s["length"]
        counts = list(s["class_counts"].values())
        print(f"  {split:5s} {s['size']:7d} texts; class counts min {min(counts)} max {max(counts)}; "
              f"length mean {ln['mean']:.1f} min {ln['min']} p5 {ln['p5']:.0f} p50 {ln['p50']:.0f} "
              f"p95 {ln['p95']:.0f} p99 {ln['p99']:.0f} max {ln['max']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) the grid a config describes")
    r.add_argument("config", help="experiment YAML, e.g. configs/bench.yaml")
    r.add_argument("--out", help="results directory (default results/<name>)")
    r.add_argument("--workers", type=int, help="worker processes (default: run.workers)")
    r.add_argument("--storage", help="Optuna storage URL (default: DIR/optuna.journal)")
    r.add_argument("--device", help="auto | cpu | cuda | cuda:K | cuda:0,cuda:1 (default: run.device)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.hidden_size=64 (repeatable)")
    r.add_argument("--artifacts", metavar="DIR",
                   help="also store each trial's shards in this Optuna artifact store (a shared path), so "
                        "workers that do not share the results folder still reach the report")
    r.add_argument("--dry-run", action="store_true", help="list the trials and their cost; run nothing")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    rp = sub.add_parser("report", help="write DIR/report.md and DIR/figures/")
    rp.add_argument("dir")
    rp.set_defaults(func=_cmd_report)

    st = sub.add_parser("status", help="trial counts by state, running, slowest and failed trials")
    st.add_argument("dir")
    st.add_argument("--storage", help="Optuna storage URL if not DIR/optuna.journal")
    st.set_defaults(func=_cmd_status)

    d = sub.add_parser("data", help="data utilities")
    dsub = d.add_subparsers(dest="data_command", required=True)
    sy = dsub.add_parser("synth", help="write the embedded synthetic data set in the THUCNews format")
    sy.add_argument("out_dir")
    sy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"a synthetic-data setting ({', '.join(SynthConfig.__dataclass_fields__)}), "
                         f"e.g. --set n_train=5000")
    sy.set_defaults(func=_cmd_synth)
    ch = dsub.add_parser("check", help="validate a data directory and print its statistics")
    ch.add_argument("dir")
    ch.add_argument("--tokenizer", choices=("char", "word"), default="char")
    ch.add_argument("--json", action="store_true")
    ch.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.data import DataError

    try:
        return args.func(args)
    except (ConfigError, DataError) as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
