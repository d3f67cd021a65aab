"""The trial saving of adaptive seeds: the same decided conclusions as running max_seeds everywhere,
for what fraction of the trials.

Measured (the default): runs CONFIG with `adaptive: {min_seeds, max_seeds}` into OUT (the real
rounds: its trial count and wall time), then tops the same folder up to seeds 0 .. max_seeds-1
everywhere (a `grid.seed` list: the trial ids are the same, so only the missing trials run), and
compares per configuration the conclusion adaptive seeds stopped at (Wilson interval at 95% above
0.5: mostly reaches the target; below: mostly does not) with the one all max_seeds seeds give. It
also replays the rounds on the full table (`harness.adaptive.decide`) and checks that they ask for
exactly the trials the adaptive run trained (training is deterministic per trial id).

Replayed (`--replay DIR --max-seeds 8 12 16`): DIR holds CONFIG's trials at seeds 0 .. M-1 everywhere
(the second stage of a measured run, or `harness run` of CONFIG with `grid.seed: [0, …, M-1]` in place
of its adaptive section). For each max_seeds it replays the rounds (`harness.adaptive.decide`: training
is deterministic per trial id on one machine and kernel set, so this is exactly what an adaptive run
trains), copies those trials into OUT/adaptive_maxN and seeds 0 .. N-1 of every configuration into
OUT/everywhere_N, and compares the two folders with compare_conclusions.py (an exact test of each
configuration's counts, Holm across them, then the config's pre-registered headline, if any). The two
folders share their first seeds, so the tests read as a description of how far apart they are, not as
a test of two independent samples. No training.

Simulated (`--simulate DIR`): takes each configuration's success rate from a finished results
folder (k / n; with --smooth (k + 0.5) / (n + 1), which keeps 0 of 2 from meaning "never"), draws max_seeds outcomes per
configuration, and counts the trials racing would use and how often its conclusions agree with the
max_seeds ones, over `--reps` replications. A simulation, not a run.

    python benchmarks/adaptive_saving.py --out /tmp/adaptive_bench --set data.synth.n_train=3000
    python benchmarks/adaptive_saving.py --simulate /tmp/bench_before --reps 2000
    python benchmarks/adaptive_saving.py --replay /tmp/full16 --out /tmp/replay --min-seeds 5 --max-seeds 8 12 16
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness import adaptive
from harness.config import apply_overrides, config_from_dict
from harness.report.outcomes import outcome_label
from harness.stats.rates import undecided, wilson_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _args import existing_file, finished_runs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).name


def conclusion(k: int, n: int, confidence: float = 0.95) -> str:
    """'reached' / 'failed' when the Wilson interval of k/n lies above / below 0.5, else 'undecided'."""
    return outcome_label(*wilson_interval(k, n, confidence))


def configs(raw: dict, overrides: list[str], min_seeds: int, max_seeds: int) -> tuple[dict, dict]:
    """(adaptive raw config, the same with seeds 0 .. max_seeds-1 as a grid list)."""
    raw = apply_overrides(raw, overrides)
    raw["grid"].pop("seed", None)
    raw["grid"].pop("train.seed", None)
    # Adaptive seeding is exploration: the headline's fixed confirmatory seeds and its budget check (a grid
    # at fixed seeds) do not apply; its estimands (contrasts, D50s) stay and are read on seeds 0 .. min-1.
    for key in ("seeds", "exploration_seeds", "budget_check"):
        (raw.get("headline") or {}).pop(key, None)
    full = json.loads(json.dumps(raw))
    full.pop("adaptive", None)  # the bench config has its own adaptive section
    full["grid"]["seed"] = list(range(max_seeds))
    raw["adaptive"] = {"min_seeds": min_seeds, "max_seeds": max_seeds}
    return raw, full


def measure(args: argparse.Namespace) -> dict:
    from harness import records, runner
    from harness.plan import make_plan

    raw, full_raw = configs(yaml.safe_load(Path(args.config).read_text()), args.set, args.min_seeds, args.max_seeds)
    cfg = config_from_dict(raw)
    out = Path(args.out)
    t0 = time.time()
    runner.run(cfg, out, workers=args.workers, device="cpu", threads=1, progress=False)
    wall_adaptive = time.time() - t0
    info = json.loads((out / "adaptive.json").read_text())
    adaptive_ids = set(records.load(out)["runs"]["trial_id"])
    t0 = time.time()
    runner.run(config_from_dict(full_raw), out, workers=args.workers, device="cpu", threads=1, progress=False)
    wall_rest = time.time() - t0
    runs = records.load(out)["runs"]
    plan = make_plan(cfg, out)
    replay = adaptive.decide(cfg, adaptive.pool(cfg, plan.data_id), runs)
    agree, rows = compare(replay, runs, adaptive.pool(cfg, plan.data_id), args.max_seeds)
    return {"trials_adaptive": len(adaptive_ids), "trials_max": len(runs),
            "fraction": len(adaptive_ids) / len(runs), "wall_adaptive_s": round(wall_adaptive),
            "wall_rest_s": round(wall_rest), "configurations": info["configurations"],
            "replay_matches_run": {s.trial_id for s in replay.needed} == adaptive_ids,
            "conclusions_agree": agree, "per_configuration": rows}


def compare(decision: adaptive.Decision, runs: pd.DataFrame, pool: list, max_seeds: int) -> tuple[str, list]:
    """Per configuration: its adaptive conclusion (at the seeds it got) and the max_seeds one."""
    reached = {t: s == "complete" and not pd.isna(x) for t, s, x in
               zip(runs["trial_id"], runs["status"], runs["steps_to_target"])}
    by_key: dict[tuple, list] = {}
    for s in pool:
        by_key.setdefault(tuple(v for k, v in s.factors.items() if k != "seed"), []).append(s)
    rows, same, contradicted = [], 0, 0
    for c in decision.configs:
        specs = sorted(by_key[tuple(c.factors.values())], key=lambda s: s.factors["seed"])
        k_full = sum(reached[s.trial_id] for s in specs[:max_seeds])
        a, f = conclusion(c.reached, c.seeds), conclusion(k_full, max_seeds)
        same += a == f
        contradicted += {a, f} == {"reached", "failed"}
        rows.append({**c.factors, "seeds": c.seeds, "adaptive": f"{a} ({c.reached}/{c.seeds})",
                     "max_seeds": f"{f} ({k_full}/{max_seeds})"})
    return f"{same}/{len(rows)} the same, {contradicted} contradicted", rows


def replay(args: argparse.Namespace) -> dict:
    """Adaptive seeds replayed on a folder of max-seeds-everywhere trials, per max_seeds in args.max_seeds."""
    import shutil

    from compare_conclusions import compare, load

    from harness import records
    from harness.plan import make_plan

    full = Path(args.replay)
    runs = records.load(full)["runs"].set_index("trial_id")  # checked in main: a folder with finished trials
    base = yaml.safe_load(Path(args.config).read_text())
    out: dict[str, dict] = {}
    for m in args.max_seeds:
        raw, full_raw = configs(base, args.set, args.min_seeds, m)
        folders = {}
        for name, cfg in (("adaptive", config_from_dict(raw)), ("everywhere", config_from_dict(full_raw))):
            plan = make_plan(cfg, full)
            ids = ({s.trial_id for s in adaptive.decide(cfg, adaptive.pool(cfg, plan.data_id),
                                                         runs.reset_index()).needed}
                   if name == "adaptive" else {s.trial_id for s in plan.specs})
            if ids - set(runs.index):
                raise SystemExit(f"{full} lacks {len(ids - set(runs.index))} trials of max_seeds {m}: "
                                 f"run it with seeds 0 .. {m - 1} everywhere first")
            folder = Path(args.out) / (f"adaptive_max{m}" if name == "adaptive" else f"everywhere_{m}")
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "trials").mkdir(parents=True)
            for t in ids:
                shutil.copytree(full / "trials" / t, folder / "trials" / t)
            (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            records.combine(folder)
            folders[name] = (folder, ids)
        (a, keys, headline), (b, _, _) = load(folders["adaptive"][0]), load(folders["everywhere"][0])
        c = compare(a, b, headline, keys=keys)
        a_ids, f_ids = folders["adaptive"][1], folders["everywhere"][1]
        out[str(m)] = {"trials_adaptive": len(a_ids), "trials_max": len(f_ids),
                       "fraction": round(len(a_ids) / len(f_ids), 3),
                       "train_s_adaptive": round(float(runs.loc[sorted(a_ids), "train_s"].sum())),
                       "train_s_max": round(float(runs.loc[sorted(f_ids), "train_s"].sum())),
                       "verdict": c.verdict, "reason": c.reason,
                       "counts_differ": [f"{t.name}: {t.k_a}/{t.n_a} | {t.k_b}/{t.n_b} (Holm p {t.p_holm:.3g})"
                                         for t in c.configurations if t.differs]}
    return out


def simulate(args: argparse.Namespace) -> dict:
    """Racing on outcomes drawn from each configuration's observed success rate."""
    runs = finished_runs(SCRIPT, "--simulate", args.simulate)
    keys = [k for k in ("cell", "layernorm", "pad_size", "batch_size", "lr") if runs[k].nunique() > 1]
    runs["reached"] = (runs["status"] == "complete") & runs["steps_to_target"].notna()
    rates = runs.groupby(keys or (lambda _: "all"))["reached"].agg(["sum", "count"])  # no keys: one configuration
    k, m = rates["sum"].to_numpy(), rates["count"].to_numpy()
    p = (k + 0.5) / (m + 1) if args.smooth else k / m
    gen = np.random.default_rng(args.seed)
    used, same, contradicted = [], [], []
    for _ in range(args.reps):
        draws = gen.random((p.size, args.max_seeds)) < p[:, None]
        n = [_race(row, args.min_seeds, args.max_seeds) for row in draws]
        used.append(sum(n) / (p.size * args.max_seeds))
        pairs = [(conclusion(int(row[:m].sum()), m), conclusion(int(row.sum()), args.max_seeds))
                 for row, m in zip(draws, n)]
        same.append(all(a == f for a, f in pairs))
        contradicted.append(any({a, f} == {"reached", "failed"} for a, f in pairs))
    q5, q95 = np.quantile(used, [0.05, 0.95])
    return {"configurations": int(p.size), "rates": [round(float(x), 3) for x in p],
            "fraction_mean": float(np.mean(used)), "fraction_p5_p95": [float(q5), float(q95)],
            "share_all_conclusions_same": float(np.mean(same)),
            "share_any_conclusion_contradicted": float(np.mean(contradicted)), "reps": args.reps}


