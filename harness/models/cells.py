"""The built-in cells: their factories, and hand-written single-layer recurrent layers (RNN / LSTM /
GRU) with optional recurrent LayerNorm.

``rnn_cell``, ``lstm_cell``, ``gru_cell`` are the factories the built-ins' registry entries name
(``harness.names``): each a ``BuiltinCell`` that builds PyTorch's one-layer module (cuDNN on a GPU), or
its hand-written ``RecurrentLayer`` for ``layernorm: recurrent``. ``make_layer`` finds a registered
cell's hand-written layer through its entry. A new cell built the same way needs a ``RecurrentLayer``
subclass, a ``BuiltinCell`` and its one registration; any other factory works too (the
``harness.models.CellFactory`` contract).

The hand-written layers are used when a config asks for ``layernorm: recurrent`` (LayerNorm inside
the cell, Ba, Kiros & Hinton 2016). Parameters are named and shaped exactly like ``torch.nn.LSTM`` /
``nn.GRU`` / ``nn.RNN`` with ``num_layers=1, batch_first=True`` (``weight_ih_l0``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0`` and the ``_reverse`` ones when bidirectional), PyTorch gate order
(LSTM i,f,g,o; GRU r,z,n). With ``layernorm=False`` there are no other parameters: a PyTorch
module's ``state_dict`` loads with ``strict=True`` and the outputs match PyTorch's. With
``layernorm=True`` the LayerNorm gains/biases live in submodules ``ln_ih_l0``, ``ln_hh_l0`` (and
``ln_c_l0`` for the LSTM), plus ``_reverse`` (the ``eps`` used for a kind of LN is that of its
forward-direction module, default 1e-5).

Layout of the computation: the input projection for all steps and both directions is one batched
matmul ``(D, T*B, I) @ (D, I, G)`` before the loop, the reverse direction's input taken in reversed
time, so that one loop step advances both directions with a single ``torch.baddbmm`` over a
``(D, B, H)`` hidden-state batch; the per-step outputs are stacked once at the end. The reverse
direction runs over the full padded sequence from ``t = T-1`` down to ``0`` (no packing), like
``nn.LSTM`` on an unpacked batch. Initial states are zero.

Measured speed vs the same-size ``nn.*`` module (CPU, torch 2.13, ``torch.set_num_threads(1)``,
forward+backward, B=64, T=32, I=300, H=128, bidirectional; median of 30 interleaved repeats, two
runs on a shared, loaded 2-core box): layernorm=False: LSTM 1.10-1.16x nn.LSTM, GRU 1.06-1.07x nn.GRU,
RNN 1.02-1.05x nn.RNN; layernorm=True: LSTM 1.75-1.85x, GRU 1.33-1.40x, RNN 1.35-1.43x (nn.LSTM/GRU
use the fused oneDNN RNN kernel here). ``torch.jit.script`` of the loop was tried and was no faster
(and TorchScript is deprecated), so the loop is plain eager Python.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.names import cell_entry
from harness.registry import RegistryView, cell_entries

__all__ = ["BuiltinCell", "GRULayer", "LSTMLayer", "RNNLayer", "RecurrentLayer", "gru_cell", "lstm_cell", "make_layer",
           "rnn_cell"]


class RecurrentLayer(nn.Module):
    """Base class: one recurrent layer, batch-first, optionally bidirectional, optional recurrent LN.

    Subclasses set ``gate_mult`` (number of ``H``-sized gate blocks) and implement ``_loop``.

    Args:
        input_size: ``I``, features of the input.
        hidden_size: ``H``, features of the hidden state (per direction).
        bidirectional: add a reverse direction; the output is ``[forward, reverse]`` on the last dim.
        layernorm: apply LayerNorm inside the cell (form documented in each subclass).
    """

    gate_mult: int = 1
    ln_cell: bool = False  # LSTM: extra LayerNorm (gain and bias) on the cell state

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = True,
                 layernorm: bool = True) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.layernorm = layernorm
        self.num_directions = 2 if bidirectional else 1
        g = self.gate_mult * hidden_size
        for sfx in self._suffixes():
            # Same registration order as nn.LSTM: w_ih, w_hh, b_ih, b_hh per direction.
            self.register_parameter(f"weight_ih_l0{sfx}", nn.Parameter(torch.empty(g, input_size)))
            self.register_parameter(f"weight_hh_l0{sfx}", nn.Parameter(torch.empty(g, hidden_size)))
            self.register_parameter(f"bias_ih_l0{sfx}", nn.Parameter(torch.empty(g)))
            self.register_parameter(f"bias_hh_l0{sfx}", nn.Parameter(torch.empty(g)))
        if layernorm:
            for sfx in self._suffixes():
                # No LN bias on the projections: bias_ih / bias_hh already play that role.
                self.add_module(f"ln_ih_l0{sfx}", nn.LayerNorm(g, bias=False))
                self.add_module(f"ln_hh_l0{sfx}", nn.LayerNorm(g, bias=False))
                if self.ln_cell:
                    self.add_module(f"ln_c_l0{sfx}", nn.LayerNorm(hidden_size))
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """PyTorch's RNN init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); LN gain 1, bias 0."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if not name.startswith("ln_"):
                nn.init.uniform_(p, -k, k)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
                f"layernorm={self.layernorm}")

    # ----------------------------------------------------------------------------------------------
    def _gate_perm(self) -> Tensor | None:
        """Row permutation (over the ``D*G`` stacked gate rows) into the loop's gate order; None = as is."""
        return None

    def _cat(self, name: str, attr: str | None = None, permute: bool = True) -> Tensor:
        """Concatenate a per-direction parameter over directions along dim 0 (gate rows reordered)."""
        ts = [getattr(self, f"{name}{s}") for s in self._suffixes()]
        if attr is not None:
            ts = [getattr(t, attr) for t in ts]
        t = ts[0] if len(ts) == 1 else torch.cat(ts, 0)
        perm = self._gate_perm() if permute else None
        return t if perm is None else t.index_select(0, perm.to(t.device))

    def _ln_affine(self, name: str, attr: str = "weight", permute: bool = True) -> Tensor:
        """An LN gain/bias of all directions, ``(D, 1, N)``."""
        return self._cat(name, attr, permute).view(self.num_directions, 1, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer over a batch-first sequence.

        Args:
            x: ``(B, T, I)``.

        Returns:
            ``(B, T, D*H)`` hidden states (contiguous), ``D = 2`` if bidirectional else 1; for
            ``D = 2`` the last dim is ``[forward, reverse]`` and the reverse half at position ``t``
            has seen ``x[:, t:]``.
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (B, T, {self.input_size}), got {tuple(x.shape)}")
        b, t_len, _ = x.shape
        d, h, g = self.num_directions, self.hidden_size, self.gate_mult * self.hidden_size
        if t_len == 0:
            return x.new_zeros(b, 0, d * h)
        w_ih_t = self._cat("weight_ih_l0").view(d, g, -1).transpose(1, 2)  # (D, I, G), a strided view
        w_hh_t = self._cat("weight_hh_l0").view(d, g, h).transpose(1, 2)  # (D, H, G), a strided view
        b_hh = self._cat("bias_hh_l0").view(d, 1, g)
        bias = self._input_bias(self._cat("bias_ih_l0").view(d, 1, g), b_hh)  # (D, 1, G)
        # Time-major input per direction, the reverse direction's in reversed time: (D, T*B, I).
        xt = x.transpose(0, 1)
        xd = torch.stack((xt, xt.flip(0)), 0) if d == 2 else xt.unsqueeze(0)
        xd = xd.reshape(d, t_len * b, -1)
        # One batched matmul for every step and direction: (D, T*B, I) @ (D, I, G) -> (D, T*B, G). Kept in
        # this contiguous layout so the backward reductions for the biases / LN gains are cheap.
        if self.layernorm:
            xp = F.layer_norm(torch.bmm(xd, w_ih_t), (g,), eps=self.ln_ih_l0.eps)
            xp = torch.addcmul(bias, xp, self._ln_affine("ln_ih_l0"))
        else:
            xp = torch.baddbmm(bias, xd, w_ih_t)
        xs = xp.view(d, t_len, b, g).unbind(1)  # T x (D, B, G); step t of the reverse is x[:, T-1-t]
        hs = self._loop(xs, w_hh_t, b_hh, x.new_zeros(d, b, h))  # T x (D, B, H)
        out = torch.stack(hs, 1)  # (D, T, B, H)
        if d == 2:
            fwd, rev = out.unbind(0)  # unbind rather than indexing: no zero-filled grads in backward
            out = torch.cat((fwd.transpose(0, 1), rev.flip(0).transpose(0, 1)), -1)  # (B, T, 2H)
        else:
            out = out.squeeze(0).transpose(0, 1)
        return out.contiguous()

    def _input_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        """Bias added to the precomputed input term, ``(D, 1, G)``; default both biases."""
        return b_ih + b_hh

    def _loop(self, xs: tuple[Tensor, ...], w_hh_t: Tensor, b_hh: Tensor, h0: Tensor) -> list[Tensor]:
        """The time loop. ``xs``: T x ``(D, B, G)`` input terms; ``w_hh_t``: ``(D, H, G)``;
        ``b_hh``: ``(D, 1, G)``; ``h0``: ``(D, B, H)``. Returns T x ``(D, B, H)``."""
        raise NotImplementedError


class RNNLayer(RecurrentLayer):
    """Elman RNN with tanh, like ``nn.RNN(nonlinearity="tanh")``.

    Without LN: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.
    With LN:    ``h_t = tanh(LN_x(W_ih x_t) + LN_h(W_hh h_{t-1}) + b_ih + b_hh)``, where ``LN_x`` /
    ``LN_h`` (``ln_ih_l0`` / ``ln_hh_l0``) normalise over the ``H`` pre-activations with a gain, no bias.
    """

    gate_mult = 1

    def _loop(self, xs: tuple[Tensor, ...], w_hh_t: Tensor, b_hh: Tensor, h0: Tensor) -> list[Tensor]:
        h = h0
        hs: list[Tensor] = []
        if self.layernorm:
            gain = self._ln_affine("ln_hh_l0")  # (D, 1, H)
            n, eps = (w_hh_t.shape[-1],), self.ln_hh_l0.eps
            for xt in xs:
                h = torch.addcmul(xt, F.layer_norm(torch.bmm(h, w_hh_t), n, eps=eps), gain).tanh()
                hs.append(h)
        else:
            for xt in xs:
                h = torch.baddbmm(xt, h, w_hh_t).tanh()
                hs.append(h)
        return hs


class LSTMLayer(RecurrentLayer):
    """LSTM, like ``nn.LSTM`` (gate order i, f, g, o in the weights; forget-gate bias is the
    ``[H:2H]`` chunk of ``bias_ih_l0`` / ``bias_hh_l0``).

    Without LN: ``[i,f,g,o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``; ``c_t = σf*c_{t-1} + σi*tanh g``;
    ``h_t = σo * tanh(c_t)``.
    With LN:    ``[i,f,g,o] = LN_x(W_ih x_t) + LN_h(W_hh h_{t-1}) + b_ih + b_hh`` (``LN_x`` / ``LN_h`` =
    ``ln_ih_l0`` / ``ln_hh_l0`` over the 4H pre-activations, gain only), the same ``c_t``, and
    ``h_t = σo * tanh(LN_c(c_t))`` with ``LN_c`` = ``ln_c_l0`` over H (gain and bias).
    """

    gate_mult = 4
    ln_cell = True

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = True,
                 layernorm: bool = True) -> None:
        super().__init__(input_size, hidden_size, bidirectional, layernorm)
        # PyTorch's i,f,g,o -> i,f,o,g (per direction) so the three sigmoid gates are one block.
        h = hidden_size
        one = torch.cat((torch.arange(2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)))
        perm = torch.cat([one + k * 4 * h for k in range(self.num_directions)])
        self.register_buffer("_perm", perm, persistent=False)

    def _gate_perm(self) -> Tensor | None:
        return self._perm

    def _loop(self, xs: tuple[Tensor, ...], w_hh_t: Tensor, b_hh: Tensor, h0: Tensor) -> list[Tensor]:
        hsz = self.hidden_size
        h, c = h0, h0
        hs: list[Tensor] = []
        split = [3 * hsz, hsz]  # split (not slicing): its backward is one cat, no zero-filled grads
        if self.layernorm:
            gain_h = self._ln_affine("ln_hh_l0")  # (D, 1, 4H)
            gain_c = self._ln_affine("ln_c_l0", permute=False)  # (D, 1, H)
            bias_c = self._ln_affine("ln_c_l0", "bias", permute=False)  # (D, 1, H)
            n4, n1, eps_h, eps_c = (4 * hsz,), (hsz,), self.ln_hh_l0.eps, self.ln_c_l0.eps
            for xt in xs:
                gates = torch.addcmul(xt, F.layer_norm(torch.bmm(h, w_hh_t), n4, eps=eps_h), gain_h)
                ifo, g = gates.split(split, -1)
                i, f, o = ifo.sigmoid().chunk(3, -1)
                c = torch.addcmul(f * c, i, g.tanh())
                h = o * torch.addcmul(bias_c, F.layer_norm(c, n1, eps=eps_c), gain_c).tanh()
                hs.append(h)
        else:
            for xt in xs:
                ifo, g = torch.baddbmm(xt, h, w_hh_t).split(split, -1)
                i, f, o = ifo.sigmoid().chunk(3, -1)
                c = torch.addcmul(f * c, i, g.tanh())
                h = o * c.tanh()
                hs.append(h)
        return hs


