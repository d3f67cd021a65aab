"""Plugins: cells, read-outs and data set kinds from other packages, through entry points.

Three entry-point groups, one per kind of plugin (what each object must be: README "Plugins"):

- `harness.cells`: a factory `(input_size, hidden_size, bidirectional, layernorm) -> nn.Module`
  whose module maps (B, T, input_size) to (B, T, D*hidden_size) (or a tuple whose first element is
  that, as `nn.GRU` returns), D = 2 when bidirectional; `model.cell` names it.
- `harness.readouts`: a function `(out (B, T, D*H), lengths (B,), directions) -> (B, D*H)`;
  `model.readout` names it.
- `harness.datasets`: a function `(cfg: DataConfig, cache_dir: Path) -> Path` returning a
  THUCNews-format folder, written (under cache_dir) on first use; `data.kind` names it.

The built-in (registered) cells and read-outs are the entries of `harness.registry` (registered in
`harness.names`), not entry points: they are always available, also from a checkout that was never
installed, and come first; the names allowed are the registered ones merged with the entry points
found. A plugin cannot replace a registered name: `load` looks in the registry first, so a built-in
name always means the built-in, also where an older install of this package still declares the
built-ins as entry points. The built-in data set kinds (`harness.names.DATA_KINDS`) stay declared in
pyproject.toml's `harness.datasets` group. Torch-free and lazy: the config is validated against
entry-point *names* (no plugin is imported then); `load` imports a plugin when a model or data set is
built.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from harness.names import CELLS, DATA_KINDS, READOUTS, cell_entry, readout_entry

CELL_GROUP, READOUT_GROUP, DATASET_GROUP = "harness.cells", "harness.readouts", "harness.datasets"
# The names each group has without any entry point: the registry's (live) and the built-in data kinds.
BUILTIN: dict[str, Sequence[str]] = {CELL_GROUP: CELLS, READOUT_GROUP: READOUTS, DATASET_GROUP: DATA_KINDS}
_REGISTRY = {CELL_GROUP: cell_entry, READOUT_GROUP: readout_entry}

__all__ = ["BUILTIN", "CELL_GROUP", "DATASET_GROUP", "READOUT_GROUP", "PluginError", "allowed_names", "load",
           "plugin_names"]


class PluginError(RuntimeError):
    """A plugin named by the config could not be found or imported."""


def _entry_points(group: str) -> tuple[metadata.EntryPoint, ...]:
    return _scan(group, tuple(sys.path))


@functools.lru_cache(maxsize=32)
def _scan(group: str, path: tuple[str, ...]) -> tuple[metadata.EntryPoint, ...]:
    """The group's entry points (cached per sys.path: a test or a session may add a folder)."""
    return tuple(metadata.entry_points(group=group))


def plugin_names(group: str) -> tuple[str, ...]:
    """Names registered in entry-point `group` by installed packages, built-in and registered names
    left out, sorted. Nothing is imported."""
    builtin = set(BUILTIN[group])
    return tuple(sorted({ep.name for ep in _entry_points(group)} - builtin))


def allowed_names(group: str) -> tuple[str, ...]:
    """The built-in (registered) names, in their order, then the plugins' names."""
    return tuple(BUILTIN[group]) + plugin_names(group)


def load(group: str, name: str) -> Any:
    """Import and return the object registered as `name` in `group`: a registry entry's (cells and
    read-outs, whatever entry points say), else a plugin's entry point (PluginError when no installed
    package registers it or it fails to import)."""
    entry = _REGISTRY[group](name) if group in _REGISTRY else None
    if entry is not None:
        return entry.load()
    eps = [ep for ep in _entry_points(group) if ep.name == name]
    if not eps:
        raise PluginError(f"no installed package registers {name!r} in the entry-point group {group!r}; "
                          f"known: {', '.join(allowed_names(group))}")
    ep = eps[0]
    try:
        return ep.load()
    except Exception as e:  # an import error or a missing attribute in someone else's package
        raise PluginError(f"the plugin {name!r} ({group} = {ep.value}) could not be loaded: "
                          f"{type(e).__name__}: {e}") from e
