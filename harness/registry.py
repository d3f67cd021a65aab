"""The registry of recurrent cells and read-outs: one entry each, and everything else follows from it.

A cell is its module (a factory `(input_size, hidden_size, bidirectional, layernorm) -> nn.Module`,
the contract of `harness.models.CellFactory`) plus one `register_cell` call; a read-out is its function
`(out, lengths, directions, starts=None) -> (B, D·H)` plus one `register_readout` call. From the entries
follow: the names the config accepts (`harness.names.CELLS` / `READOUTS`, live views of this
registry), the implementations a model is built from (`harness.models.CELL_FACTORIES` / `READOUTS`,
imported lazily from the entry's "module:attr"), the order tables and figures show cells in, a cell's
figure colour (`harness.report.figures.CELL_COLORS`) and how a sentence names it (`label`:
`harness.report.outcomes.cell_name`), the position the gradient-reach probe reads for a read-out
(`harness.models.read_positions`), and whether a fused form exists (`fused_cell` / `fused_readout`;
`harness.models.fused.GATES`). The built-ins are registered in `harness.names`, which imports this
module (never the other way round): code that needs the built-ins imports `harness.names`.

Torch-free and lazy: an entry names its implementation as "module:attr", imported only when a model
is built. Registrations are per process: register in a module the harness imports (the built-ins in
`harness.names`) for every worker to know the name; `registered_cell` / `registered_readout` add one
for the length of a block (tests). Names from other packages' entry points (`harness.plugins`) come
after these and never replace one.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

__all__ = ["CELL_NAMES", "READOUT_NAMES", "READS", "CellEntry", "ReadoutEntry", "RegistryNames", "RegistryView",
           "cell_entries", "cell_entry", "fused_cell", "fused_readout", "load_target", "readout_entries",
           "readout_entry", "register_cell", "register_readout", "registered_cell", "registered_readout",
           "unregister_cell", "unregister_readout"]

# What the gradient-reach probe takes as a read-out's read position (the forward direction's):
# the last position T-1 (padding included), or each text's last token.
READS = ("last_position", "last_token")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def load_target(target: str) -> Any:
    """Import "module:attr" (attr may be dotted) and return the object."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class CellEntry:
    """A recurrent cell.

    name: what `model.cell` says. label: how a sentence names it ("the LSTM"). color: its colour in the
    figures (any matplotlib colour). factory: "module:attr" of its `CellFactory`. fused: the fused
    trainer (`harness.models.fused`) has a form of it, with `gates` H-sized gate blocks per step."""

    name: str
    label: str
    color: str
    factory: str
    fused: bool = False
    gates: int | None = None

    def load(self) -> Callable[..., Any]:
        """The factory (its module imported now)."""
        return load_target(self.factory)


@dataclass(frozen=True)
class ReadoutEntry:
    """A read-out: what the classifier reads from the last layer's outputs.

    name: what `model.readout` says. function: "module:attr" of `(out, lengths, directions, starts=None)
    -> (B, D·H)`. reads: the position the gradient-reach probe measures from (`READS`): "last_position"
    (T-1) or "last_token" (each text's last token). fused: the fused model may use it (it calls the
    function once on the K trials' texts flattened into one batch: each text's result must depend on
    that text alone, as the built-ins' do)."""

    name: str
    function: str
    reads: str = "last_token"
    fused: bool = False

    def load(self) -> Callable[..., Any]:
        """The function (its module imported now)."""
        return load_target(self.function)


_CELLS: dict[str, CellEntry] = {}
_READOUTS: dict[str, ReadoutEntry] = {}


