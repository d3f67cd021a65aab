"""Reading a config file: YAML with the line of every key (for error messages), and `--set
key=value` overrides applied before validation, so they are checked like the file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import ConfigError
from harness.config.experiment import ExperimentConfig
from harness.config.validate import config_from_dict


def parse_override(text: str) -> tuple[str, Any]:
    """'model.hidden_size=64' -> ('model.hidden_size', 64). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set model.hidden_size=64")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    return key, yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw mapping with each `key=value` override set (grid axes too)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        node = raw
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: '{p}' is not a section")
        node[parts[-1]] = value
    return raw


def yaml_lines(text: str) -> dict[str, int]:
    """dotted key -> 1-based line of the key in the YAML text ({} when it does not parse)."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a YAML config file. Raises `ConfigError` with file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    lines = yaml_lines(text)
    if overrides:
        raw = apply_overrides(raw, overrides)
        for text_ in overrides:
            lines.pop(parse_override(text_)[0], None)
    return config_from_dict(raw, source=str(path), lines=lines)
