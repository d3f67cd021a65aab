"""The classifier: embedding → stack of single-layer recurrent layers → read-out → [LayerNorm] → linear.

Cells and read-outs come from the registry (`harness.registry`; the built-ins are registered in
`harness.names`): `CELL_FACTORIES` (name -> factory, the entry's "module:attr" imported on use),
`CELLS` (name -> PyTorch module, for the cells built from one: rnn, lstm, gru) and `READOUTS`
(name -> function) are live views of it, and `read_positions` takes each read-out's probe position
from its entry. Any other name is a plugin's (`harness.plugins`), loaded when a model is built
(`cell_factory`, `readout_fn`). Each recurrent layer is its own module (a one-layer `nn.LSTM` etc.,
which keeps cuDNN on a GPU, or a hand-written LayerNorm cell for `layernorm: recurrent`), so every
layer's output sequence can be probed for gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from harness import names, plugins
from harness.config import ModelConfig
from harness.models.cells import BuiltinCell, gru_cell, lstm_cell, rnn_cell
from harness.registry import RegistryView, cell_entries, readout_entries

__all__ = ["CELLS", "CELL_FACTORIES", "READOUTS", "CellFactory", "RecurrentClassifier", "build_model", "cell_factory",
           "gru_cell", "lstm_cell", "param_groups", "read_positions", "readout_fn", "rnn_cell"]

# A cell's factory: (input_size, hidden_size, bidirectional, layernorm) -> a module mapping (B, T, I) to
# (B, T, D*H), or to a tuple whose first element is that. `layernorm` is True for model.layernorm
# `recurrent` (LayerNorm inside the cell); a cell without such a form raises ValueError then.
CellFactory = Callable[[int, int, bool, bool], nn.Module]

# Registered cell -> its factory (imported when looked up), and -> its PyTorch module where it is a BuiltinCell.
CELL_FACTORIES: RegistryView[CellFactory] = RegistryView(cell_entries, lambda e: e.load())
CELLS: RegistryView[type[nn.Module]] = RegistryView(
    cell_entries, lambda e: f.module if isinstance(f := e.load(), BuiltinCell) else None)


def cell_factory(name: str) -> CellFactory:
    """The factory of a registered cell, or of a plugin's (imported now)."""
    entry = names.cell_entry(name)
    return entry.load() if entry is not None else plugins.load(plugins.CELL_GROUP, name)


# ----------------------------------------------------------------------------- read-outs
# Each takes the last layer's outputs (B, T, D*H), the text lengths (B,), the number of directions
# and, optionally, the texts' first positions `starts` (B,): example b's text occupies the positions
# [starts[b], starts[b] + lengths[b]) (its valid span). `starts` None means every text starts at
# position 0 (the seed's layout); the read-outs then run exactly the ops they always ran.
# Returns (B, D*H).

def readout_last(out: Tensor, lengths: Tensor, directions: int, starts: Tensor | None = None) -> Tensor:
    """The seed's out[:, -1, :]: the last (usually padded) position, both directions."""
    return out[:, -1, :]


def readout_last_valid(out: Tensor, lengths: Tensor, directions: int, starts: Tensor | None = None
                       ) -> Tensor:
    """Each direction's output after it has read the whole text: forward at the text's last token
    (position starts+length-1), reverse (which runs from T-1 down to 0) at its first (starts)."""
    last = lengths - 1 if starts is None else starts + lengths - 1
    idx = last.clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.size(2))
    at_last = out.gather(1, idx).squeeze(1)  # (B, D*H)
    if directions == 1:
        return at_last
    h = out.size(2) // 2
    if starts is None:
        at_first = out[:, 0, h:]
    else:
        at_first = out[:, :, h:].gather(1, starts.view(-1, 1, 1).expand(-1, 1, h)).squeeze(1)  # (B, H)
    return torch.cat([at_last[:, :h], at_first], dim=1)


def _valid_mask(out: Tensor, lengths: Tensor, starts: Tensor | None = None) -> Tensor:
    """(B, T, 1) True inside each example's valid span."""
    positions = torch.arange(out.size(1), device=out.device).unsqueeze(0)  # (1, T)
    if starts is None:
        return (positions < lengths.unsqueeze(1)).unsqueeze(2)
    s = starts.unsqueeze(1)
    return ((positions >= s) & (positions < s + lengths.unsqueeze(1))).unsqueeze(2)


def readout_mean(out: Tensor, lengths: Tensor, directions: int, starts: Tensor | None = None) -> Tensor:
    """Mean over the valid (non-padding) positions."""
    mask = _valid_mask(out, lengths, starts).to(out.dtype)
    return (out * mask).sum(1) / mask.sum(1).clamp(min=1)


def readout_max(out: Tensor, lengths: Tensor, directions: int, starts: Tensor | None = None) -> Tensor:
    """Maximum over the valid (non-padding) positions."""
    return out.masked_fill(~_valid_mask(out, lengths, starts), float("-inf")).amax(1)


# Registered read-out -> its function (imported when looked up).
READOUTS: RegistryView[Callable[..., Tensor]] = RegistryView(readout_entries, lambda e: e.load())


