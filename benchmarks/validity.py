"""Does the synthetic default reach the real titles' conclusions? The bench protocol on both, side by side.

`configs/bench.yaml` is run twice with only the data section changed: once on the embedded synthetic
titles as the bench has them, once on a folder of real THUCNews titles (by default
`../shared/data/thucnews-titles`: 8,000 / 1,000 / 1,000, the bench's sizes). Both use the exploration
seeds (`headline.exploration_seeds`), never the bench's confirmatory ones. For each data set the same
target rule the bench uses is applied to its own runs (`target_for`: halfway from chance to the best
configuration's median best dev accuracy within the budget), and the script prints, per arm:

- reached / runs at each lag (best dev accuracy within the budget at least the target);
- D50, or the bracket where the outcomes split perfectly;
- the decided arm-vs-arm contrasts (exact Boschloo test per lag, Holm over the rows, 95% Chan-Zhang
  interval excluding 0);
- whether each arm learns at all at each lag (median test accuracy above chance by an exact binomial
  test, `harness.metrics`-style, on the run with the median accuracy);

then the verdict of the reproduction check (`benchmarks/compare_conclusions.py`, count level: DISAGREE,
AGREE, INCONCLUSIVE) between the two data sets' outcomes, and whether the synthetic default matches:
the same D50 bracket per arm (or D50s within 1.5x) and the same decided contrasts.

    python benchmarks/validity.py                                  # both runs, then the table
    python benchmarks/validity.py --real DIR --seeds 0,1,2 --out /tmp/validity
    python benchmarks/validity.py --report-only /tmp/validity      # the table from finished folders

Runs go to OUT/synthetic and OUT/real (resumed when present). About 2 x 72 trials at 6 seeds: 12-20
minutes on 2 cores. Without a real folder (a user's machine has no `shared/`) it says so and exits 2.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import records, runner  # noqa: E402
from harness.config import config_from_dict  # noqa: E402
from harness.report.contrasts import arm_contrasts  # noqa: E402
from harness.stats.chance import learned_at_all  # noqa: E402
from harness.stats.d50_ratio import split_bracket  # noqa: E402
from harness.stats.frontier import fit_d50  # noqa: E402

BENCH = ROOT / "configs" / "bench.yaml"
REAL = ROOT.parent / "shared" / "data" / "thucnews-titles"
D50_MARGIN = 1.5


@dataclass(frozen=True)
class Outcomes:
    """One data set's runs at its own target: one row per run with arm, lag, seed, reached, best
    (best dev accuracy within the budget), test_acc, learned."""

    name: str
    target: float
    ceiling: float
    chance: float
    budget: int
    runs: pd.DataFrame


def bench_raw() -> dict:
    return yaml.safe_load(BENCH.read_text(encoding="utf-8"))


def protocol(raw: dict, real: Path | None, seeds: list[int], workers: int) -> dict:
    """The bench config with the exploration seeds, no headline, and the data section for `real` (None:
    the synthetic default as the bench has it)."""
    cfg = copy.deepcopy(raw)
    cfg.pop("headline", None)
    cfg["name"] = "validity-real" if real else "validity-synthetic"
    cfg["grid"]["seed"] = list(seeds)
    if real is not None:
        data = cfg["data"]
        data.pop("synth", None)
        data.update({"kind": "thucnews", "dir": str(real)})
    cfg.setdefault("run", {})["workers"] = workers
    return cfg


def target_for(best: pd.DataFrame, chance: float) -> tuple[float, float]:
    """(target, ceiling): the ceiling is the highest median best-dev-accuracy of any (arm, lag); the
    target is halfway from chance to it, rounded to 0.01. The bench's `target_dev_acc` is this rule
    applied to the synthetic default's exploration runs."""
    ceiling = float(best.groupby(["arm", "lag"])["best"].median().max())
    return round(chance + (ceiling - chance) / 2, 2), ceiling


