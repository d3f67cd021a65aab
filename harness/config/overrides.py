"""Reading a config file: YAML with the line of every key (for error messages), and `--set
key=value` overrides (or `--set ~key`, which removes a key or grid axis) applied before validation,
so they are checked like the file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from harness.config.arms import ARM
from harness.config.errors import ConfigError, did_you_mean
from harness.config.experiment import ExperimentConfig
from harness.config.sections import AXIS_ALIASES, GRIDDABLE_SECTIONS, SECTIONS
from harness.config.validate import config_from_dict
from harness.config.yamlload import load_yaml

_REMOVE = object()  # the value of a `~key` override


def parse_override(text: str) -> tuple[str, Any]:
    """'model.hidden_size=64' -> ('model.hidden_size', 64); values are parsed as YAML (aliases
    bounded, duplicate keys refused). '~grid.cell' -> ('grid.cell', a removal marker)."""
    if text.startswith("~"):
        key = text[1:].strip()
        if not key or "=" in key:
            raise ConfigError(f"--set {text!r}: expected ~key, e.g. --set ~grid.layernorm")
        return key, _REMOVE
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value (or ~key to remove one), e.g. "
                          f"--set model.hidden_size=64")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key {key!r} is not a dotted key like model.hidden_size")
    if not value.strip():
        return key, None
    return key, load_yaml(value, f"--set {text!r}")[0]


def split_key(key: str) -> list[str]:
    """The path of a dotted override key. A grid axis is one name however many dots it has
    ('grid.model.forget_bias' -> ['grid', 'model.forget_bias']); so is a searched setting under
    study.params ('study.params.model.lr.low' -> ['study', 'params', 'model.lr', 'low']) and an
    arm's setting ('grid.arm.lstm.model.forget_bias' -> ['grid', 'arm', 'lstm', 'model.forget_bias'])."""
    parts = key.split(".")
    if parts[:2] == ["grid", ARM] and len(parts) > 2:
        return ["grid", ARM, *_arm_path(parts[2:])]
    if parts[0] == "grid" and len(parts) > 2:
        return ["grid", ".".join(parts[1:])]
    if parts[:2] == ["study", "params"] and len(parts) > 3 and parts[2] in SECTIONS:
        return ["study", "params", ".".join(parts[2:4]), *parts[4:]]
    return parts


def _arm_path(parts: list[str]) -> list[str]:
    """[arm name] or [arm name, setting] of what follows 'grid.arm.': the setting is the last part when
    it is a short axis name, the last two when they are a dotted data/model/train key; the rest (dots
    included) is the arm's name."""
    if len(parts) > 2 and parts[-2] in GRIDDABLE_SECTIONS:
        return [".".join(parts[:-2]), ".".join(parts[-2:])]
    if len(parts) > 1 and parts[-1] in AXIS_ALIASES:
        return [".".join(parts[:-1]), parts[-1]]
    return [".".join(parts)]


def _slot(node: dict, name: str, path: list[str]) -> str:
    """The key in `node` that `name` stands for: under grid, study.params or an arm an axis written as
    its alias or its dotted key is the same axis (the file's spelling is kept)."""
    if path in (["grid"], ["study", "params"]) or (len(path) == 3 and path[:2] == ["grid", ARM]):
        canon = AXIS_ALIASES.get(name, name)
        return next((k for k in node if AXIS_ALIASES.get(str(k), str(k)) == canon), name)
    return name


def _apply_one(raw: dict, text: str) -> None:
    key, value = parse_override(text)
    parts = split_key(key)
    node = raw
    for i, p in enumerate(parts[:-1]):
        p = _slot(node, p, parts[:i])
        if node.get(p) is None:
            if value is _REMOVE:
                raise ConfigError(f"--set {text!r}: the config has no key '{key}' to remove")
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text!r}: '{'.'.join(parts[:i + 1])}' is not a section")
    last = _slot(node, parts[-1], parts[:-1])
    if value is not _REMOVE:
        node[last] = value
    elif last in node:
        del node[last]
    else:
        raise ConfigError(f"--set {text!r}: the config has no key '{key}' to remove"
                          f"{did_you_mean(parts[-1], [str(k) for k in node])}")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw mapping with each `key=value` override set (grid axes too) and
    each `~key` removed."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        _apply_one(raw, text)
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a YAML config file. Raises `ConfigError` with file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    raw, lines = load_yaml(text, f"config file {path}")
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level, got "
                              f"{type(raw).__name__}")
        raw = apply_overrides(raw, overrides)
        for text_ in overrides:
            key = parse_override(text_)[0]
            lines = {k: v for k, v in lines.items() if k != key and not k.startswith(key + ".")}
            lines[key] = f"--set {text_!r}"
    return config_from_dict(raw, source=str(path), lines=lines)
