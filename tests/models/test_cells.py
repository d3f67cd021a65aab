"""Tests for the hand-written recurrent layers in harness.models.cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models.cells import GRULayer, LSTMLayer, RecurrentLayer, RNNLayer, make_layer

B, T, IN, H = 3, 7, 5, 4
REFS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CLASSES = {"rnn": RNNLayer, "lstm": LSTMLayer, "gru": GRULayer}


def _pair(cell: str, bidirectional: bool, layernorm: bool = False, seed: int = 0,
          input_size: int = IN, hidden_size: int = H) -> tuple[nn.Module, RecurrentLayer]:
    """A fresh torch nn.* module and our layer carrying the same weights."""
    torch.manual_seed(seed)
    ref = REFS[cell](input_size, hidden_size, num_layers=1, batch_first=True, bidirectional=bidirectional)
    ours = make_layer(cell, input_size, hidden_size, bidirectional, layernorm)
    ours.load_state_dict(ref.state_dict(), strict=not layernorm)
    return ref, ours


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_matches_torch_without_layernorm(cell: str, bidirectional: bool) -> None:
    ref, ours = _pair(cell, bidirectional)
    assert {n for n, _ in ours.named_parameters()} == {n for n, _ in ref.named_parameters()}
    torch.manual_seed(1)
    x = torch.randn(B, T, IN, requires_grad=True)
    upstream = torch.randn(B, T, (2 if bidirectional else 1) * H)
    y_ref, _ = ref(x)
    y = ours(x)
    assert y.shape == y_ref.shape == (B, T, (2 if bidirectional else 1) * H)
    assert (y - y_ref).abs().max().item() < 1e-5
    (g_ref,) = torch.autograd.grad(y_ref, x, upstream)
    (g,) = torch.autograd.grad(y, x, upstream)
    assert (g - g_ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_direction_causality(cell: str) -> None:
    """Forward half at t sees only x[:, :t+1]; reverse half at t sees only x[:, t:]."""
    layer = make_layer(cell, IN, H, True, True)
    x = torch.randn(B, T, IN, requires_grad=True)
    y = layer(x)
    t = 3
    (g_fwd,) = torch.autograd.grad(y[:, t, :H].sum(), x, retain_graph=True)
    (g_rev,) = torch.autograd.grad(y[:, t, H:].sum(), x)
    assert g_fwd[:, t + 1:].abs().max() == 0 and g_fwd[:, : t + 1].abs().amax(dim=(0, 2)).min() > 0
    assert g_rev[:, :t].abs().max() == 0 and g_rev[:, t:].abs().amax(dim=(0, 2)).min() > 0


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layernorm_parameters_shape_and_effect(cell: str, bidirectional: bool) -> None:
    ref, plain = _pair(cell, bidirectional)
    ln = make_layer(cell, IN, H, bidirectional, True)
    missing, unexpected = ln.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected
    g = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    expected = {"ln_ih_l0.weight": (g,), "ln_hh_l0.weight": (g,)}
    if cell == "lstm":
        expected |= {"ln_c_l0.weight": (H,), "ln_c_l0.bias": (H,)}
    if bidirectional:
        expected |= {k.replace("l0.", "l0_reverse."): v for k, v in expected.items()}
    assert set(missing) == set(expected)
    shapes = {n: tuple(p.shape) for n, p in ln.named_parameters()}
    assert all(shapes[k] == v for k, v in expected.items())
    x = torch.randn(B, T, IN, requires_grad=True)
    y = ln(x)
    assert y.shape == (B, T, (2 if bidirectional else 1) * H)
    assert (y - plain(x)).abs().max().item() > 1e-3
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ln.parameters())


def _reference_direction(layer: RecurrentLayer, x: torch.Tensor, sfx: str) -> torch.Tensor:
    """Naive per-step LN cell in PyTorch gate order, straight from the documented formulas: (B, T, H)."""
    p = {n: getattr(layer, f"{n}{sfx}") for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}
    ln_x, ln_h = getattr(layer, f"ln_ih_l0{sfx}"), getattr(layer, f"ln_hh_l0{sfx}")
    h = x.new_zeros(x.shape[0], layer.hidden_size)
    c = torch.zeros_like(h)
    outs = []
    for t in range(x.shape[1]):
        a = ln_x(x[:, t] @ p["weight_ih_l0"].t()) + p["bias_ih_l0"]
        b = ln_h(h @ p["weight_hh_l0"].t()) + p["bias_hh_l0"]
        if isinstance(layer, RNNLayer):
            h = torch.tanh(a + b)
        elif isinstance(layer, LSTMLayer):
            i, f, g, o = (a + b).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(getattr(layer, f"ln_c_l0{sfx}")(c))
        else:
            (ar, az, an), (br, bz, bn) = a.chunk(3, -1), b.chunk(3, -1)
            r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
            n = torch.tanh(an + r * bn)
            h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layernorm_matches_naive_reference(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(6)
    layer = make_layer(cell, IN, H, bidirectional, True)
    with torch.no_grad():  # non-trivial LN gains / biases
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.5, 0.5)
    x = torch.randn(B, T, IN)
    expected = _reference_direction(layer, x, "")
    if bidirectional:
        rev = _reference_direction(layer, x.flip(1), "_reverse").flip(1)
        expected = torch.cat([expected, rev], -1)
    assert (layer(x) - expected).abs().max().item() < 1e-5


def test_rnn_layernorm_removes_input_scale() -> None:
    """W_hh = 0, LN gains 1: scaling x by 100 barely moves the LN output; without LN tanh saturates."""
    torch.manual_seed(3)
    x = torch.randn(B, T, IN)
    layers = {ln: RNNLayer(IN, 16, bidirectional=True, layernorm=ln) for ln in (True, False)}
    for layer in layers.values():
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if name.startswith(("weight_hh", "bias_")):
                    p.zero_()
    ln, plain = layers[True], layers[False]
    # From 10x on, LN's eps is negligible against the pre-activation variance.
    assert (ln(10 * x) - ln(1000 * x)).abs().max().item() < 1e-4
    assert (ln(x) - ln(100 * x)).abs().max().item() < 1e-2
    assert (ln(100 * x).abs() > 0.99).float().mean() < 0.5  # LN keeps tanh out of saturation
    assert (plain(x) - plain(100 * x)).abs().max().item() > 0.1
    assert (plain(100 * x).abs() > 0.99).float().mean() > 0.9  # saturated


def _scale_weights(layer: nn.Module, k: float) -> None:
    """Multiply W_ih and W_hh of both directions by k (different per-matrix factors)."""
    with torch.no_grad():
        for j, (name, p) in enumerate(layer.named_parameters()):
            if name.startswith("weight_"):
                p.mul_(k * (1.0 + 0.5 * j))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layernorm_removes_weight_scale(cell: str, bidirectional: bool) -> None:
    """LN_x and LN_h make every cell invariant to scaling W_ih and W_hh; without LN the output changes."""
    torch.manual_seed(4)
    x = torch.randn(B, T, IN)
    plain = make_layer(cell, IN, 8, bidirectional, False)
    y = plain(x)
    _scale_weights(plain, 100.0)
    assert (plain(x) - y).abs().max().item() > 0.1
    ln = make_layer(cell, IN, 8, bidirectional, True)
    _scale_weights(ln, 10.0)  # start where LN's eps is negligible against the pre-activation variance
    y = ln(x)
    _scale_weights(ln, 100.0)
    assert (ln(x) - y).abs().max().item() < 1e-4


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_cell_state_layernorm(bidirectional: bool) -> None:
    """h = o * tanh(LN_c(c)): with LN_c gain and bias zero the output is exactly zero."""
    layer = LSTMLayer(IN, H, bidirectional=bidirectional, layernorm=True)
    x = torch.randn(B, T, IN)
    assert layer(x).abs().max() > 0
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("ln_c_l0"):
                p.zero_()
    assert layer(x).abs().max() == 0


@pytest.mark.parametrize("layernorm", [False, True])
def test_forget_bias_is_settable(layernorm: bool) -> None:
    torch.manual_seed(5)
    layer = LSTMLayer(IN, H, bidirectional=True, layernorm=layernorm)
    x = torch.randn(B, T, IN)
    y0 = layer(x)
    with torch.no_grad():
        layer.bias_ih_l0[H: 2 * H] = 1.0
    y1 = layer(x)
    assert (y1[..., :H] - y0[..., :H]).abs().max().item() > 1e-3
    assert torch.equal(y1[..., H:], y0[..., H:])  # reverse direction untouched


def test_forget_bias_matches_torch() -> None:
    ref, ours = _pair("lstm", True)
    with torch.no_grad():
        for m in (ref, ours):
            m.bias_ih_l0[H: 2 * H] = 1.0
            m.bias_hh_l0_reverse[H: 2 * H] = 2.0
    x = torch.randn(B, T, IN)
    assert (ours(x) - ref(x)[0]).abs().max().item() < 1e-5


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradcheck_layernorm(cell: str) -> None:
    layer = make_layer(cell, 3, 2, True, True).double()
    with torch.no_grad():  # non-trivial LN parameters
        for name, p in layer.named_parameters():
            if name.startswith("ln_"):
                p.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)


def test_make_layer_and_errors() -> None:
    for cell, cls in CLASSES.items():
        layer = make_layer(cell, IN, H, bidirectional=False, layernorm=True)
        assert type(layer) is cls and layer.layernorm and not layer.bidirectional
    with pytest.raises(ValueError, match="cell"):
        make_layer("transformer", IN, H, True, True)
    with pytest.raises(ValueError):
        make_layer("lstm", IN, H, True, True)(torch.randn(B, T, IN + 1))
    assert make_layer("gru", IN, H, True, False)(torch.randn(B, 0, IN)).shape == (B, 0, 2 * H)
