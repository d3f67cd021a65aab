"""Do two results folders agree? A reproduction check that can fail, and that needs evidence to say
AGREE (`benchmarks/reproduce.sh` runs the bench twice, on two CPU kernel sets, and asks this).

0. The same question. The two folders' config.yaml (the resolved configs) must be equal key by key,
   execution keys aside (everything under `run:`, `harness.config.EXECUTION_KEYS`: train.checkpoint_every,
   train.save_model, and the config's `name`; a key one config lacks counts as its ADDED_LATER value).
   Any other difference — epochs, target, data, grid, headline — is one line on stderr naming the first
   differing dotted key and both values, exit 2: two folders that asked different questions are not a
   reproduction. Bad arguments (a folder that is missing, not a results folder, without config.yaml or
   without finished runs) are also one line, exit 2.
1. Counts against counts. For each configuration in both folders (every config key, the distance
   included; with `headline.seeds`, only those seeds), "reached the target in k of n runs" in A against B
   by an exact two-sample test (Boschloo's, `scipy.stats.boschloo_exact`; `--test fisher` for Fisher's),
   adjusted across the configurations by the exact conditional minP method
   (`harness.stats.multiplicity.conditional_minp_adjust`: family-wise error at most alpha, and a
   configuration with all runs alike in both folders costs nothing). Any adjusted p-value below alpha
   (0.05): DISAGREE (exit 1).
2. Everything there? A configuration that has runs in one folder and none in the other (part of the grid
   not finished, or failed): INCONCLUSIVE (exit 3), naming each — never a silent comparison of the part
   both have.
3. Positive evidence for AGREE (exit 0), from the pre-registered `headline:` of config.yaml. Its headline
   configurations are each headline group (`headline.d50` and the groups of `headline.contrasts`) at each
   distance (within `headline.where` and each level of the other varied factors). AGREE needs both:
   - every headline configuration's success rates shown *equivalent* between the folders: two one-sided
     exact tests at alpha (`harness.stats.two_rates.rate_equivalence`: Chan and Zhang's exact interval of
     the difference at 1 - 2 alpha = 90% inside [-margin, +margin]); and
   - every headline contrast (`headline.contrasts`, at each distance) decided the same way in both
     folders by the report's rule (Holm-adjusted Boschloo p < 0.05 and exact 95% interval excluding 0,
     `harness.report.contrasts.arm_contrasts`): decided with the same sign in both, or in neither.
   Otherwise, and whenever there is no headline, INCONCLUSIVE (exit 3): not disagreeing is not agreeing.

The margin, `--margin`, default 1/3 (a difference of 4 runs in 12). Two bounds fix it at the bench's 12
seeds per configuration. From below: two folders with 0 of 12 each have a 90% interval of ±0.221, so no
margin under 0.221 could ever say AGREE. From above: the edit that must never pass, 4/12 → 0/12 (the
reviewer's counter-example, which the count test does not flag: minP-adjusted p 0.126), has a point
estimate of 1/3; with margin 1/3 every edit of 4 or more runs of 12 lies at or beyond the margin by its
estimate alone (and its exact interval, [+0.08, +0.61] for 4/12 against 0/12, reaches far beyond), so it is
never AGREE, whatever the interval method. 1/3 is the widest margin with that property; any wider margin
would rest "never AGREE" on the interval's width only. The price, measured by `benchmarks/check_power.py`
(benchmarks/README.md §8): at 12 seeds a configuration can be shown equivalent only where both rates sit
near 0 or 1 (5/12 against 5/12 has the interval ±0.35), so a folder with intermediate rates is
INCONCLUSIVE, not AGREE — that is what 12 seeds can show.

The D50 of each `headline.d50` group (a bootstrap ratio of the two folders' D50s against
`headline.d50_ratio_margin`) is printed as well, for information: AGREE never rests on it.

    python benchmarks/compare_conclusions.py results/bench_a results/bench_b [--margin 0.3333] [--test fisher]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report import contrasts as C
from harness.report.fmt import fmt_value
from harness.stats.d50_ratio import ratio_from_draws
from harness.stats.multiplicity import conditional_minp_adjust
from harness.stats.two_rates import rate_equivalence, two_sample_pvalue

ALPHA = 0.05
MARGIN = 1.0 / 3.0          # see the module docstring: why a third
N_BOOT = 2000
EXIT = {"AGREE": 0, "DISAGREE": 1, "INCONCLUSIVE": 3}
BAD_INPUT = 2
SHOWN = 4                   # a reason names at most this many configurations, then "and N more"


class BadInput(Exception):
    """A folder the check cannot read, or two folders that asked different questions: one line, exit 2."""


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
class RateCheck:
    """One headline configuration: k of n in each folder, the difference of rates A − B (a fraction) with
    its exact interval at 1 - 2 alpha, the margin, and whether the interval lies inside ±margin."""

    name: str
    k_a: int
    n_a: int
    k_b: int
    n_b: int
    diff: float
    low: float
    high: float
    margin: float
    equivalent: bool


@dataclass(frozen=True)
class ContrastCheck:
    """One headline contrast (group a − group b at one distance): its decision in each folder (+1: a
    reaches the target more often, decided; -1: less often, decided; 0: not decided) and whether they match."""

    name: str
    counts_a: str             # 'k/n against k/n' in folder A
    counts_b: str
    sign_a: int
    sign_b: int

    @property
    def same(self) -> bool:
        return self.sign_a == self.sign_b


@dataclass(frozen=True)
class Estimand:
    """One headline D50 (for information): each folder's D50 in words, the censored ratio A/B with its
    interval at 1 - 2 alpha, the margin, and whether the interval lies inside [1/margin, margin]."""

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
    missing: list[str] = field(default_factory=list)          # 'name (no runs in B)'
    rates: list[RateCheck] = field(default_factory=list)
    contrasts: list[ContrastCheck] = field(default_factory=list)
    estimands: list[Estimand] = field(default_factory=list)
    margin: float = MARGIN


# ----------------------------------------------------------------------------- step 0: the same question

def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: leaf value} in the mapping's order (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def ignored(key: str) -> bool:
    """An execution key (how the runs were executed, not what they computed): run.*, train.checkpoint_every,
    train.save_model, and the config's name."""
    from harness.config import EXECUTION_KEYS

    return key == "name" or key == "run" or key.startswith("run.") or key in EXECUTION_KEYS


