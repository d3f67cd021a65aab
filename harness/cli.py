"""Command line: `harness run | report | status | export | launch | data synth | data check`
(also `python -m harness`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.config import ConfigError, SynthConfig, apply_overrides, config_from_dict, load_config


def _cmd_run(args: argparse.Namespace) -> int:
    from harness import runner

    cfg = load_config(args.config, args.set)
    out = Path(args.out or Path("results") / cfg.name)
    workers = args.workers or cfg.run.workers
    device = args.device or cfg.run.device
    storage = args.storage or cfg.run.storage
    if args.dry_run:
        rows = runner.dry_run(cfg, out)
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
    counts = runner.run(cfg, out, workers=workers, storage=storage, device=device,
                        threads=cfg.run.threads, progress=not args.quiet, artifacts=args.artifacts)
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


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.export import export

    to, *rest = args.to
    if len(rest) > 1 or (rest and args.out):
        given = [*rest, *([args.out] if args.out else [])]
        raise ConfigError(f"harness export: one OUT at most (got {' '.join(given)})")
    res = export(Path(args.dir), to, rest[0] if rest else args.out)
    print(f"{res.target}: wrote {res.written} trial(s) to {res.out}"
          + (f" ({res.skipped} already there)" if res.skipped else "") + f"\nview: {res.view}")
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from harness.launch import launch_from_args

    return launch_from_args(args)


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

    ex = sub.add_parser("export", help="write a results folder's trials into TensorBoard, MLflow or W&B (offline)",
                        usage="harness export DIR --to {tensorboard,mlflow,wandb} [OUT]")
    ex.add_argument("dir", help="results directory (holds config.yaml and trials/)")
    # `--to TRACKER [OUT]`: OUT may follow the tracker (argparse cannot take a positional after an option).
    ex.add_argument("--to", required=True, nargs="+", metavar="TRACKER",
                    help="tensorboard, mlflow or wandb, optionally followed by OUT; each tracker needs its extra, "
                         "e.g. pip install 'harness[tensorboard]'")
    ex.add_argument("out", nargs="?",
                    help="where to write: a folder for tensorboard and wandb; for mlflow a tracking URI "
                         "(sqlite:///..., http://...) or a folder (becomes OUT/mlflow.db). Default: DIR/<tracker>. "
                         "Exporting again adds only the trials not there yet")
    ex.set_defaults(func=_cmd_export)

    from harness.launch import add_launch_parser

    add_launch_parser(sub, _cmd_launch)

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
