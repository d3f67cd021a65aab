"""The budget check (`headline.budget_check: {factor, seeds}`): is a frontier a limit, or a speed within
the budget? The configuration next to each frontier is trained again at `factor` × the budget, and the
report (`harness.report.budget`) counts the runs whose outcome changed.

Which configurations: the headline's runs (its `where` levels, its groups: `headline.d50`, else every
group, and its seeds) are split into lines, one per group and level of the other factors, along the
distance (data.lag where it varies, else data.pad_size). Once every run of a line is finished, its
*first failing distance* is the smallest distance at which fewer than half of the runs with an
outcome reached the target (a failed run, an error, has none). A line where no distance fails has
nothing to check.

Its trials: the original runs' settings and seeds (the first `seeds` headline seeds; all without it),
with train.epochs (and train.max_steps, if set) multiplied by `factor` and train.stop_at_target on:
only the end of the budget matters, so a run may stop once it reaches the target. Seeds derive from
the base seed alone (`harness.train.Seeds`) and the learning rate is constant, so a check run's first
N steps are its original's: the report compares run by run. They are trials of their own, tagged
(`{phase: budget_check, budget_check: factor}`: new ids, a `budget_check` column in the runs table),
never part of the grid's counts.

Like `harness.adaptive`, everything here is a function of the config and the finished runs: every
process computes the same trials, and they join the plan only once the originals are finished.
Nothing here reads files or imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.config import AXIS_ALIASES, ExperimentConfig, TrialSpec, make_spec, short_axis_name

COLUMN = "budget_check"   # the runs column: the factor of a budget-check run; null for every other run
PHASE = "budget_check"    # its runs' `phase`
RUNS_COLUMNS = ("trial_id", "status", "steps_to_target")  # what the selection reads


@dataclass(frozen=True)
class CheckedConfig:
    """One configuration the check trains again: its group, the line's other factors (short grid names,
    distance and seed excluded), the distance (its first failing one), how many of its headline runs
    reached the target within the budget (`reached` of `runs` with an outcome), and the check trials."""

    group: Any
    factors: dict[str, Any]
    distance: Any
    reached: int
    runs: int
    trials: tuple[TrialSpec, ...] = ()


@dataclass
class BudgetDecision:
    """What the finished runs say: the configurations to check, how many lines are still running, the
    most trials the check can add (one configuration per line × the check seeds), and `reserve`: every
    other check trial it could ever ask for (so that every process knows a check trial another one ran
    before its own plan asks for it, as adaptive seeds' reserve does)."""

    checked: list[CheckedConfig] = field(default_factory=list)
    lines: int = 0
    waiting: int = 0
    max_trials: int = 0
    reserve: list[TrialSpec] = field(default_factory=list)

    @property
    def trials(self) -> list[TrialSpec]:
        return [t for c in self.checked for t in c.trials]


# ----------------------------------------------------------------------------- pure helpers

def first_failing(counts: Mapping[Any, tuple[int, int]]) -> Any:
    """The smallest distance whose (reached, runs with an outcome) has fewer than half reached; None
    when none does (a distance with no outcome at all never fails)."""
    failing = [d for d, (k, n) in counts.items() if d is not None and n > 0 and 2 * k < n]
    return min(failing, key=float) if failing else None


def enabled(cfg: ExperimentConfig) -> bool:
    """Whether the config asks for a budget check."""
    return cfg.headline is not None and cfg.headline.budget_check is not None


def group_name(cfg: ExperimentConfig) -> str:
    """The headline's group column: headline.group, else arm when the grid has arms, else cell."""
    h = cfg.headline
    return (h.group if h is not None and h.group else None) or ("arm" if "arm" in cfg.grid else "cell")


def distance_key(cfg: ExperimentConfig) -> str | None:
    """The dotted setting the distance is: data.lag where it takes several values, else data.pad_size
    where it does (the report's `distance_column`); None when neither varies."""
    for key in ("data.lag", "data.pad_size"):
        if len(cfg.setting_values(key)) > 1:
            return key
    return None


def headline_seeds(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The headline's seeds (headline.seeds, else the grid's seeds in grid order)."""
    h = cfg.headline
    if h is not None and h.seeds is not None:
        return tuple(h.seeds)
    return tuple(cfg.grid.get("train.seed", [cfg.train.seed]))


def check_seeds(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The seeds the check trains: the first budget_check.seeds headline seeds (all of them without)."""
    seeds = headline_seeds(cfg)
    n = cfg.headline.budget_check.seeds if enabled(cfg) else None
    return seeds if n is None else seeds[:n]


def setting(spec: TrialSpec, key: str) -> Any:
    """A trial's value of `key`: a grid factor by its short name, a dotted setting, a short alias
    ('readout' -> model.readout); None when the trial has no such setting."""
    if key in spec.factors:
        return spec.factors[key]
    settings = spec.settings()
    for k in (key, AXIS_ALIASES.get(key, key)):
        if k in settings:
            return settings[k]
    return next((v for k, v in settings.items() if k.endswith("." + key)), None)


def _in_headline(cfg: ExperimentConfig, spec: TrialSpec, seeds: set[int]) -> bool:
    h = cfg.headline
    if spec.train.seed not in seeds or spec.tag:
        return False
    if h.d50 and str(setting(spec, group_name(cfg))) not in h.d50:
        return False
    return all(str(setting(spec, str(k))) == str(v) for k, v in h.where.items())


def lines(cfg: ExperimentConfig, specs: Sequence[TrialSpec]) -> dict[tuple, list[TrialSpec]]:
    """The headline's trials among `specs` (grid trials at the headline's where levels, groups and
    seeds) by line: (group, the other factors as (name, value) pairs), in grid order."""
    dist = distance_key(cfg)
    if not enabled(cfg) or dist is None:
        return {}
    group, skip = group_name(cfg), {short_axis_name(dist), "seed"}
    seeds = set(headline_seeds(cfg))
    out: dict[tuple, list[TrialSpec]] = {}
    for s in specs:
        if _in_headline(cfg, s, seeds):
            rest = tuple((k, v) for k, v in s.factors.items() if k not in skip and k != group)
            out.setdefault((setting(s, group), rest), []).append(s)
    return out


def check_spec(cfg: ExperimentConfig, spec: TrialSpec, factor: int) -> TrialSpec:
    """The budget-check trial of grid trial `spec`: its settings with train.epochs (and max_steps, if
    set) × factor and stop_at_target on, tagged so it has its own id; its factors stay the grid's."""
    values = {k: spec.factors[short_axis_name(k)] for k in cfg.grid}
    t = spec.train
    values.update({"train.epochs": t.epochs * factor, "train.stop_at_target": True,
                   "train.max_steps": None if t.max_steps is None else t.max_steps * factor})
    out = make_spec(cfg, spec.data_id, values, tag={"phase": PHASE, COLUMN: factor})
    return dataclasses.replace(out, factors=dict(spec.factors))


def reached_by_id(runs: pd.DataFrame) -> dict[str, bool | None]:
    """trial id -> reached the target (steps_to_target not null), None for a failed run (no outcome);
    every finished run of `runs` (columns RUNS_COLUMNS)."""
    out: dict[str, bool | None] = {}
    for tid, status, stt in zip(runs["trial_id"], runs["status"], runs["steps_to_target"]):
        out[tid] = None if status == "failed" else not pd.isna(stt)
    return out


def decide(cfg: ExperimentConfig, specs: Sequence[TrialSpec], runs: pd.DataFrame) -> BudgetDecision:
    """The configurations to check and their trials, given the grid's `specs` and the finished `runs`
    (columns RUNS_COLUMNS; rows of other trials ignored). Empty without headline.budget_check."""
    by_line = lines(cfg, specs)
    if not by_line:
        return BudgetDecision()
    factor, seeds = cfg.headline.budget_check.factor, set(check_seeds(cfg))
    dist = distance_key(cfg)
    reached = reached_by_id(runs)
    out = BudgetDecision(lines=len(by_line), max_trials=len(by_line) * len(seeds))
    for (group, rest), members in by_line.items():
        candidates = {s.trial_id: check_spec(cfg, s, factor) for s in members if s.train.seed in seeds}
        if not all(s.trial_id in reached for s in members):
            out.waiting += 1
            out.reserve += candidates.values()
            continue
        counts: dict[Any, tuple[int, int]] = {}
        for s in members:
            d, r = setting(s, dist), reached[s.trial_id]
            k, n = counts.get(d, (0, 0))
            counts[d] = (k + bool(r), n + (r is not None))
        d = first_failing(counts)
        chosen = {s.trial_id for s in members if d is not None and setting(s, dist) == d}
        out.reserve += [t for tid, t in candidates.items() if tid not in chosen]
        if d is not None:
            trials = tuple(t for tid, t in candidates.items() if tid in chosen)
            out.checked.append(CheckedConfig(group, dict(rest), d, *counts[d], trials))
    return out


def summary(decision: BudgetDecision) -> dict[str, Any]:
    """The decision as plain data (for the dry run and status)."""
    return {"lines": decision.lines, "waiting": decision.waiting, "max_trials": decision.max_trials,
            "checked": [{"group": c.group, "factors": c.factors, "distance": c.distance, "reached": c.reached,
                         "runs": c.runs, "trials": len(c.trials)} for c in decision.checked]}


def max_steps_factor(cfg: ExperimentConfig) -> int:
    """How many times the longest trial's steps a run of this config may take (1 without a check)."""
    return cfg.headline.budget_check.factor if enabled(cfg) else 1