def _same(key: str, a: Any, b: Any) -> bool:
    """Equal values; a grid axis's list of levels compared as a set (its order is the run order only)."""
    if key.startswith("grid.") and isinstance(a, list) and isinstance(b, list):
        return sorted(map(repr, a)) == sorted(map(repr, b))
    return a == b


def config_difference(text_a: str, text_b: str) -> tuple[str, Any, Any] | None:
    """The first dotted key (in A's order, then B's) whose value differs between two config.yaml texts,
    with A's and B's values; None when they differ only in execution keys (`ignored`). A key one side
    lacks counts as its `ADDED_LATER` value there (a setting added after results existed), else absent."""
    import yaml

    from harness.config.sections import ADDED_LATER

    fa, fb = (flatten(yaml.safe_load(t) or {}) for t in (text_a, text_b))
    absent = object()
    for key in dict.fromkeys([*fa, *fb]):
        if ignored(key):
            continue
        va, vb = fa.get(key, ADDED_LATER.get(key, absent)), fb.get(key, ADDED_LATER.get(key, absent))
        if not _same(key, va, vb):
            return key, "(absent)" if va is absent else va, "(absent)" if vb is absent else vb
    return None


# ----------------------------------------------------------------------------- step 1: counts

def default_keys(outcomes: pd.DataFrame) -> list[str]:
    """The configuration columns of an outcomes table: the report's config keys (arm, cell, layernorm,
    pad_size, batch_size, lr), lag, and every dotted grid axis."""
    from harness.report.stats import config_keys

    axes = [c for c in outcomes.columns if "." in str(c) or c == "lag"]
    return config_keys(outcomes, axes)


def _name(keys: Sequence[str], values: Sequence[object]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in zip(keys, values))


