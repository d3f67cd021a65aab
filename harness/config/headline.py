"""`headline:`: the pre-registered headline estimands of an experiment (fixed before it runs).

    headline:
      seeds: 10                     # every configuration runs exactly these seeds 0..9 (a power calculation)
      group: arm                    # optional: the column naming the groups (default: arm if any, else cell)
      where: {model.readout: last}  # optional: the other factors' levels every estimand is taken at
      contrasts: [[lstm, rnn], [lstm, lstm-fb0]]   # rate a - rate b at each distance
      d50: [rnn, lstm-fb0, lstm]    # per group D50
      d50_ratios: [[lstm, rnn]]     # optional: D50 ratios to report (default: the contrasts' pairs)
      d50_ratio_margin: 1.5         # reproduction: each group's D50 in two folders within [1/1.5, 1.5]x
      directions:                   # optional: facts the task must show, each "better reaches the target
        - {better: lstm, worse: rnn, fact: "real titles: LSTM 70%, RNN 40%"}   # more often at some distance"

The report (`harness.report.contrasts`) leads with these; `benchmarks/compare_conclusions.py` tests
them for equivalence between two results folders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config.errors import ConfigError


class HeadlineError(ConfigError):
    """A `headline:` section that cannot be read (its message names the key)."""


@dataclass(frozen=True)
class Headline:
    """The pre-registered headline estimands (config.yaml's `headline:` section, fixed before the
    bench runs):

        headline:
          seeds: [1000, 1001, ...]      # the confirmatory seeds every configuration runs (a power calculation);
                                        # an integer n means seeds 0 .. n-1
          exploration_seeds: [0, 1, 2]  # optional: seeds that shaped the design (never confirmatory)
          target_rule: "..."            # optional: how the target and budget were fixed, in words
          budget_check: {factor: 3, seeds: 6}   # optional: the configurations next to each frontier again at
                                        # factor x the budget, on the first `seeds` headline seeds
          group: arm                    # optional: the column naming the groups (default: arm if any, else cell)
          where: {model.readout: last}  # optional: the other factors' levels every estimand is taken at
          contrasts: [[lstm, rnn], [lstm, lstm-fb0]]   # rate a − rate b at each distance
          d50: [rnn, lstm-fb0, lstm]    # per group D50
          d50_ratios: [[lstm, rnn]]     # optional: D50 ratios to report (default: the contrasts' pairs)
          d50_ratio_margin: 1.5         # reproduction: each group's D50 in two folders within [1/1.5, 1.5]x
    """

    seeds: tuple[int, ...] | None = None   # the confirmatory seeds
    group: str | None = None
    where: dict = field(default_factory=dict)
    contrasts: list[tuple[str, str]] = field(default_factory=list)
    d50: list[str] = field(default_factory=list)
    d50_ratios: list[tuple[str, str]] = field(default_factory=list)
    d50_ratio_margin: float | None = None
    directions: list[tuple[str, str, str]] = field(default_factory=list)   # (better, worse, fact)
    exploration_seeds: tuple[int, ...] = ()
    target_rule: str = ""
    budget_check: BudgetCheck | None = None

    def seed_range(self) -> str:
        """The confirmatory seeds in words: '1000–1011', or '0, 2, 5'."""
        return seed_text(self.seeds or ())


@dataclass(frozen=True)
class BudgetCheck:
    """`headline.budget_check`: rerun the configurations next to each frontier at `factor` × the
    budget on the first `seeds` headline seeds (None: all of them)."""

    factor: int = 3
    seeds: int | None = None


def seed_text(seeds: tuple[int, ...] | list[int]) -> str:
    """Seeds in words: a run of consecutive seeds as 'a–b', else a comma list."""
    s = sorted(seeds)
    if not s:
        return "none"
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}–{s[-1]}"
    return ", ".join(map(str, s))


HEADLINE_KEYS = ("seeds", "exploration_seeds", "target_rule", "budget_check", "group", "where", "contrasts", "d50",
                 "d50_ratios", "d50_ratio_margin", "directions")


def _pairs(raw: Any, key: str) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise HeadlineError(f"headline.{key}: expected a list of [a, b] pairs, got {raw!r}")
    return [(str(a), str(b)) for a, b in raw]


def read_headline(config: str | Mapping | None) -> Headline | None:
    """The `headline:` section of a config (YAML text, or the loaded mapping); None when there is none.
    Raises HeadlineError naming the key when the section is malformed."""
    import yaml

    if config is None:
        return None
    raw = yaml.safe_load(config) if isinstance(config, str) else config
    return parse_headline(raw.get("headline") if isinstance(raw, Mapping) else None)


def parse_headline(h: Any) -> Headline | None:
    """A config's `headline:` mapping as a `Headline` (None for None); HeadlineError naming the key."""
    if h is None:
        return None
    if not isinstance(h, Mapping):
        raise HeadlineError(f"headline: expected a mapping with keys {', '.join(HEADLINE_KEYS)}, got {h!r}")
    unknown = sorted(set(h) - set(HEADLINE_KEYS))
    if unknown:
        raise HeadlineError(f"headline: unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                            f"{', '.join(HEADLINE_KEYS)}")
    seeds = _seeds(h.get("seeds"), "seeds")
    explored = _seeds(h.get("exploration_seeds"), "exploration_seeds") or ()
    if seeds and set(seeds) & set(explored):
        raise HeadlineError(f"headline.seeds: {seed_text(sorted(set(seeds) & set(explored)))} also in "
                            "headline.exploration_seeds; confirmatory seeds must be ones no exploration ran")
    rule = h.get("target_rule", "")
    if not isinstance(rule, str):
        raise HeadlineError(f"headline.target_rule: expected text, got {rule!r}")
    margin = h.get("d50_ratio_margin")
    if margin is not None and (not isinstance(margin, (int, float)) or isinstance(margin, bool)
                               or not math.isfinite(margin) or margin <= 1):
        raise HeadlineError(f"headline.d50_ratio_margin: expected a number above 1 (e.g. 1.5), got {margin!r}")
    where = h.get("where") or {}
    if not isinstance(where, Mapping):
        raise HeadlineError(f"headline.where: expected a mapping of factor: level, got {where!r}")
    d50 = h.get("d50") or []
    if not isinstance(d50, list):
        raise HeadlineError(f"headline.d50: expected a list of group names, got {d50!r}")
    contrasts = _pairs(h.get("contrasts"), "contrasts")
    ratios = _pairs(h.get("d50_ratios"), "d50_ratios") if "d50_ratios" in h else list(contrasts)
    return Headline(seeds, None if h.get("group") is None else str(h["group"]), dict(where), contrasts,
                    [str(x) for x in d50], ratios, None if margin is None else float(margin),
                    _directions(h.get("directions")), explored, rule, _budget_check(h.get("budget_check")))


def _seeds(raw: Any, key: str) -> tuple[int, ...] | None:
    """headline.seeds / exploration_seeds: a positive integer n (seeds 0 .. n-1) or a list of distinct
    non-negative integers."""
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise HeadlineError(f"headline.{key}: expected a positive integer or a list of seeds, got {raw!r}")
        return tuple(range(raw))
    ok = isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw)
    if not ok or len(set(raw)) != len(raw):
        raise HeadlineError(f"headline.{key}: expected a positive integer or a list of distinct non-negative seeds, "
                            f"got {raw!r}")
    return tuple(raw)


