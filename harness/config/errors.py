"""The error a wrong config raises, and where in the YAML file a key was written."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is wrong. The message names the key, the value and what is allowed."""


class Where:
    """Maps dotted keys to ' (file, line N)' for error messages, from the YAML node marks."""

    def __init__(self, source: str | None, lines: dict[str, int | str] | None = None):
        self.source = source
        self.lines = lines or {}

    def __call__(self, key: str) -> str:
        if self.source is None:
            return ""
        line = self.lines.get(key)
        parts = key.split(".")
        for i in range(len(parts) - 1, 0, -1):  # a value inside a section given whole by --set
            outer = self.lines.get(".".join(parts[:i]))
            if line is None and isinstance(outer, str):
                line = outer
        if isinstance(line, str):  # e.g. "--set": the value came from the command line
            return f" ({line})"
        return f" ({self.source}, line {line})" if line else f" ({self.source})"


def did_you_mean(name: str, allowed: list[str] | tuple[str, ...]) -> str:
    """'; did you mean 'hidden_size'?' when `name` is close to one allowed name, else ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def reject_unknown_keys(raw: dict, allowed: list[str] | tuple[str, ...], section: str, where: Where) -> None:
    """ConfigError for the first key of `raw` (the mapping under `section`) not in `allowed`,
    naming it with its file and line, the allowed keys, and the closest one."""
    for k in raw:
        if k not in allowed:
            key = f"{section}.{k}"
            raise ConfigError(f"unknown config key '{key}'{where(key)}; allowed keys under '{section}': "
                              f"{', '.join(map(str, allowed))}{did_you_mean(k, allowed)}")