class GRULayer(RecurrentLayer):
    """GRU, like ``nn.GRU`` (gate order r, z, n).

    Without LN: ``a = W_ih x_t + b_ih``, ``b = W_hh h_{t-1} + b_hh``; ``r = σ(a_r + b_r)``,
    ``z = σ(a_z + b_z)``, ``n = tanh(a_n + r * b_n)`` (so ``b_hn`` sits inside ``r * (...)``),
    ``h_t = (1 - z) * n + z * h_{t-1}``.
    With LN: the same with ``a = LN_x(W_ih x_t) + b_ih`` and ``b = LN_h(W_hh h_{t-1}) + b_hh``, where
    ``LN_x`` / ``LN_h`` (``ln_ih_l0`` / ``ln_hh_l0``) normalise over the 3H pre-activations, gain only.
    """

    gate_mult = 3

    def _input_bias(self, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        return b_ih  # b_hh is added to the recurrent term (b_hn must stay inside r * (...))

    def _loop(self, xs: tuple[Tensor, ...], w_hh_t: Tensor, b_hh: Tensor, h0: Tensor) -> list[Tensor]:
        hsz = self.hidden_size
        h = h0
        hs: list[Tensor] = []
        gain = self._ln_affine("ln_hh_l0") if self.layernorm else None  # (D, 1, 3H)
        split = [2 * hsz, hsz]
        n3, eps = (3 * hsz,), (self.ln_hh_l0.eps if self.layernorm else 0.0)
        for xt in xs:
            if gain is None:
                gh = torch.baddbmm(b_hh, h, w_hh_t)
            else:
                gh = torch.addcmul(b_hh, F.layer_norm(torch.bmm(h, w_hh_t), n3, eps=eps), gain)
            (x_rz, x_n), (h_rz, h_n) = xt.split(split, -1), gh.split(split, -1)
            r, z = (x_rz + h_rz).sigmoid().chunk(2, -1)
            n = torch.addcmul(x_n, r, h_n).tanh()
            h = torch.addcmul(n, z, h - n)  # (1 - z) * n + z * h
            hs.append(h)
        return hs


class BuiltinCell:
    """A cell factory ``(input_size, hidden_size, bidirectional, layernorm) -> nn.Module`` from PyTorch's
    one-layer module (``module(input, hidden, num_layers=1, batch_first=True, bidirectional=...)``, cuDNN
    on a GPU) and its hand-written ``layer`` (used for the recurrent-LayerNorm form)."""

    def __init__(self, module: type[nn.Module], layer: type[RecurrentLayer]):
        self.module, self.layer = module, layer

    def __call__(self, input_size: int, hidden_size: int, bidirectional: bool, layernorm: bool) -> nn.Module:
        if layernorm:
            return self.layer(input_size, hidden_size, bidirectional=bidirectional, layernorm=True)
        return self.module(input_size, hidden_size, num_layers=1, batch_first=True, bidirectional=bidirectional)

    def __repr__(self) -> str:
        return f"BuiltinCell({self.module.__name__}, {self.layer.__name__})"


rnn_cell = BuiltinCell(nn.RNN, RNNLayer)
lstm_cell = BuiltinCell(nn.LSTM, LSTMLayer)
gru_cell = BuiltinCell(nn.GRU, GRULayer)


def _layer_of(entry: object) -> type[RecurrentLayer] | None:
    factory = entry.load()  # type: ignore[attr-defined]
    return factory.layer if isinstance(factory, BuiltinCell) else None


# Cell name -> hand-written layer, for every registered cell whose factory is a BuiltinCell (live).
_CELLS: RegistryView[type[RecurrentLayer]] = RegistryView(cell_entries, _layer_of)


def make_layer(cell: str, input_size: int, hidden_size: int, bidirectional: bool,
               layernorm: bool) -> nn.Module:
    """Build the hand-written layer of a registered cell with one (``rnn``, ``lstm``, ``gru``):
    ``(B, T, I) -> (B, T, D*H)``."""
    entry = cell_entry(cell)
    cls = _layer_of(entry) if entry is not None else None
    if cls is None:
        raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
    return cls(input_size, hidden_size, bidirectional=bidirectional, layernorm=layernorm)
