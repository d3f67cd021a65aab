"""Experiment config: YAML → typed dataclasses → validated → expanded into `TrialSpec`s.

Every key is checked before anything trains: an unknown key, a wrong type, a value outside its
allowed set or range, or an empty grid axis raises `ConfigError`, whose message names the dotted
key, the bad value, what is allowed and (when it came from a file) the file and line.

Modules: `sections` (the section dataclasses), `study_config` (the `study:` section),
`experiment` (`ExperimentConfig`, `TrialSpec`), `fields` (checking one value), `validate` and
`validate_study` (a whole mapping), `adaptive_config` (the `adaptive:` section), `arms`
(`grid.arm`: named bundles of settings as one axis), `overrides` (files and `--set`), `grid` (trial
specs and ids).
Everything other modules use is importable from `harness.config`.
"""

from __future__ import annotations

from typing import Any

from harness.config.adaptive_config import AdaptiveConfig
from harness.config.arms import ARM, arm_keys
from harness.config.errors import ConfigError
from harness.config.experiment import ExperimentConfig, TrialSpec
from harness.config.fields import lookup_field
from harness.config.grid import expand_grid, make_spec, stable_hash
from harness.config.overrides import apply_overrides, load_config, parse_override
from harness.config.sections import (
    AXIS_ALIASES,
    EXECUTION_KEYS,
    GRIDDABLE_SECTIONS,
    NOT_GRIDDABLE,
    SECTIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    SynthConfig,
    TrainConfig,
    flatten,
    short_axis_name,
)
from harness.config.study_config import (
    METRICS,
    PRUNER_OPTIONS,
    PRUNERS,
    SAMPLER_OPTIONS,
    SAMPLERS,
    Objective,
    ParamSpec,
    StudyConfig,
)
from harness.config.validate import config_from_dict
from harness.names import CELLS, LAYERNORMS, READOUTS

_lookup_field = lookup_field  # the name the runner imports

__all__ = [
    "ARM", "AXIS_ALIASES", "CELLS", "GRIDDABLE_SECTIONS", "LAYERNORMS", "METRICS", "NOT_GRIDDABLE", "PRUNERS",
    "PRUNER_OPTIONS", "READOUTS", "SAMPLERS", "SAMPLER_OPTIONS", "SCHEMA_VERSION", "SECTIONS", "ConfigError",
    "DataConfig", "ExperimentConfig", "ModelConfig", "Objective", "ParamSpec", "RunConfig", "StudyConfig",
    "SynthConfig", "TrainConfig", "TrialSpec", "apply_overrides", "config_from_dict", "expand_grid", "flatten",
    "load_config", "lookup_field", "make_spec", "parse_override", "short_axis_name", "stable_hash",
    "AdaptiveConfig", "arm_keys", "EXECUTION_KEYS",
]


def __getattr__(name: str) -> Any:
    # SCHEMA_VERSION now lives with the table schemas; imported lazily so the config stays free of pyarrow.
    if name == "SCHEMA_VERSION":
        from harness.schema import SCHEMA_VERSION  # pyarrow: only for this name

        return SCHEMA_VERSION
    raise AttributeError(f"module 'harness.config' has no attribute {name!r}")