def _budget_check(raw: Any) -> BudgetCheck | None:
    """headline.budget_check: {factor: integer >= 2, seeds: positive integer (optional)}."""
    if raw is None:
        return None
    ok = isinstance(raw, Mapping) and set(raw) <= {"factor", "seeds"}
    factor, seeds = (raw.get("factor", 3), raw.get("seeds")) if ok else (None, None)
    ok = ok and isinstance(factor, int) and not isinstance(factor, bool) and factor >= 2
    ok = ok and (seeds is None or (isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1))
    if not ok:
        raise HeadlineError(f"headline.budget_check: expected {{factor: an integer of at least 2, seeds: a positive "
                            f"integer}}, got {raw!r}")
    return BudgetCheck(factor, seeds)


def _directions(raw: Any) -> list[tuple[str, str, str]]:
    """headline.directions: a list of {better: A, worse: B, fact: text} (fact optional)."""
    if raw is None:
        return []
    ok = isinstance(raw, list) and all(isinstance(d, Mapping) and {"better", "worse"} <= set(d)
                                       and set(d) <= {"better", "worse", "fact"} for d in raw)
    if not ok:
        raise HeadlineError(f"headline.directions: expected a list of {{better: A, worse: B, fact: text}}, "
                            f"got {raw!r}")
    return [(str(d["better"]), str(d["worse"]), str(d.get("fact", ""))) for d in raw]


def headline_to_dict(h: Headline) -> dict[str, Any]:
    """The section as plain data (what `config.yaml` in the results holds); unset keys left out."""
    out: dict[str, Any] = {}
    if h.seeds is not None:
        out["seeds"] = list(h.seeds)
    if h.exploration_seeds:
        out["exploration_seeds"] = list(h.exploration_seeds)
    if h.target_rule:
        out["target_rule"] = h.target_rule
    if h.budget_check is not None:
        out["budget_check"] = {"factor": h.budget_check.factor,
                               **({"seeds": h.budget_check.seeds} if h.budget_check.seeds else {})}
    if h.group is not None:
        out["group"] = h.group
    if h.where:
        out["where"] = dict(h.where)
    for key in ("contrasts", "d50_ratios"):
        if getattr(h, key):
            out[key] = [list(p) for p in getattr(h, key)]
    if h.d50:
        out["d50"] = list(h.d50)
    if h.d50_ratio_margin is not None:
        out["d50_ratio_margin"] = h.d50_ratio_margin
    if h.directions:
        out["directions"] = [{"better": a, "worse": b, **({"fact": f} if f else {})} for a, b, f in h.directions]
    return out
