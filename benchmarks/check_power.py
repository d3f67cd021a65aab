"""How often does `compare_conclusions.py` say DISAGREE, AGREE or INCONCLUSIVE, on two *independent*
folders? Measured at the count level (no training, no tables of runs): each draw simulates two folders
of the same design, every configuration's successes drawn as k ~ Binomial(seeds, p) in each folder
independently, and asks the check's own verdict (`compare_conclusions.decide` on
`compare_conclusions.tests_from_tables`, `rate_checks` and `contrasts_from_tables`: the same functions
the check runs on real folders, at the default margin 1/3).

The design is the bench's: 3 groups (rnn, lstm-fb0, lstm) × 4 distances (0, 8, 16, 32) = 12 headline
configurations at 12 seeds each, with the headline contrasts lstm − rnn, lstm-fb0 − rnn and
lstm − lstm-fb0 at each distance. Rate profiles (true success rates):

- all-or-nothing: every configuration at 0 or 1 (where the previous check said AGREE in 94% of draws);
- bench: every configuration at 0 or 1, two at 0.4 (the bench's shape: lstm-fb0 at lag 16, lstm at 32);
- intermediate: every rate between 0.3 and 0.7;
- mixed: a third each at 0, at 1 and intermediate (0.3 to 0.7);
- folder: the observed rates of a results folder given as the argument (its headline configurations and
  contrasts, its seeds or `--seeds`), a parametric bootstrap of that folder.

For each profile: at equal true rates, the share of draws that say DISAGREE (a false alarm; the exact
minP adjustment holds it at or below alpha = 5%), AGREE and INCONCLUSIVE; then with one headline
configuration's true rate moved by `--shift` (0.6) in the second folder (drawn at random among those
whose rate can move that far: up where rate + shift <= 1, else down), the share that says DISAGREE (the
power, goal >= 80%) and AGREE (should be ~0). Each share is given with its binomial standard error,
sqrt(r (1 - r) / draws): 400 draws keep it at or below 2.5 points.

    python benchmarks/check_power.py [results/bench] [--draws 400] [--shift 0.6] [--seeds 12] [--margin 0.3333]
        [--test fisher] [--json out.json]
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if "compare_conclusions" in sys.modules:
    cc = sys.modules["compare_conclusions"]
else:   # benchmarks/ is not a package: load its neighbour by path
    _spec = importlib.util.spec_from_file_location("compare_conclusions",
                                                   Path(__file__).with_name("compare_conclusions.py"))
    cc = importlib.util.module_from_spec(_spec)
    sys.modules["compare_conclusions"] = cc
    _spec.loader.exec_module(cc)

GROUPS = ("rnn", "lstm-fb0", "lstm")
DISTANCES = (0, 8, 16, 32)
PAIRS = (("lstm", "rnn"), ("lstm-fb0", "rnn"), ("lstm", "lstm-fb0"))
PROFILES: dict[str, dict[str, list[float]]] = {   # group -> true rate at each of DISTANCES
    "all-or-nothing": {"rnn": [1, 0, 0, 0], "lstm-fb0": [1, 1, 0, 0], "lstm": [1, 1, 1, 0]},
    "bench": {"rnn": [1, 0, 0, 0], "lstm-fb0": [1, 1, 0.4, 0], "lstm": [1, 1, 1, 0.4]},
    "intermediate": {"rnn": [0.7, 0.5, 0.4, 0.3], "lstm-fb0": [0.7, 0.6, 0.5, 0.3], "lstm": [0.7, 0.6, 0.4, 0.3]},
    "mixed": {"rnn": [1, 0.3, 0, 0], "lstm-fb0": [1, 0.7, 0.5, 0], "lstm": [1, 1, 0.6, 0]},
}
VERDICTS = ("DISAGREE", "AGREE", "INCONCLUSIVE")


@dataclass(frozen=True)
class Rate:
    """A verdict in `hits` of `draws` comparisons: the share and its binomial standard error."""

    hits: int
    draws: int

    @property
    def rate(self) -> float:
        return self.hits / self.draws if self.draws else math.nan

    @property
    def se(self) -> float:
        r = self.rate
        return math.sqrt(r * (1 - r) / self.draws) if self.draws else math.nan

    def text(self) -> str:
        """'12.5% ± 1.7' (percent and its standard error in points); '0% (≤ 0.8%)' with the rule of three
        where the standard error is 0."""
        if not self.draws:
            return "n/a"
        if self.hits in (0, self.draws):
            bound = 300 / self.draws
            return "0%" + f" (≤ {bound:.1f}%)" if self.hits == 0 else "100%" + f" (≥ {100 - bound:.1f}%)"
        return f"{100 * self.rate:.1f}% ± {100 * self.se:.1f}"


@dataclass(frozen=True)
class Design:
    """Two folders' shape: configuration names, their true success rates and runs each, and the headline
    contrast rows as (index of group a's configuration, index of group b's) with their names."""

    names: list[str]
    rates: np.ndarray
    seeds: int
    pairs: list[tuple[int, int]] = field(default_factory=list)
    pair_names: list[str] = field(default_factory=list)

    def movable(self, shift: float) -> list[int]:
        """Configurations whose rate can move by `shift` within [0, 1]."""
        return [i for i, p in enumerate(self.rates) if p + shift <= 1.0 + 1e-12 or p - shift >= -1e-12]


def design_from_rates(rates: Mapping[str, Sequence[float]], seeds: int = 12, distances: Sequence[float] = DISTANCES,
                      pairs: Sequence[tuple[str, str]] = PAIRS, group: str = "arm", distance: str = "lag") -> Design:
    """A design from `rates[group] = [rate at each distance]`, contrasts `pairs` at each distance."""
    names, r, index = [], [], {}
    for g, row in rates.items():
        for d, p in zip(distances, row):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"rate of {g} at {distance} {d}: {p} is not in [0, 1]")
            index[(g, d)] = len(names)
            names.append(f"{group}={g}, {distance}={d:g}")
            r.append(float(p))
    rows = [((index[(a, d)], index[(b, d)]), f"{a} − {b}, {distance}={d:g}")
            for d in distances for a, b in pairs if (a, d) in index and (b, d) in index]
    return Design(names, np.array(r), int(seeds), [x for x, _ in rows], [n for _, n in rows])


def design_from_folder(folder: cc.Folder, seeds: int | None = None) -> Design:
    """The headline configurations of a results folder (`headline.seeds` only) at their observed rates,
    its headline contrasts at each distance; `seeds` runs each (default: the largest number a
    configuration has there). BadInput when the folder has no headline."""
    from harness.report import contrasts as C

    h = folder.headline
    if h is None:
        raise cc.BadInput("the folder's config.yaml has no `headline:`, so it names no headline configuration")
    out = C.fixed_seeds(folder.outcomes, h.seeds)
    scope = cc._scope(out, out, h, folder.keys)
    known = scope.a[scope.a["reached"].notna() & scope.a[scope.distance].notna()]
    groups = cc.headline_groups(h)
    known = known[known[scope.group].astype(str).isin(groups)]
    if known.empty:
        raise cc.BadInput("no run of a headline group (headline.d50, headline.contrasts) has an outcome")
    cols = [*scope.by, scope.distance, scope.group]
    agg = known.groupby(cols, dropna=False)["reached"].agg(["mean", "count"])
    names, r, index = [], [], {}
    for key, row in agg.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        index[key] = len(names)
        names.append(cc._name([scope.group, *scope.by, scope.distance], (key[-1], *key[:-1])))
        r.append(float(row["mean"]))
    levels = list(dict.fromkeys(k[:-1] for k in index))
    rows = [((index[(*lv, a)], index[(*lv, b)]), f"{a} − {b}, " + cc._name([*scope.by, scope.distance], lv))
            for lv in levels for a, b in h.contrasts if (*lv, a) in index and (*lv, b) in index]
    n = int(seeds) if seeds is not None else int(agg["count"].max())
    return Design(names, np.array(r), n, [x for x, _ in rows], [x for _, x in rows])


def draw(design: Design, rng: np.random.Generator, moved: int | None = None, shift: float = 0.0
         ) -> tuple[np.ndarray, np.ndarray]:
    """Successes per configuration in two independent folders; configuration `moved` at its rate + shift
    in the second (or - shift where + shift exceeds 1)."""
    p_b = design.rates.copy()
    if moved is not None:
        p = p_b[moved]
        p_b[moved] = p + shift if p + shift <= 1.0 + 1e-12 else p - shift
    p_b = np.clip(p_b, 0.0, 1.0)
    return rng.binomial(design.seeds, design.rates), rng.binomial(design.seeds, p_b)


def verdict(design: Design, k_a: np.ndarray, k_b: np.ndarray, margin: float = cc.MARGIN, alpha: float = cc.ALPHA,
            test: str = "boschloo") -> str:
    """The check's verdict on two folders' counts (nothing missing: every configuration has its runs)."""
    n = design.seeds
    tables = [(int(a), n, int(b), n) for a, b in zip(k_a, k_b)]
    tests = cc.tests_from_tables(design.names, tables, test, alpha)
    if any(t.differs for t in tests):
        return "DISAGREE"
    rates = cc.rate_checks(design.names, tables, margin, alpha)
    contrasts = cc.contrasts_from_tables(design.pair_names, [(int(k_a[i]), n, int(k_a[j]), n) for i, j in design.pairs],
                                         [(int(k_b[i]), n, int(k_b[j]), n) for i, j in design.pairs], alpha)
    return cc.decide(tests, [], rates, contrasts, margin=margin, alpha=alpha, test=test)[0]


@dataclass(frozen=True)
class Measured:
    """One profile's shares: verdicts at equal true rates, and with one configuration moved by `shift`."""

    profile: str
    configurations: int
    movable: int
    equal: dict[str, Rate]
    moved: dict[str, Rate]