def _counts(outcomes: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    known = outcomes[outcomes["reached"].notna()]
    g = known.groupby(list(keys), dropna=False)["reached"].agg(k="sum", n="count").reset_index()
    g["config"] = [_name(keys, row) for row in g[list(keys)].itertuples(index=False)]
    return g[["config", "k", "n"]]


def tests_from_tables(names: Sequence[str], tables: Sequence[tuple[int, int, int, int]], test: str = "boschloo",
                      alpha: float = ALPHA) -> list[CountTest]:
    """Step 1 on counts: per (k_a, n_a, k_b, n_b), the exact two-sample p-value and its minP adjustment
    across all `tables`; `differs` when the adjusted p-value is below alpha."""
    if not tables:
        return []
    tables = [tuple(int(x) for x in t) for t in tables]
    adj = conditional_minp_adjust(tables, test)
    return [CountTest(n, *t, two_sample_pvalue(*t, test), float(pa), bool(pa < alpha))
            for n, t, pa in zip(names, tables, adj)]


def count_tests(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, keys: Sequence[str] | None = None,
                test: str = "boschloo", alpha: float = ALPHA) -> list[CountTest]:
    """Per configuration in both folders (with at least one outcome in each): `tests_from_tables`."""
    keys = list(keys) if keys is not None else default_keys(outcomes_a)
    both = _counts(outcomes_a, keys).merge(_counts(outcomes_b, keys), on="config", suffixes=("_a", "_b"))
    return tests_from_tables(list(both["config"]), [(r.k_a, r.n_a, r.k_b, r.n_b) for r in both.itertuples()],
                             test, alpha)


def missing_configurations(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """'name (no runs in B)' / '(no runs in A)' for every configuration with an outcome in one folder only."""
    a, b = set(_counts(outcomes_a, keys)["config"]), set(_counts(outcomes_b, keys)["config"])
    return ([f"{c} (no runs in B)" for c in sorted(a - b)] + [f"{c} (no runs in A)" for c in sorted(b - a)])


# ----------------------------------------------------------------------------- step 3: the headline

def headline_groups(headline: C.Headline) -> list[str]:
    """The headline's groups: those of `d50`, then those of `contrasts`, each once."""
    return list(dict.fromkeys([*headline.d50, *(g for pair in headline.contrasts for g in pair)]))


def rate_checks(names: Sequence[str], tables: Sequence[tuple[int, int, int, int]], margin: float = MARGIN,
                alpha: float = ALPHA) -> list[RateCheck]:
    """Per headline configuration (k_a, n_a, k_b, n_b): `two_rates.rate_equivalence` within ±margin."""
    out = []
    for name, t in zip(names, tables):
        e = rate_equivalence(*(int(x) for x in t), margin, alpha)
        out.append(RateCheck(name, e.k1, e.n1, e.k2, e.n2, e.diff, e.low, e.high, margin, e.equivalent))
    return out


@dataclass(frozen=True)
class _Scope:
    """Where the headline lives in a pair of outcomes tables: the runs at `headline.where`, the group and
    distance columns, and the other varied factors the estimands are taken within."""

    a: pd.DataFrame
    b: pd.DataFrame
    group: str
    distance: str
    by: list[str]


def _scope(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, headline: C.Headline, keys: Sequence[str]) -> _Scope:
    from harness.report.outcomes import distance_column

    a, b = C.apply_where(outcomes_a, headline.where), C.apply_where(outcomes_b, headline.where)
    both = pd.concat([a, b], ignore_index=True)
    distance = distance_column(both)
    group = headline.group or C.group_column(both) or "cell"
    if group not in both.columns:
        raise C.HeadlineError(f"headline.group: no column {group!r} in the runs")
    varying = [k for k in keys if k in both.columns and both[k].nunique(dropna=True) > 1]
    return _Scope(a, b, group, distance, C.by_keys(both, varying, group, distance))


def headline_tables(scope: _Scope, groups: Sequence[str]) -> tuple[list[str], list[tuple[int, int, int, int]],
                                                                   list[str]]:
    """(names, (k_a, n_a, k_b, n_b) per headline configuration with runs in both folders, the headline
    configurations missing in either). The configurations: every level of the other factors and distance
    seen in either folder, times each headline group."""
    cols = [*scope.by, scope.distance]
    known = [x[x["reached"].notna() & x[scope.distance].notna()] for x in (scope.a, scope.b)]
    levels = pd.concat([k[cols] for k in known]).drop_duplicates()
    levels = levels.sort_values(cols, key=lambda s: s.astype(str) if s.name != scope.distance else s.astype(float))
    counts = [k.groupby([*cols, scope.group], dropna=False)["reached"].agg(["sum", "count"]) for k in known]
    names, tables, missing = [], [], []
    for g in groups:
        for lv in levels.itertuples(index=False):
            key = (*lv, g)
            name = _name([scope.group, *scope.by, scope.distance], (g, *lv))
            have = [key in c.index for c in counts]
            if not all(have):
                side = "A and B" if not any(have) else ("A" if not have[0] else "B")
                missing.append(f"{name} (no runs in {side})")
                continue
            (ka, na), (kb, nb) = (tuple(int(x) for x in c.loc[key]) for c in counts)
            names.append(name)
            tables.append((ka, na, kb, nb))
    return names, tables, missing


def contrast_checks(scope: _Scope, pairs: Sequence[tuple[str, str]], alpha: float = ALPHA) -> list[ContrastCheck]:
    """Per headline contrast row present in both folders: the report's decision (`arm_contrasts`) in each."""
    if not pairs:
        return []
    rows = [C.arm_contrasts(x, scope.group, scope.distance, scope.by, pairs, alpha=alpha) for x in (scope.a, scope.b)]
    cols = [*scope.by, scope.distance, "a", "b"]
    if rows[0].empty or rows[1].empty:
        return []
    both = rows[0].merge(rows[1], on=cols, suffixes=("_A", "_B"))
    out = []
    for _, r in both.iterrows():
        where = "".join(f", {k}={fmt_value(r[k])}" for k in scope.by)
        signs = [int(np.sign(r[f"diff_{s}"])) if bool(r[f"decided_{s}"]) else 0 for s in "AB"]
        counts = [f"{r[f'k_a_{s}']}/{r[f'n_a_{s}']} against {r[f'k_b_{s}']}/{r[f'n_b_{s}']}" for s in "AB"]
        out.append(ContrastCheck(f"{r['a']} − {r['b']}, {scope.distance}={fmt_value(r[scope.distance])}{where}",
                                 counts[0], counts[1], signs[0], signs[1]))
    return out


def contrasts_from_tables(names: Sequence[str], tables_a: Sequence[tuple[int, int, int, int]],
                          tables_b: Sequence[tuple[int, int, int, int]], alpha: float = ALPHA) -> list[ContrastCheck]:
    """`contrast_checks` on counts (for simulations): each folder's contrast rows as (k_a, n_a, k_b, n_b),
    decided by `multiplicity.holm_decided` (the report's rule, Holm across each folder's rows)."""
    from harness.stats.multiplicity import holm_decided

    sa, sb = holm_decided(list(tables_a), alpha), holm_decided(list(tables_b), alpha)
    return [ContrastCheck(n, f"{ta[0]}/{ta[1]} against {ta[2]}/{ta[3]}", f"{tb[0]}/{tb[1]} against {tb[2]}/{tb[3]}",
                          int(a), int(b)) for n, ta, tb, a, b in zip(names, tables_a, tables_b, sa, sb)]


def d50_equivalence(scope: _Scope, headline: C.Headline, alpha: float = ALPHA, n_boot: int = N_BOOT,
                    rng: int = 0) -> list[Estimand]:
    """For information only: per `headline.d50` group and level of the other factors, the ratio of the two
    folders' D50s, each censored at the distances tested, with a stratified bootstrap interval at
    1 - 2 alpha, against [1/d50_ratio_margin, d50_ratio_margin]."""
    if not headline.d50 or headline.d50_ratio_margin is None or n_boot < 1:
        return []
    margin = headline.d50_ratio_margin
    found = [{(str(g.group), tuple(g.where.items())): g for g in
              C.group_d50s(x, scope.group, scope.distance, scope.by, headline.d50, n_boot=n_boot, rng=rng + i)}
             for i, x in enumerate((scope.a, scope.b))]
    out = []
    for key in sorted(set(found[0]) & set(found[1]), key=str):
        ga, gb = found[0][key], found[1][key]
        tested = ga.tested + gb.tested
        r = ratio_from_draws(ga.point, ga.draws, gb.point, gb.draws, 1.0 - 2.0 * alpha,
                             censor=(min(tested), max(tested)))
        out.append(Estimand(f"D50 {scope.group}={key[0]}" + "".join(f", {k}={fmt_value(v)}" for k, v in key[1]),
                            C.d50_value_text(ga.fit, ga.tested, scope.distance),
                            C.d50_value_text(gb.fit, gb.tested, scope.distance), r.ratio, r.low, r.high, margin,
                            bool(1.0 / margin <= r.low and r.high <= margin)))
    return out


# ----------------------------------------------------------------------------- the verdict

def _some(items: Sequence[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def decide(tests: Sequence[CountTest], missing: Sequence[str], rates: Sequence[RateCheck] | None,
           contrasts: Sequence[ContrastCheck], *, margin: float = MARGIN, alpha: float = ALPHA,
           test: str = "boschloo") -> tuple[str, str]:
    """(verdict, reason) from the checks' results: DISAGREE when a count differs after the minP
    adjustment; else INCONCLUSIVE when a configuration is missing on either side, when there is no
    headline (`rates` None) or no headline configuration, when one is not shown equivalent, or when a
    headline contrast is not decided the same way in both; else AGREE. Shared with check_power.py."""
    if not tests:
        return "INCONCLUSIVE", "no configuration has outcomes in both folders"
    differ = [t for t in tests if t.differs]
    if differ:
        return "DISAGREE", (f"{len(differ)} of {len(tests)} configurations reached the target at different rates "
                            f"(exact {test} test, minP-adjusted p < {alpha:g}): "
                            + _some([f"{t.name} ({t.k_a}/{t.n_a} | {t.k_b}/{t.n_b})" for t in differ]))
    why = []
    if missing:
        why.append(f"{len(missing)} configuration{'s' if len(missing) != 1 else ''} missing on one side: "
                   + _some(list(missing)))
    if rates is None:
        why.append("there is no pre-registered headline (`headline:` in config.yaml) to show equivalent")
    elif not rates:
        why.append("the headline names no group (`headline.d50` or `headline.contrasts`) with runs in both folders")
    else:
        short = [r for r in rates if not r.equivalent]
        if short:
            why.append(f"{len(short)} of {len(rates)} headline configurations not shown equivalent within "
                       f"±{margin:.2f} (exact {100 * (1 - 2 * alpha):g}% interval of the rate difference): "
                       + _some([f"{r.name} ({r.k_a}/{r.n_a} | {r.k_b}/{r.n_b}, [{r.low:+.2f}, {r.high:+.2f}])"
                                for r in short]))
    split = [c for c in contrasts if not c.same]
    if split:
        why.append(f"{len(split)} of {len(contrasts)} headline contrasts not decided the same way in both: "
                   + _some([f"{c.name} (A {_sign(c.sign_a)}, B {_sign(c.sign_b)})" for c in split]))
    if why:
        return "INCONCLUSIVE", f"no count differs ({len(tests)} configurations), but " + "; ".join(why)
    return "AGREE", (f"no count differs ({len(tests)} configurations), all {len(rates)} headline configurations "
                     f"are equivalent within ±{margin:.2f} and all {len(contrasts)} headline contrasts are decided "
                     "the same way in both")


def _sign(s: int) -> str:
    return {1: "decided +", -1: "decided −", 0: "not decided"}[int(s)]


def compare(outcomes_a: pd.DataFrame, outcomes_b: pd.DataFrame, headline: C.Headline | None, *,
            keys: Sequence[str] | None = None, test: str = "boschloo", alpha: float = ALPHA, margin: float = MARGIN,
            n_boot: int = N_BOOT, rng: int = 0) -> Comparison:
    """The verdict on two folders' outcomes tables (`outcomes.run_outcomes`) of the same config (see the
    module docstring; `decide`). With `headline.seeds`, only those seeds count (the pre-registered fixed
    design). `n_boot` 0 skips the informational D50 lines."""
    if headline is not None and headline.seeds is not None:
        outcomes_a, outcomes_b = C.fixed_seeds(outcomes_a, headline.seeds), C.fixed_seeds(outcomes_b, headline.seeds)
    keys = list(keys) if keys is not None else default_keys(outcomes_a)
    tests = count_tests(outcomes_a, outcomes_b, keys, test, alpha)
    missing = missing_configurations(outcomes_a, outcomes_b, keys)
    c = Comparison("", "", tests, missing, margin=margin)
    if tests and not any(t.differs for t in tests) and headline is not None:
        scope = _scope(outcomes_a, outcomes_b, headline, keys)
        names, tables, gone = headline_tables(scope, headline_groups(headline))
        c.missing += [m for m in gone if m.endswith("in A and B)")]   # one side only: already in `missing`
        c.rates = rate_checks(names, tables, margin, alpha)
        c.contrasts = contrast_checks(scope, headline.contrasts, alpha)
        c.estimands = d50_equivalence(scope, headline, alpha, n_boot, rng)
    c.verdict, c.reason = decide(tests, c.missing, c.rates if headline is not None else None, c.contrasts,
                                 margin=margin, alpha=alpha, test=test)
    return c


# ----------------------------------------------------------------------------- folders and words

@dataclass(frozen=True)
class Folder:
    """A results folder as the check reads it: the outcomes table, the config keys, the headline, config.yaml."""

    outcomes: pd.DataFrame
    keys: list[str]
    headline: C.Headline | None
    config_text: str


def load(results_dir: str | Path) -> tuple[pd.DataFrame, list[str], C.Headline | None]:
    """(outcomes, config keys, headline) of a results folder (`load_folder`, for callers that compare
    outcomes tables themselves)."""
    f = load_folder(results_dir)
    return f.outcomes, f.keys, f.headline


def load_folder(results_dir: str | Path) -> Folder:
    """A results folder, through the report's own `compute`. BadInput when the folder is missing, not a
    results folder, has no config.yaml or no finished run, or its headline cannot be read."""
    from harness.config import ConfigError
    from harness.report import compute

    d = Path(results_dir)
    if not d.is_dir():
        raise BadInput(f"{d}: no such folder")
    try:
        data = compute(d)
    except ConfigError as e:
        raise BadInput(str(e).splitlines()[0]) from None
    if not data.config_text:
        raise BadInput(f"{d}: no config.yaml, so nothing says which question the runs answer")
    if data.outcomes.empty or data.outcomes["reached"].notna().sum() == 0:
        raise BadInput(f"{d}: no finished run with an outcome")
    try:
        headline = C.read_headline(data.config_text)
    except C.HeadlineError as e:
        raise BadInput(f"{d}/config.yaml: {e}") from None
    return Folder(data.outcomes, data.keys, headline, data.config_text)


def check_same_question(first: str | Path, a: Folder, second: str | Path, b: Folder) -> None:
    """BadInput naming the first differing key when the two configs differ beyond execution keys."""
    diff = config_difference(a.config_text, b.config_text)
    if diff is not None:
        key, va, vb = diff
        raise BadInput(f"{first} and {second} asked different questions: config key {key} is {va!r} in A and "
                       f"{vb!r} in B (only run.*, train.checkpoint_every, train.save_model and name may differ)")


def _r(x: float) -> str:
    return "∞" if math.isinf(x) else "n/a" if math.isnan(x) else f"{x:.2f}"


def lines(c: Comparison, test: str, alpha: float = ALPHA) -> list[str]:
    out = [f"## configurations: k/n in A | in B, exact {test} test, minP-adjusted over {len(c.configurations)}"]
    for t in c.configurations:
        out.append(f"{'≠' if t.differs else '='} {t.name}: {t.k_a}/{t.n_a} | {t.k_b}/{t.n_b}  "
                   f"p = {t.p:.3g}, adjusted {t.p_adjusted:.3g}")
    if c.missing:
        out.append("## missing on one side")
        out += [f"- {m}" for m in c.missing]
    if c.rates:
        out.append(f"## headline configurations: rate A − B with its exact {100 * (1 - 2 * alpha):g}% interval "
                   f"(Chan–Zhang), equivalent when inside ±{c.margin:.2f}")
        for r in c.rates:
            out.append(f"{'≈' if r.equivalent else '?'} {r.name}: {r.k_a}/{r.n_a} | {r.k_b}/{r.n_b}; {r.diff:+.2f} "
                       f"[{r.low:+.2f}, {r.high:+.2f}]: {'equivalent' if r.equivalent else 'not shown equivalent'}")
    if c.contrasts:
        out.append("## headline contrasts: the report's decision in A | in B (Holm-adjusted Boschloo p < 0.05 and "
                   "exact 95% interval excluding 0)")
        for k in c.contrasts:
            out.append(f"{'=' if k.same else '≠'} {k.name}: A {_sign(k.sign_a)} ({k.counts_a}) | "
                       f"B {_sign(k.sign_b)} ({k.counts_b})")
    if c.estimands:
        m = c.estimands[0].margin
        out.append(f"## for information (not part of the verdict): D50(A) / D50(B), censored at the distances "
                   f"tested, 90% bootstrap interval within [{1 / m:.2f}, {m:.2f}]")
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
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(BAD_INPUT)


def _fraction(lo: float, hi: float, what: str):
    """An argparse type: a number strictly between `lo` and `hi`, else one line saying `what` it must be."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not lo < x < hi:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return x
    return parse


# --margin: a difference of rates; --alpha: a level (the equivalence test uses the 1 - 2 alpha interval).
margin_value = _fraction(0.0, 1.0, "a difference of rates between 0 and 1")
alpha_value = _fraction(0.0, 0.5, "a level between 0 and 0.5")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="compare_conclusions", description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="results folder A")
    ap.add_argument("second", help="results folder B")
    ap.add_argument("--margin", type=margin_value, default=MARGIN,
                    help="equivalence margin on each headline configuration's rate difference (default 1/3)")
    ap.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo", help="exact two-sample test")
    ap.add_argument("--alpha", type=alpha_value, default=ALPHA,
                    help="family-wise error rate of the count test, level of each equivalence test (default 0.05)")
    ap.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples for the D50 lines (0: none)")
    ap.add_argument("--json", help="also write the tests and the verdict to this file")
    args = ap.parse_args(argv)
    try:
        a, b = load_folder(args.first), load_folder(args.second)
        check_same_question(args.first, a, args.second, b)
        c = compare(a.outcomes, b.outcomes, a.headline, keys=a.keys, test=args.test, alpha=args.alpha,
                    margin=args.margin, n_boot=args.n_boot)
    except BadInput as e:
        print(f"compare_conclusions: {e}", file=sys.stderr)
        return BAD_INPUT
    except C.HeadlineError as e:
        print(f"compare_conclusions: {args.first}/config.yaml: {e}", file=sys.stderr)
        return BAD_INPUT
    print(f"A = {args.first}\nB = {args.second}\nthe same config (execution keys aside)")
    print("\n".join(lines(c, args.test, args.alpha)))
    print(f"\n{c.verdict}: {c.reason}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "verdict": c.verdict, "reason": c.reason, "test": args.test, "alpha": args.alpha, "margin": c.margin,
            "a": str(args.first), "b": str(args.second), "missing": c.missing,
            "configurations": [_plain(asdict(t)) for t in c.configurations],
            "rates": [_plain(asdict(r)) for r in c.rates],
            "contrasts": [{**asdict(k), "same": k.same} for k in c.contrasts],
            "d50": [_plain(asdict(e)) for e in c.estimands]}, indent=1, ensure_ascii=False), encoding="utf-8")
    return EXIT[c.verdict]


if __name__ == "__main__":
    sys.exit(main())
