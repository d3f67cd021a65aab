"""How often does `compare_conclusions.py` say DISAGREE when it should not, and how often when it should?
Measured on one results folder, by resampling its own runs (no training).

- False-alarm rate: within each configuration, the runs are split at random into two halves (sizes
  differing by at most one), the halves are compared as two folders (`compare_conclusions.compare`:
  exact two-sample test per configuration, minP-adjusted across them), and DISAGREE is counted. Both halves come
  from the same machine and code, so every DISAGREE is a false alarm; by construction of the tests it
  should stay at or below alpha (0.05).
- Power: the same split, but in the second half one configuration (drawn at random among those whose
  success rate, over the whole folder, can move by `shift`) has its true success rate shifted by
  `shift` (0.6 by default): each of its runs that did not reach the target is flipped to reached with
  probability shift / (1 - rate) (or, where the rate is above 1 - shift, each that did is flipped to not
  reached with probability shift / rate), so its expected rate moves by exactly `shift`. DISAGREE is
  counted.

Both are printed as a share of the draws with its binomial standard error, sqrt(r (1 - r) / draws).
Halves hold half the seeds the real comparison has, so both numbers describe the check at that size:
the real check's power at full size is higher. Only step 1 of the check (counts against counts) can
say DISAGREE, so the headline equivalence step is not run here.

With `--full-size` both folders are instead drawn anew at the folder's own size, each configuration's
runs Bernoulli at the rate the folder observed (a parametric bootstrap; the shifted configuration at
rate ± shift in the second): the check at the size a real comparison of two bench folders has. A rate
observed as 0 of 10 is drawn as exactly 0, which makes that configuration's test unable to fire: the
false-alarm rate there is, if anything, optimistic.

    python benchmarks/check_power.py results/bench [--draws 400] [--shift 0.6] [--test fisher] [--json out.json]
    python benchmarks/check_power.py results/bench --full-size
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

if "compare_conclusions" in sys.modules:
    cc = sys.modules["compare_conclusions"]
else:   # benchmarks/ is not a package: load its neighbour by path
    _spec = importlib.util.spec_from_file_location("compare_conclusions",
                                                   Path(__file__).with_name("compare_conclusions.py"))
    cc = importlib.util.module_from_spec(_spec)
    sys.modules["compare_conclusions"] = cc
    _spec.loader.exec_module(cc)


@dataclass(frozen=True)
class Rate:
    """DISAGREE in `hits` of `draws` comparisons: the share and its binomial standard error."""

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
        out = f"{self.hits} of {self.draws} = {self.rate:.3f} ± {self.se:.3f} (binomial standard error)"
        if self.draws and self.hits in (0, self.draws):   # the standard error is 0 there: give the rule of three
            bound = 3 / self.draws
            side, value = ("upper", bound) if self.hits == 0 else ("lower", 1 - bound)
            out += f"; 95% {side} bound {value:.3f} (rule of three)"
        return out


def _groups(outcomes: pd.DataFrame, keys: Sequence[str]) -> list[np.ndarray]:
    known = outcomes[outcomes["reached"].notna()]
    return [idx.to_numpy() for idx in known.groupby(list(keys), dropna=False).groups.values()]


def split_halves(outcomes: pd.DataFrame, keys: Sequence[str], rng: np.random.Generator
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint halves of the runs with an outcome: within each configuration a random half (the odd
    run out goes to either side at random)."""
    first, second = [], []
    for idx in _groups(outcomes, keys):
        idx = rng.permutation(idx)
        cut = idx.size // 2 + (int(rng.integers(2)) if idx.size % 2 else 0)
        first.append(idx[:cut])
        second.append(idx[cut:])
    return outcomes.loc[np.concatenate(first)], outcomes.loc[np.concatenate(second)]


def shift_rate(half: pd.DataFrame, rows: np.ndarray, rate: float, shift: float,
               rng: np.random.Generator) -> pd.DataFrame:
    """`half` with the outcomes of `rows` (index labels, one configuration whose true rate is `rate`)
    flipped at random so that their expected success rate moves by `shift`: up where rate + shift <= 1,
    else down (rate - shift >= 0 is then required)."""
    out = half.copy()
    reached = np.array(out.loc[rows, "reached"], dtype=float)   # a writable copy
    if rate + shift <= 1.0:
        flip = (reached == 0.0) & (rng.random(reached.size) < shift / (1.0 - rate))
        reached[flip] = 1.0
    else:
        flip = (reached == 1.0) & (rng.random(reached.size) < shift / rate)
        reached[flip] = 0.0
    out.loc[rows, "reached"] = reached
    return out


def eligible(outcomes: pd.DataFrame, keys: Sequence[str], shift: float) -> list[tuple[np.ndarray, float]]:
    """(runs, rate) of each configuration with at least 2 runs whose rate can move by `shift` in [0, 1]."""
    out = []
    for idx in _groups(outcomes, keys):
        rate = float(outcomes.loc[idx, "reached"].mean())
        if idx.size >= 2 and (rate + shift <= 1.0 or rate - shift >= 0.0):
            out.append((idx, rate))
    return out


def _disagree(a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str], test: str, alpha: float) -> bool:
    return any(t.differs for t in cc.count_tests(a, b, keys, test, alpha))


