"""Command line: `harness run | report | status | predict | export | launch | init | data synth | data check |
data import`
(also `python -m harness`)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
from pathlib import Path

from harness.config import ConfigError, SynthConfig, apply_overrides, config_from_dict, load_config
from harness.config.sections import LIVE_TRACKERS


def _print_dry_run(doc: dict, workers: int) -> None:
    """The dry run as text: one line per trial (or per search study), then the totals."""
    for t in doc["trials"]:
        factors = " ".join(f"{k}={v}" for k, v in t["factors"].items())
        steps = t["budget"]["max_steps"]
        check = f"  (budget check, {t['budget_check']}× the budget)" if t.get("budget_check") else ""
        print(f"{t['trial_id']}  {'done   ' if t['done'] else 'to run '} {factors}  "
              f"steps<={steps if steps is not None else '?'}{check}")
    for st in doc.get("studies", []):
        fixed = " ".join(f"{k}={v}" for k, v in st["fixed"].items())
        steps = st["budget"]["max_steps"]
        print(f"{st['study']} × {st['trials']} sampled trials  to run  {fixed}  "
              f"steps<={steps if steps is not None else '?'}")
    tot = doc["totals"]
    n = sum(st["trials"] for st in doc["studies"]) if "studies" in doc else tot["trials"]
    reruns = " (then each study's best setting re-run once per seed)" if tot["reruns_after_search"] else ""
    print(f"{n} trials{reruns}, {tot['done']} already done in {doc['out']}; at most {tot['max_steps']} training "
          f"steps to run with {workers} worker(s) on {doc['device']}")
    if "adaptive" in doc:
        a = doc["adaptive"]
        print(f"adaptive seeds: between {a['min_trials']} and {a['max_trials']} trials in all ({a['min_seeds']} to "
              f"{a['max_seeds']} seeds per configuration); listed: the {n} needed so far")
    if "budget_check" in doc:
        b = doc["budget_check"]
        print(f"budget check (headline.budget_check): may add up to {b['max_trials']} trials, the configuration "
              f"at each of {b['lines']} frontiers' first failing distance on {b['seeds']} seeds at {b['factor']}× "
              f"the budget (at most {b['max_steps']} more training steps), once that frontier's runs are finished; "
              f"{len(b['checked'])} chosen so far")


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.plan import check_size  # start-up: each command imports what it needs (`harness --help` stays quick)

    cfg = load_config(args.config, args.set)
    if args.tracker:  # --tracker NAME (repeatable) adds to run.trackers
        cfg.run.trackers = list(dict.fromkeys([*cfg.run.trackers, *args.tracker]))
    out = Path(args.out or Path("results") / cfg.name)
    workers = args.workers or cfg.run.workers
    device = args.device or cfg.run.device
    storage = args.storage or cfg.run.storage
    check_size(cfg, args.yes)  # before any work: counting needs no expansion
    if args.dry_run:
        from harness.plan import dry_run  # start-up: only for --dry-run

        doc = dry_run(cfg, out, device=device, yes=args.yes)
        if args.json:
            print(json.dumps({**doc, "workers": workers}, indent=2, ensure_ascii=False, default=str))
        else:
            _print_dry_run(doc, workers)
        return 0
    if args.json:
        raise ConfigError("--json goes with --dry-run (for a finished run: harness status DIR --json)")
    if not args.quiet:  # the first word within a second: importing torch and preparing data take seconds
        print(f"harness: {cfg.name}: loading torch, checking the config and preparing the data for {out}",
              file=sys.stderr, flush=True)
    from harness import runner  # imports torch: only for a real run

    try:
        counts = runner.run(cfg, out, workers=workers, storage=storage, device=device,
                            threads=cfg.run.threads, progress=not args.quiet, artifacts=args.artifacts)
    except runner.WorkerDied as e:
        print(f"harness: error: {_said(e)}", file=sys.stderr)
        return 1
    print(f"{out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0 if counts.get("missing", 0) == 0 else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report  # each command imports what it needs: `harness --help` stays quick
    from harness.results_dir import read_run_settings, results_config_raw

    results_config_raw(args.dir)  # a config.yaml or run.yaml that cannot be read: one line, before any work
    read_run_settings(Path(args.dir))
    path = write_report(Path(args.dir), html=args.format == "html")
    print(f"wrote {path}")
    if args.format == "html":
        print(f"wrote {path.with_suffix('.html')}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from harness.status import format_status, status, status_json  # start-up: only for this command

    info = status(Path(args.dir), args.storage)
    print(status_json(info) if args.json else format_status(info))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.export import export  # start-up: only for this command (a tracker's library with it)

    to, *rest = args.to
    if len(rest) > 1 or (rest and args.out):
        given = [*rest, *([args.out] if args.out else [])]
        raise ConfigError(f"harness export: one OUT at most (got {' '.join(given)})")
    res = export(Path(args.dir), to, rest[0] if rest else args.out)
    print(f"{res.target}: wrote {res.written} trial(s) to {res.out}"
          + (f" ({res.skipped} already there)" if res.skipped else "") + f"\nview: {res.view}")
    return 0


def _predict_texts(args: argparse.Namespace) -> list[str]:
    """The texts `harness predict` classifies: the arguments, or --file's lines (one text per line; '-' is
    stdin). ConfigError (one line) for none, both, or an empty one."""
    if args.file is not None and args.texts:
        raise ConfigError("harness predict: give texts or --file F, not both")
    if args.file is None:
        texts, where = list(args.texts), "text"
    else:
        try:
            raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--file {args.file}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        texts, where = raw.splitlines(), f"--file {args.file}: line"
    if not texts:
        raise ConfigError("harness predict: no text to classify (give TEXT… or --file F)")
    for i, text in enumerate(texts):
        if not text.strip():
            raise ConfigError(f"{where} {i + 1} is empty: nothing to classify")
    return texts


def _cmd_predict(args: argparse.Namespace) -> int:
    texts = _predict_texts(args)
    from harness import predict  # imports torch

    try:
        trial = predict.choose_trial(args.dir, args.trial, args.best)
        model = predict.load_model(args.dir, trial)
        out = model.predict(texts)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if args.json:
        print(json.dumps({"trial_id": trial, "predictions": [{"text": t, "class": c, "probability": p}
                                                              for t, (c, p) in zip(texts, out)]},
                         indent=2, ensure_ascii=False))
    else:
        for text, (cls, prob) in zip(texts, out):
            print(f"{cls}\t{prob:.4f}\t{text}")
    return 0


def _add_predict_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="classify texts with a trial's saved model (train.save_model)",
                        description="Print the class and its probability for each text (tab-separated: class, "
                                    "probability, text), using DIR/trials/<trial_id>/model.pt alone. A token "
                                    "outside the trial's vocabulary is read as its UNK token.")
    pr.add_argument("dir", help="results directory")
    pr.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    which = pr.add_mutually_exclusive_group()
    which.add_argument("--trial", metavar="ID", help="the trial whose model to use (default: the only trial "
                                                     "that saved one)")
    which.add_argument("--best", action="store_true",
                       help="the trial with the highest dev accuracy (best_dev_acc, never test) among those "
                            "that saved a model")
    pr.add_argument("--file", metavar="F", help="read the texts from F, one per line ('-': standard input)")
    pr.add_argument("--json", action="store_true",
                    help="print one JSON object: trial_id and predictions [{text, class, probability}]")
    pr.set_defaults(func=_cmd_predict)


def _cmd_launch(args: argparse.Namespace) -> int:
    from harness.launch import launch_from_args  # start-up: only for this command

    return launch_from_args(args)


def _cmd_synth(args: argparse.Namespace) -> int:
    from harness.data.synth import write_synthetic  # start-up: only for this command

    raw = apply_overrides({"name": "synth", "data": {"synth": {}}},
                          [f"data.synth.{s}" if not s.startswith("data.") else s for s in args.set])
    cfg = config_from_dict(raw).data.synth
    out = write_synthetic(Path(args.out_dir), cfg)
    print(f"wrote {out} (train {cfg.n_train}, dev {cfg.n_dev}, test {cfg.n_test}, seed {cfg.seed})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from harness.data import describe  # start-up: only for this command

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


def _cmd_init(args: argparse.Namespace) -> int:
    from harness.shipped import copy_configs  # start-up: only for this command

    try:
        written = copy_configs(Path(args.dir) / "configs", force=args.force)
    except FileExistsError as e:
        print(f"harness: error: would overwrite {e} (--force overwrites)", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    first = written[0].parent / "first.yaml"
    out = Path(args.dir) / "results" / "first"  # both commands work from here, wherever DIR is
    print(f"try: harness run {shlex.quote(str(first))} --out {shlex.quote(str(out))} && "
          f"harness report {shlex.quote(str(out))}")
    return 0


def _add_init_parser(sub: argparse._SubParsersAction) -> None:
    from harness.shipped import config_files  # start-up: only for this command

    shipped = ", ".join(f.name.removesuffix(".yaml") for f in config_files())
    it = sub.add_parser("init", help="copy the shipped example configs into DIR/configs/",
                        description=f"Copy the configs that ship with the package ({shipped}) into DIR/configs/, "
                                    f"to edit and run: harness run configs/first.yaml")
    it.add_argument("dir", nargs="?", default=".", help="project folder (default: the current folder)")
    it.add_argument("--force", action="store_true", help="overwrite configs that are already there")
    it.set_defaults(func=_cmd_init)


def _cmd_import(args: argparse.Namespace) -> int:
    from harness.data import importers as im  # start-up: only for this command

    split_map, fractions = im.parse_split_map(args.split_map), im.parse_fractions(args.fractions)
    if args.format == "hf":
        source = im.read_hf(args.source, args.text, args.label, subset=args.subset)
    elif args.format == "jsonl":
        source = im.read_jsonl(args.source, args.text, args.label, split_col=args.split_column)
    else:
        source = im.read_delimited(args.source, args.text, args.label, split_col=args.split_column,
                                   delimiter="\t" if args.format == "tsv" else ",")
    result = im.write_import(source, args.out_dir, label_type=args.label_type, classes_file=args.classes,
                             split_map=split_map, fractions=fractions, seed=args.seed, force=args.force,
                             dedupe=args.dedupe, warn=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"wrote {result.out_dir} (train.txt dev.txt test.txt class.txt import.json); checked as by "
          f"`harness data check`")
    for line in result.summary():
        print(line)
    return 0


def _add_import_parser(dsub: argparse._SubParsersAction) -> None:
    imp = dsub.add_parser("import", help="convert CSV, TSV, JSON Lines or a Hugging Face dataset into a data folder",
                          description="Write a THUCNews-format data folder (train/dev/test.txt, class.txt, and "
                                      "import.json recording the source and every rule applied), then validate it "
                                      "as `harness data check` does.")
    fsub = imp.add_subparsers(dest="format", required=True, metavar="{csv,tsv,jsonl,hf}")
    helps = {"csv": "a CSV file with a header line (RFC 4180 quoting)",
             "tsv": "a TSV file with a header line (no quoting: a quote is an ordinary character)",
             "jsonl": "a JSON Lines file: one JSON object per line",
             "hf": "a Hugging Face dataset: a save_to_disk folder, or a hub name (needs the 'hf' extra)"}
    for fmt, text in helps.items():
        f = fsub.add_parser(fmt, help=text, description=f"Import {text}.")
        f.add_argument("source", help="the dataset folder or hub name" if fmt == "hf" else "the file to read")
        f.add_argument("out_dir", help="the data folder to write (must be empty or new, unless --force)")
        f.add_argument("--text", required=True, metavar="COL", help="column (key) holding the text")
        f.add_argument("--label", required=True, metavar="COL", help="column (key) holding the label")
        if fmt == "hf":
            f.add_argument("--subset", metavar="NAME", help="the dataset's configuration name, for a hub name "
                                                            "(load_dataset(NAME, SUBSET))")
        else:
            f.add_argument("--split-column", metavar="COL",
                           help="column naming each row's split (train, dev/validation, test, or as --split-map "
                                "says); without it the rows are split by --fractions")
        f.add_argument("--split-map", action="append", default=[], metavar="SRC=DEST",
                       help="map a source split name to train, dev or test, or '-' to leave it out, e.g. "
                            "--split-map validation=dev --split-map unsupervised=- (repeatable). Default: "
                            "train→train, dev/validation/valid/val→dev, test→test")
        f.add_argument("--fractions", default="0.8,0.1,0.1", metavar="TRAIN,DEV,TEST",
                       help="the split made when the source has none (default 0.8,0.1,0.1); a missing dev or "
                            "test split is carved out of train in these proportions, stratified by label")
        f.add_argument("--seed", type=int, default=0, help="seed of that split's permutation (default 0)")
        f.add_argument("--label-type", choices=("auto", "index", "name"), default="auto",
                       help="index: labels are class indices 0..K-1; name: labels are class names (numbered "
                            "in sorted order unless --classes); auto (default): index when every label is an "
                            "integer, else name")
        f.add_argument("--classes", metavar="FILE",
                       help="class names, one per line: the names of index labels, or the order of name labels")
        f.add_argument("--force", action="store_true",
                       help="replace the import's files in a folder that is not empty (its other files are kept; "
                            "never the source's own folder)")
        f.add_argument("--dedupe", action="store_true",
                       help="drop rows whose text is already in train (from dev and test), in dev (from test) or "
                            "earlier in the same split")
        f.set_defaults(func=_cmd_import)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its arguments. One linear list, so longer than the rest."""
    from harness.shipped import version  # start-up: importlib.metadata only when the parser is built

    p = argparse.ArgumentParser(prog="harness", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                   help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) the grid a config describes")
    r.add_argument("config", help="experiment YAML, e.g. configs/bench.yaml")
    r.add_argument("--out", help="results directory (default results/<name>)")
    r.add_argument("--workers", type=int, help="worker processes (default: run.workers)")
    r.add_argument("--storage", help="Optuna storage URL (default: DIR/optuna.journal)")
    r.add_argument("--device", help="auto | cpu | cuda | cuda:K | cuda:0,cuda:1 (default: run.device)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.hidden_size=64 or "
                        "--set 'grid.model.forget_bias=[0,3]'; --set ~KEY removes a key or grid axis (repeatable)")
    r.add_argument("--artifacts", metavar="DIR",
                   help="also store each trial's shards in this Optuna artifact store (a shared path), so "
                        "workers that do not share the results folder still reach the report")
    r.add_argument("--tracker", action="append", default=[], choices=LIVE_TRACKERS, metavar="NAME",
                   help="stream every trial's scalars at each evaluation to this tracker while it runs: "
                        "tensorboard (DIR/tensorboard-live), mlflow (DIR/mlflow-live) or wandb (offline, "
                        "DIR/wandb-live); adds to run.trackers (repeatable)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the trials and their cost, making the run's checks; write nothing")
    r.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON document "
                                                       "(trials with ids, factors, done, budget; totals)")
    r.add_argument("--yes", action="store_true",
                   help="plan and run more than 100000 trials (otherwise refused before any work)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    rp = sub.add_parser("report", help="write DIR/report.md and DIR/figures/")
    rp.add_argument("dir")
    rp.add_argument("--format", choices=("md", "html"), default="md",
                    help="html: also write DIR/report.html, one self-contained page (figures inline)")
    rp.set_defaults(func=_cmd_report)

    st = sub.add_parser("status", help="trial counts by state, running, slowest and failed trials")
    st.add_argument("dir")
    st.add_argument("--storage", help="Optuna storage URL if not DIR/optuna.journal")
    st.add_argument("--json", action="store_true", help="print the same as one JSON object (counts by status, "
                                                          "running, waiting, slowest, failures)")
    st.set_defaults(func=_cmd_status)
    _add_init_parser(sub)
    _add_predict_parser(sub)

    ex = sub.add_parser("export", help="write a results folder's trials into TensorBoard, MLflow or W&B (offline)",
                        usage="harness export DIR --to {tensorboard,mlflow,wandb} [OUT]")
    ex.add_argument("dir", help="results directory (holds config.yaml and trials/)")
    # `--to TRACKER [OUT]`: OUT may follow the tracker (argparse cannot take a positional after an option).
    ex.add_argument("--to", required=True, nargs="+", metavar="TRACKER",
                    help="tensorboard, mlflow or wandb, optionally followed by OUT; each tracker needs its extra, "
                         "e.g. pip install 'rnn-ablation-harness[tensorboard]'")
    ex.add_argument("out", nargs="?",
                    help="where to write: a folder for tensorboard and wandb; for mlflow a tracking URI "
                         "(sqlite:///..., http://...) or a folder (becomes OUT/mlflow.db). Default: DIR/<tracker> "
                         "(elsewhere inside DIR is refused). Exporting again adds only the trials not there yet")
    ex.set_defaults(func=_cmd_export)

    from harness.launch import add_launch_parser  # start-up: the launch module only when the parser is built

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
    ch.add_argument("--tokenizer", choices=("char", "word"), default="char",
                    help="how texts are cut into tokens for the length statistics and the vocabulary check: char "
                         "(one token per character, the default) or word (split on spaces)")
    ch.add_argument("--json", action="store_true", help="print the same as one JSON object")
    ch.set_defaults(func=_cmd_check)
    _add_import_parser(dsub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `harness predict DIR --best TEXT…`: texts after an option (argparse takes positionals once)
        if getattr(args, "command", None) != "predict" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.texts = [*args.texts, *extra]
    from harness.data import DataError  # start-up: the data package and Optuna's journal (for `except`) after parsing
    from harness.journal import JournalDamaged

    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except (ConfigError, DataError, JournalDamaged) as e:
        print(f"harness: error: {_said(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness status DIR | head`: the reader has gone; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe
    except Exception as e:
        message = environment_error(e)
        if message is None:
            raise
        print(f"harness: error: {_said(message)}", file=sys.stderr)
        return 1


def _said(e: BaseException | str) -> str:
    """An error message as printed: on one line, the password of every URL in it shown as ***."""
    from harness.files import one_line  # start-up: only when an error is printed

    text = one_line(str(e), limit=2000)
    if "://" not in text:
        return text
    from harness.storage import redact_text  # imports optuna: only for a message that holds a URL

    return redact_text(text)


_OS_HINTS = {errno.ENOSPC: "the disk is full: free some space, then run the same command again to resume",
             errno.EDQUOT: "the disk quota is used up: free some space, then run the same command again",
             errno.EROFS: "the file system is read-only: choose a writable folder (--out) or remount it",
             errno.EACCES: "no permission to write there: choose another folder or change its permissions",
             errno.EPERM: "no permission to write there: choose another folder or change its permissions"}


def environment_error(e: BaseException) -> str | None:
    """One line for an error of the machine rather than of the harness (a full disk, a read-only or
    forbidden folder, an unreachable storage database), naming the path or the URL (without its
    password); None for anything else."""
    # Optuna (harness.storage): only when an error is printed
    from harness.storage import StorageUnreachable, first_line, redact_text

    if isinstance(e, StorageUnreachable):
        return str(e)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename is not None else ""
        hint = _OS_HINTS.get(e.errno)
        return f"{e.strerror or e}{where}" + (f" ({hint})" if hint else "")
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(e, sa_exc.OperationalError):
        return f"the storage database failed: {redact_text(first_line(e.orig or e))}"
    return None


if __name__ == "__main__":
    sys.exit(main())
