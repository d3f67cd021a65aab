"""The `adaptive:` section: seeds added only where the outcome is still undecided (racing).

    adaptive:
      min_seeds: 3          # every configuration (grid point without the seed) starts with these
      max_seeds: 8          # and gets at most these; its seeds are 0 .. max_seeds-1
      confidence: 0.95      # of the success-rate interval and of the (Holm-corrected) effect intervals
      batch: 1              # seeds added at once to a configuration still undecided (and per effect round)
      effects:              # optional paired effects that must be decided too: [axis, baseline, level]
        - [cell, rnn, lstm]

The seeds come from here, so `grid.seed` must not be given as well. What the runner does with it
is in `harness.adaptive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.arms import ARM
from harness.config.errors import ConfigError, Where, reject_unknown_keys
from harness.config.fields import canonical_axis, check_value
from harness.config.sections import short_axis_name

SEED_KEY = "train.seed"
_KEYS = ("min_seeds", "max_seeds", "confidence", "batch", "effects")


@dataclass
class AdaptiveConfig:
    min_seeds: int
    max_seeds: int
    confidence: float = 0.95
    effects: list[tuple[str, Any, Any]] = field(default_factory=list)  # (dotted grid axis, baseline, level)
    batch: int = 1  # seeds added at once: min_seeds, min_seeds + batch, ... (capped at max_seeds)

    def to_dict(self) -> dict[str, Any]:
        return {"min_seeds": self.min_seeds, "max_seeds": self.max_seeds, "confidence": self.confidence,
                "batch": self.batch, "effects": [[short_axis_name(f), b, lv] for f, b, lv in self.effects]}

    def looks(self) -> list[int]:
        """The seed counts at which a configuration's rate (and an effect) is checked: min_seeds, then
        every `batch` seeds more, and max_seeds last."""
        return [*range(self.min_seeds, self.max_seeds, self.batch), self.max_seeds]

    def next_look(self, n: int) -> int:
        """The seed count after `n` (at most max_seeds)."""
        return min(n + self.batch, self.max_seeds)


def build_adaptive(raw: Any, grid: dict[str, list], has_study: bool, where: Where) -> AdaptiveConfig:
    """Validate the `adaptive:` mapping against the already validated grid (canonical dotted keys)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'adaptive': expected a mapping {{min_seeds, max_seeds}}, got {raw!r}"
                          f"{where('adaptive')}")
    reject_unknown_keys(raw, list(_KEYS), "adaptive", where)
    if has_study:
        raise ConfigError(f"config keys 'adaptive' and 'study' cannot both be given{where('adaptive')}: "
                          f"adaptive seeds apply to an enumerated grid")
    if SEED_KEY in grid:
        raise ConfigError(f"config keys 'adaptive' and 'grid.seed' cannot both be given{where('grid.seed')}: "
                          f"with adaptive seeds every configuration runs seeds 0 .. adaptive.max_seeds-1 as "
                          f"needed; remove grid.seed")
    n = {}
    for k in ("min_seeds", "max_seeds"):
        if k not in raw:
            raise ConfigError(f"config key 'adaptive.{k}' is required{where('adaptive')}")
        n[k] = check_value(f"adaptive.{k}", raw[k], int, {"min": 1}, where)
    if n["min_seeds"] > n["max_seeds"]:
        raise ConfigError(f"config keys 'adaptive.min_seeds' ({n['min_seeds']}) and 'adaptive.max_seeds' "
                          f"({n['max_seeds']}): min_seeds must not exceed max_seeds{where('adaptive.min_seeds')}")
    confidence = check_value("adaptive.confidence", raw.get("confidence", 0.95), float,
                             {"min": 0.0, "exclusive_min": True}, where)
    if confidence >= 1.0:
        raise ConfigError(f"config key 'adaptive.confidence': {confidence!r} is out of range; must lie "
                          f"strictly between 0 and 1{where('adaptive.confidence')}")
    batch = check_value("adaptive.batch", raw.get("batch", 1), int, {"min": 1}, where)
    effects = [_effect(i, e, grid, where) for i, e in enumerate(raw.get("effects") or [])]
    return AdaptiveConfig(n["min_seeds"], n["max_seeds"], confidence, effects, batch)


def _effect(i: int, raw: Any, grid: dict[str, list], where: Where) -> tuple[str, Any, Any]:
    """One `[axis, baseline, level]` entry: a grid axis other than the seed (or `arm`, with grid.arm)
    and two of its values (two arm names)."""
    key = f"adaptive.effects[{i}]"
    if not isinstance(raw, list) or len(raw) != 3:
        raise ConfigError(f"config key '{key}': expected [axis, baseline, level], e.g. [cell, rnn, lstm], got "
                          f"{raw!r}{where('adaptive.effects')}")
    axis = ARM if raw[0] == ARM and ARM in grid else canonical_axis(str(raw[0]), where, prefix="")
    if axis not in grid:
        raise ConfigError(f"config key '{key}': {raw[0]!r} is not a grid axis{where('adaptive.effects')}; "
                          f"grid axes: {', '.join(short_axis_name(a) for a in grid) or 'none'}")
    values = grid[axis]
    checked = []
    for v in raw[1:]:
        hit = [g for g in values if g == v or repr(g) == repr(v)]
        if not hit:
            raise ConfigError(f"config key '{key}': {v!r} is not a value of grid axis '{short_axis_name(axis)}' "
                              f"({', '.join(map(str, values))}){where('adaptive.effects')}")
        checked.append(hit[0])
    if repr(checked[0]) == repr(checked[1]):
        raise ConfigError(f"config key '{key}': baseline and level are both {checked[0]!r}; give two different "
                          f"values{where('adaptive.effects')}")
    return axis, checked[0], checked[1]
