"""Do two results folders agree? A reproduction check that can fail (`benchmarks/reproduce.sh` runs the
bench twice, on two CPU kernel sets, and asks this).

Two steps, each an exact or pre-registered test; nothing is allowed to differ because it was marked in
advance:

1. Counts against counts. For each configuration present in both folders (every config key, the
   distance included), "reached the target in k of n runs" in A against B by an exact two-sample test
   (Boschloo's, `scipy.stats.boschloo_exact`; `--test fisher` for Fisher's), adjusted across the
   configurations by the exact conditional minP method (`harness.stats.multiplicity.conditional_minp_adjust`:
   family-wise error at most alpha, and a configuration that cannot give a small p-value — all runs
   alike in both folders — costs nothing, where Holm's correction would charge every configuration).
   Any adjusted p-value below alpha (0.05): DISAGREE (exit 1).
2. Equivalence of the pre-registered headline. The results folder's config.yaml may carry a `headline:`
   section (read as raw YAML, `harness.report.contrasts.read_headline`), fixed before the bench ran:

       headline:
         seeds: 12                    # every configuration runs exactly this many seeds: only seeds 0-11 count
         group: arm                   # optional (default: arm where the runs have one, else cell)
         where: {model.readout: last} # optional: the other factors' levels the estimands are taken at
         contrasts: [[lstm, rnn]]     # the report's arm-vs-arm rows (not tested here)
         d50: [rnn, lstm-fb0, lstm]   # each group's D50 must reproduce ...
         d50_ratio_margin: 1.5        # ... within a factor 1.5: D50(A) / D50(B) in [1/1.5, 1.5]

   For each group in `d50` (within each level of the factors `where` leaves varying), the ratio of the
   two folders' D50s, each censored at the distances tested (a D50 beyond the largest distance counts
   as that distance, so "beyond in both" is equivalent), with a stratified bootstrap interval (runs
   resampled within each folder and distance). Equivalent (TOST at alpha) when the 1 - 2 alpha (90%)
   interval lies inside [1/margin, margin]. AGREE (exit 0) only when every headline estimand is
   equivalent; otherwise, and whenever there is no headline, INCONCLUSIVE (exit 3): not disagreeing is
   not agreeing.

Bad arguments (a folder that is missing, not a results folder, or without finished runs): one line on
stderr, exit 2. `benchmarks/check_power.py` measures this check's false-alarm rate and power on a folder.

    python benchmarks/compare_conclusions.py results/bench_a results/bench_b [--test fisher] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report import contrasts as C
from harness.report.fmt import fmt_value
from harness.stats.d50_ratio import ratio_from_draws
from harness.stats.multiplicity import conditional_minp_adjust
from harness.stats.two_rates import two_sample_pvalue

ALPHA = 0.05
N_BOOT = 2000
EXIT = {"AGREE": 0, "DISAGREE": 1, "INCONCLUSIVE": 3}
BAD_INPUT = 2


class BadInput(Exception):
    """A folder the check cannot read: said in one line, exit 2."""


@dataclass(frozen=True)
class CountTest:
    """One configuration: k of n in each folder, the exact test's p-value and its minP adjustment."""

    name: str
    k_a: int
    n_a: int
    k_b: int
    n_b: int
    p: float
    p_adjusted: float
    differs: bool


@dataclass(frozen=True)
class Estimand:
    """One headline D50: each folder's D50 in words, the censored ratio A/B with its interval at
    1 - 2 alpha, the margin, and whether the interval lies inside [1/margin, margin]."""

    name: str
    d50_a: str
    d50_b: str
    ratio: float
    low: float
    high: float
    margin: float
    equivalent: bool


@dataclass
class Comparison:
    verdict: str
    reason: str
    configurations: list[CountTest] = field(default_factory=list)
    estimands: list[Estimand] = field(default_factory=list)


# ----------------------------------------------------------------------------- step 1: counts

def default_keys(outcomes: pd.DataFrame) -> list[str]:
    """The configuration columns of an outcomes table: the report's config keys (arm, cell, layernorm,
    pad_size, batch_size, lr), lag, and every dotted grid axis."""
    from harness.report.stats import config_keys

    axes = [c for c in outcomes.columns if "." in str(c) or c == "lag"]
    return config_keys(outcomes, axes)