def outcomes(folder: Path, name: str) -> Outcomes:
    """The runs of a finished folder at the target rule, with each run's best dev accuracy."""
    tables = records.load(folder)
    runs, curves = tables.runs, tables.curves
    runs = runs[runs["status"] == "complete"].copy()
    budget = int(runs["steps"].max())
    best = curves[curves["step"] <= budget].groupby("trial_id")["dev_acc"].max()
    runs["best"] = runs["trial_id"].map(best).astype(float)
    n_classes = int(runs["num_classes"].iloc[0]) if "num_classes" in runs else 10
    chance = 1.0 / n_classes
    target, ceiling = target_for(runs, chance)
    runs["reached"] = (runs["best"] >= target).astype(float)
    # Learned at all (test accuracy above chance, exact binomial): from the runs' own columns, or for
    # folders written before they existed, from the confusion rows (n_test, majority share).
    conf = tables.confusion
    n_test = runs["trial_id"].map(conf.groupby("trial_id")["count"].sum()).astype(float)
    per_label = conf.groupby(["trial_id", "true_label"])["count"].sum().groupby("trial_id").max()
    majority = runs["trial_id"].map(per_label).astype(float) / n_test
    runs["learned"] = [learned_at_all(a, int(n), p)[2] if n > 0 else False
                       for a, n, p in zip(runs["test_acc"].astype(float), n_test.fillna(0), majority.fillna(chance))]
    keep = ["trial_id", "arm", "lag", "seed", "best", "reached", "test_acc", "learned"]
    return Outcomes(name, target, ceiling, chance, budget, runs[keep].reset_index(drop=True))


def d50_text(runs: pd.DataFrame) -> tuple[str, float | None]:
    """(words, point or None) for one arm's runs: the report's D50 (`fit_d50`), a bracket only where the
    outcomes split perfectly; the point is the fit's D50 (for a split, the midpoint of the distances it
    lies between on the log(1 + D) scale), None beyond or below every distance tested."""
    fit = fit_d50(runs["lag"].to_numpy(float), runs["reached"].to_numpy(float), n_boot=400)
    if fit.status == "all_reached":
        return f"beyond {int(runs['lag'].max())}", None
    if fit.status == "none_reached":
        return f"below {int(runs['lag'].min())}", None
    if fit.status == "separated":
        kind = "bracket" if split_bracket(runs["lag"].to_numpy(float), runs["reached"].to_numpy(float)) else \
            "mixed at one lag"
        lo = "…" if fit.low is None else f"{fit.low:g}"
        hi = "…" if fit.high is None else f"{fit.high:g}"
        return f"between {lo} and {hi} ({kind}; midpoint {fit.d50:.1f})" if fit.d50 is not None else \
            f"between {lo} and {hi} ({kind})", fit.d50
    if fit.d50 is None:
        return f"not estimable ({fit.status})", None
    lo = "…" if fit.low is None else f"{fit.low:.0f}"
    hi = "…" if fit.high is None else f"{fit.high:.0f}"
    return f"{fit.d50:.1f} [{lo}, {hi}]", float(fit.d50)


def same_d50(a: tuple[str, float | None], b: tuple[str, float | None]) -> bool:
    """Two D50s agree: both points within D50_MARGIN of each other on the (1 + D) scale, or the same words
    where either has no point (beyond / below every distance tested)."""
    (wa, pa), (wb, pb) = a, b
    if pa is not None and pb is not None:
        return 1 / D50_MARGIN <= (1 + pa) / (1 + pb) <= D50_MARGIN
    return wa == wb


def contrasts(o: Outcomes, pairs: list[tuple[str, str]]) -> list[dict]:
    """Each pair at each lag, as the report computes it (`arm_contrasts`: Boschloo p, Holm over the rows,
    the exact 95% interval, decided), with the counts as text and the decided sign."""
    table = arm_contrasts(o.runs, "arm", "lag", pairs=pairs)
    return [{"pair": f"{r['a']} − {r['b']}", "lag": int(r["lag"]), "a": f"{int(r['k_a'])}/{int(r['n_a'])}",
             "b": f"{int(r['k_b'])}/{int(r['n_b'])}", "p_holm": float(r["p_holm"]), "decided": bool(r["decided"]),
             "sign": (1 if r["diff"] > 0 else -1) if r["decided"] else 0} for _, r in table.iterrows()]


def verdict(syn: Outcomes, real: Outcomes, pairs: list[tuple[str, str]]) -> str:
    """The reproduction check's verdict between the two data sets' outcomes (its count-level test)."""
    try:
        import compare_conclusions as cc
    except ImportError as e:  # pragma: no cover - the script lives beside this one
        return f"not run ({e})"
    from harness.config.headline import Headline

    arms = sorted(set(syn.runs["arm"]))
    h = Headline(seeds=None, group="arm", contrasts=pairs, d50=arms)
    a = syn.runs.assign(seed=0).rename(columns={"lag": "lag"})
    b = real.runs.assign(seed=0)
    try:
        c = cc.compare(a, b, h, keys=["arm", "lag"])
    except TypeError:
        c = cc.compare(a, b, h)
    return f"{c.verdict}: {c.reason}" if hasattr(c, "reason") else str(c.verdict)


