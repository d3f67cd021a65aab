"""A whole experiment (`ExperimentConfig`) and one trial of it (`TrialSpec`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.config.adaptive_config import AdaptiveConfig
from harness.config.arms import ARM
from harness.config.headline import Headline, headline_to_dict
from harness.config.sections import (
    SECTIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    flatten,
    short_axis_name,
)
from harness.config.study_config import StudyConfig


@dataclass
class ExperimentConfig:
    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    grid: dict[str, list] = field(default_factory=dict)  # canonical dotted key (or 'arm': arm names) -> values
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # grid.arm: name -> {dotted key -> value}
    study: StudyConfig | None = None
    adaptive: AdaptiveConfig | None = None  # seeds added where the outcome is undecided (harness.adaptive)
    headline: Headline | None = None  # the pre-registered headline estimands (harness.config.headline)
    source: str | None = None  # the file it came from

    def to_dict(self) -> dict:
        """The resolved config as plain data (what `config.yaml` in the results holds)."""
        out = {"name": self.name}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out["grid"] = {short_axis_name(k): list(v) for k, v in self.grid.items()}
        if ARM in self.grid:  # the arms in their place, each with its settings under short names
            out["grid"][ARM] = {name: {short_axis_name(k): v for k, v in s.items()} for name, s in self.arms.items()}
        if self.study is not None:
            st = dataclasses.asdict(self.study)
            st["params"] = {short_axis_name(k): {a: b for a, b in v.items() if b is not None and b is not False}
                            for k, v in st["params"].items()}
            st["per"] = [short_axis_name(k) for k in self.study.per]
            out["study"] = st
        if self.adaptive is not None:
            out["adaptive"] = self.adaptive.to_dict()
        if self.headline is not None:
            out["headline"] = headline_to_dict(self.headline)
        return out

    def fixed_value(self, key: str) -> Any:
        """The value the config's sections give a dotted data/model/train key ('model.cell')."""
        section, name = key.split(".", 1)
        return getattr(getattr(self, section), name)

    def setting_values(self, key: str) -> list:
        """Every value a dotted setting takes in the grid: its axis's values; with arms that set it,
        each arm's value (the fixed one for an arm that does not); else the fixed value alone."""
        if key in self.grid:
            return list(self.grid[key])
        if any(key in s for s in self.arms.values()):
            return list(dict.fromkeys(s.get(key, self.fixed_value(key)) for s in self.arms.values()))
        return [self.fixed_value(key)]


@dataclass(frozen=True)
class TrialSpec:
    """One trial: every setting resolved. A trial is a pure function of this (plus a device)."""

    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    factors: dict[str, Any]  # short axis name -> value, for every grid axis (an arm: 'arm' and its settings)
    data_id: str              # identity of the data set (content hash)
    trial_id: str             # stable hash of the resolved settings and the data identity
    tag: dict[str, Any] = field(default_factory=dict)  # phase, study and study_trial of a study trial

    def settings(self) -> dict[str, Any]:
        """Flat dotted-key dict of every resolved data/model/train setting."""
        return flatten({"data": dataclasses.asdict(self.data), "model": dataclasses.asdict(self.model),
                         "train": dataclasses.asdict(self.train)})
