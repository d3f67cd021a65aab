"""The error a wrong config raises, and where in the YAML file a key was written."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is wrong. The message names the key, the value and what is allowed."""


class Where:
    """Maps dotted keys to ' (file, line N)' for error messages, from the YAML node marks."""

    def __init__(self, source: str | None, lines: dict[str, int] | None = None):
        self.source = source
        self.lines = lines or {}

    def __call__(self, key: str) -> str:
        if self.source is None:
            return ""
        line = self.lines.get(key)
        return f" ({self.source}, line {line})" if line else f" ({self.source})"
