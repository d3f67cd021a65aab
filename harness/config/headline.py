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
          seeds: 12                     # every configuration runs exactly this many seeds (power calculation)
          group: arm                    # optional: the column naming the groups (default: arm if any, else cell)
          where: {model.readout: last}  # optional: the other factors' levels every estimand is taken at
          contrasts: [[lstm, rnn], [lstm, lstm-fb0]]   # rate a − rate b at each distance
          d50: [rnn, lstm-fb0, lstm]    # per group D50
          d50_ratios: [[lstm, rnn]]     # optional: D50 ratios to report (default: the contrasts' pairs)
          d50_ratio_margin: 1.5         # reproduction: each group's D50 in two folders within [1/1.5, 1.5]x
    """

    seeds: int | None = None
    group: str | None = None
    where: dict = field(default_factory=dict)
    contrasts: list[tuple[str, str]] = field(default_factory=list)
    d50: list[str] = field(default_factory=list)
    d50_ratios: list[tuple[str, str]] = field(default_factory=list)
    d50_ratio_margin: float | None = None
    directions: list[tuple[str, str, str]] = field(default_factory=list)   # (better, worse, fact)


HEADLINE_KEYS = ("seeds", "group", "where", "contrasts", "d50", "d50_ratios", "d50_ratio_margin", "directions")


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
    seeds, margin = h.get("seeds"), h.get("d50_ratio_margin")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise HeadlineError(f"headline.seeds: expected a positive integer, got {seeds!r}")
    if margin is not None and (not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin <= 1):
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
                    _directions(h.get("directions")))


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
        out["seeds"] = h.seeds
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