def _check_new(kind: str, registry: Mapping[str, object], name: str, target: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a {kind} name is a letter, then letters, digits, '_', '.' or '-'; got {name!r}")
    if name in registry:
        raise ValueError(f"the {kind} {name!r} is already registered")
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise ValueError(f"{kind} {name!r}: {what} must be 'module:attr', got {target!r}")


def register_cell(name: str, *, label: str, color: str, factory: str, fused: bool = False,
                  gates: int | None = None) -> CellEntry:
    """Add a cell (after those registered before it: the order tables and figures show). Nothing is
    imported. ValueError for a taken or malformed name, or a fused cell without its gate count."""
    _check_new("cell", _CELLS, name, factory, "factory")
    if not label or not color:
        raise ValueError(f"cell {name!r}: give a label (how a sentence names it) and a figure colour")
    if fused and (not isinstance(gates, int) or gates < 1):
        raise ValueError(f"cell {name!r}: a fused cell needs its gate count (gates >= 1), got {gates!r}")
    entry = CellEntry(name, label, color, factory, bool(fused), gates if fused else None)
    _CELLS[name] = entry
    return entry


def register_readout(name: str, *, function: str, reads: str = "last_token", fused: bool = False) -> ReadoutEntry:
    """Add a read-out. Nothing is imported. ValueError for a taken or malformed name or `reads`."""
    _check_new("read-out", _READOUTS, name, function, "function")
    if reads not in READS:
        raise ValueError(f"read-out {name!r}: reads must be one of {', '.join(READS)}, got {reads!r}")
    entry = ReadoutEntry(name, function, reads, bool(fused))
    _READOUTS[name] = entry
    return entry


def unregister_cell(name: str) -> CellEntry:
    """Remove a cell's entry (KeyError when there is none) and return it."""
    return _CELLS.pop(name)


def unregister_readout(name: str) -> ReadoutEntry:
    """Remove a read-out's entry (KeyError when there is none) and return it."""
    return _READOUTS.pop(name)


@contextmanager
def registered_cell(name: str, **entry: Any) -> Iterator[CellEntry]:
    """`register_cell(name, **entry)` for the length of the block."""
    e = register_cell(name, **entry)
    try:
        yield e
    finally:
        _CELLS.pop(name, None)


@contextmanager
def registered_readout(name: str, **entry: Any) -> Iterator[ReadoutEntry]:
    """`register_readout(name, **entry)` for the length of the block."""
    e = register_readout(name, **entry)
    try:
        yield e
    finally:
        _READOUTS.pop(name, None)


def cell_entry(name: object) -> CellEntry | None:
    """The registered cell of that name; None for anything else (a plugin's, or unknown)."""
    return _CELLS.get(name) if isinstance(name, str) else None


def readout_entry(name: object) -> ReadoutEntry | None:
    """The registered read-out of that name; None for anything else (a plugin's, or unknown)."""
    return _READOUTS.get(name) if isinstance(name, str) else None


def cell_entries() -> tuple[CellEntry, ...]:
    """Every registered cell, in registration order."""
    return tuple(_CELLS.values())


def readout_entries() -> tuple[ReadoutEntry, ...]:
    """Every registered read-out, in registration order."""
    return tuple(_READOUTS.values())


def fused_cell(name: object) -> bool:
    """Whether the fused trainer has a form of this cell (False for a plugin's or an unknown name)."""
    e = cell_entry(name)
    return e is not None and e.fused


def fused_readout(name: object) -> bool:
    """Whether the fused model may use this read-out (False for a plugin's or an unknown name)."""
    e = readout_entry(name)
    return e is not None and e.fused


# ----------------------------------------------------------------------------- live views

class RegistryNames(Sequence[str]):
    """The names in a registry, in registration order, read at each use (so a name registered later
    is in it); compares equal to a tuple of the same names."""

    def __init__(self, registry: Mapping[str, object]):
        self._registry = registry

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return tuple(self._registry)[i]

    def __len__(self) -> int:
        return len(self._registry)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registry))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._registry

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RegistryNames, tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # its contents change

    def __add__(self, other: Iterable[str]) -> tuple[str, ...]:
        return tuple(self) + tuple(other)

    def __radd__(self, other: Iterable[str]) -> tuple[str, ...]:
        return tuple(other) + tuple(self)

    def __repr__(self) -> str:
        return repr(tuple(self))


V = TypeVar("V")


class RegistryView(Mapping[str, V]):
    """A read-only, live mapping name -> `value(entry)` over a registry's entries, leaving out the
    entries whose value is None (e.g. the cells without a fused form)."""

    def __init__(self, entries: Callable[[], Iterable[Any]], value: Callable[[Any], V | None]):
        self._entries, self._value = entries, value

    def __getitem__(self, name: str) -> V:
        for e in self._entries():
            if e.name == name:
                v = self._value(e)
                if v is not None:
                    return v
                break
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([e.name for e in self._entries() if self._value(e) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


# The registered names, live (`harness.names.CELLS` / `READOUTS`).
CELL_NAMES = RegistryNames(_CELLS)
READOUT_NAMES = RegistryNames(_READOUTS)