def measure(outcomes: pd.DataFrame, keys: Sequence[str], draws: int = 200, shift: float = 0.6,
            test: str = "boschloo", alpha: float = 0.05, seed: int = 0) -> tuple[Rate, Rate, int]:
    """(false alarms, power, configurations eligible for the shift): `draws` random splits each."""
    gen = np.random.default_rng(seed)
    false_alarms = sum(_disagree(*split_halves(outcomes, keys, gen), keys, test, alpha) for _ in range(draws))
    candidates = eligible(outcomes, keys, shift)
    hits = 0
    for _ in range(draws if candidates else 0):
        a, b = split_halves(outcomes, keys, gen)
        idx, rate = candidates[int(gen.integers(len(candidates)))]
        rows = np.intersect1d(idx, b.index.to_numpy())
        hits += _disagree(a, shift_rate(b, rows, rate, shift, gen), keys, test, alpha)
    return Rate(false_alarms, draws), Rate(hits, draws if candidates else 0), len(candidates)


def resized(outcomes: pd.DataFrame, keys: Sequence[str], size: int | None) -> pd.DataFrame:
    """`outcomes` with every configuration's runs replaced by `size` copies of its first run, its
    `reached` set to the configuration's observed rate (a template for `parametric_pair` at that size);
    the folder itself where `size` is None."""
    if size is None:
        return outcomes
    rows = []
    for idx in _groups(outcomes, keys):
        first = outcomes.loc[[idx[0]] * size].copy()
        first["reached"] = float(outcomes.loc[idx, "reached"].mean())
        first["seed"] = range(size)
        rows.append(first)
    return pd.concat(rows, ignore_index=True)


def parametric_pair(outcomes: pd.DataFrame, keys: Sequence[str], rng: np.random.Generator,
                    shifted: tuple[np.ndarray, float] | None = None, shift: float = 0.0
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two folders of the folder's own size: each configuration's runs drawn anew, in both, as
    Bernoulli(rate) at the rate the folder observed (a parametric bootstrap); where `shifted` names a
    configuration, the second folder draws it at rate + shift (or rate - shift where that exceeds 1)."""
    a, b = outcomes.copy(), outcomes.copy()
    for idx in _groups(outcomes, keys):
        rate = float(outcomes.loc[idx, "reached"].mean())
        rate_b = rate
        if shifted is not None and np.array_equal(idx, shifted[0]):
            rate_b = rate + shift if rate + shift <= 1.0 else rate - shift
        a.loc[idx, "reached"] = (rng.random(idx.size) < rate).astype(float)
        b.loc[idx, "reached"] = (rng.random(idx.size) < rate_b).astype(float)
    return a, b


def measure_full_size(outcomes: pd.DataFrame, keys: Sequence[str], draws: int = 200, shift: float = 0.6,
                      test: str = "boschloo", alpha: float = 0.05, seed: int = 0) -> tuple[Rate, Rate, int]:
    """As `measure`, at the folder's own number of runs per configuration (the size a real comparison of
    two bench folders has): both folders drawn from the observed rates (`parametric_pair`)."""
    gen = np.random.default_rng(seed)
    false_alarms = sum(_disagree(*parametric_pair(outcomes, keys, gen), keys, test, alpha) for _ in range(draws))
    candidates = eligible(outcomes, keys, shift)
    hits = 0
    for _ in range(draws if candidates else 0):
        pick = candidates[int(gen.integers(len(candidates)))]
        hits += _disagree(*parametric_pair(outcomes, keys, gen, pick, shift), keys, test, alpha)
    return Rate(false_alarms, draws), Rate(hits, draws if candidates else 0), len(candidates)


def main(argv: list[str] | None = None) -> int:
    ap = cc._Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a results folder (e.g. results/bench)")
    ap.add_argument("--draws", type=int, default=400, help="random splits for each measurement (default 400)")
    ap.add_argument("--shift", type=float, default=0.6, help="change of one configuration's success rate")
    ap.add_argument("--test", choices=("boschloo", "fisher"), default="boschloo")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--size", type=int, help="with --full-size: draw this many runs per configuration "
                                             "(default: the folder's own)")
    ap.add_argument("--full-size", action="store_true",
                    help="draw both folders at the folder's own size from its observed rates (parametric) "
                         "instead of splitting its runs in halves")
    args = ap.parse_args(argv)
    try:
        outcomes, keys, _ = cc.load(args.folder)
    except cc.BadInput as e:
        print(f"check_power: {e}", file=sys.stderr)
        return cc.BAD_INPUT
    how = measure_full_size if args.full_size else measure
    if args.size is not None and (not args.full_size or args.size < 2):
        print("check_power: --size needs --full-size and at least 2", file=sys.stderr)
        return cc.BAD_INPUT
    if args.full_size:
        outcomes = resized(outcomes, keys, args.size)
    false_alarm, power, n_eligible = how(outcomes, keys, args.draws, args.shift, args.test, args.alpha, args.seed)
    n_configs = len(_groups(outcomes, keys))
    sizing = "both folders drawn at full size from the observed rates" if args.full_size else "split in halves"
    print(f"{args.folder}: {n_configs} configurations, {int(outcomes['reached'].notna().sum())} runs with an "
          f"outcome, {sizing}; exact {args.test} test per configuration, minP-adjusted, alpha {args.alpha:g}")
    pair = "two folders drawn at the same rates" if args.full_size else "two halves of one folder"
    print(f"false-alarm rate (DISAGREE between {pair}): {false_alarm.text()}")
    if n_eligible:
        print(f"power (DISAGREE when one configuration's rate is shifted by {args.shift:g}; drawn among "
              f"{n_eligible}): {power.text()}")
    else:
        print(f"power: no configuration has a rate that can move by {args.shift:g} and 2 runs")
    if args.json:
        Path(args.json).write_text(json.dumps({"folder": args.folder, "test": args.test, "alpha": args.alpha,
                                               "shift": args.shift, "false_alarm": asdict(false_alarm),
                                               "power": asdict(power), "eligible": n_eligible}, indent=1),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