def measure(design: Design, draws: int = 400, shift: float = 0.6, margin: float = cc.MARGIN, alpha: float = cc.ALPHA,
            test: str = "boschloo", seed: int = 0, profile: str = "") -> Measured:
    """`draws` pairs of independent folders at equal rates, and `draws` with one movable configuration
    (drawn at random each time) moved by `shift`: the share of each verdict."""
    rng = np.random.default_rng(seed)
    equal = Counter(verdict(design, *draw(design, rng), margin, alpha, test) for _ in range(draws))
    movable = design.movable(shift)
    moved: Counter = Counter()
    for _ in range(draws if movable else 0):
        i = movable[int(rng.integers(len(movable)))]
        moved[verdict(design, *draw(design, rng, i, shift), margin, alpha, test)] += 1
    m = draws if movable else 0
    return Measured(profile, len(design.names), len(movable), {v: Rate(equal[v], draws) for v in VERDICTS},
                    {v: Rate(moved[v], m) for v in VERDICTS})


def table(results: Sequence[Measured], shift: float) -> list[str]:
    """The markdown table of `results`, goals marked."""
    out = [f"| profile | configurations (movable by {shift:g}) | false DISAGREE, equal rates (goal ≤ 5%) | "
           f"AGREE, equal rates | INCONCLUSIVE, equal rates | power: DISAGREE, one rate moved by {shift:g} "
           "(goal ≥ 80%) | AGREE, one rate moved |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        false, power = r.equal["DISAGREE"], r.moved["DISAGREE"]
        f_mark = "" if false.rate <= 0.05 else " **not met**"
        p_mark = "" if not power.draws else ("" if power.rate >= 0.8 else " **not met**")
        out.append(f"| {r.profile} | {r.configurations} ({r.movable}) | {false.text()}{f_mark} | "
                   f"{r.equal['AGREE'].text()} | {r.equal['INCONCLUSIVE'].text()} | {power.text()}{p_mark} | "
                   f"{r.moved['AGREE'].text()} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = cc._Parser(prog="check_power", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", help="a results folder whose observed rates are a fourth profile")
    ap.add_argument("--draws", type=int, default=400, help="pairs of folders per measurement (default 400)")
    ap.add_argument("--shift", type=float, default=0.6, help="move of one configuration's true rate (default 0.6)")
    ap.add_argument("--seeds", type=int, help="runs per configuration (default 12; a folder's own for it)")
    ap.add_argument("--margin", type=cc.margin_value, default=cc.MARGIN, help="the check's margin (default 1/3)")
    ap.add_argument("--profiles", default=",".join(PROFILES),
                    help=f"built-in profiles to run, comma-separated (default {','.join(PROFILES)}; '' for none)")
    ap.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo")
    ap.add_argument("--alpha", type=cc.alpha_value, default=cc.ALPHA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    names = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in names if p not in PROFILES]
    if unknown or args.draws < 1 or not 0.0 < args.shift <= 1.0 or (args.seeds is not None and args.seeds < 2):
        why = (f"unknown profile {unknown[0]!r} (known: {', '.join(PROFILES)})" if unknown else
               "--draws must be at least 1, --shift in (0, 1], --seeds at least 2")
        print(f"check_power: {why}", file=sys.stderr)
        return cc.BAD_INPUT
    designs = [(p, design_from_rates(PROFILES[p], args.seeds or 12)) for p in names]
    if args.folder:
        try:
            designs.append((f"folder {args.folder}", design_from_folder(cc.load_folder(args.folder), args.seeds)))
        except cc.BadInput as e:
            print(f"check_power: {args.folder}: {e}" if str(args.folder) not in str(e) else f"check_power: {e}",
                  file=sys.stderr)
            return cc.BAD_INPUT
    if not designs:
        print("check_power: nothing to measure (no profile and no folder)", file=sys.stderr)
        return cc.BAD_INPUT
    results = [measure(d, args.draws, args.shift, args.margin, args.alpha, args.test, args.seed, p) for p, d in designs]
    seeds = sorted({d.seeds for _, d in designs})
    print(f"{args.draws} pairs of independent folders per cell; {', '.join(map(str, seeds))} seeds per "
          f"configuration; exact {args.test} test per configuration, minP-adjusted, alpha {args.alpha:g}; "
          f"equivalence margin ±{args.margin:.3f}; share ± binomial standard error (points)")
    print("\n".join(table(results, args.shift)))
    for p, d in designs:
        print(f"{p}: true rates " + "; ".join(f"{n} {r:.2f}" for n, r in zip(d.names, d.rates)))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "draws": args.draws, "shift": args.shift, "margin": args.margin, "test": args.test, "alpha": args.alpha,
            "profiles": [{"profile": r.profile, "configurations": r.configurations, "movable": r.movable,
                          "rates": [float(x) for x in d.rates], "seeds": d.seeds,
                          "equal": {v: [x.hits, x.draws] for v, x in r.equal.items()},
                          "moved": {v: [x.hits, x.draws] for v, x in r.moved.items()}}
                         for r, (_, d) in zip(results, designs)]}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
