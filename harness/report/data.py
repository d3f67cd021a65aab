"""`ReportData`: everything the report shows, computed once from a results directory (`harness.report.compute`).

Its own module so that the report's parts (sections, catalogue, targets, …) take it from here, below them,
and the package's face (`harness.report`), which imports the parts, is never imported back by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import ExperimentConfig
from harness.report.effects import EffectRow
from harness.report.outcomes import FrontierFit
from harness.report.question import Question

__all__ = ["ReportData"]


@dataclass
class ReportData:
    """Everything the report shows, computed once from a results directory."""

    dir: Path
    cfg: ExperimentConfig | None
    config_text: str | None
    tables: dict[str, pd.DataFrame]
    runs: pd.DataFrame
    keys: list[str]
    varying: list[str]
    summary: pd.DataFrame
    effects: list[EffectRow]
    chance: float | None
    target: float | None
    planned: int | None
    max_seeds: int
    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)   # runs + reached, time, last_step
    success: pd.DataFrame = field(default_factory=pd.DataFrame)    # per configuration: k of n, median time
    fits: list[FrontierFit] = field(default_factory=list)        # D50 per cell × layernorm (× other factors)
    mixed: pd.DataFrame = field(default_factory=pd.DataFrame)      # configurations run on several machine kinds
    adaptive: dict | None = None                                   # DIR/adaptive.json, when the runner wrote it
    group: str = "cell"             # the factor that names a group (colour, legend, sentences): cell, or arm
    arms: list[str] = field(default_factory=list)                  # grid.arm's names, in the config's order
    question: Question = field(default_factory=Question)           # what the results vary (`question`)
    budget_checks: pd.DataFrame = field(default_factory=pd.DataFrame)  # outcomes of headline.budget_check's runs
    target_frontier: Any = None     # `targets.TargetFrontier`: D50 at every target (computed on first use)
