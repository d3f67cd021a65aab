"""The names the config, the models, the data, the tables and the report share, each defined once.

Torch-free, so the config can validate against them; `harness.models` registers its
implementations under exactly these names (and checks so at import). Cells, read-outs and data
kinds from other packages add to these through entry points (`harness.plugins`).
"""

from __future__ import annotations

from collections.abc import Iterable

# Recurrent cells and layernorm placements, in the order tables and figures show them.
CELLS = ("rnn", "lstm", "gru")
LAYERNORMS = ("none", "output", "recurrent")
# What the classifier reads from the last layer's outputs.
READOUTS = ("last", "last_valid", "mean", "max")
# Built-in data set kinds (`data.kind`).
DATA_KINDS = ("synthetic", "thucnews")
# The splits of a data set, in file order.
SPLITS = ("train", "dev", "test")
# How a trial ended (the runs table's `status`).
STATUSES = ("complete", "diverged", "failed", "pruned")

# Rank of each cell and layernorm name in its list: the order levels are shown in.
LEVEL_ORDER: dict[str, int] = {**{c: i for i, c in enumerate(CELLS)}, **{n: i for i, n in enumerate(LAYERNORMS)}}


def level_rank(value: object, unknown: int = 99) -> int:
    """A cell's or layernorm's position in its registry order; `unknown` for anything else."""
    return LEVEL_ORDER.get(value, unknown) if isinstance(value, str) else unknown


def check_registry(kind: str, registered: Iterable[str], names: tuple[str, ...]) -> None:
    """Raise if an implementation registry does not cover exactly `names` (a programming error)."""
    got = tuple(registered)
    if set(got) != set(names):
        raise RuntimeError(f"the {kind} registry has {sorted(got)}, but harness.names lists {sorted(names)}")