def readout_fn(name: str) -> Callable[[Tensor, Tensor, int], Tensor]:
    """A registered read-out, or a plugin's (imported now)."""
    entry = names.readout_entry(name)
    return entry.load() if entry is not None else plugins.load(plugins.READOUT_GROUP, name)


def read_positions(readout: str, lengths: np.ndarray, seq_len: int, starts: np.ndarray | None = None
                   ) -> np.ndarray:
    """(B,) the input position whose output the classifier reads for each text (for the forward
    direction), as the read-out's entry says (`reads`): seq_len-1 (T-1) for "last_position" (`last`),
    the text's last token (starts+lengths-1) for "last_token" (every other built-in, and a plugin's)."""
    entry = names.readout_entry(readout)
    if entry is not None and entry.reads == "last_position":
        return np.full(len(lengths), seq_len - 1)
    last = lengths - 1 if starts is None else starts + lengths - 1
    return np.clip(last, 0, seq_len - 1)


# ----------------------------------------------------------------------------- model

class RecurrentClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, n_classes: int, pad_index: int,
                 embeddings: np.ndarray | None = None):
        super().__init__()
        self.cfg = cfg
        if embeddings is not None:
            # A copy: from_numpy shares memory, and training would change the data set's array in place.
            self.embedding = nn.Embedding.from_pretrained(
                torch.from_numpy(embeddings).to(torch.get_default_dtype(), copy=True), freeze=False)  # model dtype
            embed_dim = embeddings.shape[1]
        else:
            self.embedding = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=pad_index)
            embed_dim = cfg.embed_dim
        self.directions = 2 if cfg.bidirectional else 1
        self.width = width = cfg.hidden_size * self.directions
        make = cell_factory(cfg.cell)
        self.rnn = nn.ModuleList(
            make(embed_dim if i == 0 else width, cfg.hidden_size, cfg.bidirectional, cfg.layernorm == "recurrent")
            for i in range(cfg.num_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(width) if cfg.layernorm == "output" else None
        self.fc = nn.Linear(width, n_classes)
        self.readout = readout_fn(cfg.readout)

    def forward(self, tokens: Tensor, lengths: Tensor, return_hidden: bool = False, starts: Tensor | None = None
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """tokens (B, T) int64, lengths (B,) [, starts (B,): each text's first position, None = 0]
        → logits (B, C); with return_hidden also the list [embedding output (B, T, E), layer 0
        output (B, T, D*H), …] for the gradient probe."""
        x = self.embedding(tokens)  # (B, T, E)
        hidden = [x]
        for i, layer in enumerate(self.rnn):
            if i > 0:
                x = self.dropout(x)  # between layers, as nn.LSTM(dropout=...) does
            x = layer(x)
            if isinstance(x, tuple):
                x = x[0]
            if x.dim() != 3 or x.shape[2] != self.width:
                raise ValueError(f"cell {self.cfg.cell!r}: layer {i} returned shape {tuple(x.shape)}; expected "
                                 f"(batch, time, {self.width}) = (B, T, directions × hidden_size)")
            hidden.append(x)  # (B, T, D*H)
        if starts is None:  # the seed's layout; a read-out need not know of starts
            v = self.readout(x, lengths, self.directions)  # (B, D*H)
        else:
            v = self.readout(x, lengths, self.directions, starts)
        if self.norm is not None:
            v = self.norm(v)
        logits = self.fc(v)  # (B, C)
        return (logits, hidden) if return_hidden else logits


def init_weights(model: RecurrentClassifier, cfg: ModelConfig) -> None:
    """`xavier`: the seed's init_network — xavier-normal matrices, zero biases, embedding and
    LayerNorm untouched; `default`: PyTorch's. Then the LSTM forget-gate bias is set."""
    if cfg.init == "xavier":
        for name, p in model.named_parameters():
            if name.startswith("embedding") or name.startswith("norm") or ".ln_" in name:
                continue
            if "weight" in name and p.dim() >= 2:
                nn.init.xavier_normal_(p)
            elif "bias" in name:
                nn.init.zeros_(p)
    if cfg.cell == "lstm":
        h = cfg.hidden_size
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                if "bias_ih" in name:
                    p[h:2 * h] = cfg.forget_bias
                elif "bias_hh" in name:
                    p[h:2 * h] = 0.0


def build_model(cfg: ModelConfig, vocab_size: int, n_classes: int, pad_index: int,
                embeddings: np.ndarray | None = None) -> RecurrentClassifier:
    model = RecurrentClassifier(cfg, vocab_size, n_classes, pad_index, embeddings)
    init_weights(model, cfg)
    return model


def param_groups(model: nn.Module) -> tuple[list[str], list[int]]:
    """Group names (embedding, rnn.l0, rnn.l1, …, norm, fc) and, per parameter in
    `model.parameters()` order, the index of its group."""
    names: list[str] = []
    index: list[int] = []
    for pname, _ in model.named_parameters():
        parts = pname.split(".")
        group = f"rnn.l{parts[1]}" if parts[0] == "rnn" else parts[0]
        if group not in names:
            names.append(group)
        index.append(names.index(group))
    return names, index