def _race(outcomes: np.ndarray, min_seeds: int, max_seeds: int) -> int:
    """Seeds one configuration gets: one more while its Wilson interval contains 0.5."""
    n = min_seeds
    while n < max_seeds and undecided(int(outcomes[:n].sum()), n):
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "bench.yaml"))
    p.add_argument("--out", default="/tmp/adaptive_bench")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--min-seeds", type=int, default=3)
    p.add_argument("--max-seeds", type=int, nargs="+", default=[8], help="one; several with --replay")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--simulate", metavar="DIR", help="simulate from this results folder's success rates")
    p.add_argument("--replay", metavar="DIR", help="replay on this folder of max-seeds-everywhere trials")
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smooth", action="store_true", help="rates (k + 0.5) / (n + 1) instead of k / n")
    args = p.parse_args()
    existing_file(SCRIPT, "--config", args.config)
    if args.replay:
        finished_runs(SCRIPT, "--replay", args.replay)
        print(json.dumps(replay(args), indent=1, ensure_ascii=False))
        return
    if len(args.max_seeds) > 1:
        p.error("several --max-seeds only with --replay")
    args.max_seeds = args.max_seeds[0]
    result = simulate(args) if args.simulate else measure(args)
    print(json.dumps(result, indent=1, default=str))
    if not args.simulate and not math.isnan(result["fraction"]):
        print(f"adaptive seeds: {result['trials_adaptive']} of {result['trials_max']} trials "
              f"({result['fraction']:.0%}); conclusions agree in {result['conclusions_agree']} configurations")


if __name__ == "__main__":
    main()
