"""Checking one value against the field it sets: its annotated type, allowed values and range; and
finding the field a dotted key (or a grid axis) names."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import unicodedata
from typing import Any

from harness.config.errors import ConfigError, Where, did_you_mean
from harness.config.sections import AXIS_ALIASES, GRIDDABLE_SECTIONS, NOT_GRIDDABLE, SECTIONS
from harness.plugins import plugin_names


def base_type(tp: Any) -> Any:
    """`int | None` -> int; any other annotation as it is."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _coerce(key: str, value: Any, tp: Any, where: Where) -> Any:
    """`value` as type `tp` (bool, int, float or str); a float may be given as an int or a string."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}{where(key)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}{where(key)}")
    elif tp is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}{where(key)}")
        value = check_finite(key, value, where)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}{where(key)}")
    return value


def check_finite(key: str, value: int | float, where: Where) -> float:
    """`value` as a float; NaN, ±inf and integers too large for a float are refused."""
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}{where(key)}")
    return out


NAME_MAX_BYTES = 255  # a file name's limit on common file systems


def check_name(name: Any, where: Where) -> str:
    """The experiment `name`: one safe path component (it names results/<name>/): a non-empty
    string, not '.' or '..', without '/', '\\', NUL or other control characters, at most 255 bytes
    in UTF-8, and without leading or trailing spaces."""
    if not isinstance(name, str) or not name.strip():
        problem = "expected a non-empty string"
    elif name in (".", ".."):
        problem = "'.' and '..' are not names"
    elif any(c in "/\\" for c in name):
        problem = "it must be one path component, without '/' or '\\'"
    elif any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in name):
        problem = "control characters (NUL, newline, tab, ...) and line separators are not allowed"
    elif len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        problem = f"it is longer than {NAME_MAX_BYTES} bytes in UTF-8"
    elif name != name.strip():
        problem = "leading or trailing spaces are not allowed"
    else:
        return name
    shown = name if not isinstance(name, str) or len(name) <= 80 else name[:80] + "..."
    raise ConfigError(f"config key 'name': {problem}, got {shown!r}{where('name')}")


def _check_allowed(key: str, value: Any, meta: dict, where: Where) -> None:
    """The metadata's `choices` (with the names its `plugins` entry-point group adds), and its
    range `min` (or above it, with `exclusive_min`) to `max`."""
    choices = tuple(meta.get("choices") or ())
    if choices and meta.get("plugins"):
        choices += plugin_names(meta["plugins"])
    if choices and value not in choices:
        raise ConfigError(f"config key '{key}': {value!r} is not allowed; allowed: "
                          f"{', '.join(map(str, choices))}{where(key)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("exclusive_min") and value == lo)):
        op = ">" if meta.get("exclusive_min") else ">="
        raise ConfigError(f"config key '{key}': {value!r} is out of range; must be {op} {lo}{where(key)}")
    if hi is not None and value > hi:
        raise ConfigError(f"config key '{key}': {value!r} is out of range; must be <= {hi}{where(key)}")


def check_value(key: str, value: Any, tp: Any, meta: dict, where: Where) -> Any:
    """Coerce and check one scalar value against its annotated type and metadata."""
    if value is None and _is_optional(tp):
        return None
    if meta.get("parse") is not None:  # a field with its own check (e.g. run.fuse: off | auto | K)
        return meta["parse"](key, value, where)
    value = _coerce(key, value, base_type(tp), where)
    _check_allowed(key, value, meta, where)
    return value


def field_info(cls: type) -> dict[str, tuple[Any, dict]]:
    """Field name -> (annotated type, metadata) of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(cls)}


def lookup_field(dotted: str) -> tuple[Any, dict]:
    """Type and metadata of a dotted key like 'model.hidden_size'; KeyError if unknown."""
    parts = dotted.split(".")
    cls: Any = SECTIONS.get(parts[0])
    if cls is None or len(parts) < 2:
        raise KeyError(dotted)
    for i, part in enumerate(parts[1:], start=1):
        info = field_info(cls)
        if part not in info:
            raise KeyError(dotted)
        tp, meta = info[part]
        if i == len(parts) - 1:
            return tp, meta
        if not dataclasses.is_dataclass(tp):
            raise KeyError(dotted)
        cls = tp
    raise KeyError(dotted)


def _suggest_axis(name: str) -> str:
    """A 'did you mean' for a misspelt axis: among the aliases and the dotted keys that can vary."""
    keys = [*AXIS_ALIASES]
    for section in GRIDDABLE_SECTIONS:
        keys += [f"{section}.{f}" for f, (tp, _) in field_info(SECTIONS[section]).items()
                 if not dataclasses.is_dataclass(tp) and f"{section}.{f}" not in NOT_GRIDDABLE]
    return did_you_mean(name, keys)


def canonical_axis(name: str, where: Where, prefix: str = "grid.") -> str:
    """The dotted key a grid axis (or searched setting) names: a short alias or a dotted
    data/model/train key of a setting that may vary between trials."""
    key = AXIS_ALIASES.get(name, name)
    what = "grid axis" if prefix == "grid." else "config key"
    try:
        tp, _ = lookup_field(key)
    except KeyError:
        raise ConfigError(
            f"unknown {what} '{prefix}{name}'{where(prefix + name)}; allowed: "
            f"{', '.join(AXIS_ALIASES)} or any dotted data/model/train key "
            f"(e.g. model.readout, train.grad_clip){_suggest_axis(name)}") from None
    inside = any(key.startswith(k + ".") for k in NOT_GRIDDABLE)  # data.synth.signal: one data set per run
    if key.split(".")[0] not in GRIDDABLE_SECTIONS or key in NOT_GRIDDABLE or inside or dataclasses.is_dataclass(tp):
        raise ConfigError(f"{what} '{prefix}{name}' cannot vary{where(prefix + name)}: "
                          f"data identity and run settings are fixed per experiment")
    return key