def _counts(outcomes: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    known = outcomes[outcomes["reached"].notna()]
    g = known.groupby(list(keys), dropna=False)["reached"].agg(k="sum", n="count").reset_index()
    g["config"] = [", ".join(f"{k}={fmt_value(v)}" for k, v in zip(keys, row)) for row in g[list(keys)].itertuples(
        index=False)]
    return g[["config", "k", "n"]]


def count_tests(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, keys: Sequence[str] | None = None,
                test: str = "boschloo", alpha: float = ALPHA) -> list[CountTest]:
    """Per configuration in both folders (with at least one outcome in each): the exact two-sample test
    of its success counts, minP-adjusted across the configurations; `differs` when the adjusted p-value
    is below alpha."""
    keys = list(keys) if keys is not None else default_keys(outcomes_a)
    both = _counts(outcomes_a, keys).merge(_counts(outcomes_b, keys), on="config", suffixes=("_a", "_b"))
    if both.empty:
        return []
    p = np.array([two_sample_pvalue(int(r.k_a), int(r.n_a), int(r.k_b), int(r.n_b), test) for r in both.itertuples()])
    adj = conditional_minp_adjust([(int(r.k_a), int(r.n_a), int(r.k_b), int(r.n_b)) for r in both.itertuples()],
                                  test)
    return [CountTest(r.config, int(r.k_a), int(r.n_a), int(r.k_b), int(r.n_b), float(pi), float(pa), bool(pa < alpha))
            for r, pi, pa in zip(both.itertuples(), p, adj)]


# ----------------------------------------------------------------------------- step 2: the headline

def equivalence(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, headline: C.Headline, alpha: float = ALPHA,
                n_boot: int = N_BOOT, rng: int = 0, varying: Sequence[str] | None = None) -> list[Estimand]:
    """The headline's D50 estimands (see the module docstring): one per group in `headline.d50` and
    level of the other varied factors left by `headline.where`."""
    from harness.report.outcomes import distance_column

    if not headline.d50 or headline.d50_ratio_margin is None:
        return []
    a, b = C.apply_where(outcomes_a, headline.where), C.apply_where(outcomes_b, headline.where)
    distance = distance_column(outcomes_a)
    group = headline.group or C.group_column(a) or "cell"
    varying = list(varying) if varying is not None else [k for k in default_keys(a) if a[k].nunique() > 1]
    by = C.by_keys(a, varying, group, distance)
    margin = headline.d50_ratio_margin
    out = []
    da = {(str(g.group), tuple(g.where.items())): g for g in
          C.group_d50s(a, group, distance, by, headline.d50, n_boot=n_boot, rng=rng)}
    db = {(str(g.group), tuple(g.where.items())): g for g in
          C.group_d50s(b, group, distance, by, headline.d50, n_boot=n_boot, rng=rng + 1)}
    for key in sorted(set(da) | set(db), key=str):
        name = f"D50 {group}={key[0]}" + "".join(f", {k}={fmt_value(v)}" for k, v in key[1])
        ga, gb = da.get(key), db.get(key)
        if ga is None or gb is None:
            out.append(Estimand(name, "no runs" if ga is None else "", "no runs" if gb is None else "", math.nan,
                                math.nan, math.nan, margin, False))
            continue
        tested = ga.tested + gb.tested
        r = ratio_from_draws(ga.point, ga.draws, gb.point, gb.draws, 1.0 - 2.0 * alpha,
                             censor=(min(tested), max(tested)))
        ok = bool(1.0 / margin <= r.low and r.high <= margin)
        out.append(Estimand(name, C.d50_value_text(ga.fit, ga.tested, distance),
                            C.d50_value_text(gb.fit, gb.tested, distance), r.ratio, r.low, r.high, margin, ok))
    return out


def compare(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, headline: C.Headline | None, *,
            keys: Sequence[str] | None = None, test: str = "boschloo", alpha: float = ALPHA, n_boot: int = N_BOOT,
            rng: int = 0) -> Comparison:
    """The verdict on two folders' outcomes tables (`outcomes.run_outcomes`): DISAGREE when a count
    test rejects after the minP adjustment; else AGREE when every headline estimand is equivalent; else INCONCLUSIVE.
    With `headline.seeds`, only seeds below it count (the pre-registered fixed design)."""
    if headline is not None and headline.seeds is not None:
        outcomes_a, outcomes_b = C.fixed_seeds(outcomes_a, headline.seeds), C.fixed_seeds(outcomes_b, headline.seeds)
    tests = count_tests(outcomes_a, outcomes_b, keys, test, alpha)
    if not tests:
        return Comparison("INCONCLUSIVE", "no configuration has outcomes in both folders")
    differ = [t for t in tests if t.differs]
    if differ:
        return Comparison("DISAGREE", f"{len(differ)} of {len(tests)} configurations reached the target at "
                                      f"different rates (exact {test} test, minP-adjusted p < {alpha:g})", tests)
    if headline is None:
        return Comparison("INCONCLUSIVE", f"no count differs after the minP adjustment ({len(tests)} configurations), "
                                          "but there "
                                          "is no pre-registered headline (`headline:` in config.yaml) to show "
                                          "equivalent: not disagreeing is not agreeing", tests)
    est = equivalence(outcomes_a, outcomes_b, headline, alpha, n_boot, rng)
    if not est:
        return Comparison("INCONCLUSIVE", "the headline names no D50 (`headline.d50`) with a margin "
                                          "(`headline.d50_ratio_margin`) to test for equivalence", tests)
    short = [e for e in est if not e.equivalent]
    if short:
        return Comparison("INCONCLUSIVE", f"no count differs, but {len(short)} of {len(est)} headline estimands "
                                          f"are not shown equivalent within ×{headline.d50_ratio_margin:g}", tests,
                          est)
    return Comparison("AGREE", f"no count differs ({len(tests)} configurations) and all {len(est)} headline "
                               f"estimands are equivalent within ×{headline.d50_ratio_margin:g}", tests, est)


# ----------------------------------------------------------------------------- folders and words

def load(results_dir: str | Path) -> tuple[pd.DataFrame, list[str], C.Headline | None]:
    """(outcomes, config keys, headline) of a results folder, through the report's own `compute`.
    BadInput when the folder is missing, not a results folder, has no finished run, or its headline
    cannot be read."""
    from harness.config import ConfigError
    from harness.report import compute

    d = Path(results_dir)
    if not d.is_dir():
        raise BadInput(f"{d}: no such folder")
    try:
        data = compute(d)
    except ConfigError as e:
        raise BadInput(str(e).splitlines()[0]) from None
    if data.outcomes.empty or data.outcomes["reached"].notna().sum() == 0:
        raise BadInput(f"{d}: no finished run with an outcome")
    try:
        headline = C.read_headline(data.config_text)
    except C.HeadlineError as e:
        raise BadInput(f"{d}/config.yaml: {e}") from None
    return data.outcomes, data.keys, headline


def _r(x: float) -> str:
    return "∞" if math.isinf(x) else "n/a" if math.isnan(x) else f"{x:.2f}"


def lines(c: Comparison, test: str) -> list[str]:
    out = [f"## configurations: k/n in A | in B, exact {test} test, minP-adjusted over {len(c.configurations)}"]
    for t in c.configurations:
        out.append(f"{'≠' if t.differs else '='} {t.name}: {t.k_a}/{t.n_a} | {t.k_b}/{t.n_b}  "
                   f"p = {t.p:.3g}, adjusted {t.p_adjusted:.3g}")
    if c.estimands:
        m = c.estimands[0].margin
        out.append(f"## headline (pre-registered): D50(A) / D50(B), censored at the distances tested, 90% "
                   f"bootstrap interval within [{1 / m:.2f}, {m:.2f}]")
        for e in c.estimands:
            out.append(f"{'≈' if e.equivalent else '?'} {e.name}: A {e.d50_a} | B {e.d50_b}; ratio {_r(e.ratio)} "
                       f"[{_r(e.low)}, {_r(e.high)}]: {'equivalent' if e.equivalent else 'not shown equivalent'}")
    return out


def _plain(d: dict) -> dict:
    """JSON-safe: a non-finite float as the string 'inf', '-inf' or null for nan."""
    return {k: (None if math.isnan(v) else str(v)) if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in d.items()}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        print(f"compare_conclusions: {message}", file=sys.stderr)
        raise SystemExit(BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="results folder A")
    ap.add_argument("second", help="results folder B")
    ap.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo", help="exact two-sample test")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="family-wise error rate (default 0.05)")
    ap.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples for the D50 ratios")
    ap.add_argument("--json", help="also write the tests and the verdict to this file")
    args = ap.parse_args(argv)
    try:
        a, keys, headline = load(args.first)
        b, _, headline_b = load(args.second)
    except BadInput as e:
        print(f"compare_conclusions: {e}", file=sys.stderr)
        return BAD_INPUT
    try:
        c = compare(a, b, headline, keys=keys, test=args.test, alpha=args.alpha, n_boot=args.n_boot)
    except C.HeadlineError as e:
        print(f"compare_conclusions: {args.first}/config.yaml: {e}", file=sys.stderr)
        return BAD_INPUT
    print(f"A = {args.first}\nB = {args.second}")
    if headline != headline_b:
        print("note: the two folders' `headline:` sections differ; A's is used")
    print("\n".join(lines(c, args.test)))
    print(f"\n{c.verdict}: {c.reason}")
    if args.json:
        Path(args.json).write_text(json.dumps({"verdict": c.verdict, "reason": c.reason, "test": args.test,
                                               "alpha": args.alpha, "a": str(args.first), "b": str(args.second),
                                               "configurations": [_plain(asdict(t)) for t in c.configurations],
                                               "headline": [_plain(asdict(e)) for e in c.estimands]},
                                              indent=1, ensure_ascii=False), encoding="utf-8")
    return EXIT[c.verdict]


if __name__ == "__main__":
    sys.exit(main())
