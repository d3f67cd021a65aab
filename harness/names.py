"""The names the config, the models, the data, the tables and the report share, each defined once.

Torch-free, so the config can validate against them. The recurrent cells and read-outs are the
entries of `harness.registry`, and the built-ins are registered here, one `register_cell` /
`register_readout` call each: `CELLS` and `READOUTS` are live views of that registry (a name
registered later is in them), and `harness.models`, the fused trainer and the report take each
implementation, figure colour, label, probe position and fused support from the entries. Cells,
read-outs and data kinds from other packages add to these through entry points (`harness.plugins`).
"""

from __future__ import annotations

from harness.registry import (
    CELL_NAMES,
    READOUT_NAMES,
    CellEntry,
    ReadoutEntry,
    cell_entries,
    cell_entry,
    fused_cell,
    fused_readout,
    readout_entries,
    readout_entry,
    register_cell,
    register_readout,
    registered_cell,
    registered_readout,
    unregister_cell,
    unregister_readout,
)

__all__ = ["CELLS", "DATA_KINDS", "LAYERNORMS", "READOUTS", "SPLITS", "STATUSES", "CellEntry", "ReadoutEntry",
           "cell_entries", "cell_entry", "fused_cell", "fused_readout", "level_rank",
           "readout_entries", "readout_entry", "register_cell", "register_readout", "registered_cell",
           "registered_readout", "unregister_cell", "unregister_readout"]

# ----------------------------------------------------------------------------- the built-in cells
# In the order tables and figures show cells in. A new cell: its module (a factory, see
# docs/architecture.md "A new cell") and one call here.
register_cell("rnn", label="the RNN", color="#d62728", factory="harness.models.cells:rnn_cell", fused=True, gates=1)
register_cell("lstm", label="the LSTM", color="#1f77b4", factory="harness.models.cells:lstm_cell", fused=True,
              gates=4)
register_cell("gru", label="the GRU", color="#2ca02c", factory="harness.models.cells:gru_cell", fused=True, gates=3)

# ----------------------------------------------------------------------------- the built-in read-outs
# What the classifier reads from the last layer's outputs (functions in harness/models/__init__.py).
register_readout("last", function="harness.models:readout_last", reads="last_position", fused=True)
register_readout("last_valid", function="harness.models:readout_last_valid", fused=True)
register_readout("mean", function="harness.models:readout_mean", fused=True)
register_readout("max", function="harness.models:readout_max", fused=True)

# Registered cells and read-outs, in registration order (live: `register_cell` adds to them).
CELLS = CELL_NAMES
READOUTS = READOUT_NAMES
# Layernorm placements, in the order tables and figures show them.
LAYERNORMS = ("none", "output", "recurrent")
# Built-in data set kinds (`data.kind`).
DATA_KINDS = ("synthetic", "thucnews")
# The splits of a data set, in file order.
SPLITS = ("train", "dev", "test")
# How a trial ended (the runs table's `status`).
STATUSES = ("complete", "diverged", "failed", "pruned")


def level_rank(value: object, unknown: int = 99) -> int:
    """A cell's position in the registry or a layernorm's in `LAYERNORMS`; `unknown` for anything else."""
    if not isinstance(value, str):
        return unknown
    if value in LAYERNORMS:
        return LAYERNORMS.index(value)
    return CELLS.index(value) if value in CELLS else unknown
