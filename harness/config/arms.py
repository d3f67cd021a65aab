"""`grid.arm`: named bundles of settings as one grid axis.

    grid:
      arm:
        rnn: {cell: rnn}
        lstm-fb0: {cell: lstm, model.forget_bias: 0}   # the reference code's LSTM
        lstm: {cell: lstm, model.forget_bias: 1}        # the usual LSTM
      lag: [0, 16, 32, 64]

The arm is one axis of the product, at the place it has in the YAML; a trial of arm NAME gets that
arm's settings on top of the fixed ones. In `ExperimentConfig`, `grid["arm"]` lists the arm names and
`arms` maps each name to its settings (canonical dotted key -> checked value). A setting key is any
key a grid axis may set (short or dotted name, checked like an axis value), except the seed; a key
may not be both in an arm and an axis of its own; no two arms may resolve to the same settings.
"""

from __future__ import annotations

import re
from typing import Any

from harness.config.errors import ConfigError, Where
from harness.config.fields import canonical_axis, check_value, lookup_field
from harness.config.sections import short_axis_name

ARM = "arm"  # the axis's name under grid:, in trial factors and in the runs table
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# An arm's name goes into file names (TensorBoard's run folders) and trackers' run names and tags:
# at most this many characters, none of them a path's '/' (and not '.' or '..').
ARM_NAME_MAX = 64
_SEED = "train.seed"


def build_arms(raw: Any, where: Where) -> dict[str, dict[str, Any]]:
    """`grid.arm` as arm name -> {canonical dotted key -> checked value}, in the file's order."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'grid.arm': expected a mapping of arm name -> {{setting: value}}, e.g. "
                          f"{{rnn: {{cell: rnn}}, lstm: {{cell: lstm}}}}, got {raw!r}{where('grid.arm')}")
    if not raw:
        raise ConfigError(f"config key 'grid.arm' is empty{where('grid.arm')}; give at least one arm, e.g. "
                          f"{{rnn: {{cell: rnn}}}}")
    return {_arm_name(name, where): _arm_settings(str(name), settings, where) for name, settings in raw.items()}


def _arm_name(name: Any, where: Where) -> str:
    """An arm's name as a file name and a tracker accept it: 1 to ARM_NAME_MAX of [A-Za-z0-9._-],
    not '.' or '..'."""
    ok = isinstance(name, str) and _NAME.fullmatch(name) and len(name) <= ARM_NAME_MAX and name not in (".", "..")
    if not ok:
        shown = repr(name) if len(repr(name)) <= 80 else f"{repr(name)[:60]}... ({len(str(name))} characters)"
        raise ConfigError(f"config key 'grid.arm': arm name {shown} is not allowed; allowed: a non-empty name of "
                          f"at most {ARM_NAME_MAX} letters, digits, '-', '_' and '.' (not '.' or '..')"
                          f"{where('grid.arm')}")
    return name


def _arm_settings(name: str, raw: Any, where: Where) -> dict[str, Any]:
    """One arm's settings, each key resolved to its dotted name and its value checked."""
    key = f"grid.arm.{name}"
    if not isinstance(raw, dict):
        hint = ("; one setting of an arm is grid.arm.NAME.KEY, KEY a short axis name or a dotted key such as "
                "model.forget_bias" if "." in name else "")
        raise ConfigError(f"config key '{key}': expected a mapping of settings {{key: value}}, e.g. "
                          f"{{cell: lstm, model.forget_bias: 1}}, got {raw!r}{where(key)}{hint}")
    out: dict[str, Any] = {}
    for k, value in raw.items():
        skey = f"{key}.{k}"
        dotted = canonical_axis(str(k), where, prefix=f"{key}.")
        if dotted == _SEED:
            raise ConfigError(f"config key '{skey}': an arm cannot set the seed; seeds are an axis of their own "
                              f"(grid.seed, or adaptive:){where(skey)}")
        if dotted in out:
            raise ConfigError(f"config key '{skey}': {key} sets '{dotted}' twice (as '{short_axis_name(dotted)}' "
                              f"and '{dotted}'){where(skey)}")
        tp, meta = lookup_field(dotted)
        out[dotted] = check_value(skey, value, tp, meta, where)
    return out


def check_arm_axes(arms: dict[str, dict[str, Any]], axes: dict[str, str], where: Where) -> None:
    """No key both in an arm and an axis of its own. `axes`: canonical key -> the axis as written."""
    for name, settings in arms.items():
        for key in settings:
            if key in axes:
                raise ConfigError(f"config key 'grid.arm.{name}': grid.arm.{name} sets '{short_axis_name(key)}', "
                                  f"which is also the grid axis grid.{axes[key]}; set it in the arms or as an "
                                  f"axis, not both{where(f'grid.arm.{name}')}")


def check_distinct_arms(arms: dict[str, dict[str, Any]], fixed: dict[str, Any], where: Where) -> None:
    """No two arms that resolve to the same settings (`fixed`: dotted key -> the value an arm that
    does not set the key gets)."""
    keys = sorted({k for settings in arms.values() for k in settings})
    seen: dict[tuple, str] = {}
    for name, settings in arms.items():
        resolved = tuple(repr(settings.get(k, fixed[k])) for k in keys)
        if resolved in seen:
            shown = ", ".join(f"{short_axis_name(k)}: {settings.get(k, fixed[k])}" for k in keys) or "no settings"
            raise ConfigError(f"config key 'grid.arm': arms '{seen[resolved]}' and '{name}' resolve to the same "
                              f"settings ({shown}); give each arm settings of its own{where('grid.arm')}")
        seen[resolved] = name


def arm_keys(arms: dict[str, dict[str, Any]]) -> list[str]:
    """The dotted keys any arm sets, in order of first appearance."""
    return list(dict.fromkeys(k for settings in arms.values() for k in settings))
