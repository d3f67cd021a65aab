"""The question a report answers, read off what the results vary: whether there is a distance to find
a frontier along (pad_size or lag over two or more values), whether groups (cells, or arms) are
compared, and which other factors vary. The report's opening sentence, its frontier section and its
figures follow from it (`harness.report.catalogue` draws a figure only when its question is asked)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.config import ARM, ExperimentConfig, short_axis_name
from harness.report.fmt import fmt_value
from harness.report.outcomes import distance_column, group_name
from harness.report.stats import group_key, ordered_levels

# How a sentence names a factor; any other factor by its name in backticks.
FACTOR_NAMES = {"layernorm": "LayerNorm", "batch_size": "the batch size", "lr": "the learning rate",
                "pad_size": "pad_size", "lag": "the lag", "readout": "the read-out", "model.readout": "the read-out",
                "forget_bias": "the forget-gate bias", "model.forget_bias": "the forget-gate bias"}
# How the opening says the distance grows.
DISTANCE_PHRASES = {"pad_size": "as sequences get longer (pad_size)",
                    "lag": "as the distance between a text's end and the read-out grows (lag)"}


@dataclass(frozen=True)
class Question:
    """What the results vary, as far as the report's wording and figures care."""

    distance: str = "pad_size"                 # the distance column: 'pad_size' or 'lag'
    distances: tuple = ()                      # the distances tested, ascending
    group: str = "cell"                        # what names a group: 'cell', or 'arm'
    groups: tuple = ()                         # the groups in the results, in order
    varying: tuple[str, ...] = ()              # every factor that varies (config keys, not the seed)
    layernorms: tuple = ()                     # the layernorm settings in the results
    target: float | None = None                # the target dev accuracy
    searched: tuple[str, ...] = ()             # the factors a study searched (study.params), compared at their best

    @property
    def has_frontier(self) -> bool:
        """A frontier needs a distance tested at two or more values."""
        return len(self.distances) >= 2

    @property
    def compares_groups(self) -> bool:
        """Two or more cells (or arms) to compare."""
        return len(self.groups) >= 2

    @property
    def others(self) -> list[str]:
        """The varied factors besides the group and the distance (the factor that names a group's
        settings, an arm's cell, is never one)."""
        return [k for k in self.varying if k not in (self.group, self.distance, "cell", ARM)]

    @property
    def lines_by(self) -> str:
        """What one line of a figure stands for: 'cell × layernorm', 'arm', 'layernorm', or ''."""
        return " × ".join([self.group] * self.compares_groups + ["layernorm"] * (len(self.layernorms) > 1))

    def opening(self) -> str:
        """The question the report opens with, e.g. 'How far does the RNN still reach the target as sequences get
        longer (pad_size), and how much further does the LSTM get?' or 'Which learning rate lets the
        LSTM reach dev accuracy 0.5 (pad_size 12), and how fast?'."""
        if not self.groups:
            return "What do the finished runs show?"
        first = self.name(self.groups[0])
        factors = and_list([FACTOR_NAMES.get(k, f"`{k}`") for k in self.others])
        change = f"what {'does' if len(self.others) == 1 else 'do'} {factors} change about it?" if factors else ""
        if self.has_frontier:
            grows = DISTANCE_PHRASES.get(self.distance, f"as {self.distance} grows")
            q = f"How far does {first} still reach the target {grows}"
            if self.compares_groups:
                rest = [self.name(g) for g in self.groups[1:]]
                q += f", and how much further {'does' if len(rest) == 1 else 'do'} {and_list(rest)} get?"
                return q + (f" And {change}" if change else "")
            return q + (f", and {change}" if change else "?")
        reach = f"reach dev accuracy {self.target:g}" if self.target is not None else "reach the target dev accuracy"
        at = f" ({self.distance} {fmt_value(self.distances[0])})" if len(self.distances) == 1 else ""
        if self.searched and not self.others:
            return self._search_opening(first, reach, at)
        if self.compares_groups:
            names = and_list([self.name(g) for g in self.groups], "or")
            q = f"Which of {names} can {reach}{at}, and how fast?"
            return q + (f" And {change}" if change else "")
        if self.others == ["lr"]:
            return f"Which learning rate lets {first} {reach}{at}, and how fast?"
        if factors:
            return f"What {'does' if len(self.others) == 1 else 'do'} {factors} change about whether {first} can " \
                   f"{reach}{at}, and how fast?"
        return f"Does {first} {reach}{at}, and how fast?"

    def _search_opening(self, first: str, reach: str, at: str) -> str:
        """A study that searched some factors (no other factor varies): which setting of them lets the
        group reach the target ('Which learning rate lets the LSTM reach …')."""
        which = and_list([FACTOR_NAMES.get(k, f"`{k}`").removeprefix("the ") for k in self.searched])
        if self.compares_groups:
            names = and_list([self.name(g) for g in self.groups], "or")
            return f"Which of {names} can {reach}{at} at its best {which}, and how fast?"
        verb = "lets" if len(self.searched) == 1 else "let"
        return f"Which {which} {verb} {first} {reach}{at}, and how fast?"

    def name(self, group: object) -> str:
        """'the LSTM', 'arm lstm-fb0'."""
        return group_name(self.group, group)


def and_list(items: Sequence[str], word: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def searched(cfg: ExperimentConfig | None) -> tuple[str, ...]:
    """The factors a config's study searches (short names), () without `study:`."""
    return tuple(short_axis_name(k) for k in cfg.study.params) if cfg is not None and cfg.study is not None else ()


def from_runs(runs: pd.DataFrame, varying: Sequence[str], target: float | None, arms: Sequence[str] = (),
              cfg: ExperimentConfig | None = None) -> Question:
    """The question of finished runs (the `runs` table as prepared for the report; `cfg` for the
    factors a study searched)."""
    dist = distance_column(runs)
    distances = tuple(sorted(runs[dist].dropna().unique())) if dist in runs.columns else ()
    gk = group_key(runs)
    groups = [a for a in arms if a in set(runs[gk].dropna())] if gk == ARM else []
    groups += [g for g in ordered_levels(runs[gk]) if g not in groups] if gk in runs.columns else []
    lns = tuple(ordered_levels(runs["layernorm"])) if "layernorm" in runs.columns else ()
    return Question(dist, distances, gk, tuple(groups), tuple(varying), lns, target, searched(cfg))


def from_config(cfg: ExperimentConfig | None, target: float | None) -> Question:
    """The question a config asks, before any run has finished (its grid's axes with two or more values)."""
    if cfg is None:
        return Question(target=target)
    grid = {short_axis_name(k): list(v) for k, v in cfg.to_dict()["grid"].items()}
    fixed = {"pad_size": [cfg.data.pad_size], "lag": [cfg.data.lag] if cfg.data.lag is not None else []}
    dist = "lag" if len(grid.get("lag", fixed["lag"])) > 1 or (fixed["lag"] and "pad_size" not in grid) else "pad_size"
    group = ARM if ARM in grid else "cell"
    groups = grid.get(group, [cfg.model.cell])
    varying = tuple(k for k, v in grid.items() if len(v) > 1 and k != "seed")
    lns = tuple(grid.get("layernorm", [cfg.model.layernorm]))
    return Question(dist, tuple(sorted(grid.get(dist, fixed[dist]))), group, tuple(groups), varying, lns, target,
                    searched(cfg))