def table(syn: Outcomes, real: Outcomes, pairs: list[tuple[str, str]]) -> tuple[str, bool]:
    """The markdown side-by-side table and whether the synthetic default matches the real titles."""
    lags = sorted(set(syn.runs["lag"]) | set(real.runs["lag"]))
    out = [f"Target rule: halfway from chance ({syn.chance:.0%}) to the best configuration's median best dev "
           f"accuracy within {syn.budget:,} steps. Synthetic: ceiling {syn.ceiling:.3f}, target {syn.target:.2f}. "
           f"Real: ceiling {real.ceiling:.3f}, target {real.target:.2f}.", "",
           "| arm | data | " + " | ".join(f"lag {d}" for d in lags) + " | D50 | learned above chance at lag |",
           "| --- | --- | " + " | ".join("---" for _ in lags) + " | --- | --- |"]
    same = True
    for arm in sorted(set(syn.runs["arm"]), key=lambda a: list(syn.runs["arm"]).index(a)):
        d50s = {}
        for o in (syn, real):
            r = o.runs[o.runs["arm"] == arm]
            cells = []
            for d in lags:
                g = r[r["lag"] == d]
                cells.append(f"{int(g['reached'].sum())}/{len(g)} ({g['best'].median():.2f})" if len(g) else "—")
            words, point = d50_text(r)
            d50s[o.name] = (words, point)
            learned = [str(int(d)) for d in lags if (r[r["lag"] == d]["learned"].mean() > 0.5)]
            out.append(f"| {arm} | {o.name} | " + " | ".join(cells) + f" | {words} | {', '.join(learned) or 'none'} |")
        same &= same_d50(d50s[syn.name], d50s[real.name])
    out += ["", "Cells: reached / runs (median best dev accuracy within the budget).", "",
            "| contrast | lag | synthetic | real |", "| --- | --- | --- | --- |"]
    cs, cr = contrasts(syn, pairs), contrasts(real, pairs)
    for x, y in zip(cs, cr):
        def w(r: dict) -> str:
            tag = "decided" if r["decided"] else "not decided"
            return f"{r['a']} vs {r['b']}, Holm p {r['p_holm']:.2g}: {tag}"
        out.append(f"| {x['pair']} | {x['lag']} | {w(x)} | {w(y)} |")
        same &= x["sign"] == y["sign"]
    out += ["", f"Reproduction check (count level, synthetic vs real): {verdict(syn, real, pairs)}", "",
            f"Same D50 bracket per arm (or D50s within {D50_MARGIN}x) and the same decided contrasts: "
            f"{'yes' if same else 'NO'}"]
    return "\n".join(out), same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=REAL, help=f"a THUCNews-format folder (default {REAL})")
    ap.add_argument("--seeds", default=None, help="comma list (default: headline.exploration_seeds of the bench)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "validity")
    ap.add_argument("--report-only", type=Path, metavar="OUT", help="the table from OUT/synthetic and OUT/real")
    args = ap.parse_args(argv)
    raw = bench_raw()
    head = raw.get("headline") or {}
    pairs = [tuple(p) for p in head.get("contrasts", [])]
    try:
        seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
                 else list(head.get("exploration_seeds") or range(6)))
    except ValueError:
        print(f"validity.py: --seeds {args.seeds!r}: expected a comma list of integers", file=sys.stderr)
        return 2
    if args.workers < 1 or not seeds:
        print("validity.py: --workers must be at least 1 and --seeds non-empty", file=sys.stderr)
        return 2
    out = args.report_only or args.out
    if not args.report_only:
        if not (args.real / "train.txt").is_file():
            print(f"validity.py: {args.real} holds no real titles (no train.txt): pass --real DIR", file=sys.stderr)
            return 2
        for name, real in (("synthetic", None), ("real", args.real)):
            cfg = config_from_dict(protocol(raw, real, seeds, args.workers))
            runner.run(cfg, out / name, workers=args.workers, device="cpu", threads=1, progress=True)
    for name in ("synthetic", "real"):
        if not (out / name / "config.yaml").is_file():
            print(f"validity.py: {out / name} is not a results folder (no config.yaml)", file=sys.stderr)
            return 2
    syn, real = outcomes(out / "synthetic", "synthetic"), outcomes(out / "real", "real")
    text, same = table(syn, real, pairs)
    print(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
