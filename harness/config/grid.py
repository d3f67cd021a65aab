"""Grid expansion: the config's grid (or one sampled setting) as `TrialSpec`s with stable ids."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from typing import Any

from harness.config.arms import ARM
from harness.config.experiment import ExperimentConfig, TrialSpec
from harness.config.sections import ADDED_LATER, EXECUTION_KEYS, GRIDDABLE_SECTIONS, short_axis_name


def stable_hash(obj: Any, n: int = 12) -> str:
    """Hex digest of the canonical JSON of `obj` (sorted keys): stable across runs and machines."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _set_dotted(sections: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    obj = sections[parts[0]]
    for p in parts[1:-1]:
        obj = getattr(obj, p)
    setattr(obj, parts[-1], value)


def _with_arm(cfg: ExperimentConfig, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dotted key -> value to set, the trial's factors) for grid `values`: an 'arm' value stands for
    the arm's settings, and the factors hold `arm: NAME` followed by those settings, all under their
    short axis names, in the grid's order."""
    settings: dict[str, Any] = {}
    factors: dict[str, Any] = {}
    for key, value in values.items():
        if key == ARM:
            factors[ARM] = value
            for k, v in cfg.arms[value].items():
                settings[k] = factors[short_axis_name(k)] = v
        else:
            settings[key] = factors[short_axis_name(key)] = value
    return settings, factors


def make_spec(cfg: ExperimentConfig, data_id: str, values: dict[str, Any], tag: dict[str, Any] | None = None
              ) -> TrialSpec:
    """The `TrialSpec` with the config's settings and `values` (dotted key -> value; 'arm' -> an arm
    name of grid.arm, whose settings are set) set on top. `tag` (e.g. the study and trial number of a
    sampled trial) joins the trial's identity, and so does the arm's name."""
    settings, factors = _with_arm(cfg, values)
    sections = {s: copy.deepcopy(getattr(cfg, s)) for s in GRIDDABLE_SECTIONS}
    for key, value in settings.items():
        _set_dotted(sections, key, value)
    if sections["train"].cuda_graph:  # a CUDA graph replays static shapes: no partial last batch
        sections["train"].drop_last = True
    identity: dict[str, Any] = {s: dataclasses.asdict(sections[s]) for s in GRIDDABLE_SECTIONS}
    # Where the data came from and the synthetic settings are captured by data_id.
    for k in ("dir", "synth"):
        identity["data"].pop(k)
    for key, absent in ADDED_LATER.items():  # trials from before the key existed keep their ids
        section, name = key.split(".")
        if identity[section][name] == absent:
            identity[section].pop(name)
    for key in EXECUTION_KEYS:  # how a trial runs (e.g. train.checkpoint_every), not what it computes
        section, name = key.split(".")
        identity[section].pop(name, None)
    identity["data_id"] = data_id
    if tag:
        identity["tag"] = tag
    if ARM in values:  # only with arms: trials without keep their ids; renaming an arm makes new trials
        identity[ARM] = values[ARM]
    return TrialSpec(name=cfg.name, data=sections["data"], model=sections["model"], train=sections["train"],
                     factors=factors, data_id=data_id, trial_id=stable_hash(identity), tag=dict(tag or {}))


def expand_grid(cfg: ExperimentConfig, data_id: str) -> list[TrialSpec]:
    """One `TrialSpec` per combination of the grid axes (seed and arm included), in a stable order."""
    axes = list(cfg.grid)
    return [make_spec(cfg, data_id, dict(zip(axes, combo)))
            for combo in itertools.product(*(cfg.grid[a] for a in axes))]
